// Package sqlite implements store.Store on an embedded SQLite database
// (modernc.org/sqlite, no cgo). Schema migrations are versioned and applied
// when the database is opened.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// migrations are applied in order; index+1 is the schema version. Never
// edit one that has shipped: append.
var migrations = []string{
	// 1: nodes, ports, history, conductors.
	`CREATE TABLE nodes (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL UNIQUE,
		name TEXT UNIQUE,
		driver TEXT NOT NULL,
		provision_state TEXT NOT NULL,
		power_state TEXT NOT NULL DEFAULT '',
		maintenance INTEGER NOT NULL DEFAULT 0,
		reservation TEXT,
		shard TEXT NOT NULL DEFAULT '',
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL DEFAULT '',
		data TEXT NOT NULL
	);
	CREATE INDEX nodes_provision_state ON nodes(provision_state);
	CREATE TABLE ports (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL UNIQUE,
		address TEXT NOT NULL UNIQUE,
		node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL DEFAULT '',
		data TEXT NOT NULL
	);
	CREATE INDEX ports_node ON ports(node_uuid);
	CREATE TABLE node_history (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL UNIQUE,
		node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
		created_at TEXT NOT NULL,
		data TEXT NOT NULL
	);
	CREATE INDEX node_history_node ON node_history(node_uuid);
	CREATE TABLE conductors (
		hostname TEXT PRIMARY KEY,
		updated_at TEXT NOT NULL,
		data TEXT NOT NULL
	);`,
	// 2: chassis; nodes name theirs.
	`CREATE TABLE chassis (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL UNIQUE,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL DEFAULT '',
		data TEXT NOT NULL
	);
	ALTER TABLE nodes ADD COLUMN chassis_uuid TEXT REFERENCES chassis(uuid);
	CREATE INDEX nodes_chassis ON nodes(chassis_uuid);`,
	// 3: deploy templates.
	`CREATE TABLE deploy_templates (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL UNIQUE,
		name TEXT NOT NULL UNIQUE,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL DEFAULT '',
		data TEXT NOT NULL
	);`,
	// 4: allocations; one per node at most, gone with their node.
	`CREATE TABLE allocations (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL UNIQUE,
		name TEXT UNIQUE,
		node_uuid TEXT UNIQUE REFERENCES nodes(uuid) ON DELETE CASCADE,
		resource_class TEXT NOT NULL DEFAULT '',
		state TEXT NOT NULL,
		owner TEXT NOT NULL DEFAULT '',
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL DEFAULT '',
		data TEXT NOT NULL
	);`,
	// 5: inspection data (Ironic's node_inventory).
	`CREATE TABLE node_inventory (
		node_uuid TEXT PRIMARY KEY REFERENCES nodes(uuid) ON DELETE CASCADE,
		created_at TEXT NOT NULL,
		inventory TEXT NOT NULL,
		plugin_data TEXT NOT NULL
	);`,
}

