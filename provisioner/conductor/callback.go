package conductor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// callbacks returns the node's deploy interface when its ramdisk calls
// back through vendor passthru (Ironic mixed these methods into the
// driver's vendor interface), nil otherwise.
func callbacks(h *drivers.HardwareType, n *provisioner.Node) drivers.RamdiskCallbacks {
	d, err := h.DeployFor(n)
	if err != nil {
		return nil
	}
	cb, _ := d.(drivers.RamdiskCallbacks)
	return cb
}

func sortMethods(m []drivers.VendorMethod) []drivers.VendorMethod {
	slices.SortFunc(m, func(a, b drivers.VendorMethod) int { return strings.Compare(a.Name, b.Name) })
	return m
}

// callbackStates are the waits a ramdisk callback resumes.
var callbackStates = []provisioner.ProvisionState{provisioner.StateWaitCallback, provisioner.StateCleanWait}

// ramdiskCallback validates a deploy ramdisk's call synchronously, then
// under the node's lock takes the "resume" edge and runs the deploy
// interface's Continue as a task, moving the node by its result.
func (c *Conductor) ramdiskCallback(ctx context.Context, n *provisioner.Node, cb drivers.RamdiskCallbacks,
	method, httpMethod string, args map[string]any) error {
	if httpMethod != "POST" {
		return refuse(KindInvalid, "The method %s does not support HTTP %s", method, httpMethod)
	}
	if err := cb.ValidateCallback(ctx, n, method, args); err != nil {
		return &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, drivers.RoleDeploy)}
	}
	n, err := c.acquire(ctx, n.UUID)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			c.release(ctx, n.UUID)
		}
	}()
	if !slices.Contains(callbackStates, n.ProvisionState) {
		return refuse(KindInvalid, "The requested action \"resume\" can not be performed on node \"%s\" while it is in state \"%s\".",
			n.UUID, n.ProvisionState)
	}
	if err := c.transition(ctx, n, EventResume); err != nil {
		return err
	}
	c.log.Info("ramdisk called back", "node", n.UUID, "method", method, "state", n.ProvisionState)
	err = c.spawn(n, "vendor "+method, func(ctx context.Context, n *provisioner.Node) {
		// What the ramdisk's disk holds is untrusted input to the deploy
		// code: a panic fails this node, never the conductor.
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("ramdisk callback panicked", "node", n.UUID, "method", method, "err", r)
				c.failNode(ctx, n, fmt.Sprintf("Failed to continue deployment of node %s: internal error: %v", n.UUID, r))
			}
		}()
		_, t, err := c.deployTask(ctx, n)
		var step drivers.Step
		if err == nil {
			step, err = cb.Continue(ctx, t, method, args)
		}
		c.afterStep(ctx, n, step, err, nil)
	})
	if err != nil {
		return err
	}
	ok = true
	return nil
}
