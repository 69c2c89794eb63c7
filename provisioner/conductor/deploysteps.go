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
	"github.com/metalbed/metalbed/provisioner/store"
)

// Deploy steps, as Ironic 21.4's conductor/steps.py gathers, validates and
// orders them: the node's driver steps (deploy.deploy at 100 and the
// deploy interface's own; its bios interface's), the steps of the deploy
// templates named by instance_info traits, and the request's deploy_steps.
// The deploy interface runs its own steps itself (Prepare, Deploy, its
// callbacks); the conductor runs the others (drivers.DeployStepRunner)
// one at a time: those sorted before deploy.deploy before Prepare, the
// rest once the deploy interface has finished, before "active".

// deployStepsKey is the driver_internal_info key holding this deploy's
// steps, validated and sorted (Ironic's driver_internal_info
// deploy_steps).
const deployStepsKey = "deploy_steps"

// deployingInterfacePriority orders steps of equal priority
// (DEPLOYING_INTERFACE_PRIORITY).
var deployingInterfacePriority = map[string]int{"power": 5, "management": 4, "deploy": 3, "bios": 2, "raid": 1}

// stepID is "interface.step".
func stepID(iface, step string) string { return iface + "." + step }

// stepLabel is st as the timeline shows it: "iface.step (priority N)".
func stepLabel(st provisioner.DeployStep) string {
	return fmt.Sprintf("%s (priority %d)", stepID(st.Interface, st.Step), st.Priority)
}

// coreDeployStep is deploy.deploy as a step of the deploy.
func coreDeployStep() provisioner.DeployStep {
	c := drivers.CoreDeployStep
	return provisioner.DeployStep{Interface: string(c.Interface), Step: c.Step, Args: map[string]any{}, Priority: c.Priority}
}

// stepDict is st as Ironic prints a user step and shows deploy_step.
func stepDict(st provisioner.DeployStep) drivers.PyDict {
	args := st.Args
	if args == nil {
		args = map[string]any{}
	}
	return drivers.PyDict{{Key: "interface", Value: st.Interface}, {Key: "step", Value: st.Step},
		{Key: "args", Value: args}, {Key: "priority", Value: st.Priority}}
}

// stepMap is st as driver_internal_info and the node's deploy_step keep it.
func stepMap(st provisioner.DeployStep) map[string]any {
	m := map[string]any{}
	for _, it := range stepDict(st) {
		m[it.Key] = it.Value
	}
	return m
}

// stepFromMap reads a step back from driver_internal_info.
func stepFromMap(v any) (provisioner.DeployStep, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return provisioner.DeployStep{}, false
	}
	st := provisioner.DeployStep{}
	st.Interface, _ = m["interface"].(string)
	st.Step, _ = m["step"].(string)
	st.Args, _ = m["args"].(map[string]any)
	switch p := m["priority"].(type) {
	case float64:
		st.Priority = int(p)
	case int:
		st.Priority = p
	}
	return st, st.Interface != "" && st.Step != ""
}

// driverDeploySteps are the deploy steps n's interfaces offer, and the
// interfaces whose steps the conductor runs, by interface name.
func driverDeploySteps(h *drivers.HardwareType, n *provisioner.Node) ([]drivers.DeployStepInfo, map[string]drivers.DeployStepRunner) {
	steps := []drivers.DeployStepInfo{drivers.CoreDeployStep}
	runners := map[string]drivers.DeployStepRunner{}
	if d, err := h.DeployFor(n); err == nil {
		if l, ok := d.(drivers.DeployStepLister); ok {
			steps = append(steps, l.DeploySteps()...)
		}
	}
	if b, err := h.BiosFor(n); err == nil {
		steps = append(steps, b.DeploySteps()...)
		runners[string(drivers.RoleBios)] = b
	}
	return steps, runners
}

