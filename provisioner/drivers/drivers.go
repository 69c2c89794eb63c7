// Package drivers holds metalbed's hardware types as small, role-named
// interfaces, as Ironic composes them: a hardware type is one implementation
// per role. Interfaces talk to machines only over the wire (IPMI, HTTP, …).
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
