// Package store is the provisioner's persistent state: nodes, ports, chassis,
// deploy templates, allocations, node history and conductors. Store is the
// interface the API and the conductor use; package sqlite implements it on
// an embedded database, and another implementation (PostgreSQL, for several
// conductors) can follow.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/metalbed/metalbed/provisioner"
)

// Sentinels callers branch on. Implementations wrap them.
var (
	ErrNotFound  = errors.New("not found")
	ErrDuplicate = errors.New("already exists")
	// ErrNotEmpty refuses deleting a chassis that still holds nodes.
	ErrNotEmpty = errors.New("not empty")
)

// HistoryMaxEntries is how many history events a node keeps, the newest
// (Ironic's [conductor] node_history_max_entries default).
const HistoryMaxEntries = 300

// LockedError reports a node reserved by another conductor (or task).
type LockedError struct {
	Node, Holder string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("node %s is locked by host %s", e.Node, e.Holder)
}

// NodeFilter selects and orders nodes. Zero value: all nodes by creation.
type NodeFilter struct {
	ProvisionState provisioner.ProvisionState // "" = any
	Maintenance    *bool
	Driver         string
	Shard          *string // nil = any
	Reservation    *string // nil = any; "" = unreserved
	ChassisUUID    string  // "" = any
	// SortKey is one of id, uuid, name, created_at, updated_at,
	// provision_state, driver, power_state ("" = id).
	SortKey  string
	SortDesc bool
	// Marker is the UUID of the last node of the previous page.
	Marker string
	Limit  int // 0 = no limit
}

// PortFilter selects and orders ports.
type PortFilter struct {
	NodeUUID string
	Address  string // canonical lower-case MAC
	SortKey  string // id, uuid, address, created_at, updated_at
	SortDesc bool
	Marker   string
	Limit    int
}

// ListFilter orders and pages chassis, deploy templates and allocations.
type ListFilter struct {
	// SortKey is id, uuid, created_at, updated_at, or name where the
	// resource has one ("" = id).
	SortKey  string
	SortDesc bool
	Marker   string // UUID of the last item of the previous page
	Limit    int    // 0 = no limit
}

// AllocationFilter selects allocations.
type AllocationFilter struct {
	ListFilter
	NodeUUID      string
	ResourceClass string
	State         string
	Owner         string
}

// Store keeps everything the provisioner knows. Every method is safe for
// concurrent use; ReserveNode is atomic (compare-and-set on reservation).
type Store interface {
	// CreateNode inserts n; ErrDuplicate when its UUID or name exists.
	CreateNode(ctx context.Context, n *provisioner.Node) error
	// Node finds a node by UUID or, failing that, by name.
	Node(ctx context.Context, ident string) (*provisioner.Node, error)
	Nodes(ctx context.Context, f NodeFilter) ([]*provisioner.Node, error)
	// UpdateNode writes every field of n (found by UUID); ErrDuplicate when
	// a rename collides.
	UpdateNode(ctx context.Context, n *provisioner.Node) error
	// DeleteNode removes the node, its ports and its history.
	DeleteNode(ctx context.Context, uuid string) error
	// ReserveNode sets reservation to host if the node is free, else
	// returns a *LockedError. It returns the node as reserved.
	ReserveNode(ctx context.Context, uuid, host string) (*provisioner.Node, error)
	// ReleaseNode clears the reservation if host holds it.
	ReleaseNode(ctx context.Context, uuid, host string) error

	CreatePort(ctx context.Context, p *provisioner.Port) error
	// Port finds a port by UUID.
	Port(ctx context.Context, uuid string) (*provisioner.Port, error)
	Ports(ctx context.Context, f PortFilter) ([]*provisioner.Port, error)
	UpdatePort(ctx context.Context, p *provisioner.Port) error
	DeletePort(ctx context.Context, uuid string) error

	// CreateChassis inserts c; ErrDuplicate when its UUID exists.
	CreateChassis(ctx context.Context, c *provisioner.Chassis) error
	// Chassis finds a chassis by UUID.
	Chassis(ctx context.Context, uuid string) (*provisioner.Chassis, error)
	ChassisList(ctx context.Context, f ListFilter) ([]*provisioner.Chassis, error)
	UpdateChassis(ctx context.Context, c *provisioner.Chassis) error
	// DeleteChassis removes a chassis; ErrNotEmpty while nodes are in it.
	DeleteChassis(ctx context.Context, uuid string) error

	// CreateDeployTemplate inserts t; ErrDuplicate when its UUID or name
	// exists.
	CreateDeployTemplate(ctx context.Context, t *provisioner.DeployTemplate) error
	// DeployTemplate finds a template by UUID or, failing that, by name.
	DeployTemplate(ctx context.Context, ident string) (*provisioner.DeployTemplate, error)
	DeployTemplates(ctx context.Context, f ListFilter) ([]*provisioner.DeployTemplate, error)
	// UpdateDeployTemplate writes t (found by UUID); ErrDuplicate when a
	// rename collides.
	UpdateDeployTemplate(ctx context.Context, t *provisioner.DeployTemplate) error
	DeleteDeployTemplate(ctx context.Context, uuid string) error

	// CreateAllocation inserts a; ErrDuplicate when its UUID or name exists.
	CreateAllocation(ctx context.Context, a *provisioner.Allocation) error
	// Allocation finds an allocation by UUID or, failing that, by name.
	Allocation(ctx context.Context, ident string) (*provisioner.Allocation, error)
	Allocations(ctx context.Context, f AllocationFilter) ([]*provisioner.Allocation, error)
	// UpdateAllocation writes a (found by UUID); ErrDuplicate when a
	// rename collides or another allocation holds a.NodeUUID.
	UpdateAllocation(ctx context.Context, a *provisioner.Allocation) error
	// DeleteAllocation removes an allocation. Deleting a node deletes its
	// allocation, as in Ironic.
	DeleteAllocation(ctx context.Context, uuid string) error

	// AddHistory appends e to its node's history, which keeps the newest
	// HistoryMaxEntries.
	AddHistory(ctx context.Context, e provisioner.HistoryEvent) error
	// History lists a node's events, oldest first.
	History(ctx context.Context, nodeUUID string) ([]provisioner.HistoryEvent, error)

	// SetInventory stores the inspection data of a node, replacing what an
	// earlier inspection stored (Ironic's node_inventory); it goes with
	// the node.
	SetInventory(ctx context.Context, nodeUUID string, inv Inventory) error
	// Inventory returns what SetInventory stored; ErrNotFound when the node
	// was never inspected.
	Inventory(ctx context.Context, nodeUUID string) (Inventory, error)

	// RegisterConductor inserts or replaces c.
	RegisterConductor(ctx context.Context, c provisioner.Conductor) error
	// TouchConductor records a heartbeat now.
	TouchConductor(ctx context.Context, hostname string) error
	// UnregisterConductor marks the conductor offline.
	UnregisterConductor(ctx context.Context, hostname string) error
	Conductors(ctx context.Context) ([]provisioner.Conductor, error)

	Close() error
}

// Inventory is a node's inspection data as the ramdisk posted it: the
// hardware inventory and the rest of its data (Ironic's plugin_data),
// each a JSON object.
type Inventory struct {
	Inventory  json.RawMessage
	PluginData json.RawMessage
	CreatedAt  time.Time
}