// instanceTraits are instance_info traits, checked as Ironic's
// validate_instance_info_traits: a list of strings, each also a node trait.
func instanceTraits(n *provisioner.Node) ([]string, error) {
	raw, ok := n.InstanceInfo["traits"]
	if !ok || raw == nil {
		return nil, nil
	}
	invalid := fmt.Errorf("Error parsing traits from Node %s instance_info field. A list of strings is expected.", n.UUID)
	list, ok := raw.([]any)
	if !ok {
		if s, isStr := raw.(string); isStr && s == "" {
			return nil, nil
		}
		return nil, invalid
	}
	traits := make([]string, 0, len(list))
	var missing []string
	for _, v := range list {
		t, ok := v.(string)
		if !ok {
			return nil, invalid
		}
		traits = append(traits, t)
		if !slices.Contains(n.Traits, t) && !slices.Contains(missing, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("Cannot specify instance traits that are not also set on the node. Node %s is missing traits %s",
			n.UUID, strings.Join(missing, ", "))
	}
	return traits, nil
}

// templateSteps gathers the steps of the deploy templates whose names are
// among traits, in the store's order (DeployTemplate.list_by_names), and
// the templates' names.
func (c *Conductor) templateSteps(ctx context.Context, traits []string) ([]string, []provisioner.DeployStep, error) {
	if len(traits) == 0 {
		return nil, nil, nil
	}
	all, err := c.st.DeployTemplates(ctx, store.ListFilter{})
	if err != nil {
		return nil, nil, fmt.Errorf("list deploy templates: %w", err)
	}
	var names []string
	var steps []provisioner.DeployStep
	for _, t := range all {
		if slices.Contains(traits, t.Name) {
			names = append(names, t.Name)
			steps = append(steps, t.Steps...)
		}
	}
	return names, steps, nil
}

// checkUserStep is _validate_user_step for a deploy step u matching the
// driver's d, plus what metalbed cannot do: the deploy interface runs its
// own steps in their fixed order, so their priority cannot change.
func checkUserStep(u provisioner.DeployStep, d drivers.DeployStepInfo) []string {
	var errs []string
	var unexpected []string
	for k := range u.Args {
		if _, ok := d.ArgsInfo[k]; !ok {
			unexpected = append(unexpected, k)
		}
	}
	slices.Sort(unexpected)
	if len(unexpected) > 0 {
		errs = append(errs, fmt.Sprintf("deploy step %s has these unexpected arguments: %s",
			drivers.PyLiteral(stepDict(u)), strings.Join(unexpected, ", ")))
	}
	core := d.Interface == drivers.CoreDeployStep.Interface && d.Step == drivers.CoreDeployStep.Step
	if u.Priority > 0 {
		var missing []string
		for name, info := range d.ArgsInfo {
			if _, ok := u.Args[name]; info.Required && !ok {
				if info.Description != "" {
					name += " (" + info.Description + ")"
				}
				missing = append(missing, name)
			}
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			errs = append(errs, fmt.Sprintf("deploy step %s is missing these required arguments: %s",
				drivers.PyLiteral(stepDict(u)), strings.Join(missing, ", ")))
		}
		if core {
			errs = append(errs, fmt.Sprintf("deploy step %s on interface %s is a core step and cannot be overridden by user steps. "+
				"It may be disabled by setting the priority to 0", u.Step, u.Interface))
		}
	}
	if d.Interface == drivers.RoleDeploy && u.Priority != d.Priority && !(core && u.Priority > 0) {
		errs = append(errs, fmt.Sprintf("deploy step %s: metalbed's deploy interfaces run their own steps in their fixed order; "+
			"the priority of %s stays %d", drivers.PyLiteral(stepDict(u)), stepID(u.Interface, u.Step), d.Priority))
	}
	return errs
}

// validateUserSteps is _validate_user_steps for deploy steps: every user
// step must be one of the driver's, with the arguments it takes, and
// unique. The error is prefix and the errors joined by "; ", as Ironic's
// InvalidParameterValue.
func validateUserSteps(driver []drivers.DeployStepInfo, user []provisioner.DeployStep, prefix string) error {
	var errs []string
	count := map[string]int{}
	var ids []string
	for _, u := range user {
		i := slices.IndexFunc(driver, func(d drivers.DeployStepInfo) bool {
			return string(d.Interface) == u.Interface && d.Step == u.Step
		})
		if i < 0 {
			errs = append(errs, fmt.Sprintf("node does not support this deploy step: %s", drivers.PyLiteral(stepDict(u))))
			continue
		}
		errs = append(errs, checkUserStep(u, driver[i])...)
		id := stepID(u.Interface, u.Step)
		if count[id]++; count[id] == 2 {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		slices.Sort(ids)
		errs = append(errs, "deploy steps from all deploy templates matching this node's instance traits cannot have the same "+
			"interface and step. Duplicate deploy steps for "+strings.Join(ids, ", "))
	}
	if len(errs) > 0 {
		return errors.New(prefix + strings.Join(errs, "; "))
	}
	return nil
}

// planDeploySteps validates the deploy's steps as Ironic's do_node_deploy
// does (validate_instance_info_traits, then
// validate_user_deploy_steps_and_templates) and returns them all, in the
// order they run (allDeploySteps). An error is Ironic's message (400).
func (c *Conductor) planDeploySteps(ctx context.Context, h *drivers.HardwareType, n *provisioner.Node,
	requested []provisioner.DeployStep) ([]provisioner.DeployStep, error) {
	invalid := func(err error) error {
		return &Error{Kind: KindInvalid, Err: err, Msg: fmt.Sprintf(
			"Failed to validate deploy or power info for node %s: %s", n.UUID, err)}
	}
	traits, err := instanceTraits(n)
	if err != nil {
		return nil, invalid(err)
	}
	names, fromTemplates, err := c.templateSteps(ctx, traits)
	if err != nil {
		return nil, err
	}
	driver, _ := driverDeploySteps(h, n)
	if err := validateUserSteps(driver, fromTemplates, fmt.Sprintf("Validation of deploy steps from deploy templates matching this "+
		"node's instance traits failed. Matching deploy templates: %s. Errors: ", strings.Join(names, ","))); err != nil {
		return nil, invalid(err)
	}
	if err := validateUserSteps(driver, requested, `Validation of deploy steps from "deploy steps" argument failed.`); err != nil {
		return nil, invalid(err)
	}
	return allDeploySteps(driver, requested, fromTemplates), nil
}

// allDeploySteps is _get_all_deployment_steps: the requested steps, then
// the templates' steps not among them, override the driver's steps of the
// same interface and name; steps at priority 0 are dropped; the rest are
// sorted by priority, then interface (DEPLOYING_INTERFACE_PRIORITY),
// highest first, keeping their order otherwise.
func allDeploySteps(driver []drivers.DeployStepInfo, requested, fromTemplates []provisioner.DeployStep) []provisioner.DeployStep {
	same := func(iface, step string) func(provisioner.DeployStep) bool {
		return func(s provisioner.DeployStep) bool { return s.Interface == iface && s.Step == step }
	}
	user := slices.Clone(requested)
	for _, st := range fromTemplates {
		if !slices.ContainsFunc(requested, same(st.Interface, st.Step)) {
			user = append(user, st)
		}
	}
	var steps []provisioner.DeployStep
	for _, d := range driver {
		if d.Priority > 0 && !slices.ContainsFunc(user, same(string(d.Interface), d.Step)) {
			steps = append(steps, provisioner.DeployStep{Interface: string(d.Interface), Step: d.Step, Args: map[string]any{}, Priority: d.Priority})
		}
	}
	for _, u := range user {
		if u.Priority > 0 {
			steps = append(steps, u)
		}
	}
	slices.SortStableFunc(steps, func(a, b provisioner.DeployStep) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		return deployingInterfacePriority[b.Interface] - deployingInterfacePriority[a.Interface]
	})
	return steps
}

// recordDeploySteps keeps the deploy's steps in driver_internal_info.
func recordDeploySteps(n *provisioner.Node, steps []provisioner.DeployStep) {
	list := make([]any, len(steps))
	for i, st := range steps {
		list[i] = stepMap(st)
	}
	if n.DriverInternalInfo == nil {
		n.DriverInternalInfo = map[string]any{}
	}
	n.DriverInternalInfo[deployStepsKey] = list
}

// conductorSteps are the recorded steps the conductor runs itself (not the
// deploy interface's), split at deploy.deploy: those before it and those
// after it.
func conductorSteps(n *provisioner.Node) (before, after []provisioner.DeployStep) {
	list, _ := n.DriverInternalInfo[deployStepsKey].([]any)
	seenCore := false
	for _, v := range list {
		st, ok := stepFromMap(v)
		switch {
		case !ok:
		case st.Interface == string(drivers.RoleDeploy):
			seenCore = seenCore || st.Step == drivers.CoreDeployStep.Step
		case seenCore:
			after = append(after, st)
		default:
			before = append(before, st)
		}
	}
	return before, after
}

// clearDeploySteps forgets the deploy's steps and the current one, as
// Ironic does when a deploy ends or fails.
func clearDeploySteps(n *provisioner.Node) {
	n.DeployStep = nil
	delete(n.DriverInternalInfo, deployStepsKey)
}

// showDeployStep makes st the node's deploy_step and saves the node.
func (c *Conductor) showDeployStep(ctx context.Context, n *provisioner.Node, st provisioner.DeployStep) error {
	n.DeployStep = stepMap(st)
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		return fmt.Errorf("save node %s: %w", n.UUID, err)
	}
	return nil
}

