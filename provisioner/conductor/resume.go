package conductor

import (
	"context"
	"fmt"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// resumeStates are the states a node waits in for its machine, which a
// restarted conductor carries on (Ironic leaves them to their call-back
// timeout; here the boot servers' answers died with the process, and in
// "metalbed up" so did the machine's ramdisk):
//   - "wait call-back", "clean wait" and "inspect wait": the ramdisk is
//     prepared again and the node rebooted into it (resumeWait);
//   - "active": the deploy interface takes the node over (Ironic's
//     _do_takeover), rebuilding its instance boot: DHCP answers, netboot
//     config, boot device.
var resumeStates = []provisioner.ProvisionState{
	provisioner.StateWaitCallback, provisioner.StateCleanWait, provisioner.StateInspectWait, provisioner.StateActive,
}

// reserveResumable takes the lock of every node this start carries on
// (resumeStates, not in maintenance, not held by anyone), so that no
// call-back, heartbeat or API verb reaches one before resume has run. It
// runs before the API answers, or once Config.ResumeAfter is closed (a
// node some task holds then is busy and left alone); the nodes are handed
// to resume.
func (c *Conductor) reserveResumable(ctx context.Context) ([]*provisioner.Node, error) {
	var held []*provisioner.Node
	for _, state := range resumeStates {
		free := ""
		nodes, err := c.st.Nodes(ctx, store.NodeFilter{ProvisionState: state, Reservation: &free})
		if err != nil {
			return held, err
		}
		for _, n := range nodes {
			if n.Maintenance || c.ConductorFor(ctx, n) != c.host {
				continue
			}
			n, err := c.st.ReserveNode(ctx, n.UUID, c.host)
			if err != nil {
				continue // another conductor took it meanwhile
			}
			held = append(held, n)
		}
	}
	return held, nil
}

// resumeAfter locks and carries on the resumable nodes once gate is
// closed (Config.ResumeAfter), unless ctx ends first.
func (c *Conductor) resumeAfter(ctx context.Context, gate <-chan struct{}) {
	select {
	case <-gate:
	case <-ctx.Done():
		return
	}
	held, err := c.reserveResumable(ctx)
	if err != nil {
		c.releaseAll(ctx, held)
		if ctx.Err() == nil {
			c.log.Error("resume nodes", "err", err)
		}
		return
	}
	c.resume(held)
}

// releaseAll drops the locks of nodes.
func (c *Conductor) releaseAll(ctx context.Context, nodes []*provisioner.Node) {
	for _, n := range nodes {
		c.release(ctx, n.UUID)
	}
}

// resume carries on each node reserveResumable locked, one task per node.
func (c *Conductor) resume(nodes []*provisioner.Node) {
	for _, n := range nodes {
		err := c.spawn(n, "resume", func(ctx context.Context, n *provisioner.Node) {
			if n.ProvisionState == provisioner.StateActive {
				c.takeOver(ctx, n)
				return
			}
			c.resumeWait(ctx, n)
		})
		if err != nil {
			c.release(context.Background(), n.UUID)
		}
	}
}

// resumeWait carries on a node left waiting for its ramdisk: it takes the
// "resume" edge and runs the deploy (cleaning, inspection) task again
// from the interface's prepare, which writes the ramdisk's boot files and
// DHCP answers anew (a new deploy key or agent token) and reboots the node
// into it; the ramdisk then calls back or heartbeats as on a first boot.
// What the previous ramdisk did is redone: the image is written again.
func (c *Conductor) resumeWait(ctx context.Context, n *provisioner.Node) {
	from := n.ProvisionState
	msg := fmt.Sprintf("Conductor %s restarted while the node was in %s; booting the deploy ramdisk again.", c.host, from)
	c.log.Info("resuming node after conductor restart", "node", n.UUID, "state", from)
	c.history(ctx, n, "INFO", "provisioning", msg)
	if err := c.transition(ctx, n, EventResume); err != nil {
		c.log.Error("resume node", "node", n.UUID, "state", from, "err", err)
		return
	}
	switch from {
	case provisioner.StateCleanWait:
		c.cleanThroughDeploy(ctx, n)
	case provisioner.StateInspectWait:
		c.inspect(ctx, n)
	default:
		c.deploy(ctx, n)
	}
}

// takeOver rebuilds an active node's instance boot through its deploy
// interface's TakeOver. A failure leaves the node active with last_error
// set, as Ironic's _do_takeover does.
func (c *Conductor) takeOver(ctx context.Context, n *provisioner.Node) {
	d, t, err := c.deployTask(ctx, n)
	if err == nil {
		err = d.TakeOver(ctx, t)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		c.log.Error("take over node", "node", n.UUID, "err", err)
		n.LastError = fmt.Sprintf("Failed to take over node %s: %s", n.UUID, err)
		c.history(ctx, n, "ERROR", "takeover", n.LastError)
	} else {
		c.log.Info("took over active node", "node", n.UUID)
	}
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		c.log.Error("take over: save node", "node", n.UUID, "err", err)
	}
}
