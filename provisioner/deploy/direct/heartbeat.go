package direct

import (
	"context"
	"fmt"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// writeImageStep is the deploy step Ironic 21.4 runs through the agent.
var writeImageStep = map[string]any{"interface": "deploy", "step": "write_image", "priority": 80, "argsinfo": nil}

// Heartbeat is Ironic's HeartbeatMixin.heartbeat for a deploy: start the
// write, poll it, or finish the deploy when it is done.
func (d *Deploy) Heartbeat(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error) {
	if node.DriverInternalInfo == nil {
		node.DriverInternalInfo = map[string]any{}
	}
	if node.ProvisionState == provisioner.StateCleaning {
		return d.cleanHeartbeat(ctx, node)
	}
	if started, _ := node.DriverInternalInfo["deployment_started"].(bool); !started {
		return d.startWrite(ctx, node)
	}
	cmd, err := d.lastCommand(ctx, node)
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed checking if deploy is done. Error: %s", err))
	}
	switch cmd.CommandStatus {
	case "RUNNING":
		return provisioner.StateWaitCallback, nil
	case "FAILED":
		d.unpublish(node)
		return "", d.failed(ctx, node, fmt.Sprintf("Agent returned error for deploy step %s on node %s : %s.",
			pyDict(writeImageStep), node.UUID, cmd.errorText()))
	case "SUCCEEDED":
		d.milestone(node, "image written", fmt.Sprintf("%s succeeded (agent)", cmd.CommandName))
		return d.finish(ctx, node)
	}
	return "", d.failed(ctx, node, fmt.Sprintf("Agent returned an unknown command status %q.", cmd.CommandStatus))
}

// pyDict renders the step as Python prints it in Ironic's message.
func pyDict(step map[string]any) string {
	return fmt.Sprintf("{'interface': '%s', 'step': '%s', 'priority': %d, 'argsinfo': None}",
		step["interface"], step["step"], step["priority"])
}

// startWrite is continue_deploy: deploy.get_deploy_steps, then
// deploy.execute_deploy_step write_image, not waiting.
func (d *Deploy) startWrite(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error) {
	// Ironic 21.4 asks the agent for its deploy steps first (wait=true).
	if steps, err := d.sendCommand(ctx, node, "deploy.get_deploy_steps",
		map[string]any{"node": nodeView(node), "ports": []any{}}, true); isBusy(err) {
		return d.busy(node, "deploy.get_deploy_steps", err)
	} else if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Deploy failed for instance %s. Error: %s", instanceName(node), err))
	} else if steps.CommandStatus == "FAILED" {
		return "", d.failed(ctx, node, fmt.Sprintf("Deploy failed for instance %s. Error: %s", instanceName(node), steps.errorText()))
	}
	info, err := d.imageInfo(node)
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Deploy failed for instance %s. Error: %s", instanceName(node), err))
	}
	step := map[string]any{"interface": "deploy", "step": "write_image",
		"args": map[string]any{"image_info": info, "configdrive": nilIfEmpty(str(node.InstanceInfo, "configdrive"))}}
	cmd, err := d.sendCommand(ctx, node, "deploy.execute_deploy_step",
		map[string]any{"step": step, "node": nodeView(node), "ports": []any{},
			"deploy_version": map[string]any{"generic_hardware_manager": "1.2"}}, false)
	if isBusy(err) {
		return d.busy(node, "deploy.execute_deploy_step", err)
	}
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Deploy failed for instance %s. Error: %s", instanceName(node), err))
	}
	node.DriverInternalInfo["deployment_started"] = true
	d.milestone(node, "write_image", fmt.Sprintf("agent %s: %s %v", str(node.DriverInternalInfo, "agent_url"), cmd.CommandStatus, info["urls"]))
	if cmd.CommandStatus == "FAILED" {
		d.unpublish(node)
		return "", d.failed(ctx, node, fmt.Sprintf("Agent returned error for deploy step %s on node %s : %s.",
			pyDict(writeImageStep), node.UUID, cmd.errorText()))
	}
	return provisioner.StateWaitCallback, nil
}

