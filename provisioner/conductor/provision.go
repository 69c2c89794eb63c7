package conductor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// ProvisionOptions are the optional parts of a provision request.
type ProvisionOptions struct {
	ConfigDrive any              // "configdrive" (deploy, rebuild)
	CleanSteps  []map[string]any // "clean_steps" (clean)
	// DeploySteps are "deploy_steps" (active, rebuild; API 1.69), checked
	// against DEPLOY_STEP_SCHEMA by the API.
	DeploySteps []provisioner.DeployStep
}

// Verbs are the provision targets the API accepts.
func Verbs() []string {
	return []string{"manage", "provide", "active", "deploy", "deleted", "undeploy", "rebuild",
		"abort", "clean", "inspect"}
}

// Provision starts the provision action verb on the node: it checks the
// transition table and validates synchronously (refusals come back as
// *Error with Ironic's text), moves the node into its transient state,
// then finishes the work in an asynchronous task.
func (c *Conductor) Provision(ctx context.Context, ident, verb string, opts ProvisionOptions) error {
	event, ok := verbEvents[verb]
	if !ok {
		n, err := c.node(ctx, ident)
		if err != nil {
			return err
		}
		return badTransition(verb, n)
	}
	n, err := c.node(ctx, ident)
	if err != nil {
		return err
	}
	// Refuse before locking: a refused action must not wait on a lock.
	if _, err := Next(n.ProvisionState, event); err != nil || slices.Contains(busy, n.ProvisionState) {
		return badTransition(verb, n)
	}
	if event == EventClean && len(opts.CleanSteps) == 0 {
		return refuse(KindInvalid, "\"clean_steps\" is required when setting target provision state to %s", "clean")
	}
	if event == EventClean {
		if err := checkCleanSteps(opts.CleanSteps); err != nil {
			return err
		}
	}
	n, err = c.acquire(ctx, n.UUID)
	if err != nil {
		return err
	}
	ok = false
	defer func() {
		if !ok {
			c.release(ctx, n.UUID)
		}
	}()
	// Re-check under the lock: the state may have moved meanwhile.
	if _, err := Next(n.ProvisionState, event); err != nil || slices.Contains(busy, n.ProvisionState) {
		return badTransition(verb, n)
	}
	if n.Protected && (event == EventDelete || event == EventRebuild) {
		return refuse(KindForbidden, "Node %s is protected and cannot be undeployed, rebuilt or deleted", n.UUID)
	}
	if n.Maintenance && (event == EventDeploy || event == EventRebuild || event == EventClean ||
		event == EventProvide || event == EventInspect) {
		return refuse(KindInvalid, "Node %s is in maintenance mode, cannot perform action %s.", n.UUID, verb)
	}
	h, err := c.hardware(n)
	if err != nil {
		return err
	}
	var work func(context.Context, *provisioner.Node)
	switch {
	case event == EventManage && n.ProvisionState == provisioner.StateEnroll:
		work = c.verify
	case event == EventManage, event == EventAbort:
		// Synchronous edges: clean failed/inspect failed/available ->
		// manageable; wait states -> failed.
		msg := ""
		switch n.ProvisionState {
		case provisioner.StateWaitCallback:
			msg = "Deploy aborted by request."
			clearDeploySteps(n)
		case provisioner.StateCleanWait:
			msg = fmt.Sprintf("Clean operation aborted for node %s.", n.UUID)
		case provisioner.StateInspectWait:
			msg = "Inspection was aborted by request."
		}
		if msg != "" {
			n.LastError = msg
		}
		if err := c.transition(ctx, n, event); err != nil {
			return err
		}
		if msg != "" {
			c.history(ctx, n, "ERROR", "provisioning", msg)
		}
		if n.ProvisionState == provisioner.StateInspectFailed {
			c.abortInspection(ctx, n)
		}
		return nil
	case event == EventProvide, event == EventClean:
		power, err := h.PowerFor(n)
		if err == nil {
			err = power.Validate(ctx, n)
		}
		if err != nil {
			return &Error{Kind: KindInvalid, Err: err, Msg: fmt.Sprintf(
				"Failed to validate power driver interface. Can not clean node %s. Error: %s", n.UUID, cause(err, n, drivers.RolePower))}
		}
		steps := opts.CleanSteps
		if event == EventClean {
			if err := checkManualSteps(h, n, steps); err != nil {
				return err
			}
		}
		work = func(ctx context.Context, n *provisioner.Node) { c.clean(ctx, n, steps) }
	case event == EventDeploy || event == EventRebuild:
		if err := c.validateDeploy(ctx, h, n); err != nil {
			return err
		}
		steps, err := c.planDeploySteps(ctx, h, n, opts.DeploySteps)
		if err != nil {
			return err
		}
		recordDeploySteps(n, steps)
		if opts.ConfigDrive != nil {
			if n.InstanceInfo == nil {
				n.InstanceInfo = map[string]any{}
			}
			n.InstanceInfo["configdrive"] = opts.ConfigDrive
		}
		work = c.deploy
	case event == EventDelete:
		work = c.tearDown
	case event == EventInspect:
		if err := c.validateInspect(ctx, h, n); err != nil {
			return err
		}
		work = c.inspect
	default:
		return badTransition(verb, n)
	}
	n.LastError = ""
	if err := c.transition(ctx, n, event); err != nil {
		return err
	}
	c.history(ctx, n, "INFO", "provisioning", fmt.Sprintf("%s: %s", verb, n.ProvisionState))
	if err := c.spawn(n, verb, work); err != nil {
		return err
	}
	ok = true
	return nil
}

