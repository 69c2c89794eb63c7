// Package deploy is the core metalbed's deploy interfaces share
// (deploy/iscsi, Ironic's bash-ramdisk iSCSI deploy, and deploy/direct, the
// agent's direct deploy): their common Config, the power and boot steps
// around the ramdisk, the failure path (Ironic's deploy_failed: power off,
// then a *drivers.DeployError carrying the message and its cause), the
// connections to ramdisks, and the one place a node's milestones are
// recorded.
//
// A deploy interface gets everything about the node from the
// *drivers.Task the conductor hands it: the node, its ports and its power,
// management and boot interfaces.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

// Config is what every deploy interface is given; the interfaces' own
// Configs embed it.
type Config struct {
	// Images fetches and verifies instance images. Required.
	Images *imagecache.Cache
	// DefaultBootMode and DefaultBootOption must match the boot
	// interface's: defaults "uefi" and "netboot".
	DefaultBootMode   string
	DefaultBootOption string
	// DialContext opens the conductor's connections to ramdisks (the
	// iSCSI portal, the notice port); default a net.Dialer's. Real VMs
	// behind a network namespace are reached through the namespace's
	// dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Recorder, when set, is told each step of a node's deploy for its
	// timeline (events.Conductor*, keyed by node UUID and name). It must
	// not block.
	Recorder events.Recorder
	// Faults is asked (layer conductor, op the step: fault.ConductorOp) at
	// each milestone; the Injector a service hands in carries a kill out
	// by stopping the conductor as a crash would. Default: none.
	Faults fault.Injector
	// Logger receives logs; nil discards.
	Logger *slog.Logger
	// Now is the clock milestones' durations are measured with; default
	// time.Now.
	Now func() time.Time
}

