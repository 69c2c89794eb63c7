package direct

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// writeImageStep is the deploy step Ironic 21.4 runs through the agent.
var writeImageStep = map[string]any{"interface": "deploy", "step": "write_image", "priority": 80, "argsinfo": nil}

// Heartbeat is Ironic's HeartbeatMixin.heartbeat for a deploy: start the
// write, poll it, or finish the deploy when it is done.
func (d *Deploy) Heartbeat(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	node := t.Node
	if node.DriverInternalInfo == nil {
		node.DriverInternalInfo = map[string]any{}
	}
	if node.ProvisionState == provisioner.StateCleaning {
		return d.cleanHeartbeat(ctx, t)
	}
	if started, _ := node.DriverInternalInfo["deployment_started"].(bool); !started {
		return d.startWrite(ctx, t)
	}
	cmd, err := d.lastCommand(ctx, node)
	if err != nil {
		return d.fail(ctx, t, err, "Failed checking if deploy is done. Error: %s", err)
	}
	switch cmd.CommandStatus {
	case "RUNNING":
		return drivers.StepWait, nil
	case "FAILED":
		return d.stepFailed(ctx, t, "deploy", writeImageStep, cmd)
	case "SUCCEEDED":
		d.core.Milestone(node, events.ConductorImageWritten, fmt.Sprintf("%s succeeded (agent)", cmd.CommandName))
		return d.finish(ctx, t)
	}
	return d.fail(ctx, t, nil, "Agent returned an unknown command status %q.", cmd.CommandStatus)
}

// fail is the deploy core's Fail with Ironic's message made of format and
// args.
func (d *Deploy) fail(ctx context.Context, t *drivers.Task, cause error, format string, args ...any) (drivers.Step, error) {
	return 0, d.core.Fail(ctx, t, cause, fmt.Sprintf(format, args...))
}

// stepFailed fails the node with Ironic's "Agent returned error for
// <kind> step" message; a failed deploy step also drops the published
// image.
func (d *Deploy) stepFailed(ctx context.Context, t *drivers.Task, kind string, step map[string]any, cmd command) (drivers.Step, error) {
	if kind == "deploy" {
		d.unpublish(t.Node)
	}
	return d.fail(ctx, t, errors.New(cmd.errorText()), "Agent returned error for %s step %s on node %s : %s.",
		kind, pyDict(step), t.Node.UUID, cmd.errorText())
}

// pyDict renders the step as Python prints it in Ironic's message.
func pyDict(step map[string]any) string {
	return fmt.Sprintf("{'interface': '%s', 'step': '%s', 'priority': %d, 'argsinfo': None}",
		step["interface"], step["step"], step["priority"])
}

// startWrite is continue_deploy: deploy.get_deploy_steps, then
// deploy.execute_deploy_step write_image, not waiting.
func (d *Deploy) startWrite(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	node := t.Node
	deployFailed := func(err error) (drivers.Step, error) {
		return d.fail(ctx, t, err, "Deploy failed for instance %s. Error: %s", deploy.InstanceName(node), err)
	}
	// Ironic 21.4 asks the agent for its deploy steps first (wait=true).
	if steps, err := d.sendCommand(ctx, node, "deploy.get_deploy_steps",
		map[string]any{"node": nodeView(node), "ports": []any{}}, true); isBusy(err) {
		return d.busy(node, "deploy.get_deploy_steps", err)
	} else if err != nil {
		return deployFailed(err)
	} else if steps.CommandStatus == "FAILED" {
		return deployFailed(errors.New(steps.errorText()))
	}
	info, err := d.imageInfo(node)
	if err != nil {
		return deployFailed(err)
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
		return deployFailed(err)
	}
	node.DriverInternalInfo["deployment_started"] = true
	d.core.Milestone(node, events.ConductorWriteImage, fmt.Sprintf("agent %s: %s %v", str(node.DriverInternalInfo, "agent_url"), cmd.CommandStatus, info["urls"]))
	if cmd.CommandStatus == "FAILED" {
		return d.stepFailed(ctx, t, "deploy", writeImageStep, cmd)
	}
	return drivers.StepWait, nil
}