func badTransition(verb string, n *provisioner.Node) error {
	return refuse(KindInvalid, "The requested action \"%s\" can not be performed on node \"%s\" while it is in state \"%s\".",
		verb, n.UUID, n.ProvisionState)
}

// cause renders a driver error for a message; unsupported roles read as
// Ironic's UnsupportedDriverExtension text.
func cause(err error, n *provisioner.Node, role drivers.Role) string {
	if errors.Is(err, drivers.ErrUnsupported) {
		return unsupported(n.Driver, role)
	}
	return strings.TrimSuffix(err.Error(), ": "+drivers.ErrInvalidParameter.Error())
}

// validateDeploy is Ironic's synchronous check in do_node_deploy.
func (c *Conductor) validateDeploy(ctx context.Context, h *drivers.HardwareType, n *provisioner.Node) error {
	fail := func(err error, role drivers.Role) error {
		return &Error{Kind: KindInvalid, Err: err, Msg: fmt.Sprintf(
			"Failed to validate deploy or power info for node %s. Error: %s", n.UUID, cause(err, n, role))}
	}
	power, err := h.PowerFor(n)
	if err == nil {
		err = power.Validate(ctx, n)
	}
	if err != nil {
		return fail(err, drivers.RolePower)
	}
	deploy, err := h.DeployFor(n)
	if err == nil {
		var t *drivers.Task
		if t, err = c.newTask(ctx, h, n); err == nil {
			err = deploy.Validate(ctx, t)
		}
	}
	if err != nil {
		return fail(err, drivers.RoleDeploy)
	}
	return nil
}

// verify is the "manage" task from enroll: validate the power interface
// and read the power state through the BMC.
func (c *Conductor) verify(ctx context.Context, n *provisioner.Node) {
	h, err := c.hardware(n)
	if err != nil {
		c.failNode(ctx, n, err.Error())
		return
	}
	power, err := h.PowerFor(n)
	if err == nil {
		err = power.Validate(ctx, n)
	}
	if err != nil {
		c.failNode(ctx, n, fmt.Sprintf("Failed to validate power driver interface for node %s. Error: %s",
			n.UUID, cause(err, n, drivers.RolePower)))
		return
	}
	state, err := power.GetPowerState(ctx, n)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		c.failNode(ctx, n, fmt.Sprintf("Failed to get power state for node %s. Error: %s", n.UUID, err))
		return
	}
	c.recordPower(n, state)
	if err := c.transition(ctx, n, EventDone); err != nil {
		c.log.Error("verify done", "node", n.UUID, "err", err)
	}
}