// runDeploySteps runs steps one at a time through their interfaces, each
// shown in deploy_step and recorded in the timeline. A step that fails
// fails the deploy with Ironic's last_error; false when it did (or ctx
// ended).
func (c *Conductor) runDeploySteps(ctx context.Context, n *provisioner.Node, steps []provisioner.DeployStep) bool {
	if len(steps) == 0 {
		return true
	}
	h, err := c.hardware(n)
	if err != nil {
		c.failNode(ctx, n, err.Error())
		return false
	}
	t, err := c.newTask(ctx, h, n)
	if err != nil {
		c.failNode(ctx, n, cause(err, n, drivers.RoleDeploy))
		return false
	}
	_, runners := driverDeploySteps(h, n)
	for _, st := range steps {
		id := stepID(st.Interface, st.Step)
		if err := c.showDeployStep(ctx, n, st); err != nil {
			c.log.Error("deploy step", "node", n.UUID, "event", id, "err", err)
			return false
		}
		c.record(n, events.ConductorDeployStep, stepLabel(st))
		c.log.Info("deploy step", "node", n.UUID, "event", id)
		r, ok := runners[st.Interface]
		if !ok {
			err = &drivers.DeployError{Msg: fmt.Sprintf("node %s's %s interface %q runs no deploy steps", n.UUID, st.Interface,
				drivers.InterfaceName(n.Interfaces, drivers.Role(st.Interface))), Err: drivers.ErrUnsupported}
		} else {
			err = r.RunDeployStep(ctx, t, st.Step, st.Args)
		}
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			c.fail(ctx, n, stepError(id, err), nil)
			return false
		}
		c.record(n, events.ConductorDeployStepDone, id)
	}
	return true
}

// stepError is the failure of step id as last_error shows it: "Deploy
// step ID failed: MSG." (do_next_deploy_step), or the step's own message
// when it is the whole of it (drivers.ErrStepFailed).
func stepError(id string, err error) error {
	var de *drivers.DeployError
	if errors.As(err, &de) && errors.Is(err, drivers.ErrStepFailed) {
		return err
	}
	msg := err.Error()
	if de != nil {
		msg = de.Msg
	}
	return &drivers.DeployError{Msg: fmt.Sprintf("Deploy step %s failed: %s.", id, msg), Err: err}
}
