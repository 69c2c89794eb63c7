package conductor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// PowerTargets are the power targets the API accepts.
func PowerTargets() []provisioner.PowerState {
	return []provisioner.PowerState{provisioner.PowerOn, provisioner.PowerOff, provisioner.Rebooting,
		provisioner.SoftPowerOff, provisioner.SoftRebooting}
}

// recordPower stores a power state read from or driven on the BMC,
// stamping driver_internal_info.last_power_state_change when it changed.
func (c *Conductor) recordPower(n *provisioner.Node, state provisioner.PowerState) {
	if n.PowerState != state {
		if n.DriverInternalInfo == nil {
			n.DriverInternalInfo = map[string]any{}
		}
		n.DriverInternalInfo["last_power_state_change"] = c.now().Format("2006-01-02T15:04:05.000000")
	}
	n.PowerState = state
}

// SetPowerState starts a power action: validation and the lock are
// synchronous, the BMC work runs as a task (the API answers 202).
func (c *Conductor) SetPowerState(ctx context.Context, ident string, target provisioner.PowerState, timeout time.Duration) error {
	n, err := c.node(ctx, ident)
	if err != nil {
		return err
	}
	if !slices.Contains(PowerTargets(), target) {
		return refuse(KindInvalid, "The requested action \"%s\" can not be performed on node \"%s\" while it is in state \"%s\".",
			target, n.UUID, displayPower(n.PowerState))
	}
	n, err = c.acquire(ctx, n.UUID)
	if err != nil {
		return err
	}
	h, err := c.hardware(n)
	if err != nil {
		c.release(ctx, n.UUID)
		return err
	}
	power, err := h.PowerFor(n)
	if err == nil {
		err = power.Validate(ctx, n)
	}
	if err != nil {
		c.release(ctx, n.UUID)
		return &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, "power")}
	}
	n.TargetPowerState = target
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		c.release(ctx, n.UUID)
		return err
	}
	err = c.spawn(n, "power", func(ctx context.Context, n *provisioner.Node) {
		c.powerAction(ctx, power, n, target, timeout)
	})
	if err != nil {
		c.release(ctx, n.UUID)
	}
	return err
}

func displayPower(p provisioner.PowerState) string {
	if p == "" {
		return "None"
	}
	return string(p)
}

type powerDriver interface {
	GetPowerState(ctx context.Context, node *provisioner.Node) (provisioner.PowerState, error)
	SetPowerState(ctx context.Context, node *provisioner.Node, target provisioner.PowerState) error
	Reboot(ctx context.Context, node *provisioner.Node, soft bool) error
}

// powerAction is Ironic's node_power_action: skip when the BMC already
// reports the target, else drive it, then record the result or the error.
func (c *Conductor) powerAction(ctx context.Context, power powerDriver, n *provisioner.Node,
	target provisioner.PowerState, timeout time.Duration) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	newState := target
	switch target {
	case provisioner.Rebooting, provisioner.SoftRebooting:
		newState = provisioner.PowerOn
	case provisioner.SoftPowerOff:
		newState = provisioner.PowerOff
	}
	var err error
	skip := false
	began := time.Now()
	if target == provisioner.PowerOn || target == provisioner.PowerOff {
		var cur provisioner.PowerState
		cur, err = power.GetPowerState(ctx, n)
		if err == nil && cur == target {
			skip = true
			c.log.Info("not changing power state: current state = requested state", "node", n.UUID, "state", cur)
		}
	}
	if err == nil && !skip {
		switch target {
		case provisioner.Rebooting:
			err = power.Reboot(ctx, n, false)
		case provisioner.SoftRebooting:
			err = power.Reboot(ctx, n, true)
		default:
			err = power.SetPowerState(ctx, n, target)
		}
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return // conductor stopping
	}
	switch {
	case err != nil:
		c.metrics.powerAction(target, "failure", time.Since(began))
	case skip:
		c.metrics.powerAction(target, "skipped", 0)
	default:
		c.metrics.powerAction(target, "success", time.Since(began))
	}
	fresh, gerr := c.st.Node(context.WithoutCancel(ctx), n.UUID)
	if gerr == nil {
		n = fresh
	}
	n.TargetPowerState = ""
	n.UpdatedAt = c.now()
	if err != nil {
		n.LastError = fmt.Sprintf("Failed to change power state to '%s' by '%s'. Error: %s", newState, target, err)
		c.history(ctx, n, "ERROR", "power", n.LastError)
		c.log.Warn("power action failed", "node", n.UUID, "state", target, "err", err)
	} else {
		n.LastError = ""
		c.recordPower(n, newState)
		c.log.Info("power state", "node", n.UUID, "state", newState)
	}
	if err := c.st.UpdateNode(context.WithoutCancel(ctx), n); err != nil {
		c.log.Error("save power state", "node", n.UUID, "err", err)
	}
}

