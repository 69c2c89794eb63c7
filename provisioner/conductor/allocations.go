package conductor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// Allocations (Ironic's conductor/allocations.py). Ironic processes an
// allocation in a conductor thread, the API answering "allocating" first;
// metalbed processes it before CreateAllocation returns, so the answer
// already says "active" or "error". Clients that wait (baremetal
// allocation create --wait, metalsmith, Nova) see the same end state.

// updateAllowedStates are Ironic's UPDATE_ALLOWED_STATES: transient
// states in which a node may still be updated.
var updateAllowedStates = []provisioner.ProvisionState{
	provisioner.StateDeployFailed, provisioner.StateInspecting, provisioner.StateInspectFailed,
	provisioner.StateInspectWait, provisioner.StateCleanFailed, provisioner.StateError,
	provisioner.StateVerifying, "adopt failed", "rescue failed", "unrescue failed",
}

// allocationNotFound is Ironic's AllocationNotFound.
func allocationNotFound(ident string, err error) error {
	return &Error{Kind: KindNotFound, Err: err, Msg: fmt.Sprintf("Allocation %s could not be found.", ident)}
}

// CreateAllocation stores a and reserves a node for it: an available node
// out of maintenance, with a power state and no instance, of a's resource
// class, with all of a's traits, among a's candidates (UUIDs) when it names
// some. The chosen node gets allocation_uuid and instance_uuid (a's UUID)
// and instance_info traits; a failure leaves a in state "error" with
// Ironic's last_error. Only a storage failure is returned as an error.
func (c *Conductor) CreateAllocation(ctx context.Context, a *provisioner.Allocation) error {
	if a.UUID == "" {
		a.UUID = uuid.NewString()
	}
	a.State, a.NodeUUID, a.CreatedAt = provisioner.AllocationAllocating, "", c.now()
	if err := c.st.CreateAllocation(ctx, a); err != nil {
		if !errors.Is(err, store.ErrDuplicate) {
			return err
		}
		if other, gerr := c.st.Allocation(ctx, a.Name); a.Name != "" && gerr == nil && other.UUID != a.UUID {
			return &Error{Kind: KindConflict, Err: err, Msg: fmt.Sprintf("An allocation with name %s already exists.", a.Name)}
		}
		return &Error{Kind: KindConflict, Err: err, Msg: fmt.Sprintf("An allocation with UUID %s already exists.", a.UUID)}
	}
	nodes, err := c.allocationCandidates(ctx, a)
	if err == nil {
		err = c.allocateNode(ctx, a, nodes)
	}
	var failed allocationFailed
	if errors.As(err, &failed) {
		c.log.Warn("allocation failed", "allocation", a.UUID, "err", failed.reason)
		a.State, a.NodeUUID = provisioner.AllocationError, ""
		a.LastError = fmt.Sprintf("Failed to process allocation %s: %s.", a.UUID, failed.reason)
		a.UpdatedAt = c.now()
		return c.st.UpdateAllocation(ctx, a)
	}
	return err
}

// allocationFailed is Ironic's AllocationFailed: recorded on the
// allocation, not returned to the API.
type allocationFailed struct{ reason string }

func (e allocationFailed) Error() string { return e.reason }

// allocationCandidates is Ironic's _candidate_nodes: the nodes that may
// serve a, shuffled, a node named as the allocation first.
func (c *Conductor) allocationCandidates(ctx context.Context, a *provisioner.Allocation) ([]*provisioner.Node, error) {
	off := false
	all, err := c.st.Nodes(ctx, store.NodeFilter{ProvisionState: provisioner.StateAvailable, Maintenance: &off})
	if err != nil {
		return nil, err
	}
	var nodes []*provisioner.Node
	for _, n := range all {
		if n.ResourceClass != a.ResourceClass || n.InstanceUUID != "" || n.PowerState == "" {
			continue
		}
		if len(a.CandidateNodes) > 0 && !slices.Contains(a.CandidateNodes, n.UUID) {
			continue
		}
		if a.Owner != "" && n.Owner != a.Owner && n.Lessee != a.Owner {
			continue
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		if len(a.CandidateNodes) > 0 {
			return nil, allocationFailed{"none of the requested nodes are available and match the resource class " + a.ResourceClass}
		}
		return nil, allocationFailed{"no available nodes match the resource class " + a.ResourceClass}
	}
	nodes = slices.DeleteFunc(nodes, func(n *provisioner.Node) bool { return !hasTraits(n, a.Traits) })
	if len(nodes) == 0 {
		return nil, allocationFailed{"no suitable nodes have the requested traits " + strings.Join(a.Traits, ", ")}
	}
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	if i := slices.IndexFunc(nodes, func(n *provisioner.Node) bool { return a.Name != "" && n.Name == a.Name }); i > 0 {
		nodes[0], nodes[i] = nodes[i], nodes[0]
	}
	return nodes, nil
}

func hasTraits(n *provisioner.Node, traits []string) bool {
	for _, t := range traits {
		if !slices.Contains(n.Traits, t) {
			return false
		}
	}
	return true
}

// allocateNode is Ironic's _allocate_node: reserve the first candidate
// that still fits, trying locked ones again LockRetries times.
func (c *Conductor) allocateNode(ctx context.Context, a *provisioner.Allocation, nodes []*provisioner.Node) error {
	for attempt := 0; ; attempt++ {
		var locked []*provisioner.Node
		for _, cand := range nodes {
			ok, err := c.tryAllocate(ctx, a, cand.UUID)
			var le *store.LockedError
			switch {
			case errors.As(err, &le):
				locked = append(locked, cand)
			case err != nil:
				return err
			case ok:
				c.log.Info("node reserved for allocation", "node", cand.UUID, "allocation", a.UUID)
				return nil
			}
		}
		if len(locked) == 0 {
			return allocationFailed{"all nodes were filtered out during reservation"}
		}
		if attempt >= c.cfg.LockRetries {
			return allocationFailed{fmt.Sprintf("could not reserve any of %d suitable nodes", len(locked))}
		}
		nodes = locked
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.cfg.LockRetryInterval):
		}
	}
}