// Store is a store.Store on one SQLite file.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path and migrates it to
// the latest schema. path ":memory:" gives a private in-memory database.
func Open(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)&_txlock=immediate"
	if path != ":memory:" {
		dsn += "&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and this keeps
	// ":memory:" one database.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, now: func() time.Time { return time.Now().UTC() }}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

// SchemaVersion reports the schema version the database is at.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return err
	}
	have, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("database schema %d is newer than this metalbed (%d)", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			tx.Rollback()
			return fmt.Errorf("schema %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES(?, ?)`,
			v, s.now().Format(time.RFC3339Nano)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// nodeRecord is the JSON form of a node in the data column.
type nodeRecord struct {
	UUID               string                     `json:"uuid"`
	Name               string                     `json:"name,omitempty"`
	Driver             string                     `json:"driver"`
	Interfaces         provisioner.Interfaces     `json:"interfaces"`
	DriverInfo         map[string]any             `json:"driver_info,omitempty"`
	Properties         map[string]any             `json:"properties,omitempty"`
	InstanceInfo       map[string]any             `json:"instance_info,omitempty"`
	DriverInternalInfo map[string]any             `json:"driver_internal_info,omitempty"`
	Extra              map[string]any             `json:"extra,omitempty"`
	ProvisionState     provisioner.ProvisionState `json:"provision_state"`
	TargetProvision    provisioner.ProvisionState `json:"target_provision_state,omitempty"`
	PowerState         provisioner.PowerState     `json:"power_state,omitempty"`
	TargetPowerState   provisioner.PowerState     `json:"target_power_state,omitempty"`
	LastError          string                     `json:"last_error,omitempty"`
	Maintenance        bool                       `json:"maintenance,omitempty"`
	MaintenanceReason  string                     `json:"maintenance_reason,omitempty"`
	Reservation        string                     `json:"-"`
	InstanceUUID       string                     `json:"instance_uuid,omitempty"`
	ResourceClass      string                     `json:"resource_class,omitempty"`
	ChassisUUID        string                     `json:"chassis_uuid,omitempty"`
	AllocationUUID     string                     `json:"allocation_uuid,omitempty"`
	BootMode           string                     `json:"boot_mode,omitempty"`
	Fault              string                     `json:"fault,omitempty"`
	Description        string                     `json:"description,omitempty"`
	Owner              string                     `json:"owner,omitempty"`
	Lessee             string                     `json:"lessee,omitempty"`
	ConductorGroup     string                     `json:"conductor_group,omitempty"`
	Shard              string                     `json:"shard,omitempty"`
	Protected          bool                       `json:"protected,omitempty"`
	ProtectedReason    string                     `json:"protected_reason,omitempty"`
	Retired            bool                       `json:"retired,omitempty"`
	RetiredReason      string                     `json:"retired_reason,omitempty"`
	AutomatedClean     *bool                      `json:"automated_clean,omitempty"`
	Traits             []string                   `json:"traits,omitempty"`
	NetworkData        map[string]any             `json:"network_data,omitempty"`
	CleanStep          map[string]any             `json:"clean_step,omitempty"`
	DeployStep         map[string]any             `json:"deploy_step,omitempty"`
	RaidConfig         map[string]any             `json:"raid_config,omitempty"`
	TargetRaidCfg      map[string]any             `json:"target_raid_config,omitempty"`
	ConsoleEnabled     bool                       `json:"console_enabled,omitempty"`
	CreatedAt          time.Time                  `json:"created_at"`
	UpdatedAt          time.Time                  `json:"updated_at"`
	ProvisionUpdatedAt time.Time                  `json:"provision_updated_at"`
}

func toRecord(n *provisioner.Node) nodeRecord {
	return nodeRecord{
		UUID: n.UUID, Name: n.Name, Driver: n.Driver, Interfaces: n.Interfaces,
		DriverInfo: n.DriverInfo, Properties: n.Properties, InstanceInfo: n.InstanceInfo,
		DriverInternalInfo: n.DriverInternalInfo, Extra: n.Extra,
		ProvisionState: n.ProvisionState, TargetProvision: n.TargetProvisionState,
		PowerState: n.PowerState, TargetPowerState: n.TargetPowerState,
		LastError: n.LastError, Maintenance: n.Maintenance, MaintenanceReason: n.MaintenanceReason,
		Reservation: n.Reservation, InstanceUUID: n.InstanceUUID, ResourceClass: n.ResourceClass,
		ChassisUUID: n.ChassisUUID, AllocationUUID: n.AllocationUUID,
		BootMode: n.BootMode, Fault: n.Fault, Description: n.Description, Owner: n.Owner,
		Lessee: n.Lessee, ConductorGroup: n.ConductorGroup, Shard: n.Shard,
		Protected: n.Protected, ProtectedReason: n.ProtectedReason, Retired: n.Retired,
		RetiredReason: n.RetiredReason, AutomatedClean: n.AutomatedClean, Traits: n.Traits,
		NetworkData: n.NetworkData, CleanStep: n.CleanStep, DeployStep: n.DeployStep,
		RaidConfig: n.RaidConfig, TargetRaidCfg: n.TargetRaidCfg, ConsoleEnabled: n.ConsoleEnabled,
		CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt, ProvisionUpdatedAt: n.ProvisionUpdatedAt,
	}
}

func (r nodeRecord) node() *provisioner.Node {
	return &provisioner.Node{
		UUID: r.UUID, Name: r.Name, Driver: r.Driver, Interfaces: r.Interfaces,
		DriverInfo: r.DriverInfo, Properties: r.Properties, InstanceInfo: r.InstanceInfo,
		DriverInternalInfo: r.DriverInternalInfo, Extra: r.Extra,
		ProvisionState: r.ProvisionState, TargetProvisionState: r.TargetProvision,
		PowerState: r.PowerState, TargetPowerState: r.TargetPowerState,
		LastError: r.LastError, Maintenance: r.Maintenance, MaintenanceReason: r.MaintenanceReason,
		Reservation: r.Reservation, InstanceUUID: r.InstanceUUID, ResourceClass: r.ResourceClass,
		ChassisUUID: r.ChassisUUID, AllocationUUID: r.AllocationUUID,
		BootMode: r.BootMode, Fault: r.Fault, Description: r.Description, Owner: r.Owner,
		Lessee: r.Lessee, ConductorGroup: r.ConductorGroup, Shard: r.Shard,
		Protected: r.Protected, ProtectedReason: r.ProtectedReason, Retired: r.Retired,
		RetiredReason: r.RetiredReason, AutomatedClean: r.AutomatedClean, Traits: r.Traits,
		NetworkData: r.NetworkData, CleanStep: r.CleanStep, DeployStep: r.DeployStep,
		RaidConfig: r.RaidConfig, TargetRaidCfg: r.TargetRaidCfg, ConsoleEnabled: r.ConsoleEnabled,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, ProvisionUpdatedAt: r.ProvisionUpdatedAt,
	}
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// isForeignKey reports a FOREIGN KEY constraint violation.
func isForeignKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY")
}

// isUnique reports a UNIQUE constraint violation.
func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// CreateNode implements store.Store.
func (s *Store) CreateNode(ctx context.Context, n *provisioner.Node) error {
	data, err := json.Marshal(toRecord(n))
	if err != nil {
		return fmt.Errorf("encode node %s: %w", n.UUID, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO nodes(uuid, name, driver, provision_state, power_state,
		maintenance, reservation, shard, chassis_uuid, created_at, updated_at, data) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)`,
		n.UUID, nullString(n.Name), n.Driver, string(n.ProvisionState), string(n.PowerState),
		n.Maintenance, nullString(n.Reservation), n.Shard, nullString(n.ChassisUUID), ts(n.CreatedAt), ts(n.UpdatedAt), data)
	if isUnique(err) {
		return fmt.Errorf("node %s: %w", n.UUID, store.ErrDuplicate)
	}
	if isForeignKey(err) {
		return fmt.Errorf("chassis %s: %w", n.ChassisUUID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("insert node %s: %w", n.UUID, err)
	}
	return nil
}

const nodeColumns = `uuid, reservation, data`

func scanNode(sc interface{ Scan(...any) error }) (*provisioner.Node, error) {
	var uuid string
	var res sql.NullString
	var data []byte
	if err := sc.Scan(&uuid, &res, &data); err != nil {
		return nil, err
	}
	var r nodeRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode node %s: %w", uuid, err)
	}
	n := r.node()
	n.Reservation = res.String
	return n, nil
}

// Node implements store.Store.
func (s *Store) Node(ctx context.Context, ident string) (*provisioner.Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE uuid = ?`, ident))
	if errors.Is(err, sql.ErrNoRows) {
		n, err = scanNode(s.db.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE name = ?`, ident))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("node %s: %w", ident, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", ident, err)
	}
	return n, nil
}

var nodeSortColumns = map[string]string{
	"": "id", "id": "id", "uuid": "uuid", "name": "name", "created_at": "created_at",
	"updated_at": "updated_at", "provision_state": "provision_state", "driver": "driver",
	"power_state": "power_state", "maintenance": "maintenance",
}

// page builds the ORDER BY / marker / LIMIT part of a listing.
func page(table, col string, desc bool, marker string, limit int, where []string, args []any) (string, []any) {
	dir, cmp := "ASC", ">"
	if desc {
		dir, cmp = "DESC", "<"
	}
	if marker != "" {
		// Rows after the marker in (col, id) order.
		where = append(where, fmt.Sprintf(`(%[1]s %[2]s (SELECT %[1]s FROM %[3]s WHERE uuid = ?)
			OR (%[1]s = (SELECT %[1]s FROM %[3]s WHERE uuid = ?) AND id %[2]s (SELECT id FROM %[3]s WHERE uuid = ?)))`,
			col, cmp, table))
		args = append(args, marker, marker, marker)
	}
	q := ""
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY %s %s, id %s", col, dir, dir)
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return q, args
}

// Nodes implements store.Store.
func (s *Store) Nodes(ctx context.Context, f store.NodeFilter) ([]*provisioner.Node, error) {
	col, ok := nodeSortColumns[f.SortKey]
	if !ok {
		return nil, fmt.Errorf("sort key %q: %w", f.SortKey, store.ErrNotFound)
	}
	var where []string
	var args []any
	if f.ProvisionState != "" {
		where, args = append(where, "provision_state = ?"), append(args, string(f.ProvisionState))
	}
	if f.Maintenance != nil {
		where, args = append(where, "maintenance = ?"), append(args, *f.Maintenance)
	}
	if f.Driver != "" {
		where, args = append(where, "driver = ?"), append(args, f.Driver)
	}
	if f.Shard != nil {
		where, args = append(where, "shard = ?"), append(args, *f.Shard)
	}
	if f.ChassisUUID != "" {
		where, args = append(where, "chassis_uuid = ?"), append(args, f.ChassisUUID)
	}
	if f.Reservation != nil {
		if *f.Reservation == "" {
			where = append(where, "reservation IS NULL")
		} else {
			where, args = append(where, "reservation = ?"), append(args, *f.Reservation)
		}
	}
	tail, args := page("nodes", col, f.SortDesc, f.Marker, f.Limit, where, args)
	rows, err := s.db.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes`+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []*provisioner.Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// UpdateNode implements store.Store.
func (s *Store) UpdateNode(ctx context.Context, n *provisioner.Node) error {
	data, err := json.Marshal(toRecord(n))
	if err != nil {
		return fmt.Errorf("encode node %s: %w", n.UUID, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE nodes SET name = ?, driver = ?, provision_state = ?,
		power_state = ?, maintenance = ?, reservation = ?, shard = ?, chassis_uuid = ?, updated_at = ?, data = ? WHERE uuid = ?`,
		nullString(n.Name), n.Driver, string(n.ProvisionState), string(n.PowerState), n.Maintenance,
		nullString(n.Reservation), n.Shard, nullString(n.ChassisUUID), ts(n.UpdatedAt), data, n.UUID)
	if isUnique(err) {
		return fmt.Errorf("node %s name %q: %w", n.UUID, n.Name, store.ErrDuplicate)
	}
	if isForeignKey(err) {
		return fmt.Errorf("chassis %s: %w", n.ChassisUUID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("update node %s: %w", n.UUID, err)
	}
	return found(res, "node", n.UUID)
}

// found returns nil when res changed a row, else ErrNotFound naming what
// (node, port) and uuid.
func found(res sql.Result, what, uuid string) error {
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("%s %s: %w", what, uuid, store.ErrNotFound)
	}
	return nil
}

// DeleteNode implements store.Store.
func (s *Store) DeleteNode(ctx context.Context, uuid string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM nodes WHERE uuid = ?`, uuid)
	if err != nil {
		return fmt.Errorf("delete node %s: %w", uuid, err)
	}
	return found(res, "node", uuid)
}

// ReserveNode implements store.Store.
//
// A reservation is taken and read back whole once started: ctx is looked
// at before, not between, so a caller that gives up meanwhile (an API
// client's timeout) cannot leave the node reserved behind an error that
// nobody would release. Should the read back fail, the reservation is
// dropped again.
func (s *Store) ReserveNode(ctx context.Context, uuid, host string) (*provisioner.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("reserve node %s: %w", uuid, err)
	}
	ctx = context.WithoutCancel(ctx)
	res, err := s.db.ExecContext(ctx, `UPDATE nodes SET reservation = ? WHERE uuid = ? AND reservation IS NULL`, host, uuid)
	if err != nil {
		return nil, fmt.Errorf("reserve node %s: %w", uuid, err)
	}
	k, _ := res.RowsAffected()
	n, err := s.Node(ctx, uuid)
	if err != nil {
		if k > 0 {
			if rerr := s.ReleaseNode(ctx, uuid, host); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	if k == 0 {
		return nil, &store.LockedError{Node: uuid, Holder: n.Reservation}
	}
	return n, nil
}

// ReleaseNode implements store.Store.
func (s *Store) ReleaseNode(ctx context.Context, uuid, host string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE nodes SET reservation = NULL WHERE uuid = ? AND reservation = ?`, uuid, host); err != nil {
		return fmt.Errorf("release node %s: %w", uuid, err)
	}
	return nil
}

type portRecord struct {
	UUID                string         `json:"uuid"`
	Address             string         `json:"address"`
	NodeUUID            string         `json:"node_uuid"`
	PXEEnabled          bool           `json:"pxe_enabled"`
	Extra               map[string]any `json:"extra,omitempty"`
	InternalInfo        map[string]any `json:"internal_info,omitempty"`
	LocalLinkConnection map[string]any `json:"local_link_connection,omitempty"`
	PhysicalNetwork     string         `json:"physical_network,omitempty"`
	IsSmartNIC          bool           `json:"is_smartnic,omitempty"`
	CreatedAt           time.Time      `json:"created_at"`
	UpdatedAt           time.Time      `json:"updated_at"`
}

func encodePort(p *provisioner.Port) ([]byte, error) {
	return json.Marshal(portRecord{
		UUID: p.UUID, Address: p.Address.String(), NodeUUID: p.NodeUUID, PXEEnabled: p.PXEEnabled,
		Extra: p.Extra, InternalInfo: p.InternalInfo, LocalLinkConnection: p.LocalLinkConnection,
		PhysicalNetwork: p.PhysicalNetwork, IsSmartNIC: p.IsSmartNIC,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	})
}

func scanPort(sc interface{ Scan(...any) error }) (*provisioner.Port, error) {
	var data []byte
	if err := sc.Scan(&data); err != nil {
		return nil, err
	}
	var r portRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode port: %w", err)
	}
	mac, err := net.ParseMAC(r.Address)
	if err != nil {
		return nil, fmt.Errorf("port %s address: %w", r.UUID, err)
	}
	return &provisioner.Port{
		UUID: r.UUID, Address: mac, NodeUUID: r.NodeUUID, PXEEnabled: r.PXEEnabled, Extra: r.Extra,
		InternalInfo: r.InternalInfo, LocalLinkConnection: r.LocalLinkConnection,
		PhysicalNetwork: r.PhysicalNetwork, IsSmartNIC: r.IsSmartNIC,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}, nil
}

// CreatePort implements store.Store.
func (s *Store) CreatePort(ctx context.Context, p *provisioner.Port) error {
	data, err := encodePort(p)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO ports(uuid, address, node_uuid, created_at, updated_at, data)
		VALUES(?,?,?,?,?,?)`, p.UUID, p.Address.String(), p.NodeUUID, ts(p.CreatedAt), ts(p.UpdatedAt), data)
	if isUnique(err) {
		return fmt.Errorf("port %s: %w", p.Address, store.ErrDuplicate)
	}
	if isForeignKey(err) {
		return fmt.Errorf("node %s: %w", p.NodeUUID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("insert port %s: %w", p.Address, err)
	}
	return nil
}

// Port implements store.Store.
func (s *Store) Port(ctx context.Context, uuid string) (*provisioner.Port, error) {
	p, err := scanPort(s.db.QueryRowContext(ctx, `SELECT data FROM ports WHERE uuid = ?`, uuid))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("port %s: %w", uuid, store.ErrNotFound)
	}
	return p, err
}

var portSortColumns = map[string]string{
	"": "id", "id": "id", "uuid": "uuid", "address": "address",
	"created_at": "created_at", "updated_at": "updated_at",
}

// Ports implements store.Store.
func (s *Store) Ports(ctx context.Context, f store.PortFilter) ([]*provisioner.Port, error) {
	col, ok := portSortColumns[f.SortKey]
	if !ok {
		return nil, fmt.Errorf("sort key %q: %w", f.SortKey, store.ErrNotFound)
	}
	var where []string
	var args []any
	if f.NodeUUID != "" {
		where, args = append(where, "node_uuid = ?"), append(args, f.NodeUUID)
	}
	if f.Address != "" {
		where, args = append(where, "address = ?"), append(args, f.Address)
	}
	tail, args := page("ports", col, f.SortDesc, f.Marker, f.Limit, where, args)
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM ports`+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	defer rows.Close()
	var out []*provisioner.Port
	for rows.Next() {
		p, err := scanPort(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// UpdatePort implements store.Store.
func (s *Store) UpdatePort(ctx context.Context, p *provisioner.Port) error {
	data, err := encodePort(p)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE ports SET address = ?, node_uuid = ?, updated_at = ?, data = ? WHERE uuid = ?`,
		p.Address.String(), p.NodeUUID, ts(p.UpdatedAt), data, p.UUID)
	if isUnique(err) {
		return fmt.Errorf("port %s: %w", p.Address, store.ErrDuplicate)
	}
	if isForeignKey(err) {
		return fmt.Errorf("node %s: %w", p.NodeUUID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("update port %s: %w", p.UUID, err)
	}
	return found(res, "port", p.UUID)
}

// DeletePort implements store.Store.
func (s *Store) DeletePort(ctx context.Context, uuid string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM ports WHERE uuid = ?`, uuid)
	if err != nil {
		return fmt.Errorf("delete port %s: %w", uuid, err)
	}
	return found(res, "port", uuid)
}

// AddHistory implements store.Store.
func (s *Store) AddHistory(ctx context.Context, e provisioner.HistoryEvent) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO node_history(uuid, node_uuid, created_at, data) VALUES(?,?,?,?)`,
		e.UUID, e.NodeUUID, ts(e.CreatedAt), data)
	if isForeignKey(err) {
		return fmt.Errorf("node %s: %w", e.NodeUUID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("add history for %s: %w", e.NodeUUID, err)
	}
	// Keep the newest HistoryMaxEntries, as Ironic's history clean-up
	// does ([conductor] node_history_max_entries).
	_, err = s.db.ExecContext(ctx, `DELETE FROM node_history WHERE node_uuid = ? AND id <= (
		SELECT id FROM node_history WHERE node_uuid = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
		e.NodeUUID, e.NodeUUID, store.HistoryMaxEntries)
	if err != nil {
		return fmt.Errorf("prune history of %s: %w", e.NodeUUID, err)
	}
	return nil
}

// History implements store.Store.
func (s *Store) History(ctx context.Context, nodeUUID string) ([]provisioner.HistoryEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM node_history WHERE node_uuid = ? ORDER BY id`, nodeUUID)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", nodeUUID, err)
	}
	defer rows.Close()
	var out []provisioner.HistoryEvent
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var e provisioner.HistoryEvent
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("decode history: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// SetInventory implements store.Store.
func (s *Store) SetInventory(ctx context.Context, nodeUUID string, inv store.Inventory) error {
	if inv.CreatedAt.IsZero() {
		inv.CreatedAt = s.now()
	}
	plugin := inv.PluginData
	if len(plugin) == 0 {
		plugin = json.RawMessage("{}")
	}
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO node_inventory(node_uuid, created_at, inventory, plugin_data) VALUES(?,?,?,?)`,
		nodeUUID, ts(inv.CreatedAt), string(inv.Inventory), string(plugin))
	if err != nil && strings.Contains(err.Error(), "FOREIGN KEY") {
		return fmt.Errorf("node %s: %w", nodeUUID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store inventory of %s: %w", nodeUUID, err)
	}
	return nil
}

// Inventory implements store.Store.
func (s *Store) Inventory(ctx context.Context, nodeUUID string) (store.Inventory, error) {
	var created, inv, plugin string
	err := s.db.QueryRowContext(ctx, `SELECT created_at, inventory, plugin_data FROM node_inventory WHERE node_uuid = ?`, nodeUUID).
		Scan(&created, &inv, &plugin)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Inventory{}, fmt.Errorf("inventory of node %s: %w", nodeUUID, store.ErrNotFound)
	}
	if err != nil {
		return store.Inventory{}, fmt.Errorf("inventory of node %s: %w", nodeUUID, err)
	}
	t, _ := time.Parse(time.RFC3339Nano, created)
	return store.Inventory{Inventory: json.RawMessage(inv), PluginData: json.RawMessage(plugin), CreatedAt: t}, nil
}

// RegisterConductor implements store.Store.
func (s *Store) RegisterConductor(ctx context.Context, c provisioner.Conductor) error {
	c.Online = true
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = s.now()
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO conductors(hostname, updated_at, data) VALUES(?,?,?)
		ON CONFLICT(hostname) DO UPDATE SET updated_at = excluded.updated_at, data = excluded.data`,
		c.Hostname, ts(c.UpdatedAt), data)
	if err != nil {
		return fmt.Errorf("register conductor %s: %w", c.Hostname, err)
	}
	return nil
}

func (s *Store) conductor(ctx context.Context, hostname string) (provisioner.Conductor, error) {
	var data []byte
	err := s.db.QueryRowContext(ctx, `SELECT data FROM conductors WHERE hostname = ?`, hostname).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return provisioner.Conductor{}, fmt.Errorf("conductor %s: %w", hostname, store.ErrNotFound)
	}
	if err != nil {
		return provisioner.Conductor{}, err
	}
	var c provisioner.Conductor
	return c, json.Unmarshal(data, &c)
}

func (s *Store) putConductor(ctx context.Context, c provisioner.Conductor) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `UPDATE conductors SET updated_at = ?, data = ? WHERE hostname = ?`,
		ts(c.UpdatedAt), data, c.Hostname)
	return err
}

// TouchConductor implements store.Store.
func (s *Store) TouchConductor(ctx context.Context, hostname string) error {
	c, err := s.conductor(ctx, hostname)
	if err != nil {
		return err
	}
	c.UpdatedAt, c.Online = s.now(), true
	return s.putConductor(ctx, c)
}

// UnregisterConductor implements store.Store.
func (s *Store) UnregisterConductor(ctx context.Context, hostname string) error {
	c, err := s.conductor(ctx, hostname)
	if err != nil {
		return err
	}
	c.Online = false
	return s.putConductor(ctx, c)
}

// Conductors implements store.Store.
func (s *Store) Conductors(ctx context.Context) ([]provisioner.Conductor, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM conductors ORDER BY hostname`)
	if err != nil {
		return nil, fmt.Errorf("list conductors: %w", err)
	}
	defer rows.Close()
	var out []provisioner.Conductor
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var c provisioner.Conductor
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