// SyncPowerStates reads every eligible node's power state from its BMC
// and records changes (Ironic's _sync_power_states, recording rather than
// forcing). Nodes in maintenance, reserved, or in enroll are skipped.
// After PowerSyncMaxRetries failures in a row a node goes into
// maintenance with fault "power failure".
func (c *Conductor) SyncPowerStates(ctx context.Context) {
	free := ""
	off := false
	nodes, err := c.st.Nodes(ctx, store.NodeFilter{Reservation: &free, Maintenance: &off})
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("power sync: list nodes", "err", err)
		}
		return
	}
	for _, n := range nodes {
		if ctx.Err() != nil {
			return
		}
		if n.ProvisionState == provisioner.StateEnroll {
			continue
		}
		c.syncPower(ctx, n.UUID)
	}
}

func (c *Conductor) syncPower(ctx context.Context, uuid string) {
	n, err := c.st.ReserveNode(ctx, uuid, c.host)
	if err != nil {
		return // busy: a task owns it now
	}
	defer c.release(ctx, uuid)
	h, err := c.hardware(n)
	if err != nil {
		return
	}
	power, err := h.PowerFor(n)
	if err != nil {
		return
	}
	state, err := power.GetPowerState(ctx, n)
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	if err != nil {
		c.powerFail[uuid]++
	} else {
		delete(c.powerFail, uuid)
	}
	fails := c.powerFail[uuid]
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("power sync: read power state", "node", uuid, "err", err)
		if fails < c.cfg.PowerSyncMaxRetries {
			return
		}
		c.mu.Lock()
		delete(c.powerFail, uuid)
		c.mu.Unlock()
		msg := fmt.Sprintf("During sync_power_state, max retries exceeded for node %s, node state %s does not match expected state '%s'. "+
			"Updating DB state to '%s' Switching node to maintenance mode. Error: %s",
			uuid, displayPower(provisioner.PowerError), displayPower(n.PowerState), displayPower(provisioner.PowerError), err)
		n.PowerState = provisioner.PowerError
		n.Maintenance, n.MaintenanceReason, n.Fault = true, msg, "power failure"
		n.UpdatedAt = c.now()
		if err := c.st.UpdateNode(ctx, n); err != nil {
			c.log.Error("power sync: save", "node", uuid, "err", err)
		}
		c.history(ctx, n, "ERROR", "maintenance", msg)
		return
	}
	if state == n.PowerState {
		return
	}
	prev := n.PowerState
	c.recordPower(n, state)
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		c.log.Error("power sync: save", "node", uuid, "err", err)
		return
	}
	if prev != "" {
		msg := fmt.Sprintf("During sync_power_state, node %s state '%s' does not match expected state. Updating recorded state to '%s'.",
			uuid, displayPower(prev), state)
		c.history(ctx, n, "INFO", "power", msg)
	}
	c.log.Info("power sync: state changed", "node", uuid, "state", state, "from", prev)
}

// CheckTimeouts fails nodes that waited for a ramdisk callback too long:
// "wait call-back" past DeployCallbackTimeout (Ironic's
// _check_deploy_timeouts, which then cleans up the deploy) and "clean wait"
// past CleanCallbackTimeout (_check_cleanwait_timeouts).
func (c *Conductor) CheckTimeouts(ctx context.Context) {
	for _, w := range []struct {
		state   provisioner.ProvisionState
		timeout time.Duration
		msg     func(n *provisioner.Node) string
	}{
		{provisioner.StateWaitCallback, c.cfg.DeployCallbackTimeout, func(n *provisioner.Node) string {
			return fmt.Sprintf("Timeout reached while waiting for callback for node %s", n.UUID)
		}},
		{provisioner.StateCleanWait, c.cfg.CleanCallbackTimeout, func(*provisioner.Node) string {
			return "Timeout reached while cleaning the node. Please check if the ramdisk responsible for the cleaning is running on the node."
		}},
		{provisioner.StateInspectWait, c.cfg.InspectWaitTimeout, func(*provisioner.Node) string {
			return "timeout reached while inspecting the node"
		}},
	} {
		free := ""
		nodes, err := c.st.Nodes(ctx, store.NodeFilter{ProvisionState: w.state, Reservation: &free})
		if err != nil {
			return
		}
		for _, n := range nodes {
			if c.now().Sub(n.ProvisionUpdatedAt) < w.timeout {
				continue
			}
			n, err := c.st.ReserveNode(ctx, n.UUID, c.host)
			if err != nil {
				continue
			}
			if n.ProvisionState == w.state && c.now().Sub(n.ProvisionUpdatedAt) >= w.timeout {
				c.failNode(ctx, n, w.msg(n))
				c.cleanUpAfterTimeout(ctx, n)
			}
			c.release(ctx, n.UUID)
		}
	}
}

// cleanUpAfterTimeout removes the deploy's files (Ironic's
// cleanup_after_timeout), or undoes an inspection; a failure is appended
// to last_error.
func (c *Conductor) cleanUpAfterTimeout(ctx context.Context, n *provisioner.Node) {
	if n.ProvisionState == provisioner.StateInspectFailed {
		c.abortInspection(ctx, n)
		return
	}
	d, t, err := c.deployTask(ctx, n)
	if err != nil {
		return
	}
	if err := d.CleanUp(ctx, t); err != nil && ctx.Err() == nil {
		n.LastError += fmt.Sprintf(" Cleanup failed for node %s after timeout: %s", n.UUID, err)
		if err := c.st.UpdateNode(ctx, n); err != nil {
			c.log.Error("save node", "node", n.UUID, "err", err)
		}
	}
}