// tryAllocate locks the node and, if it still fits a (Ironic's
// _verify_node), gives it to a.
func (c *Conductor) tryAllocate(ctx context.Context, a *provisioner.Allocation, nodeUUID string) (bool, error) {
	n, err := c.st.ReserveNode(ctx, nodeUUID, c.host)
	if err != nil {
		return false, err
	}
	defer c.release(ctx, n.UUID)
	if n.Maintenance || n.InstanceUUID != "" || n.ProvisionState != provisioner.StateAvailable ||
		n.ResourceClass != a.ResourceClass || !hasTraits(n, a.Traits) {
		return false, nil
	}
	a.NodeUUID, a.State, a.UpdatedAt = n.UUID, provisioner.AllocationActive, c.now()
	if err := c.st.UpdateAllocation(ctx, a); err != nil {
		if errors.Is(err, store.ErrDuplicate) { // another allocation holds it
			a.NodeUUID, a.State = "", provisioner.AllocationAllocating
			return false, nil
		}
		return false, err
	}
	n.AllocationUUID, n.InstanceUUID = a.UUID, a.UUID
	if n.InstanceInfo == nil {
		n.InstanceInfo = map[string]any{}
	}
	traits := make([]any, len(a.Traits))
	for i, t := range a.Traits {
		traits[i] = t
	}
	n.InstanceInfo["traits"] = traits
	n.UpdatedAt = c.now()
	return true, c.st.UpdateNode(ctx, n)
}

// DeleteAllocation removes an allocation (by UUID or name), freeing its
// node's instance_uuid, refused as Ironic's
// verify_node_for_deallocation refuses while the node is active or busy
// (unless in maintenance).
func (c *Conductor) DeleteAllocation(ctx context.Context, ident string) error {
	a, err := c.st.Allocation(ctx, ident)
	if errors.Is(err, store.ErrNotFound) {
		return allocationNotFound(ident, err)
	}
	if err != nil {
		return err
	}
	if a.NodeUUID == "" {
		return c.st.DeleteAllocation(ctx, a.UUID)
	}
	n, err := c.acquire(ctx, a.NodeUUID)
	if err != nil {
		return err
	}
	defer c.release(ctx, n.UUID)
	if !n.Maintenance {
		if n.TargetProvisionState != "" && !slices.Contains(updateAllowedStates, n.ProvisionState) {
			return refuse(KindConflict, "Cannot remove allocation %s for node %s, because the node is in state %s where updates are not allowed (and maintenance mode is off)",
				a.UUID, n.UUID, n.ProvisionState)
		}
		if n.ProvisionState == provisioner.StateActive {
			return refuse(KindConflict, "Cannot remove allocation %s for node %s, because the node is active (and maintenance mode is off)", a.UUID, n.UUID)
		}
	}
	if err := c.st.DeleteAllocation(ctx, a.UUID); err != nil {
		return err
	}
	n.AllocationUUID, n.InstanceUUID, n.UpdatedAt = "", "", c.now()
	return c.st.UpdateNode(ctx, n)
}

// dropAllocation deletes the allocation holding n (locked by the caller,
// who saves n), as Ironic's tear down and instance_uuid removal do.
func (c *Conductor) dropAllocation(ctx context.Context, n *provisioner.Node) {
	if n.AllocationUUID == "" {
		return
	}
	if err := c.st.DeleteAllocation(ctx, n.AllocationUUID); err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Error("delete allocation", "node", n.UUID, "allocation", n.AllocationUUID, "err", err)
		return
	}
	n.AllocationUUID = ""
}

// nodeUpdateStates are the states in which Ironic's update_node lets an
// allocated node lose its instance_uuid outside maintenance.
var nodeUpdateStates = []provisioner.ProvisionState{provisioner.StateEnroll, provisioner.StateInspecting,
	provisioner.StateInspectWait, provisioner.StateManageable, provisioner.StateAvailable}

// checkInstanceRemoval is Ironic's refusal to remove instance_uuid from an
// allocated node that is not idle.
func checkInstanceRemoval(n *provisioner.Node) error {
	if n.Maintenance || slices.Contains(nodeUpdateStates, n.ProvisionState) {
		return nil
	}
	allowed := make([]string, len(nodeUpdateStates))
	for i, s := range nodeUpdateStates {
		allowed[i] = string(s)
	}
	return refuse(KindConflict, "Node %s with an allocation can not have instance_uuid removed unless it is in one of allowed (%s) states or in maintenance mode.",
		n.UUID, strings.Join(allowed, ", "))
}
