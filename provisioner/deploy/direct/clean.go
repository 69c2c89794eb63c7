package direct

import (
	"context"
	"fmt"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

var _ drivers.Cleaner = (*Deploy)(nil)

// eraseMetadataStep is the clean step automated cleaning runs through the
// agent (IPA's erase_devices_metadata, priority 99 in Ironic 21.4).
var eraseMetadataStep = map[string]any{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "argsinfo": nil}

// PrepareCleaning makes the node boot the agent ramdisk for cleaning.
func (d *Deploy) PrepareCleaning(ctx context.Context, node *provisioner.Node) error {
	_, boot, err := d.interfaces(node)
	if err != nil {
		return err
	}
	d.forgetAgent(node)
	if err := boot.PrepareRamdisk(ctx, node, d.ramdiskParams(node)); err != nil {
		return err
	}
	d.milestone(node, "prepare", "agent ramdisk configured for cleaning")
	return nil
}

// Clean powers the node on into the agent ramdisk; its heartbeats drive
// the clean step.
func (d *Deploy) Clean(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error) {
	if err := d.powerOnOrReboot(ctx, node); err != nil {
		return "", err
	}
	d.milestone(node, "power on", "booting the agent ramdisk for cleaning")
	return provisioner.StateCleanWait, nil
}

// cleanHeartbeat runs erase_devices_metadata on the first heartbeat and
// finishes cleaning when the agent reports it done: power off, ramdisk
// boot configuration removed, available.
func (d *Deploy) cleanHeartbeat(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error) {
	if started, _ := node.DriverInternalInfo["cleaning_started"].(bool); !started {
		step := map[string]any{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "reboot_requested": false, "abortable": true}
		cmd, err := d.sendCommand(ctx, node, "clean.execute_clean_step",
			map[string]any{"step": step, "node": nodeView(node), "ports": []any{},
				"clean_version": map[string]any{"generic_hardware_manager": "1.2"}}, false)
		if err != nil {
			return "", d.failed(ctx, node, fmt.Sprintf("Failed to clean node %s. Error: %s", node.UUID, err))
		}
		node.DriverInternalInfo["cleaning_started"] = true
		if cmd.CommandStatus == "FAILED" {
			return "", d.failed(ctx, node, fmt.Sprintf("Agent returned error for clean step %s on node %s : %s.",
				pyDict(eraseMetadataStep), node.UUID, cmd.errorText()))
		}
		return provisioner.StateCleanWait, nil
	}
	cmd, err := d.lastCommand(ctx, node)
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to clean node %s. Error: %s", node.UUID, err))
	}
	switch cmd.CommandStatus {
	case "RUNNING":
		return provisioner.StateCleanWait, nil
	case "SUCCEEDED":
	default:
		return "", d.failed(ctx, node, fmt.Sprintf("Agent returned error for clean step %s on node %s : %s.",
			pyDict(eraseMetadataStep), node.UUID, cmd.errorText()))
	}
	d.milestone(node, "disk wiped", "erase_devices_metadata by the agent")
	power, boot, err := d.interfaces(node)
	if err == nil {
		err = power.SetPowerState(ctx, node, provisioner.PowerOff)
	}
	if err == nil {
		node.PowerState = provisioner.PowerOff
		err = boot.CleanUpRamdisk(ctx, node)
	}
	if err != nil {
		return "", fmt.Errorf("Failed to tear down cleaning on node %s. Error: %s", node.UUID, err)
	}
	d.forgetAgent(node)
	return provisioner.StateAvailable, nil
}
