package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"math/rand/v2"
	"strings"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// The agent's one hardware manager, as IPA's GenericHardwareManager.
const (
	hwManagerClass   = "GenericHardwareManager"
	hwManagerName    = "generic_hardware_manager"
	hwManagerVersion = "1.2"
)

func hwVersions() map[string]any { return map[string]any{hwManagerName: hwManagerVersion} }

func deploySteps() []map[string]any {
	return []map[string]any{
		{"step": "erase_devices_metadata", "priority": 0, "interface": "deploy", "reboot_requested": false, "argsinfo": nil},
		{"step": "write_image", "priority": 0, "interface": "deploy", "reboot_requested": false, "argsinfo": nil},
	}
}

func cleanSteps() []map[string]any {
	return []map[string]any{
		{"step": "erase_devices", "priority": 10, "interface": "deploy", "reboot_requested": false, "abortable": true},
		{"step": "erase_devices_metadata", "priority": 99, "interface": "deploy", "reboot_requested": false, "abortable": true},
	}
}

// extensions is the command table, built once before serving.
func (a *Agent) extensions() map[string]map[string]commandSpec {
	return map[string]map[string]commandSpec{
		"standby": {
			"prepare_image": {async: true, params: []string{"image_info", "configdrive"}, nrequired: 1,
				validate: func(p params) error { _, err := decodeImageInfo(p); return err },
				run:      func(ctx context.Context, _ *command, p params) (any, error) { return a.prepareImage(ctx, p) }},
			"get_partition_uuids": {run: func(context.Context, *command, params) (any, error) { return a.getPartitionUUIDs(), nil }},
			"sync":                {run: func(ctx context.Context, _ *command, _ params) (any, error) { return nil, a.syncDisks(ctx) }},
			"power_off": {async: true, run: func(ctx context.Context, c *command, _ params) (any, error) {
				return a.shutdown(ctx, c, true)
			}},
			"run_image": {async: true, run: func(ctx context.Context, c *command, _ params) (any, error) {
				return a.shutdown(ctx, c, false)
			}},
		},
		"image": {
			"install_bootloader": {async: true, nrequired: 1,
				params: []string{"root_uuid", "efi_system_part_uuid", "prep_boot_part_uuid", "target_boot_mode", "ignore_bootloader_failure"},
				run:    func(ctx context.Context, _ *command, p params) (any, error) { return nil, a.installBootloader(ctx, p) }},
		},
		"deploy": {
			"get_deploy_steps": a.getSteps("deploy_steps", deploySteps),
			"execute_deploy_step": {async: true, params: []string{"step", "node", "ports", "deploy_version"}, nrequired: 3, extra: true,
				run: func(ctx context.Context, _ *command, p params) (any, error) { return a.executeStep(ctx, p, "deploy") }},
		},
		"clean": {
			"get_clean_steps": a.getSteps("clean_steps", cleanSteps),
			"execute_clean_step": {async: true, params: []string{"step", "node", "ports", "clean_version"}, nrequired: 3, extra: true,
				run: func(ctx context.Context, _ *command, p params) (any, error) { return a.executeStep(ctx, p, "clean") }},
		},
		"log": {
			"collect_system_logs": {run: func(context.Context, *command, params) (any, error) { return a.systemLogs() }},
		},
	}
}

// getSteps is get_deploy_steps or get_clean_steps: it caches the node and
// answers steps() under key.
func (a *Agent) getSteps(key string, steps func() []map[string]any) commandSpec {
	return commandSpec{params: []string{"node", "ports"}, nrequired: 2,
		run: func(_ context.Context, _ *command, p params) (any, error) {
			if err := a.cacheNode(p); err != nil {
				return nil, err
			}
			return map[string]any{key: map[string]any{hwManagerClass: steps()}, "hardware_manager_version": hwVersions()}, nil
		}}
}

// cacheNode is IPA's hardware.cache_node: the node the conductor sent
// replaces the one from the lookup (root device hints, boot mode).
func (a *Agent) cacheNode(p params) error {
	var node map[string]any
	if err := p.decode("node", &node); err != nil {
		return err
	}
	if node == nil {
		return nil
	}
	a.mu.Lock()
	a.node = node
	a.mu.Unlock()
	return nil
}

// executeStep is deploy.execute_deploy_step / clean.execute_clean_step.
func (a *Agent) executeStep(ctx context.Context, p params, kind string) (any, error) {
	if err := a.cacheNode(p); err != nil {
		return nil, err
	}
	var provided map[string]any
	if err := p.decode(kind+"_version", &provided); err != nil {
		return nil, err
	}
	if provided != nil && !jsonEqual(provided, hwVersions()) {
		cur, _ := json.Marshal(hwVersions())
		got, _ := json.Marshal(provided)
		return nil, &restError{Type: "VersionMismatch", Code: 409, status: statusVersionMismatch,
			Message: "Hardware managers version mismatch, reload agent with correct version",
			Details: fmt.Sprintf("Current versions: %s, versions used by ironic: %s", cur, got)}
	}
	var step map[string]any
	if err := p.decode("step", &step); err != nil {
		return nil, err
	}
	name, ok := step["step"].(string)
	if !ok {
		b, _ := json.Marshal(step)
		return nil, errExecution(fmt.Sprintf("Malformed %s_step, no \"step\" key: %s", kind, b))
	}
	args := params{}
	for k, v := range p {
		switch k {
		case "step", "node", "ports", kind + "_version":
		default:
			args[k] = v
		}
	}
	if sa, ok := step["args"].(map[string]any); ok {
		for k, v := range sa {
			b, _ := json.Marshal(v)
			args[k] = b
		}
	}
	a.say("executing %s step %s", kind, name)
	result, err := a.runStep(ctx, name, args)
	if err != nil {
		if _, ok := err.(*restError); ok {
			return nil, err
		}
		failure := "DeploymentError"
		msg := "Deploy step failed"
		if kind == "clean" {
			failure, msg = "CleaningError", "Clean step failed"
		}
		return nil, &restError{Type: failure, Code: 500, Message: msg,
			Details: fmt.Sprintf("Unexpected exception performing %s step %s. %T: %v", kind, name, err, err)}
	}
	return map[string]any{kind + "_result": result, kind + "_step": step}, nil
}

