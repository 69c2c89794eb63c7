package boot

import (
	"context"
	"fmt"

	"github.com/metalbed/metalbed/provisioner/drivers"
)

// HTTPSName is the "redfish-https" boot interface's name.
const HTTPSName = "redfish-https"

// HTTPS is the "redfish-https" boot interface of upstream Ironic (2023.2's
// RedfishHttpsBoot; Ironic 21.4 has none): the deploy ISO built and
// published as for redfish-virtual-media, but nothing inserted — the BMC
// is told to boot once by UEFI HTTP (BootSourceOverrideTarget UefiHttp)
// from HttpBootUri, the ISO's URL. UEFI only: legacy BIOS has no HTTP
// boot. After the deploy the ISO is removed and the node boots from its
// disk. The management interface must be a drivers.HTTPBootManager (the
// redfish one) whose BMC offers UefiHttp.
type HTTPS struct {
	*isoBoot
}

var _ drivers.BootInterface = (*HTTPS)(nil)

// NewHTTPS returns the "redfish-https" boot interface; cfg as for
// NewVirtualMedia (it needs GRUB for the ISO, never ISOLINUX).
func NewHTTPS(cfg Config) (*HTTPS, error) {
	ib, err := newISOBoot(HTTPSName, cfg)
	if err != nil {
		return nil, err
	}
	return &HTTPS{ib}, nil
}

// Name is "redfish-https".
func (b *HTTPS) Name() string { return HTTPSName }

// Properties documents the driver_info keys this interface reads.
func (b *HTTPS) Properties() map[string]string { return isoProperties() }

// Validate checks, as Ironic's RedfishHttpsBoot.validate, that the BMC
// offers UefiHttp and that driver_info has the deploy kernel and ramdisk;
// and that the node boots in UEFI mode (a bios node is refused with the
// message of Ironic's UnsupportedHardwareFeature), the deploy interface
// is the agent's and GRUB for the ISO is installed.
func (b *HTTPS) Validate(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	hm, ok := t.Management.(drivers.HTTPBootManager)
	if !ok {
		return invalid("The %s boot interface of node %s needs a management interface with UEFI HTTP boot (redfish), not %q", HTTPSName, node.UUID, node.Interfaces.Management)
	}
	if b.bootMode(node) != "uefi" {
		return invalid("%s", drivers.UEFIHTTPNeedsUEFI(node.UUID))
	}
	if err := b.validateDeploy(ctx, node); err != nil {
		return err
	}
	supported, err := hm.SupportsUEFIHTTP(ctx, node)
	if err != nil {
		return err
	}
	if !supported {
		return invalid("Node %s hardware does not support feature UefiHttp boot, which is required based upon the requested configuration.", node.UUID)
	}
	return nil
}

// PrepareRamdisk makes the node boot the agent by UEFI HTTP next, as
// Ironic's RedfishHttpsBoot.prepare_ramdisk: the deploy ISO prepared
// (prepareDeployISO: agent token, power off, ISO, DHCP), its URL kept in
// driver_internal_info redfish_uefi_http_url, and boot device uefi_http
// with that URI for the next boot only.
func (b *HTTPS) PrepareRamdisk(ctx context.Context, t *drivers.Task, params map[string]string) error {
	node := t.Node
	if err := b.Validate(ctx, t); err != nil {
		return err
	}
	if err := b.prepareDeployISO(ctx, t, params); err != nil {
		return err
	}
	url := b.isoURL(node)
	node.DriverInternalInfo["redfish_uefi_http_url"] = url
	dev := drivers.BootDevice{Device: drivers.BootDeviceUEFIHTTP, HTTPBootURI: url}
	if err := t.Management.SetBootDevice(ctx, node, dev); err != nil {
		return fmt.Errorf("boot: set boot device %s %s for %s: %w", dev.Device, url, node.UUID, err)
	}
	b.log.Info("deploy ramdisk prepared", "node", node.UUID, "boot_mode", b.bootMode(node), "iso", url)
	return nil
}

// cleanUp removes the ISO and forgets its URL (Ironic's _clean_up).
func (b *HTTPS) cleanUp(t *drivers.Task) error {
	delete(t.Node.DriverInternalInfo, "redfish_uefi_http_url")
	return b.removeISO(t.Node)
}

// CleanUpRamdisk removes the ISO.
func (b *HTTPS) CleanUpRamdisk(_ context.Context, t *drivers.Task) error {
	return b.cleanUp(t)
}

// PrepareInstance removes the ISO and makes the node boot the deployed
// instance from its disk for good, as Ironic's prepare_instance for local
// boot and whole-disk images (a partition image booted over the network
// fails clearly, as with redfish-virtual-media).
func (b *HTTPS) PrepareInstance(ctx context.Context, t *drivers.Task) error {
	if err := b.cleanUp(t); err != nil {
		return err
	}
	return b.prepareLocalBoot(ctx, t)
}

// CleanUpInstance removes the ISO and the DHCP answers.
func (b *HTTPS) CleanUpInstance(_ context.Context, t *drivers.Task) error {
	err := b.cleanUp(t)
	b.deleteHosts(t.Ports)
	return err
}
