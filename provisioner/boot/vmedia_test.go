package boot

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

func newVMedia(t *testing.T, loaders func(context.Context, bool, bool) (disk.ISOLoaders, error)) *VirtualMedia {
	t.Helper()
	cache, err := imagecache.New(imagecache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewVirtualMedia(Config{HTTPRoot: t.TempDir(), HTTPURL: "http://127.0.0.1:8080/", Hosts: &dhcp.StaticHosts{},
		Images: cache, ISOLoaders: loaders})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewVirtualMediaNeedsConfig(t *testing.T) {
	_, err := NewVirtualMedia(Config{HTTPURL: "http://127.0.0.1:8080"})
	if err == nil || !strings.Contains(err.Error(), "missing HTTPRoot, Hosts, Images") {
		t.Errorf("NewVirtualMedia without HTTPRoot, Hosts, Images: %v", err)
	}
}

// TestVirtualMediaValidate: driver_info's deploy kernel and ramdisk (in
// Ironic's words), a management interface with virtual media, the agent's
// deploy interface, no partition image booted over the network, and the
// boot loaders of the node's boot mode.
func TestVirtualMediaValidate(t *testing.T) {
	rf, err := drivers.NewRedfish(drivers.RedfishConfig{})
	if err != nil {
		t.Fatal(err)
	}
	redfishMgmt := rf.Management["redfish"]
	fakeMgmt := drivers.NewFakeHardware().Management["fake"]
	var asked []string
	loaders := func(_ context.Context, bios, uefi bool) (disk.ISOLoaders, error) {
		asked = append(asked, map[bool]string{true: "bios", false: "uefi"}[bios])
		if uefi {
			return disk.ISOLoaders{}, errors.New("grub-mkimage not found: install grub-efi-amd64-bin")
		}
		return disk.ISOLoaders{IsolinuxBin: "/isolinux.bin", LdlinuxC32: "/ldlinux.c32"}, nil
	}
	b := newVMedia(t, loaders)
	node := func(mut func(n *provisioner.Node)) *provisioner.Node {
		n := &provisioner.Node{UUID: nodeUUID, DriverInfo: map[string]any{"deploy_kernel": "http://x/k", "deploy_ramdisk": "http://x/r"},
			Properties: map[string]any{"capabilities": "boot_mode:bios,boot_option:local"}}
		n.Interfaces.Deploy = "direct"
		if mut != nil {
			mut(n)
		}
		return n
	}
	for _, c := range []struct {
		name string
		node *provisioner.Node
		mgmt drivers.ManagementInterface
		want string // "" => valid
	}{
		{"valid", node(nil), redfishMgmt, ""},
		{"no deploy images", node(func(n *provisioner.Node) { n.DriverInfo = map[string]any{} }), redfishMgmt,
			"Error validating Redfish virtual media. Some parameters were missing in node's driver_info. Missing are: ['deploy_kernel', 'deploy_ramdisk']"},
		{"no virtual media", node(nil), fakeMgmt, "needs a management interface with virtual media"},
		{"iscsi", node(func(n *provisioner.Node) { n.Interfaces.Deploy = "iscsi" }), redfishMgmt, "boots the agent only: set deploy_interface direct, not iscsi"},
		{"netboot partition", node(func(n *provisioner.Node) {
			n.Properties["capabilities"] = "boot_mode:bios,boot_option:netboot"
			n.InstanceInfo = map[string]any{"image_type": "partition"}
		}), redfishMgmt, "boots partition images from the local disk only"},
		{"netboot whole disk", node(func(n *provisioner.Node) {
			n.Properties["capabilities"] = "boot_mode:bios,boot_option:netboot"
			n.InstanceInfo = map[string]any{"image_type": "whole-disk"}
		}), redfishMgmt, ""},
		{"no grub", node(func(n *provisioner.Node) { n.Properties["capabilities"] = "boot_mode:uefi,boot_option:local" }), redfishMgmt,
			"cannot build a uefi boot ISO: grub-mkimage not found: install grub-efi-amd64-bin"},
	} {
		err := b.Validate(t.Context(), &drivers.Task{Node: c.node, Management: c.mgmt})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, drivers.ErrInvalidParameter)):
			t.Errorf("%s: %v, want an invalid parameter error with %q", c.name, err, c.want)
		}
	}
	// Found loaders are kept; a failure is asked again (the package may
	// have been installed since).
	if got := strings.Join(asked, " "); got != "bios uefi" {
		t.Errorf("loaders asked for %q, want once for bios and once for uefi", got)
	}
}

// TestVirtualMediaCmdline: the ISO's command line as Ironic 21.4 writes
// it: kernel_append_params, ir_pub_id, the deploy interface's parameters,
// the agent token, boot_method=vmedia; parameters that would break the
// line are refused.
func TestVirtualMediaCmdline(t *testing.T) {
	b := newVMedia(t, nil)
	got, err := b.cmdline(map[string]string{"ipa-global-request-id": "req-1", "ipa-api-url": "http://127.0.0.1:6385",
		"boot_method": "pxe", "ipa-agent-token": "stale"}, "t0k3n")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^nofb nomodeset vga=normal ir_pub_id=[0-9a-f-]{36} ipa-api-url=http://127\.0\.0\.1:6385 ipa-global-request-id=req-1 ipa-agent-token=t0k3n boot_method=vmedia$`)
	if !want.MatchString(got) {
		t.Errorf("cmdline %q", got)
	}
	if _, err := b.cmdline(map[string]string{"ipa-api-url": "http://x y"}, "t"); !errors.Is(err, drivers.ErrInvalidParameter) {
		t.Errorf("a parameter with a space: %v", err)
	}
}
