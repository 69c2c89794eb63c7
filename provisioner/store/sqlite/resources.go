package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// docTable is a table of JSON documents (chassis, deploy templates,
// allocations) keyed by uuid and, when named, by a unique name.
type docTable struct {
	table string // SQL table
	what  string // in error messages
	named bool
}

var (
	chassisTable     = docTable{"chassis", "chassis", false}
	templateTable    = docTable{"deploy_templates", "deploy template", true}
	allocationTable  = docTable{"allocations", "allocation", true}
	docSortColumns   = map[string]string{"": "id", "id": "id", "uuid": "uuid", "created_at": "created_at", "updated_at": "updated_at"}
	namedSortColumns = map[string]string{"": "id", "id": "id", "uuid": "uuid", "name": "name", "created_at": "created_at", "updated_at": "updated_at"}
)

// getDoc reads one document by UUID, then (named tables) by name.
func getDoc[T any](ctx context.Context, db *sql.DB, t docTable, ident string) (*T, error) {
	var data []byte
	err := db.QueryRowContext(ctx, `SELECT data FROM `+t.table+` WHERE uuid = ?`, ident).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) && t.named {
		err = db.QueryRowContext(ctx, `SELECT data FROM `+t.table+` WHERE name = ?`, ident).Scan(&data)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s %s: %w", t.what, ident, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", t.what, ident, err)
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", t.what, ident, err)
	}
	return v, nil
}

// listDocs lists documents matching where, ordered and paged by f.
func listDocs[T any](ctx context.Context, db *sql.DB, t docTable, f store.ListFilter, where []string, args []any) ([]*T, error) {
	cols := docSortColumns
	if t.named {
		cols = namedSortColumns
	}
	col, ok := cols[f.SortKey]
	if !ok {
		return nil, fmt.Errorf("sort key %q: %w", f.SortKey, store.ErrNotFound)
	}
	tail, args := page(t.table, col, f.SortDesc, f.Marker, f.Limit, where, args)
	rows, err := db.QueryContext(ctx, `SELECT data FROM `+t.table+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t.table, err)
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", t.what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// written maps the outcome of an INSERT or UPDATE of a document: UNIQUE
// violations are ErrDuplicate, an UPDATE that matched nothing ErrNotFound.
func written(t docTable, key string, res sql.Result, err error) error {
	if isUnique(err) {
		return fmt.Errorf("%s %s: %w", t.what, key, store.ErrDuplicate)
	}
	if isForeignKey(err) {
		return fmt.Errorf("%s %s: node: %w", t.what, key, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("write %s %s: %w", t.what, key, err)
	}
	if res == nil {
		return nil
	}
	return found(res, t.what, key)
}

// deleteDoc removes a document by UUID.
func (s *Store) deleteDoc(ctx context.Context, t docTable, uuid string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+t.table+` WHERE uuid = ?`, uuid)
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", t.what, uuid, err)
	}
	return found(res, t.what, uuid)
}

// CreateChassis implements store.Store.
func (s *Store) CreateChassis(ctx context.Context, c *provisioner.Chassis) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO chassis(uuid, created_at, updated_at, data) VALUES(?,?,?,?)`,
		c.UUID, ts(c.CreatedAt), ts(c.UpdatedAt), data)
	return written(chassisTable, c.UUID, nil, err)
}

// Chassis implements store.Store.
func (s *Store) Chassis(ctx context.Context, uuid string) (*provisioner.Chassis, error) {
	return getDoc[provisioner.Chassis](ctx, s.db, chassisTable, uuid)
}

// ChassisList implements store.Store.
func (s *Store) ChassisList(ctx context.Context, f store.ListFilter) ([]*provisioner.Chassis, error) {
	return listDocs[provisioner.Chassis](ctx, s.db, chassisTable, f, nil, nil)
}

// UpdateChassis implements store.Store.
func (s *Store) UpdateChassis(ctx context.Context, c *provisioner.Chassis) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE chassis SET updated_at = ?, data = ? WHERE uuid = ?`, ts(c.UpdatedAt), data, c.UUID)
	return written(chassisTable, c.UUID, res, err)
}

