package conductor

import (
	"context"
	"errors"
	"fmt"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// newTask builds what the boot and deploy interfaces get for n, under its
// lock (Ironic's task): the node, its ports as the store has them, and
// its power, management and boot interfaces as its hardware type resolves
// them.
func (c *Conductor) newTask(ctx context.Context, h *drivers.HardwareType, n *provisioner.Node) (*drivers.Task, error) {
	ps, err := c.st.Ports(ctx, store.PortFilter{NodeUUID: n.UUID})
	if err != nil {
		return nil, fmt.Errorf("list ports of node %s: %w", n.UUID, err)
	}
	ports := make([]provisioner.Port, len(ps))
	for i, p := range ps {
		ports[i] = *p
	}
	return h.NewTask(n, ports)
}

// deployTask resolves n's deploy interface and builds its task.
func (c *Conductor) deployTask(ctx context.Context, n *provisioner.Node) (drivers.DeployInterface, *drivers.Task, error) {
	h, err := c.hardware(n)
	if err != nil {
		return nil, nil, err
	}
	d, err := h.DeployFor(n)
	if err != nil {
		return nil, nil, err
	}
	t, err := c.newTask(ctx, h, n)
	if err != nil {
		return nil, nil, err
	}
	return d, t, nil
}

// stepEvent is the one place that decides what comes after a deploy or
// clean step (Deploy, Clean, a ramdisk's callback, an agent's heartbeat):
// the "wait" edge to wait for the ramdisk ("wait call-back", "clean
// wait"), "done" when the deploy or cleaning finished ("active",
// "available"), "fail" when the step failed.
func stepEvent(step drivers.Step, err error) (Event, error) {
	switch {
	case err != nil:
		return EventFail, err
	case step == drivers.StepWait:
		return EventWait, nil
	case step == drivers.StepDone:
		return EventDone, nil
	}
	return EventFail, fmt.Errorf("Deploy interface returned unexpected step %v.", step)
}

// afterStep moves n by what a step returned (stepEvent). A failure fails
// the node: a *drivers.DeployError's message becomes last_error as it is;
// any other error is described by failMsg. Nothing is done when ctx ended
// (the conductor is stopping; the next start recovers the node).
func (c *Conductor) afterStep(ctx context.Context, n *provisioner.Node, step drivers.Step, err error, failMsg func(error) string) {
	if ctx.Err() != nil {
		return
	}
	event, err := stepEvent(step, err)
	if event == EventFail {
		c.fail(ctx, n, err, failMsg)
		return
	}
	if event == EventDone && n.ProvisionState == provisioner.StateDeploying {
		// The deploy interface is done: the steps after deploy.deploy.
		if _, after := conductorSteps(n); !c.runDeploySteps(ctx, n, after) {
			return
		}
		clearDeploySteps(n)
	}
	if event == EventDone && n.ProvisionState == provisioner.StateCleaning {
		// Manual cleaning ends in "manageable", where it started.
		if _, manual := n.DriverInternalInfo[drivers.ManualCleanStepsKey]; manual {
			delete(n.DriverInternalInfo, drivers.ManualCleanStepsKey)
			event = EventManage
		}
	}
	if err := c.transition(ctx, n, event); err != nil {
		c.log.Error("move node after step", "node", n.UUID, "state", n.ProvisionState, "event", event, "err", err)
	}
}

// fail fails n because of err: last_error is a *drivers.DeployError's
// message, else failMsg(err) (err's text when failMsg is nil). This is the
// one place a failed step is logged, with its whole cause.
func (c *Conductor) fail(ctx context.Context, n *provisioner.Node, err error, failMsg func(error) string) {
	msg := err.Error()
	var de *drivers.DeployError
	if !errors.As(err, &de) && failMsg != nil {
		msg = failMsg(err)
	} else if de != nil {
		msg = de.Msg
	}
	c.log.Error("provisioning failed", "node", n.UUID, "state", n.ProvisionState, "err", err)
	c.failNode(ctx, n, msg)
}
