package sqlite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

func testNode(uuid, name string) *provisioner.Node {
	return &provisioner.Node{
		UUID: uuid, Name: name, Driver: "fake-hardware", ProvisionState: provisioner.StateEnroll,
		DriverInfo: map[string]any{"ipmi_address": "127.0.0.1", "ipmi_port": float64(623)},
		CreatedAt:  time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
}

func TestNodesPortsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	n := testNode("11111111-1111-1111-1111-111111111111", "bm0")
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNode(ctx, testNode("22222222-2222-2222-2222-222222222222", "bm0")); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate name: got %v, want ErrDuplicate", err)
	}
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	p := &provisioner.Port{UUID: "33333333-3333-3333-3333-333333333333", Address: mac, NodeUUID: n.UUID, PXEEnabled: true}
	if err := s.CreatePort(ctx, p); err != nil {
		t.Fatal(err)
	}
	p2 := *p
	p2.UUID = "44444444-4444-4444-4444-444444444444"
	if err := s.CreatePort(ctx, &p2); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate MAC: got %v", err)
	}
	p2.Address, _ = net.ParseMAC("52:54:00:12:34:57")
	p2.NodeUUID = "55555555-5555-5555-5555-555555555555"
	if err := s.CreatePort(ctx, &p2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("port on missing node: got %v", err)
	}
	if _, err := s.ReserveNode(ctx, n.UUID, "c1"); err != nil {
		t.Fatal(err)
	}
	var le *store.LockedError
	if _, err := s.ReserveNode(ctx, n.UUID, "c2"); !errors.As(err, &le) || le.Holder != "c1" {
		t.Fatalf("second reserve: got %v", err)
	}
	if err := s.AddHistory(ctx, provisioner.HistoryEvent{UUID: "h1", NodeUUID: n.UUID, Event: "x", Severity: "ERROR"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterConductor(ctx, provisioner.Conductor{Hostname: "c1", Drivers: []string{"ipmi"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	got, err := s.Node(ctx, "bm0")
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != n.UUID || got.Reservation != "c1" || got.DriverInfo["ipmi_port"] != float64(623) || !got.CreatedAt.Equal(n.CreatedAt) {
		t.Fatalf("reopened node = %+v", got)
	}
	ports, err := s.Ports(ctx, store.PortFilter{NodeUUID: n.UUID})
	if err != nil || len(ports) != 1 || ports[0].Address.String() != "52:54:00:12:34:56" {
		t.Fatalf("ports = %v, %v", ports, err)
	}
	if h, _ := s.History(ctx, n.UUID); len(h) != 1 || h[0].Severity != "ERROR" {
		t.Fatalf("history = %v", h)
	}
	if c, _ := s.Conductors(ctx); len(c) != 1 || !c[0].Online || c[0].Drivers[0] != "ipmi" {
		t.Fatalf("conductors = %+v", c)
	}
	if err := s.ReleaseNode(ctx, n.UUID, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx, n.UUID); err != nil {
		t.Fatal(err)
	}
	if ports, _ := s.Ports(ctx, store.PortFilter{}); len(ports) != 0 {
		t.Fatalf("ports of deleted node remain: %v", ports)
	}
	if _, err := s.Node(ctx, n.UUID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted node: %v", err)
	}
}

func TestNodesFilterSortMarker(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	names := []string{"c", "a", "d", "b"}
	for i, name := range names {
		n := testNode("0000000"+string(rune('0'+i))+"-0000-0000-0000-000000000000", name)
		if i%2 == 1 {
			n.ProvisionState = provisioner.StateManageable
		}
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := s.Nodes(ctx, store.NodeFilter{SortKey: "name"})
	if got := namesOf(all); got != "abcd" {
		t.Fatalf("sorted by name: %s", got)
	}
	page1, _ := s.Nodes(ctx, store.NodeFilter{SortKey: "name", Limit: 2})
	page2, _ := s.Nodes(ctx, store.NodeFilter{SortKey: "name", Limit: 2, Marker: page1[1].UUID})
	if namesOf(page1)+namesOf(page2) != "abcd" {
		t.Fatalf("pages: %s %s", namesOf(page1), namesOf(page2))
	}
	desc, _ := s.Nodes(ctx, store.NodeFilter{SortKey: "name", SortDesc: true, Marker: all[2].UUID})
	if namesOf(desc) != "ba" {
		t.Fatalf("desc after c: %s", namesOf(desc))
	}
	man, _ := s.Nodes(ctx, store.NodeFilter{ProvisionState: provisioner.StateManageable})
	if namesOf(man) != "ab" {
		t.Fatalf("manageable: %s", namesOf(man))
	}
	if _, err := s.Nodes(ctx, store.NodeFilter{SortKey: "data; DROP TABLE nodes"}); err == nil {
		t.Fatal("bad sort key accepted")
	}
}

func namesOf(ns []*provisioner.Node) string {
	out := ""
	for _, n := range ns {
		out += n.Name
	}
	return out
}

// TestHistoryCapped: a node keeps its newest store.HistoryMaxEntries
// events; another node's history is untouched.
func TestHistoryCapped(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := testNode("11111111-1111-1111-1111-111111111111", "a"), testNode("22222222-2222-2222-2222-222222222222", "b")
	for _, n := range []*provisioner.Node{a, b} {
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddHistory(ctx, provisioner.HistoryEvent{UUID: "b-0", NodeUUID: b.UUID, Event: "b"}); err != nil {
		t.Fatal(err)
	}
	total := store.HistoryMaxEntries + 25
	for i := range total {
		if err := s.AddHistory(ctx, provisioner.HistoryEvent{UUID: fmt.Sprintf("a-%d", i), NodeUUID: a.UUID, Event: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History(ctx, a.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != store.HistoryMaxEntries || h[0].Event != fmt.Sprint(total-store.HistoryMaxEntries) || h[len(h)-1].Event != fmt.Sprint(total-1) {
		t.Fatalf("history of a: %d entries, %q .. %q", len(h), h[0].Event, h[len(h)-1].Event)
	}
	if hb, err := s.History(ctx, b.UUID); err != nil || len(hb) != 1 {
		t.Fatalf("history of b: %v %v", hb, err)
	}
}

// TestReserveNodeCancelledLeavesNoLock: a reservation whose context ends
// while it is taken (an API client that gave up waiting) either succeeds
// or leaves the node free; it must not leave the node reserved with an
// error, which nobody would release (seen at 1 000 deploys at once: a
// pass_deploy_info that timed out left its node locked for good).
func TestReserveNodeCancelledLeavesNoLock(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := testNode("11111111-1111-1111-1111-111111111111", "bm0")
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for i := range 3000 {
		c, cancel := context.WithTimeout(ctx, time.Duration(i%300)*time.Microsecond)
		_, err := s.ReserveNode(c, n.UUID, "c1")
		cancel()
		got, gerr := s.Node(ctx, n.UUID)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if err != nil {
			failed++
			if got.Reservation != "" {
				t.Fatalf("attempt %d: ReserveNode failed (%v) and left the node reserved by %q", i, err, got.Reservation)
			}
			continue
		}
		if err := s.ReleaseNode(ctx, n.UUID, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d of 3000 reservations ended by their context", failed)
}