// busy is Ironic's answer to AgentInProgress in a deploy step: the node
// goes back to wait call-back and the step is tried again on the agent's
// next heartbeat.
func (d *Deploy) busy(node *provisioner.Node, command string, err error) (provisioner.ProvisionState, error) {
	d.log.Info("agent busy, retrying on its next heartbeat", "node", node.UUID, "event", command, "err", err)
	d.milestone(node, "agent busy", command+": will retry on the next heartbeat")
	return provisioner.StateWaitCallback, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nodeView is the node as Ironic sends it in a step's params (the fields
// the agent reads).
func nodeView(node *provisioner.Node) map[string]any {
	return map[string]any{
		"uuid": node.UUID, "name": node.Name, "driver": node.Driver,
		"properties": node.Properties, "instance_info": node.InstanceInfo,
		"driver_internal_info": map[string]any{"is_whole_disk_image": node.DriverInternalInfo["is_whole_disk_image"]},
	}
}

func instanceName(node *provisioner.Node) string {
	if node.InstanceUUID == "" {
		return "None"
	}
	return node.InstanceUUID
}

// finish records the partition UUIDs, installs the bootloader for a
// locally booted partition image, and reboots into the instance.
func (d *Deploy) finish(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error) {
	d.unpublish(node)
	whole, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool)
	cmd, err := d.sendCommand(ctx, node, "standby.get_partition_uuids", nil, true)
	if isBusy(err) {
		return d.busy(node, "standby.get_partition_uuids", err)
	}
	if err == nil && cmd.CommandStatus != "SUCCEEDED" {
		err = fmt.Errorf("%s", cmd.errorText())
	}
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to get partition UUIDs of node %s. Error: %s", node.UUID, err))
	}
	root, _ := cmd.CommandResult["root uuid"].(string)
	esp, _ := cmd.CommandResult["efi system partition uuid"].(string)
	if root != "" {
		node.DriverInternalInfo["root_uuid_or_disk_id"] = root
	}
	if esp != "" {
		node.DriverInternalInfo["efi_system_partition_uuid"] = esp
	}
	local := d.bootOption(node) == disk.BootOptionLocal
	if !whole && local {
		if root == "" {
			return "", d.failed(ctx, node, fmt.Sprintf("Couldn't determine the UUID of the root partition when deploying node %s", node.UUID))
		}
		// Ironic 21.4 sends it asynchronously (wait=false) and polls the
		// agent's command list (agent_client._command with poll=True).
		cmd, err := d.sendCommand(ctx, node, "image.install_bootloader", map[string]any{
			"root_uuid": root, "efi_system_part_uuid": nilIfEmpty(esp), "prep_boot_part_uuid": nil,
			"target_boot_mode": d.bootMode(node)}, false)
		if isBusy(err) {
			return d.busy(node, "image.install_bootloader", err)
		}
		if err == nil {
			cmd, err = d.waitForCommand(ctx, node, "image.install_bootloader")
		}
		if err == nil && cmd.CommandStatus != "SUCCEEDED" {
			err = fmt.Errorf("%s", cmd.errorText())
		}
		if err != nil {
			return "", d.failed(ctx, node, fmt.Sprintf("Failed to install a bootloader when deploying node %s. Error: %s", node.UUID, err))
		}
		d.milestone(node, "bootloader", "installed by the agent, root "+root)
	}
	power, boot, err := d.interfaces(node)
	if err != nil {
		return "", d.failed(ctx, node, err.Error())
	}
	if err := d.powerOffThroughAgent(ctx, node, power); err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Error rebooting node %s after deploy. Error: %s", node.UUID, err))
	}
	if whole || local {
		mgmt, err := d.management(node)
		if err == nil {
			err = mgmt.SetBootDevice(ctx, node, drivers.BootDevice{Device: "disk", Persistent: true})
		}
		if err == nil {
			_, b, _ := d.interfaces(node)
			err = b.CleanUpRamdisk(ctx, node)
		}
		if err != nil {
			return "", d.failed(ctx, node, fmt.Sprintf("Error rebooting node %s after deploy. Error: %s", node.UUID, err))
		}
	} else if err := boot.PrepareInstance(ctx, node); err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Error rebooting node %s after deploy. Error: %s", node.UUID, err))
	}
	if err := power.SetPowerState(ctx, node, provisioner.PowerOn); err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Error rebooting node %s after deploy. Error: %s", node.UUID, err))
	}
	node.PowerState = provisioner.PowerOn
	d.forgetAgent(node)
	d.milestone(node, "reboot", "into the instance")
	return provisioner.StateActive, nil
}

// powerOffThroughAgent is reboot_and_finish_deploy's power off: the
// agent's standby.power_off, then the BMC polled until it says off, else
// a hard power off.
func (d *Deploy) powerOffThroughAgent(ctx context.Context, node *provisioner.Node, power drivers.PowerInterface) error {
	if _, err := d.sendCommand(ctx, node, "standby.power_off", nil, false); err != nil {
		d.log.Warn("soft power off through the agent failed", "node", node.UUID, "err", err)
	} else {
		for i := 0; i < d.cfg.PowerOffRetries; i++ {
			st, err := power.GetPowerState(ctx, node)
			if err == nil && st == provisioner.PowerOff {
				node.PowerState = provisioner.PowerOff
				d.milestone(node, "power off", "soft, through the agent")
				return nil
			}
			t := time.NewTimer(d.cfg.PowerOffInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	if err := power.SetPowerState(ctx, node, provisioner.PowerOff); err != nil {
		return err
	}
	node.PowerState = provisioner.PowerOff
	d.milestone(node, "power off", "hard, the agent did not power the node off")
	return nil
}

// failed powers the node off (Ironic's deploy_failed) and returns msg as
// the error that fails it.
func (d *Deploy) failed(ctx context.Context, node *provisioner.Node, msg string) error {
	power, _, err := d.interfaces(node)
	if err == nil {
		err = power.SetPowerState(ctx, node, provisioner.PowerOff)
	}
	if err != nil {
		msg += fmt.Sprintf(" Also failed to power off node %s. Error: %s", node.UUID, err)
	} else {
		node.PowerState = provisioner.PowerOff
	}
	d.log.Error("deploy failed", "node", node.UUID, "err", msg)
	return fmt.Errorf("%s", msg)
}