// DeleteChassis implements store.Store.
func (s *Store) DeleteChassis(ctx context.Context, uuid string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM chassis WHERE uuid = ?
		AND NOT EXISTS (SELECT 1 FROM nodes WHERE chassis_uuid = ?)`, uuid, uuid)
	if err != nil {
		return fmt.Errorf("delete chassis %s: %w", uuid, err)
	}
	if k, _ := res.RowsAffected(); k == 1 {
		return nil
	}
	if _, err := s.Chassis(ctx, uuid); err != nil {
		return err
	}
	return fmt.Errorf("chassis %s: %w", uuid, store.ErrNotEmpty)
}

// CreateDeployTemplate implements store.Store.
func (s *Store) CreateDeployTemplate(ctx context.Context, t *provisioner.DeployTemplate) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO deploy_templates(uuid, name, created_at, updated_at, data) VALUES(?,?,?,?,?)`,
		t.UUID, t.Name, ts(t.CreatedAt), ts(t.UpdatedAt), data)
	return written(templateTable, t.UUID, nil, err)
}

// DeployTemplate implements store.Store.
func (s *Store) DeployTemplate(ctx context.Context, ident string) (*provisioner.DeployTemplate, error) {
	return getDoc[provisioner.DeployTemplate](ctx, s.db, templateTable, ident)
}

// DeployTemplates implements store.Store.
func (s *Store) DeployTemplates(ctx context.Context, f store.ListFilter) ([]*provisioner.DeployTemplate, error) {
	return listDocs[provisioner.DeployTemplate](ctx, s.db, templateTable, f, nil, nil)
}

// UpdateDeployTemplate implements store.Store.
func (s *Store) UpdateDeployTemplate(ctx context.Context, t *provisioner.DeployTemplate) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE deploy_templates SET name = ?, updated_at = ?, data = ? WHERE uuid = ?`,
		t.Name, ts(t.UpdatedAt), data, t.UUID)
	return written(templateTable, t.UUID, res, err)
}

// DeleteDeployTemplate implements store.Store.
func (s *Store) DeleteDeployTemplate(ctx context.Context, uuid string) error {
	return s.deleteDoc(ctx, templateTable, uuid)
}

// CreateAllocation implements store.Store.
func (s *Store) CreateAllocation(ctx context.Context, a *provisioner.Allocation) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO allocations(uuid, name, node_uuid, resource_class, state, owner,
		created_at, updated_at, data) VALUES(?,?,?,?,?,?,?,?,?)`,
		a.UUID, nullString(a.Name), nullString(a.NodeUUID), a.ResourceClass, a.State, a.Owner,
		ts(a.CreatedAt), ts(a.UpdatedAt), data)
	return written(allocationTable, a.UUID, nil, err)
}

// Allocation implements store.Store.
func (s *Store) Allocation(ctx context.Context, ident string) (*provisioner.Allocation, error) {
	return getDoc[provisioner.Allocation](ctx, s.db, allocationTable, ident)
}

// Allocations implements store.Store.
func (s *Store) Allocations(ctx context.Context, f store.AllocationFilter) ([]*provisioner.Allocation, error) {
	var where []string
	var args []any
	for col, v := range map[string]string{"node_uuid": f.NodeUUID, "resource_class": f.ResourceClass, "state": f.State, "owner": f.Owner} {
		if v != "" {
			where, args = append(where, col+" = ?"), append(args, v)
		}
	}
	return listDocs[provisioner.Allocation](ctx, s.db, allocationTable, f.ListFilter, where, args)
}

// UpdateAllocation implements store.Store.
func (s *Store) UpdateAllocation(ctx context.Context, a *provisioner.Allocation) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE allocations SET name = ?, node_uuid = ?, resource_class = ?, state = ?,
		owner = ?, updated_at = ?, data = ? WHERE uuid = ?`,
		nullString(a.Name), nullString(a.NodeUUID), a.ResourceClass, a.State, a.Owner, ts(a.UpdatedAt), data, a.UUID)
	return written(allocationTable, a.UUID, res, err)
}

// DeleteAllocation implements store.Store.
func (s *Store) DeleteAllocation(ctx context.Context, uuid string) error {
	return s.deleteDoc(ctx, allocationTable, uuid)
}