// runStep dispatches a step to the hardware manager's method.
func (a *Agent) runStep(ctx context.Context, name string, args params) (any, error) {
	check := func(allowed ...string) error {
		spec := commandSpec{params: allowed}
		return spec.check(name, args)
	}
	switch name {
	case "write_image":
		if err := check("image_info", "configdrive"); err != nil {
			return nil, err
		}
		if _, err := decodeImageInfo(args); err != nil {
			return nil, err
		}
		res, err := a.prepareImage(ctx, args)
		if err != nil {
			return nil, err
		}
		return normalizeResult("prepare_image", res), nil
	case "erase_devices_metadata":
		if err := check(); err != nil {
			return nil, err
		}
		return nil, a.eraseMetadata(ctx)
	case "erase_devices":
		if err := check(); err != nil {
			return nil, err
		}
		return a.eraseDevices(ctx)
	}
	return nil, &restError{Type: "HardwareManagerMethodNotFound", Code: 500, Message: "No HardwareManager found to handle method",
		Details: "Could not find method: " + name}
}

// eraseMetadata is erase_devices_metadata: the partition tables go from
// every disk (Ironic's destroy_disk_metadata).
func (a *Agent) eraseMetadata(ctx context.Context) error {
	disks, err := a.cfg.Env.Disks(ctx)
	if err != nil {
		return err
	}
	var failed []string
	for _, d := range disks {
		if d.Dev == nil {
			continue
		}
		err := disk.DestroyDiskMetadata(d.Dev, d.SizeBytes)
		if err == nil {
			err = syncDev(d)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%q: %v", "/dev/"+d.Name, err))
			continue
		}
		a.say("erased metadata of /dev/%s", d.Name)
	}
	a.mu.Lock()
	a.deployed = nil
	a.mu.Unlock()
	if len(failed) > 0 {
		return &restError{Type: "BlockDeviceEraseError", Code: 500, Message: "Error erasing block device",
			Details: "Failed to erase the metadata on the device(s): " + strings.Join(failed, "; ")}
	}
	a.milestone(events.AgentClean, "erase_devices_metadata")
	return nil
}

// eraseDevices is erase_devices as IPA does it on disks without ATA or
// NVMe secure erase: shred with agent_erase_devices_iterations random
// passes (default 1) and a final zero pass unless
// agent_erase_devices_zeroize is false.
func (a *Agent) eraseDevices(ctx context.Context) (any, error) {
	node := a.cachedNode()
	dii, _ := node["driver_internal_info"].(map[string]any)
	passes := 1
	if v, ok := dii["agent_erase_devices_iterations"].(float64); ok && v >= 0 && v < 100 {
		passes = int(v)
	}
	zero := true
	if v, ok := dii["agent_erase_devices_zeroize"].(bool); ok {
		zero = v
	}
	disks, err := a.cfg.Env.Disks(ctx)
	if err != nil {
		return nil, err
	}
	results := map[string]any{}
	for _, d := range disks {
		if d.Dev == nil {
			continue
		}
		name := "/dev/" + d.Name
		if passes == 0 && !zero {
			return nil, &restError{Type: "IncompatibleHardwareMethodError", Code: 500,
				Message: "HardwareManager method is not compatible with hardware",
				Details: fmt.Sprintf("Unable to erase block device %s: device is unsupported.", name)}
		}
		a.say("shredding %s: %d random pass(es), zero pass %v", name, passes, zero)
		for i := 0; i < passes; i++ {
			if err := overwrite(ctx, d, true); err != nil {
				return nil, eraseError(name, err)
			}
		}
		if zero {
			if err := overwrite(ctx, d, false); err != nil {
				return nil, eraseError(name, err)
			}
		}
		if err := syncDev(d); err != nil {
			return nil, eraseError(name, err)
		}
		results[name] = nil
	}
	a.mu.Lock()
	a.deployed = nil
	a.mu.Unlock()
	a.milestone(events.AgentClean, "erase_devices")
	return results, nil
}

// syncDev flushes what an erase wrote to a device out of the kernel's
// cache: the conductor powers the machine off hard once cleaning is done
// (IPA writes with dd oflag=direct and wipefs for the same reason).
func syncDev(d ramdisk.Disk) error {
	if s, ok := d.Dev.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	return nil
}

func eraseError(name string, err error) error {
	return &restError{Type: "BlockDeviceEraseError", Code: 500, Message: "Error erasing block device",
		Details: fmt.Sprintf("Erasing block device %s failed: %v", name, err)}
}

// overwrite writes the whole disk with random bytes or zeros.
func overwrite(ctx context.Context, d ramdisk.Disk, random bool) error {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	var rng *rand.ChaCha8
	if random {
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(rand.Uint32())
		}
		rng = rand.NewChaCha8(seed)
	}
	for off := int64(0); off < d.SizeBytes; off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(chunk), d.SizeBytes-off)
		if random {
			rng.Read(buf[:n])
		} else {
			clear(buf[:n])
		}
		if _, err := d.Dev.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}
