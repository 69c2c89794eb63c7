// Package drivers holds metalbed's hardware types as small, role-named
// interfaces, as Ironic composes them: a hardware type is one implementation
// per role. Interfaces talk to machines only over the wire (IPMI, HTTP, …).
//
// Two hardware types exist, built explicitly (no init registries):
//
//   - "ipmi" (NewIPMI): power, management and vendor interfaces all named
//     "ipmitool", as in Ironic, whichever client IPMIConfig.Client selects:
//     ClientIPMITool runs ipmitool with Ironic 21.4's exact command lines,
//     ClientNative speaks lanplus through go-ipmi (cipher suite 17, else 3)
//     with the same bytes, pacing, retries and polling. Boot "pxe" and
//     deploy "direct" are plugged in through IPMIConfig.
//   - "fake-hardware" (NewFakeHardware): Ironic's fake interfaces, with
//     power state and boot device really kept per node.
//
// NewDefaultRegistry builds both; a conductor looks a node's interfaces up
// with Registry.Get(node.Driver) and HardwareType.PowerFor(node) etc.
// Validation errors are ParameterErrors carrying Ironic's message
// (errors.Is(err, ErrInvalidParameter)); a role a type lacks gives
// ErrUnsupported.
package drivers

import (
	"context"

	"github.com/metalbed/metalbed/provisioner"
)

// PowerInterface controls a node's power through its BMC.
type PowerInterface interface {
	// Validate checks driver_info has what this interface needs.
	Validate(ctx context.Context, node *provisioner.Node) error
	GetPowerState(ctx context.Context, node *provisioner.Node) (provisioner.PowerState, error)
	// SetPowerState drives the node to target (power on, power off, soft
	// power off) and returns once the BMC reports it, or errors.
	SetPowerState(ctx context.Context, node *provisioner.Node, target provisioner.PowerState) error
	// Reboot powers off then on (Ironic's ipmitool behaviour); soft reboots
	// when soft is true.
	Reboot(ctx context.Context, node *provisioner.Node, soft bool) error
}

// BootDevice is a boot device as the API names it: pxe, disk, cdrom, bios, safe.
type BootDevice struct {
	Device     string
	Persistent bool
}

// ManagementInterface sets and reads boot devices through the BMC.
type ManagementInterface interface {
	Validate(ctx context.Context, node *provisioner.Node) error
	SupportedBootDevices(ctx context.Context, node *provisioner.Node) ([]string, error)
	GetBootDevice(ctx context.Context, node *provisioner.Node) (BootDevice, error)
	// SetBootDevice sets dev; uefi selects the EFI flag as Ironic does for
	// boot_mode uefi (raw 0x00 0x08 0x05 …).
	SetBootDevice(ctx context.Context, node *provisioner.Node, dev BootDevice) error
}

// BootInterface prepares how a node boots: the deploy ramdisk for
// deploying, then the instance (pxe, or fake).
type BootInterface interface {
	Validate(ctx context.Context, node *provisioner.Node) error
	// PrepareRamdisk makes the node boot the deploy ramdisk next (PXE
	// config, boot device), passing params on its kernel command line.
	PrepareRamdisk(ctx context.Context, node *provisioner.Node, params map[string]string) error
	CleanUpRamdisk(ctx context.Context, node *provisioner.Node) error
	// PrepareInstance makes the node boot the deployed instance next.
	PrepareInstance(ctx context.Context, node *provisioner.Node) error
	CleanUpInstance(ctx context.Context, node *provisioner.Node) error
}

// DeployInterface writes an image to a node and tears it down again.
type DeployInterface interface {
	Validate(ctx context.Context, node *provisioner.Node) error
	Prepare(ctx context.Context, node *provisioner.Node) error
	// Deploy starts or finishes a deploy. It returns StateWaitCallback when
	// the rest happens asynchronously (the ramdisk calls back), or
	// StateActive when the deploy completed synchronously.
	Deploy(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error)
	// TearDown powers the node off and undoes Deploy; the conductor then
	// cleans the node or makes it available.
	TearDown(ctx context.Context, node *provisioner.Node) error
	CleanUp(ctx context.Context, node *provisioner.Node) error
	// TakeOver is called when a conductor adopts an active node.
	TakeOver(ctx context.Context, node *provisioner.Node) error
}

