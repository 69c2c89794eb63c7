package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

func openMemory(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestChassisHoldsNodes: a node names an existing chassis only, the
// chassis_uuid filter finds it, and a chassis is deleted only once empty.
func TestChassisHoldsNodes(t *testing.T) {
	ctx := t.Context()
	s := openMemory(t)
	c := &provisioner.Chassis{UUID: "c0000000-0000-0000-0000-000000000001", Description: "rack 1",
		Extra: map[string]any{"row": "a"}, CreatedAt: time.Now().UTC()}
	if err := s.CreateChassis(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChassis(ctx, c); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate chassis: %v", err)
	}
	orphan := testNode("11111111-1111-1111-1111-111111111111", "orphan")
	orphan.ChassisUUID = "c0000000-0000-0000-0000-00000000ffff"
	if err := s.CreateNode(ctx, orphan); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node in a missing chassis: %v", err)
	}
	n := testNode("22222222-2222-2222-2222-222222222222", "in-rack")
	n.ChassisUUID = c.UUID
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNode(ctx, testNode("33333333-3333-3333-3333-333333333333", "loose")); err != nil {
		t.Fatal(err)
	}
	in, err := s.Nodes(ctx, store.NodeFilter{ChassisUUID: c.UUID})
	if err != nil || len(in) != 1 || in[0].UUID != n.UUID || in[0].ChassisUUID != c.UUID {
		t.Fatalf("nodes in chassis: %v %v", in, err)
	}
	if err := s.DeleteChassis(ctx, c.UUID); !errors.Is(err, store.ErrNotEmpty) {
		t.Fatalf("delete chassis with a node: %v", err)
	}
	n.ChassisUUID = ""
	if err := s.UpdateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	c.Description = "rack 2"
	if err := s.UpdateChassis(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.Chassis(ctx, c.UUID)
	if err != nil || got.Description != "rack 2" || got.Extra["row"] != "a" {
		t.Fatalf("chassis after update: %+v %v", got, err)
	}
	if err := s.DeleteChassis(ctx, c.UUID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteChassis(ctx, c.UUID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete missing chassis: %v", err)
	}
}

// TestDeployTemplatesByName: templates are found by UUID or name, names
// are unique (on create and rename), listings sort and page.
func TestDeployTemplatesByName(t *testing.T) {
	ctx := t.Context()
	s := openMemory(t)
	mk := func(uuid, name string) *provisioner.DeployTemplate {
		return &provisioner.DeployTemplate{UUID: uuid, Name: name, CreatedAt: time.Now().UTC(),
			Steps: []provisioner.DeployStep{{Interface: "bios", Step: "apply_configuration", Args: map[string]any{"settings": []any{}}, Priority: 150}}}
	}
	b := mk("b0000000-0000-0000-0000-000000000001", "CUSTOM_B")
	a := mk("a0000000-0000-0000-0000-000000000002", "CUSTOM_A")
	for _, tpl := range []*provisioner.DeployTemplate{b, a} {
		if err := s.CreateDeployTemplate(ctx, tpl); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateDeployTemplate(ctx, mk("c0000000-0000-0000-0000-000000000003", "CUSTOM_A")); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate name: %v", err)
	}
	got, err := s.DeployTemplate(ctx, "CUSTOM_A")
	if err != nil || got.UUID != a.UUID || len(got.Steps) != 1 || got.Steps[0].Priority != 150 {
		t.Fatalf("by name: %+v %v", got, err)
	}
	b.Name = "CUSTOM_A"
	if err := s.UpdateDeployTemplate(ctx, b); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("rename onto another: %v", err)
	}
	byName, err := s.DeployTemplates(ctx, store.ListFilter{SortKey: "name"})
	if err != nil || len(byName) != 2 || byName[0].Name != "CUSTOM_A" {
		t.Fatalf("sorted by name: %v %v", byName, err)
	}
	next, err := s.DeployTemplates(ctx, store.ListFilter{Marker: b.UUID, Limit: 1})
	if err != nil || len(next) != 1 || next[0].UUID != a.UUID {
		t.Fatalf("page after marker: %v %v", next, err)
	}
	if err := s.DeleteDeployTemplate(ctx, a.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeployTemplate(ctx, "CUSTOM_A"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestAllocationsOnePerNode: a node is held by one allocation at most, and
// deleting the node deletes its allocation.
func TestAllocationsOnePerNode(t *testing.T) {
	ctx := t.Context()
	s := openMemory(t)
	n := testNode("11111111-1111-1111-1111-111111111111", "bm0")
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	a1 := &provisioner.Allocation{UUID: "a1000000-0000-0000-0000-000000000001", Name: "one", ResourceClass: "baremetal",
		State: provisioner.AllocationAllocating, Traits: []string{"CUSTOM_GPU"}, CreatedAt: time.Now().UTC()}
	a2 := &provisioner.Allocation{UUID: "a2000000-0000-0000-0000-000000000002", ResourceClass: "baremetal",
		State: provisioner.AllocationAllocating, CreatedAt: time.Now().UTC()}
	for _, a := range []*provisioner.Allocation{a1, a2} {
		if err := s.CreateAllocation(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	a1.NodeUUID, a1.State = n.UUID, provisioner.AllocationActive
	if err := s.UpdateAllocation(ctx, a1); err != nil {
		t.Fatal(err)
	}
	a2.NodeUUID = n.UUID
	if err := s.UpdateAllocation(ctx, a2); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("second allocation on one node: %v", err)
	}
	held, err := s.Allocations(ctx, store.AllocationFilter{NodeUUID: n.UUID})
	if err != nil || len(held) != 1 || held[0].UUID != a1.UUID || held[0].Traits[0] != "CUSTOM_GPU" {
		t.Fatalf("by node: %v %v", held, err)
	}
	if got, err := s.Allocation(ctx, "one"); err != nil || got.State != provisioner.AllocationActive {
		t.Fatalf("by name: %+v %v", got, err)
	}
	if l, err := s.Allocations(ctx, store.AllocationFilter{State: provisioner.AllocationAllocating}); err != nil || len(l) != 1 || l[0].UUID != a2.UUID {
		t.Fatalf("by state: %v %v", l, err)
	}
	if err := s.DeleteNode(ctx, n.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocation(ctx, a1.UUID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("allocation of a deleted node: %v", err)
	}
}

// TestMigrateFromSchema1 opens a database written at schema 1 (nodes
// only): it moves to the latest schema and its nodes read back.
func TestMigrateFromSchema1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "old.db")
	writeSchema1(t, ctx, path)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema %d %v, want %d", v, err, len(migrations))
	}
	n, err := s.Node(ctx, "old")
	if err != nil || n.ChassisUUID != "" || n.AllocationUUID != "" {
		t.Fatalf("old node: %+v %v", n, err)
	}
	c := &provisioner.Chassis{UUID: "c0000000-0000-0000-0000-000000000001", CreatedAt: time.Now().UTC()}
	if err := s.CreateChassis(ctx, c); err != nil {
		t.Fatal(err)
	}
	n.ChassisUUID = c.UUID
	if err := s.UpdateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// writeSchema1 makes a database as the first release left it: migration 1
// and one node.
func writeSchema1(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`,
		migrations[0],
		`INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00Z')`,
		`INSERT INTO nodes(uuid, name, driver, provision_state, created_at, data) VALUES
			('11111111-1111-1111-1111-111111111111', 'old', 'fake-hardware', 'enroll', '2026-01-01T00:00:00Z',
			 '{"uuid":"11111111-1111-1111-1111-111111111111","name":"old","driver":"fake-hardware","provision_state":"enroll"}')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
