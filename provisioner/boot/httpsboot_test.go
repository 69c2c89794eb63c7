package boot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

func TestNewHTTPSNeedsConfig(t *testing.T) {
	_, err := NewHTTPS(Config{HTTPRoot: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "redfish-https interface: missing HTTPURL, Hosts, Images") {
		t.Errorf("NewHTTPS without HTTPURL, Hosts, Images: %v", err)
	}
}

// TestHTTPSValidate: what redfish-https refuses before asking the BMC
// whether it offers UefiHttp (the testbed's TestRedfishHTTPSDeploy
// validates against a real Redfish service): a management interface
// without UEFI HTTP boot, a node in bios boot mode (Ironic's
// UnsupportedHardwareFeature message), missing deploy images, another
// deploy interface than the agent's, and GRUB missing for the ISO.
func TestHTTPSValidate(t *testing.T) {
	rf, err := drivers.NewRedfish(drivers.RedfishConfig{})
	if err != nil {
		t.Fatal(err)
	}
	redfishMgmt := rf.Management["redfish"]
	fakeMgmt := drivers.NewFakeHardware().Management["fake"]
	cache, err := imagecache.New(imagecache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	noGrub := func(context.Context, bool, bool) (disk.ISOLoaders, error) {
		return disk.ISOLoaders{}, errors.New("grub-mkimage not found: install grub-efi-amd64-bin")
	}
	b, err := NewHTTPS(Config{HTTPRoot: t.TempDir(), HTTPURL: "http://127.0.0.1:8080", Hosts: &dhcp.StaticHosts{}, Images: cache, ISOLoaders: noGrub})
	if err != nil {
		t.Fatal(err)
	}
	node := func(mut func(n *provisioner.Node)) *provisioner.Node {
		n := &provisioner.Node{UUID: nodeUUID, DriverInfo: map[string]any{"deploy_kernel": "http://x/k", "deploy_ramdisk": "http://x/r"},
			Properties: map[string]any{"capabilities": "boot_mode:uefi,boot_option:local"}}
		n.Interfaces.Deploy = "direct"
		n.Interfaces.Management = "redfish"
		if mut != nil {
			mut(n)
		}
		return n
	}
	for _, c := range []struct {
		name string
		node *provisioner.Node
		mgmt drivers.ManagementInterface
		want string
	}{
		{"no UEFI HTTP boot", node(func(n *provisioner.Node) { n.Interfaces.Management = "fake" }), fakeMgmt,
			`The redfish-https boot interface of node ` + nodeUUID + ` needs a management interface with UEFI HTTP boot (redfish), not "fake"`},
		{"bios", node(func(n *provisioner.Node) { n.Properties["capabilities"] = "boot_mode:bios" }), redfishMgmt,
			"Node " + nodeUUID + " hardware does not support feature UefiHttp boot in bios boot mode, which is required based upon the requested configuration."},
		{"no deploy images", node(func(n *provisioner.Node) { delete(n.DriverInfo, "deploy_ramdisk") }), redfishMgmt,
			"Error validating Redfish virtual media. Some parameters were missing in node's driver_info. Missing are: ['deploy_ramdisk']"},
		{"iscsi", node(func(n *provisioner.Node) { n.Interfaces.Deploy = "iscsi" }), redfishMgmt,
			"The redfish-https boot interface of node " + nodeUUID + " boots the agent only: set deploy_interface direct, not iscsi"},
		{"no grub", node(nil), redfishMgmt,
			"The redfish-https boot interface cannot build a uefi boot ISO: grub-mkimage not found: install grub-efi-amd64-bin"},
	} {
		err := b.Validate(t.Context(), &drivers.Task{Node: c.node, Management: c.mgmt})
		if err == nil || err.Error() != c.want || !errors.Is(err, drivers.ErrInvalidParameter) {
			t.Errorf("%s: %v, want an invalid parameter error %q", c.name, err, c.want)
		}
	}
}
