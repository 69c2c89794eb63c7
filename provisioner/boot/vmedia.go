package boot

import (
	"context"
	"errors"
	"fmt"

	"github.com/metalbed/metalbed/provisioner/drivers"
)

// VirtualMediaName is the "redfish-virtual-media" boot interface's name.
const VirtualMediaName = "redfish-virtual-media"

// VirtualMedia is Ironic's "redfish-virtual-media" boot interface: it
// builds an ISO from the deploy kernel and ramdisk with the agent's
// command line (the agent token on it), publishes it under the HTTP root,
// and has the node's BMC insert it as a virtual CD and boot it once; the
// instance then boots from its disk. The management interface must be a
// drivers.VirtualMediaManager (the redfish one). Only the agent (deploy
// interface direct) boots this way, as in Ironic.
//
// The media-booted ramdisk gets its address by plain DHCP: the node's
// ports are answered with an address and no boot file.
type VirtualMedia struct {
	*isoBoot
}

var _ drivers.BootInterface = (*VirtualMedia)(nil)

// NewVirtualMedia returns the "redfish-virtual-media" boot interface. It
// needs HTTPRoot, HTTPURL, Hosts and Images; TFTP and APIURL are unused
// (the deploy interface passes ipa-api-url). AppendParams is Ironic's
// [redfish]kernel_append_params here. It does no I/O: ISOLINUX and GRUB
// are looked for when a node first needs them.
func NewVirtualMedia(cfg Config) (*VirtualMedia, error) {
	ib, err := newISOBoot(VirtualMediaName, cfg)
	if err != nil {
		return nil, err
	}
	return &VirtualMedia{ib}, nil
}

// Name is "redfish-virtual-media".
func (b *VirtualMedia) Name() string { return VirtualMediaName }

// Properties documents the driver_info keys this interface reads.
func (b *VirtualMedia) Properties() map[string]string { return isoProperties() }

// Validate checks driver_info's deploy kernel and ramdisk, that the
// deploy interface is the agent's, that the boot loaders of the node's
// boot mode are installed, and that the management interface drives
// virtual media.
func (b *VirtualMedia) Validate(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	if err := b.validateDeploy(ctx, node); err != nil {
		return err
	}
	if _, ok := t.Management.(drivers.VirtualMediaManager); !ok {
		return invalid("The %s boot interface of node %s needs a management interface with virtual media (redfish), not %q", VirtualMediaName, node.UUID, node.Interfaces.Management)
	}
	return nil
}

// PrepareRamdisk makes the node boot the agent from virtual media next,
// as Ironic's RedfishVirtualMediaBoot.prepare_ramdisk: the deploy ISO
// prepared (prepareDeployISO: agent token, power off, ISO, DHCP), whatever
// CD is inserted ejected, the ISO inserted, and boot device cdrom for the
// next boot only, in the node's boot mode.
func (b *VirtualMedia) PrepareRamdisk(ctx context.Context, t *drivers.Task, params map[string]string) error {
	node := t.Node
	if err := b.Validate(ctx, t); err != nil {
		return err
	}
	if err := b.prepareDeployISO(ctx, t, params); err != nil {
		return err
	}
	if err := b.insert(ctx, t, t.Management.(drivers.VirtualMediaManager)); err != nil {
		return err
	}
	if err := t.Management.SetBootDevice(ctx, node, drivers.BootDevice{Device: "cdrom", Persistent: false}); err != nil {
		return fmt.Errorf("boot: set boot device cdrom for %s: %w", node.UUID, err)
	}
	b.log.Info("deploy ramdisk prepared", "node", node.UUID, "boot_mode", b.bootMode(node), "iso", b.isoURL(node))
	return nil
}

// insert ejects the node's CD and inserts its published ISO.
func (b *VirtualMedia) insert(ctx context.Context, t *drivers.Task, vm drivers.VirtualMediaManager) error {
	node := t.Node
	if err := vm.EjectMedia(ctx, node, drivers.MediaCD); err != nil {
		return fmt.Errorf("boot: eject the virtual CD of %s: %w", node.UUID, err)
	}
	if err := vm.InsertMedia(ctx, node, drivers.MediaCD, b.isoURL(node)); err != nil {
		return fmt.Errorf("boot: insert %s into the virtual CD of %s: %w", b.isoURL(node), node.UUID, err)
	}
	return nil
}

// ejectAll ejects the node's CD and removes its published ISO (Ironic's
// _eject_all and cleanup_iso_image).
func (b *VirtualMedia) ejectAll(ctx context.Context, t *drivers.Task) error {
	var errs []error
	if vm, ok := t.Management.(drivers.VirtualMediaManager); ok {
		if err := vm.EjectMedia(ctx, t.Node, drivers.MediaCD); err != nil {
			errs = append(errs, fmt.Errorf("boot: eject the virtual CD of %s: %w", t.Node.UUID, err))
		}
	}
	errs = append(errs, b.removeISO(t.Node))
	return errors.Join(errs...)
}

// CleanUpRamdisk ejects the CD and removes the ISO.
func (b *VirtualMedia) CleanUpRamdisk(ctx context.Context, t *drivers.Task) error {
	return b.ejectAll(ctx, t)
}

// PrepareInstance makes the node boot the deployed instance from its disk
// for good, after ejecting the CD, as Ironic's prepare_instance for local
// boot and whole-disk images. A partition image booted over the network
// (boot option netboot) would need an instance boot ISO, which this
// interface does not build: it fails clearly.
func (b *VirtualMedia) PrepareInstance(ctx context.Context, t *drivers.Task) error {
	if err := b.ejectAll(ctx, t); err != nil {
		return err
	}
	return b.prepareLocalBoot(ctx, t)
}

// CleanUpInstance ejects the CD, removes the ISO and the DHCP answers.
func (b *VirtualMedia) CleanUpInstance(ctx context.Context, t *drivers.Task) error {
	err := b.ejectAll(ctx, t)
	b.deleteHosts(t.Ports)
	return err
}
