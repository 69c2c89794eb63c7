// Package drivers holds metalbed's hardware types as small, role-named
// interfaces, as Ironic composes them: a hardware type is one implementation
// per role. Interfaces talk to machines only over the wire (IPMI, HTTP, …).
//
// Three hardware types exist, built explicitly (no init registries):
//
//   - "ipmi" (NewIPMI): power, management and vendor interfaces all named
//     "ipmitool", as in Ironic, whichever client IPMIConfig.Client selects:
//     ClientIPMITool runs ipmitool with Ironic 21.4's exact command lines,
//     ClientNative speaks lanplus through go-ipmi (cipher suite 17, else 3)
//     with the same bytes, pacing, retries and polling. Boot "pxe" and
//     deploy "direct" are plugged in through IPMIConfig.
//   - "redfish" (NewRedfish): power and management "redfish" over a small
//     Redfish client (sessions as sushy opens them, If-Match, retries),
//     driver_info redfish_* as Ironic's. Boot and deploy as for ipmi,
//     plugged in through RedfishConfig.
//   - "fake-hardware" (NewFakeHardware): Ironic's fake interfaces, with
//     power state and boot device really kept per node.
//
// NewDefaultRegistry builds all three; a conductor looks a node's interfaces up
// with Registry.Get(node.Driver) and HardwareType.PowerFor(node) etc., and
// hands the boot and deploy interfaces a Task (HardwareType.NewTask): the
// node with its ports and resolved interfaces, so that none of them looks
// another up. Deploy and clean steps answer a Step (wait, done) or fail
// with a *DeployError carrying Ironic's message and its cause.
// Validation errors are ParameterErrors carrying Ironic's message
// (errors.Is(err, ErrInvalidParameter)); a role a type lacks gives
// ErrUnsupported.
package drivers

