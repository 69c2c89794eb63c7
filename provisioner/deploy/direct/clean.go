package direct

import (
	"context"
	"github.com/metalbed/metalbed/internal/events"

	"github.com/metalbed/metalbed/provisioner/drivers"
)

var _ drivers.Cleaner = (*Deploy)(nil)

// eraseMetadataStep is the clean step automated cleaning runs through the
// agent (IPA's erase_devices_metadata, priority 99 in Ironic 21.4).
var eraseMetadataStep = map[string]any{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "argsinfo": nil}

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
// the clean step.
func (d *Deploy) Clean(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	return d.core.BootRamdisk(ctx, t, "booting the agent ramdisk for cleaning")
}

// cleanHeartbeat runs erase_devices_metadata on the first heartbeat and
// finishes cleaning when the agent reports it done: power off, ramdisk
// boot configuration removed, available.
func (d *Deploy) cleanHeartbeat(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	node := t.Node
	if started, _ := node.DriverInternalInfo["cleaning_started"].(bool); !started {
		step := map[string]any{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "reboot_requested": false, "abortable": true}
		cmd, err := d.sendCommand(ctx, node, "clean.execute_clean_step",
			map[string]any{"step": step, "node": nodeView(node), "ports": []any{},
				"clean_version": map[string]any{"generic_hardware_manager": "1.2"}}, false)
		if err != nil {
			return d.fail(ctx, t, err, "Failed to clean node %s. Error: %s", node.UUID, err)
		}
		node.DriverInternalInfo["cleaning_started"] = true
		if cmd.CommandStatus == "FAILED" {
			return d.stepFailed(ctx, t, "clean", eraseMetadataStep, cmd)
		}
		return drivers.StepWait, nil
	}
	cmd, err := d.lastCommand(ctx, node)
	if err != nil {
		return d.fail(ctx, t, err, "Failed to clean node %s. Error: %s", node.UUID, err)
	}
	switch cmd.CommandStatus {
	case "RUNNING":
		return drivers.StepWait, nil
	case "SUCCEEDED":
	default:
		return d.stepFailed(ctx, t, "clean", eraseMetadataStep, cmd)
	}
	d.core.Milestone(node, events.ConductorDiskWiped, "erase_devices_metadata by the agent")
	step, err := d.core.FinishCleaning(ctx, t)
	if err == nil {
		d.forgetAgent(node)
	}
	return step, err
}