// Core holds what the deploy interfaces share. It is safe for concurrent
// use on different nodes.
type Core struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg for the deploy interface called name (the name prefixes
// its errors and tags its logs) and applies defaults; required are the
// interface's own required settings by name, an empty value missing. It
// does no I/O.
func New(name string, cfg Config, required map[string]string) (*Core, error) {
	var missing []string
	if cfg.Images == nil {
		missing = append(missing, "Images")
	}
	for _, k := range slices.Sorted(maps.Keys(required)) {
		if required[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s deploy: missing %s", name, strings.Join(missing, ", "))
	}
	switch cfg.DefaultBootMode {
	case "":
		cfg.DefaultBootMode = disk.BootModeUEFI
	case disk.BootModeUEFI, disk.BootModeBIOS:
	default:
		return nil, fmt.Errorf("%s deploy: DefaultBootMode %q: want uefi or bios", name, cfg.DefaultBootMode)
	}
	switch cfg.DefaultBootOption {
	case "":
		cfg.DefaultBootOption = disk.BootOptionNetboot
	case disk.BootOptionNetboot, disk.BootOptionLocal:
	default:
		return nil, fmt.Errorf("%s deploy: DefaultBootOption %q: want netboot or local", name, cfg.DefaultBootOption)
	}
	cfg.Recorder = events.OrDiscard(cfg.Recorder)
	cfg.Faults = fault.OrNone(cfg.Faults)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Core{cfg: cfg, log: log.With("deploy_interface", name)}, nil
}

// Logger is the interface's logger.
func (c *Core) Logger() *slog.Logger { return c.log }

// Now reads the configured clock.
func (c *Core) Now() time.Time { return c.cfg.Now() }

// Since is the time elapsed since start on the configured clock.
func (c *Core) Since(start time.Time) time.Duration { return c.cfg.Now().Sub(start) }

// Milestone records a step of node's deploy: an Info log and an event
// for the Config.Recorder. Every milestone of every deploy interface goes
// through here.
func (c *Core) Milestone(node *provisioner.Node, kind events.Kind, detail string) {
	c.Record(node, events.Event{Kind: kind, Detail: detail})
}

// Record is Milestone for an event that names the node by more keys (the
// IQN of the disk the conductor logged in to).
func (c *Core) Record(node *provisioner.Node, e events.Event) {
	c.log.Info(string(e.Kind), "node", node.UUID, "detail", e.Detail)
	e.Node, e.NodeName = node.UUID, node.Name
	c.cfg.Recorder.Record(e)
	if op, ok := fault.ConductorOp(e.Kind); ok {
		c.cfg.Faults.Inject(fault.Conductor, events.Who{Node: node.UUID, NodeName: node.Name}, op)
	}
}

// BootMode is Ironic's get_boot_mode, as the boot interface reads it.
func (c *Core) BootMode(node *provisioner.Node) string {
	return node.DeployBootMode(c.cfg.DefaultBootMode)
}

// BootOption is Ironic's get_boot_option.
func (c *Core) BootOption(node *provisioner.Node) string {
	return node.DeployBootOption(c.cfg.DefaultBootOption)
}

// Dial opens a connection to a ramdisk through Config.DialContext.
func (c *Core) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.cfg.DialContext != nil {
		return c.cfg.DialContext(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Sleep waits d, or less when ctx ends (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PowerOnOrReboot powers the node on, or reboots it when it is on.
func (c *Core) PowerOnOrReboot(ctx context.Context, t *drivers.Task) error {
	cur, err := t.Power.GetPowerState(ctx, t.Node)
	if err != nil {
		return fmt.Errorf("get power state: %w", err)
	}
	if cur == provisioner.PowerOn {
		err = t.Power.Reboot(ctx, t.Node, false)
	} else {
		err = t.Power.SetPowerState(ctx, t.Node, provisioner.PowerOn)
	}
	if err != nil {
		return fmt.Errorf("power on: %w", err)
	}
	t.Node.PowerState = provisioner.PowerOn
	return nil
}

// PowerOff powers the node off through its power interface.
func (c *Core) PowerOff(ctx context.Context, t *drivers.Task) error {
	if err := t.Power.SetPowerState(ctx, t.Node, provisioner.PowerOff); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	t.Node.PowerState = provisioner.PowerOff
	return nil
}

// Reboot reboots the node into what its boot interface prepared.
func (c *Core) Reboot(ctx context.Context, t *drivers.Task) error {
	if err := t.Power.Reboot(ctx, t.Node, false); err != nil {
		return err
	}
	t.Node.PowerState = provisioner.PowerOn
	return nil
}

// BootRamdisk powers the node on (or reboots it) into the deploy ramdisk
// its boot interface prepared, records the "power on" milestone with
// detail, and waits for the ramdisk: Deploy and Clean of both interfaces.
func (c *Core) BootRamdisk(ctx context.Context, t *drivers.Task, detail string) (drivers.Step, error) {
	if err := c.PowerOnOrReboot(ctx, t); err != nil {
		return 0, err
	}
	c.Milestone(t.Node, events.ConductorPowerOn, detail)
	return drivers.StepWait, nil
}

// Fail is Ironic's deploy_failed/set_failed_state: it powers the node off
// and returns the *drivers.DeployError that fails it, with msg as
// last_error and cause wrapped. A failed power off is appended to the
// message, as Ironic does, and joined to the cause. It does not log: the
// conductor does when it fails the node.
func (c *Core) Fail(ctx context.Context, t *drivers.Task, cause error, msg string) error {
	if err := c.PowerOff(ctx, t); err != nil {
		msg += fmt.Sprintf(" Also failed to power off node %s. Error: %s", t.Node.UUID, errors.Unwrap(err))
		cause = errors.Join(cause, err)
	}
	return &drivers.DeployError{Msg: msg, Err: cause}
}

// FinishCleaning ends cleaning once the disk is wiped: power off, the
// deploy ramdisk's boot configuration removed. A failure is Ironic's
// "Failed to tear down cleaning".
func (c *Core) FinishCleaning(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	err := c.PowerOff(ctx, t)
	if err == nil {
		err = t.Boot.CleanUpRamdisk(ctx, t)
	} else {
		err = errors.Unwrap(err)
	}
	if err != nil {
		return 0, &drivers.DeployError{Msg: fmt.Sprintf("Failed to tear down cleaning on node %s. Error: %s", t.Node.UUID, err), Err: err}
	}
	return drivers.StepDone, nil
}

// TakeOver rebuilds the boot configuration of an active node (a conductor
// adopting it, or Prepare of an active node).
func (c *Core) TakeOver(ctx context.Context, t *drivers.Task) error {
	if t.Node.ProvisionState != provisioner.StateActive {
		return nil
	}
	return t.Boot.PrepareInstance(ctx, t)
}

// CleanUpBoot removes the node's ramdisk and instance boot configuration.
func (c *Core) CleanUpBoot(ctx context.Context, t *drivers.Task) error {
	return errors.Join(t.Boot.CleanUpRamdisk(ctx, t), t.Boot.CleanUpInstance(ctx, t))
}

// ResetDeployInfo forgets what the previous deploy recorded in
// driver_internal_info (image kind, root and ESP).
func ResetDeployInfo(node *provisioner.Node) {
	if node.DriverInternalInfo == nil {
		node.DriverInternalInfo = map[string]any{}
	}
	for _, k := range []string{"is_whole_disk_image", "root_uuid_or_disk_id", "efi_system_partition_uuid"} {
		delete(node.DriverInternalInfo, k)
	}
}

// InstanceName is the instance UUID as Ironic's messages print it.
func InstanceName(node *provisioner.Node) string {
	if node.InstanceUUID == "" {
		return "None"
	}
	return node.InstanceUUID
}

// Invalid is a parameter error carrying Ironic's message.
func Invalid(format string, args ...any) error {
	return &drivers.ParameterError{Msg: fmt.Sprintf(format, args...)}
}