// busy is Ironic's answer to AgentInProgress in a deploy step: the node
// goes back to wait call-back and the step is tried again on the agent's
// next heartbeat.
func (d *Deploy) busy(node *provisioner.Node, command string, err error) (drivers.Step, error) {
	d.log.Info("agent busy, retrying on its next heartbeat", "node", node.UUID, "event", command, "err", err)
	d.core.Milestone(node, events.ConductorAgentBusy, command+": will retry on the next heartbeat")
	return drivers.StepWait, nil
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

// finish records the partition UUIDs, installs the bootloader for a
// locally booted partition image, and reboots into the instance.
func (d *Deploy) finish(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	node := t.Node
	d.unpublish(node)
	whole, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool)
	cmd, err := d.sendCommand(ctx, node, "standby.get_partition_uuids", nil, true)
	if isBusy(err) {
		return d.busy(node, "standby.get_partition_uuids", err)
	}
	if err == nil && cmd.CommandStatus != "SUCCEEDED" {
		err = errors.New(cmd.errorText())
	}
	if err != nil {
		return d.fail(ctx, t, err, "Failed to get partition UUIDs of node %s. Error: %s", node.UUID, err)
	}
	root, _ := cmd.CommandResult["root uuid"].(string)
	esp, _ := cmd.CommandResult["efi system partition uuid"].(string)
	if root != "" {
		node.DriverInternalInfo["root_uuid_or_disk_id"] = root
	}
	if esp != "" {
		node.DriverInternalInfo["efi_system_partition_uuid"] = esp
	}
	local := d.core.BootOption(node) == disk.BootOptionLocal
	if !whole && local {
		if root == "" {
			return d.fail(ctx, t, nil, "Couldn't determine the UUID of the root partition when deploying node %s", node.UUID)
		}
		// Ironic 21.4 sends it asynchronously (wait=false) and polls the
		// agent's command list (agent_client._command with poll=True).
		cmd, err := d.sendCommand(ctx, node, "image.install_bootloader", map[string]any{
			"root_uuid": root, "efi_system_part_uuid": nilIfEmpty(esp), "prep_boot_part_uuid": nil,
			"target_boot_mode": d.core.BootMode(node)}, false)
		if isBusy(err) {
			return d.busy(node, "image.install_bootloader", err)
		}
		if err == nil {
			cmd, err = d.waitForCommand(ctx, node, "image.install_bootloader")
		}
		if err == nil && cmd.CommandStatus != "SUCCEEDED" {
			err = errors.New(cmd.errorText())
		}
		if err != nil {
			return d.fail(ctx, t, err, "Failed to install a bootloader when deploying node %s. Error: %s", node.UUID, err)
		}
		d.core.Milestone(node, events.ConductorBootloader, "installed by the agent, root "+root)
	}
	if err := d.rebootToInstance(ctx, t, whole || local); err != nil {
		return d.fail(ctx, t, err, "Error rebooting node %s after deploy. Error: %s", node.UUID, err)
	}
	d.forgetAgent(node)
	d.core.Milestone(node, events.ConductorReboot, "into the instance")
	return drivers.StepDone, nil
}

// rebootToInstance is reboot_and_finish_deploy: power off through the
// agent, boot from disk (fromDisk) or the instance's PXE config, power on.
func (d *Deploy) rebootToInstance(ctx context.Context, t *drivers.Task, fromDisk bool) error {
	if err := d.powerOffThroughAgent(ctx, t); err != nil {
		return err
	}
	if fromDisk {
		if err := t.Management.SetBootDevice(ctx, t.Node, drivers.BootDevice{Device: "disk", Persistent: true}); err != nil {
			return err
		}
		if err := t.Boot.CleanUpRamdisk(ctx, t); err != nil {
			return err
		}
	} else if err := t.Boot.PrepareInstance(ctx, t); err != nil {
		return err
	}
	if err := t.Power.SetPowerState(ctx, t.Node, provisioner.PowerOn); err != nil {
		return err
	}
	t.Node.PowerState = provisioner.PowerOn
	return nil
}

// powerOffThroughAgent is reboot_and_finish_deploy's power off: the
// agent's standby.power_off, then the BMC polled until it says off, else
// a hard power off.
func (d *Deploy) powerOffThroughAgent(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	if _, err := d.sendCommand(ctx, node, "standby.power_off", nil, false); err != nil {
		d.log.Warn("soft power off through the agent failed", "node", node.UUID, "err", err)
	} else {
		for i := 0; i < d.cfg.PowerOffRetries; i++ {
			st, err := t.Power.GetPowerState(ctx, node)
			if err == nil && st == provisioner.PowerOff {
				node.PowerState = provisioner.PowerOff
				d.core.Milestone(node, events.ConductorPowerOff, "soft, through the agent")
				return nil
			}
			if err := deploy.Sleep(ctx, d.cfg.PowerOffInterval); err != nil {
				return err
			}
		}
	}
	if err := t.Power.SetPowerState(ctx, node, provisioner.PowerOff); err != nil {
		return err
	}
	node.PowerState = provisioner.PowerOff
	d.core.Milestone(node, events.ConductorPowerOff, "hard, the agent did not power the node off")
	return nil
}