import (
	"context"
	"fmt"

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

// BootDevice is a boot device as the API names it: pxe, disk, cdrom, bios,
// safe, or BootDeviceUEFIHTTP (set by the redfish-https boot interface).
type BootDevice struct {
	Device     string
	Persistent bool
	// HTTPBootURI is what a BootDeviceUEFIHTTP boot fetches (Redfish
	// HttpBootUri); "" leaves the URI to DHCP. Other devices ignore it.
	HTTPBootURI string
}

// BootDeviceUEFIHTTP is Ironic's boot device "uefi_http": a UEFI HTTP boot
// (Redfish BootSourceOverrideTarget UefiHttp). Only the redfish
// management interface sets it.
const BootDeviceUEFIHTTP = "uefi_http"

// ManagementInterface sets and reads boot devices through the BMC.
type ManagementInterface interface {
	Validate(ctx context.Context, node *provisioner.Node) error
	SupportedBootDevices(ctx context.Context, node *provisioner.Node) ([]string, error)
	GetBootDevice(ctx context.Context, node *provisioner.Node) (BootDevice, error)
	// SetBootDevice sets dev; uefi selects the EFI flag as Ironic does for
	// boot_mode uefi (raw 0x00 0x08 0x05 …).
	SetBootDevice(ctx context.Context, node *provisioner.Node, dev BootDevice) error
}

// NMIInjector is a management interface that can send the machine a
// non-maskable interrupt (Ironic's management.inject_nmi): IPMI's Chassis
// Control diagnostic interrupt, Redfish's ResetType Nmi.
type NMIInjector interface {
	InjectNMI(ctx context.Context, node *provisioner.Node) error
}

// Task is one piece of work on one node, as the conductor hands it to the
// boot and deploy interfaces (Ironic's task: task.node, task.ports,
// task.driver.power/management/boot). The conductor builds it under the
// node's lock with the node's resolved interfaces, so no interface looks
// another up.
type Task struct {
	Node       *provisioner.Node
	Ports      []provisioner.Port
	Power      PowerInterface
	Management ManagementInterface
	Boot       BootInterface
}

// BootInterface prepares how a node boots: the deploy ramdisk for
// deploying, then the instance (pxe, or fake). It reaches the node's ports
// and management interface through the task.
type BootInterface interface {
	Validate(ctx context.Context, task *Task) error
	// PrepareRamdisk makes the node boot the deploy ramdisk next (PXE
	// config, boot device), passing params on its kernel command line.
	PrepareRamdisk(ctx context.Context, task *Task, params map[string]string) error
	CleanUpRamdisk(ctx context.Context, task *Task) error
	// PrepareInstance makes the node boot the deployed instance next.
	PrepareInstance(ctx context.Context, task *Task) error
	CleanUpInstance(ctx context.Context, task *Task) error
}

// Step is what a deploy or clean step tells the conductor comes next
// (baremetal-operator's actionContinue/actionComplete); a step that fails
// returns an error instead, a *DeployError when it carries Ironic's
// message. The conductor alone turns it into a transition.
type Step int

// Step results.
const (
	// StepWait: the ramdisk goes on by itself and calls back or
	// heartbeats ("wait call-back" while deploying, "clean wait" while
	// cleaning).
	StepWait Step = iota + 1
	// StepDone: the deploy or the cleaning finished ("active",
	// "available").
	StepDone
)

func (s Step) String() string {
	switch s {
	case StepWait:
		return "wait"
	case StepDone:
		return "done"
	}
	return fmt.Sprintf("Step(%d)", int(s))
}

// DeployInterface writes an image to a node and tears it down again.
type DeployInterface interface {
	Validate(ctx context.Context, task *Task) error
	Prepare(ctx context.Context, task *Task) error
	// Deploy starts or finishes a deploy: StepWait when the rest happens
	// asynchronously (the ramdisk calls back), StepDone when the deploy
	// completed synchronously.
	Deploy(ctx context.Context, task *Task) (Step, error)
	// TearDown powers the node off and undoes Deploy; the conductor then
	// cleans the node or makes it available.
	TearDown(ctx context.Context, task *Task) error
	CleanUp(ctx context.Context, task *Task) error
	// TakeOver is called when a conductor adopts an active node.
	TakeOver(ctx context.Context, task *Task) error
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
	// ("deploying" or "cleaning"): StepWait when the ramdisk calls again,
	// StepDone when the deploy or cleaning finished. An error fails the
	// node (a *DeployError's message becomes last_error).
	Continue(ctx context.Context, task *Task, method string, args map[string]any) (Step, error)
}

// Cleaner is implemented by a DeployInterface that runs automated cleaning
// itself (the iSCSI deploy boots its ramdisk and wipes the disk's
// partition tables).
type Cleaner interface {
	// PrepareCleaning readies cleaning a node in "cleaning" (the deploy
	// ramdisk's boot configuration and deploy key); the conductor saves the
	// node before calling Clean, so a fast ramdisk finds its key.
	PrepareCleaning(ctx context.Context, task *Task) error
	// Clean starts cleaning: StepWait when the ramdisk will call back
	// (RamdiskCallbacks) or heartbeat, StepDone when cleaning finished
	// synchronously.
	Clean(ctx context.Context, task *Task) (Step, error)
}

// ManualCleaner is a Cleaner that also runs the clean steps a user names
// in manual cleaning ("clean" with clean_steps). The conductor checks each
// step against CleanSteps and records the list in driver_internal_info
// (ManualCleanStepsKey) before PrepareCleaning; Clean then runs those
// steps in order instead of the automated ones.
type ManualCleaner interface {
	Cleaner
	// CleanSteps names the steps it runs, all on interface "deploy".
	CleanSteps() []string
}

// ManualCleanStepsKey is the driver_internal_info key holding a manual
// cleaning's steps ([]any of {"interface","step","args"} maps), as
// Ironic's driver_internal_info clean_steps.
const ManualCleanStepsKey = "clean_steps"

// AgentHeartbeat is implemented by a DeployInterface driven by the agent's
// heartbeats (Ironic's direct deploy). The conductor records each heartbeat
// (agent_url, token checked), and when the node waits ("wait call-back")
// and is not locked, takes the "resume" edge and calls Heartbeat as a task.
type AgentHeartbeat interface {
	// Heartbeat acts on a heartbeat for a node the conductor resumed
	// ("deploying" or "cleaning"): it starts writing the image or a clean
	// step, polls the agent's command, or finishes: StepWait to wait for
	// the next heartbeat, StepDone when the deploy or cleaning finished;
	// an error fails the node (a *DeployError's message becomes
	// last_error).
	Heartbeat(ctx context.Context, task *Task) (Step, error)
}

// DeployError fails a node's deploy or cleaning: Msg is Ironic's message,
// stored as the node's last_error; Err is the cause, kept for errors.Is and
// errors.As and for the one log line the conductor writes when it fails the
// node.
type DeployError struct {
	Msg string
	Err error
}

func (e *DeployError) Error() string { return e.Msg }
func (e *DeployError) Unwrap() error { return e.Err }