// VendorMethod describes one vendor passthru method as
// GET /v1/nodes/{id}/vendor_passthru/methods shows it.
type VendorMethod struct {
	Name                 string
	HTTPMethods          []string
	Async                bool
	Description          string
	Attach               bool
	RequireExclusiveLock bool
}

// VendorInterface serves vendor passthru calls.
type VendorInterface interface {
	// Methods lists the passthru methods, sorted by name.
	Methods() []VendorMethod
	// Validate checks driver_info and, when method is not "", the call's
	// arguments.
	Validate(ctx context.Context, node *provisioner.Node, method string, args map[string]any) error
	// Call runs method; the result is serialised as the response body
	// (nil => empty 202/200 as Ironic answers).
	Call(ctx context.Context, node *provisioner.Node, method, httpMethod string, args map[string]any) (any, error)
}

// RamdiskCallbacks is implemented by a DeployInterface whose deploy ramdisk
// calls the conductor back through vendor passthru (Ironic's iSCSI deploy:
// pass_deploy_info, pass_bootloader_install_info). The conductor lists
// these methods with the node's vendor methods and routes them here: it
// validates synchronously, then, under the node's lock, takes the "resume"
// edge out of "wait call-back" or "clean wait" and calls Continue.
type RamdiskCallbacks interface {
	// CallbackMethods lists the passthru methods the ramdisk calls.
	CallbackMethods() []VendorMethod
	// ValidateCallback checks a call's arguments (answered 400 when bad).
	ValidateCallback(ctx context.Context, node *provisioner.Node, method string, args map[string]any) error
	// Continue handles a call for a node the conductor has resumed
	// ("deploying" or "cleaning"). It returns where the node goes next:
	// StateWaitCallback or StateCleanWait when the ramdisk calls again,
	// StateActive when the deploy finished, StateAvailable when cleaning
	// did. An error fails the node with the error's text as last_error.
	Continue(ctx context.Context, node *provisioner.Node, method string, args map[string]any) (provisioner.ProvisionState, error)
}

// Cleaner is implemented by a DeployInterface that runs automated cleaning
// itself (the iSCSI deploy boots its ramdisk and wipes the disk's
// partition tables).
type Cleaner interface {
	// PrepareCleaning readies cleaning a node in "cleaning" (the deploy
	// ramdisk's boot configuration and deploy key); the conductor saves the
	// node before calling Clean, so a fast ramdisk finds its key.
	PrepareCleaning(ctx context.Context, node *provisioner.Node) error
	// Clean starts cleaning. It returns StateCleanWait when the ramdisk
	// will call back (RamdiskCallbacks), or StateAvailable when cleaning
	// finished synchronously.
	Clean(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error)
}

// AgentHeartbeat is implemented by a DeployInterface driven by the agent's
// heartbeats (Ironic's direct deploy). The conductor records each heartbeat
// (agent_url, token checked), and when the node waits ("wait call-back")
// and is not locked, takes the "resume" edge and calls Heartbeat as a task.
type AgentHeartbeat interface {
	// Heartbeat acts on a heartbeat for a node the conductor resumed
	// ("deploying" or "cleaning"): it starts writing the image or a clean
	// step, polls the agent's command, or finishes. It returns
	// StateWaitCallback/StateCleanWait to wait for the next heartbeat,
	// StateActive/StateAvailable when the deploy/cleaning finished; an
	// error fails the node with its text as last_error.
	Heartbeat(ctx context.Context, node *provisioner.Node) (provisioner.ProvisionState, error)
}
