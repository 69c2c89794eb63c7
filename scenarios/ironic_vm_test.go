//go:build libvirt_dlopen

package scenarios

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// TestRealIronicVirtualMediaDeploysVMs is issue 14's real-VM interop: a
// REAL Ironic 21.4 (redfish hardware type, redfish-virtual-media boot,
// direct deploy) deploys a whole-disk image to a SeaBIOS and an OVMF VM of
// `metalbed up --backend libvirt --no-provisioner` (QEMU under libvirtd)
// and undeploys them back to available; both VMs at once.
//
// Ironic runs where a lab's conductor does, on the machines' provisioning
// network: inside the boot network's namespace (inventory.json
// boot_network), with its API, endpoint_override and http_url on the
// provisioner's address there. In the same namespace `metalbed netboot
// serve` is its web server (http_root, from which the BMCs fetch the
// ISOs and the agents the image) and the DHCP server the media-booted
// ramdisks ask; metalbed's Redfish service answers there too
// (inventory.json redfish boot_network_address). The test drives Ironic
// with `ip netns exec NS baremetal` and polls its API from inside the
// namespace. Automated cleaning is off (the ramdisk boots once per VM);
// undeploy still ends in available.
//
// Asserted per VM: the ISO Ironic published carries the agent's command
// line (isolinux.cfg, grub.cfg); the deploy reaches active and the VM's
// disk holds the image byte for byte; the ISO is unpublished once active;
// undeploy ends in available; the VM's timeline shows the InsertMedia,
// the boot from Cd, the agent's lookup and image written (read off the
// serial console), the eject and the boot from disk.
func TestRealIronicVirtualMediaDeploysVMs(t *testing.T) {
	requireLibvirtVMs(t)
	requireIronic(t)
	requireSushy(t)
	for _, tool := range []struct{ name, pkg string }{
		{"mkisofs", "genisoimage"}, {"isoinfo", "genisoimage"}, {"mkfs.vfat", "dosfstools"},
		{"mmd", "mtools"}, {"mcopy", "mtools"}, {"grub-mkimage", "grub-common"}, {"ip", "iproute2"},
	} {
		requireInteropTool(t, tool.name, tool.pkg)
	}
	began := time.Now()
	bin, rd := buildLibvirtMetalbed(t, t.TempDir())

	topology := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(topology, []byte("machines:\n  - name: ironic-bios\n    boot_mode: bios\n  - name: ironic-uefi\n    boot_mode: uefi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fleet := startFleet(t, bin, 2, "--config", topology, "--backend", "libvirt", "--remove-vms",
		"--timeline-addr", "127.0.0.1:0")
	bn := fleet.Inventory.BootNetwork
	if bn == nil {
		t.Fatalf("inventory.json of metalbed up --backend libvirt --no-provisioner names no boot_network")
	}
	pool, err := bootNetPool(bn.Prefix)
	if err != nil {
		t.Fatal(err)
	}

	roots := t.TempDir()
	tftpRoot, httpRoot := filepath.Join(roots, "tftpboot"), filepath.Join(roots, "httpboot")
	for _, d := range []string{tftpRoot, filepath.Join(httpRoot, "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nb := startNetboot(t, bin, NetbootOptions{TFTPRoot: tftpRoot, HTTPRoot: httpRoot, AnswerUnknown: true,
		Range: pool, NetNS: bn.Namespace, Iface: bn.Interface, ServerIP: bn.Address})
	ir := startIronic(t, IronicOptions{HTTPURL: nb.HTTPURL, HTTPRoot: httpRoot, TFTPRoot: tftpRoot,
		VirtualMedia: true, HeartbeatTimeout: 30, SingleProcess: true,
		NetNS: bn.Namespace, HostIP: bn.Address, Dial: libvirt.NamespaceDialer(bn.Namespace)})
	t.Logf("boot network %s in netns %s: netboot serve dhcp %s http %s; Ironic %s (ready in %s s); timeline %s",
		bn.Prefix, bn.Namespace, nb.DHCPAddr, nb.HTTPURL, ir.APIURL, ir.StartSeconds, fleet.Inventory.Timeline)
	esp := buildESP(t, ir.FilesDir)
	kernel, ramdisk := filepath.Join(ir.FilesDir, "vmlinuz"), filepath.Join(ir.FilesDir, "initramfs")
	copyFile(t, filepath.Join(rd, "vmlinuz"), kernel)
	copyFile(t, filepath.Join(rd, "initramfs"), ramdisk)
	t.Logf("built and started in %s", time.Since(began).Round(time.Second))

	t.Run("vms", func(t *testing.T) {
		for _, m := range fleet.Inventory.Nodes {
			mode := vms.BootMode(m.BootMode)
			t.Run("redfish-virtual-media-whole-disk-"+string(mode), func(t *testing.T) {
				t.Parallel()
				art := DeployArtifacts{Kernel: kernel, Ramdisk: ramdisk,
					Image: filepath.Join(httpRoot, "images", "instance-"+string(mode)+".img")}
				buildWholeDiskImage(t, bin, string(mode), &art)
				imageURL := nb.HTTPURL + "/images/" + filepath.Base(art.Image)
				deployThroughIronic(t, ir, m, art, imageURL, vmediaEnrolment(t, ir, m, mode, esp))
				checkVirtualMediaTimeline(t, fleet.Inventory.Timeline, m.Name, vmediaDeployMilestones)
			})
		}
	})
	t.Logf("Ironic calls:\n%s", ir.Calls.Summary())
	t.Logf("both VMs deployed and undeployed; %s in all", time.Since(began).Round(time.Second))
}

// bootNetPool is a DHCP range for the agents on a boot network:
// .100-.199 of its /24, apart from the provisioner's address (.1).
func bootNetPool(prefix string) (string, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
		return "", fmt.Errorf("boot network prefix %q: want an IPv4 /24 or larger", prefix)
	}
	b := p.Masked().Addr().As4()
	first, last := b, b
	first[3], last[3] = 100, 199
	return netip.AddrFrom4(first).String() + "-" + netip.AddrFrom4(last).String(), nil
}
