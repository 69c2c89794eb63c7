package direct

import (
	"context"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

var _ drivers.ManualCleaner = (*Deploy)(nil)

// eraseMetadataStep is the clean step automated cleaning runs through the
// agent (IPA's erase_devices_metadata, priority 99 in Ironic 21.4).
var eraseMetadataStep = map[string]any{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "argsinfo": nil}

// CleanSteps are the agent's clean steps (IPA's generic hardware
// manager) a manual cleaning may name.
func (d *Deploy) CleanSteps() []string { return []string{"erase_devices_metadata", "erase_devices"} }

// PrepareCleaning makes the node boot the agent ramdisk for cleaning.
func (d *Deploy) PrepareCleaning(ctx context.Context, t *drivers.Task) error {
	d.forgetAgent(t.Node)
	if err := t.Boot.PrepareRamdisk(ctx, t, d.ramdiskParams(t.Node)); err != nil {
		return err
	}
	d.core.Milestone(t.Node, events.ConductorPrepare, "agent ramdisk configured for cleaning")
	return nil
}

// Clean powers the node on into the agent ramdisk; its heartbeats drive
// the clean steps.
func (d *Deploy) Clean(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	return d.core.BootRamdisk(ctx, t, "booting the agent ramdisk for cleaning")
}

// cleanSteps are the steps this cleaning runs: a manual cleaning's
// (driver_internal_info clean_steps), else erase_devices_metadata.
func cleanSteps(node *provisioner.Node) []map[string]any {
	manual, _ := node.DriverInternalInfo[drivers.ManualCleanStepsKey].([]any)
	if len(manual) == 0 {
		return []map[string]any{eraseMetadataStep}
	}
	steps := make([]map[string]any, 0, len(manual))
	for _, m := range manual {
		st, _ := m.(map[string]any)
		steps = append(steps, map[string]any{"interface": st["interface"], "step": st["step"], "priority": 0,
			"args": st["args"], "argsinfo": nil})
	}
	return steps
}

// cleanHeartbeat runs the cleaning's steps through the agent, one per
// heartbeat once the previous one succeeded (clean_step_index in
// driver_internal_info), and finishes cleaning when the last is done:
// power off, ramdisk boot configuration removed.
func (d *Deploy) cleanHeartbeat(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	node := t.Node
	steps := cleanSteps(node)
	idx := 0
	if started, _ := node.DriverInternalInfo["cleaning_started"].(bool); started {
		cmd, err := d.lastCommand(ctx, node)
		if err != nil {
			return d.fail(ctx, t, err, "Failed to clean node %s. Error: %s", node.UUID, err)
		}
		idx = stepIndex(node)
		switch cmd.CommandStatus {
		case "RUNNING":
			return drivers.StepWait, nil
		case "SUCCEEDED":
		default:
			return d.stepFailed(ctx, t, "clean", steps[min(idx, len(steps)-1)], cmd)
		}
		d.core.Milestone(node, events.ConductorDiskWiped, steps[min(idx, len(steps)-1)]["step"].(string)+" by the agent")
		idx++
	}
	if idx < len(steps) {
		return d.startCleanStep(ctx, t, steps[idx], idx)
	}
	delete(node.DriverInternalInfo, "clean_step_index")
	step, err := d.core.FinishCleaning(ctx, t)
	if err == nil {
		d.forgetAgent(node)
	}
	return step, err
}

// startCleanStep sends clean.execute_clean_step for step idx.
func (d *Deploy) startCleanStep(ctx context.Context, t *drivers.Task, step map[string]any, idx int) (drivers.Step, error) {
	node := t.Node
	wire := map[string]any{"interface": step["interface"], "step": step["step"], "priority": step["priority"],
		"reboot_requested": false, "abortable": true}
	if a, ok := step["args"].(map[string]any); ok {
		wire["args"] = a
	}
	cmd, err := d.sendCommand(ctx, node, "clean.execute_clean_step",
		map[string]any{"step": wire, "node": nodeView(node), "ports": []any{},
			"clean_version": map[string]any{"generic_hardware_manager": "1.2"}}, false)
	if err != nil {
		return d.fail(ctx, t, err, "Failed to clean node %s. Error: %s", node.UUID, err)
	}
	node.DriverInternalInfo["cleaning_started"] = true
	node.DriverInternalInfo["clean_step_index"] = idx
	if cmd.CommandStatus == "FAILED" {
		return d.stepFailed(ctx, t, "clean", step, cmd)
	}
	return drivers.StepWait, nil
}

// stepIndex reads clean_step_index (a float64 once the node went through
// the store's JSON).
func stepIndex(node *provisioner.Node) int {
	switch v := node.DriverInternalInfo["clean_step_index"].(type) {
	case int:
		return v
	case float64:
		return int(v)
	}
	return 0
}