// clean is the cleaning task (automated after "provide", after "deleted";
// manual after "clean").
func (c *Conductor) clean(ctx context.Context, n *provisioner.Node, manualSteps []map[string]any) {
	if len(manualSteps) > 0 {
		recordManualSteps(n, manualSteps)
		c.cleanThroughDeploy(ctx, n)
		return
	}
	// Steps of a manual cleaning that failed are not this one's.
	delete(n.DriverInternalInfo, drivers.ManualCleanStepsKey)
	automated := c.cfg.AutomatedClean
	if n.AutomatedClean != nil {
		automated = *n.AutomatedClean
	}
	if automated {
		c.cleanThroughDeploy(ctx, n)
		return
	}
	c.log.Info("automated cleaning is disabled, node moved to available", "node", n.UUID)
	if err := c.transition(ctx, n, EventDone); err != nil {
		c.log.Error("clean done", "node", n.UUID, "err", err)
	}
}

// deploy is the deploy/rebuild task.
func (c *Conductor) deploy(ctx context.Context, n *provisioner.Node) {
	d, t, err := c.deployTask(ctx, n)
	if err != nil {
		c.failNode(ctx, n, cause(err, n, drivers.RoleDeploy))
		return
	}
	before, _ := conductorSteps(n)
	if !c.runDeploySteps(ctx, n, before) {
		return
	}
	core := coreDeployStep()
	if err := c.showDeployStep(ctx, n, core); err != nil {
		c.log.Error("deploy: save node", "node", n.UUID, "err", err)
		return
	}
	c.record(n, events.ConductorDeployStep, stepLabel(core))
	if err := d.Prepare(ctx, t); err != nil {
		if ctx.Err() == nil {
			c.fail(ctx, n, err, func(err error) string { return fmt.Sprintf("Failed to prepare to deploy: %s", err) })
		}
		return
	}
	// Save what Prepare recorded (the deploy key) before the ramdisk can
	// call back with it.
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		c.log.Error("deploy: save node", "node", n.UUID, "err", err)
		return
	}
	step, err := d.Deploy(ctx, t)
	c.afterStep(ctx, n, step, err, func(err error) string { return fmt.Sprintf("Failed to deploy: %s", err) })
}

// tearDown is the "deleted" task: tear down, then clean to available.
func (c *Conductor) tearDown(ctx context.Context, n *provisioner.Node) {
	d, t, err := c.deployTask(ctx, n)
	if err == nil {
		err = d.TearDown(ctx, t)
	}
	if err == nil {
		err = d.CleanUp(ctx, t)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		c.fail(ctx, n, err, func(err error) string {
			return fmt.Sprintf("Failed to tear down. Error: %s", cause(err, n, drivers.RoleDeploy))
		})
		return
	}
	n.InstanceInfo = map[string]any{}
	n.InstanceUUID = ""
	c.dropAllocation(ctx, n)
	if err := c.transition(ctx, n, EventClean); err != nil {
		c.log.Error("tear down", "node", n.UUID, "err", err)
		return
	}
	c.clean(ctx, n, nil)
}

// cleanThroughDeploy runs cleaning through the node's deploy interface
// when it can (drivers.Cleaner), as Ironic's cleaning boots the ramdisk:
// the automated steps, or the manual ones recorded in driver_internal_info.
func (c *Conductor) cleanThroughDeploy(ctx context.Context, n *provisioner.Node) {
	failMsg := func(err error) string { return fmt.Sprintf("Failed to prepare node %s for cleaning: %s", n.UUID, err) }
	d, t, err := c.deployTask(ctx, n)
	if err != nil && !errors.Is(err, drivers.ErrUnsupported) {
		c.fail(ctx, n, err, failMsg)
		return
	}
	cl, _ := d.(drivers.Cleaner)
	if cl == nil {
		c.failNode(ctx, n, fmt.Sprintf("Failed to prepare node %s for cleaning: automated cleaning runs in the "+
			"deploy ramdisk, which the node's deploy interface %q does not run; set automated_clean false on the node.",
			n.UUID, n.Interfaces.Deploy))
		return
	}
	if err := cl.PrepareCleaning(ctx, t); err != nil {
		if ctx.Err() == nil {
			c.fail(ctx, n, err, failMsg)
		}
		return
	}
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		c.log.Error("clean: save node", "node", n.UUID, "err", err)
		return
	}
	step, err := cl.Clean(ctx, t)
	c.afterStep(ctx, n, step, err, failMsg)
}
