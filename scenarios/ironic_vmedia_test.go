package scenarios

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms"
)

// TestRealIronicVirtualMediaDeploy is issue 14 item 7: a REAL Ironic 21.4
// with the redfish hardware type, the redfish-virtual-media boot interface
// and the direct deploy interface, pointed at inventory.json's Redfish
// fields, deploys a whole-disk image to a BIOS and a UEFI machine of
// `metalbed up` and undeploys them, with automated cleaning (so the deploy
// ramdisk boots from virtual media three times per machine: clean, deploy,
// clean).
//
// Ironic builds each deploy ISO itself (mkisofs, ISOLINUX for BIOS, for
// UEFI the EFI system partition image this test builds with mkfs.vfat,
// mtools and GRUB, given as driver_info bootloader), publishes it under its
// http_root/redfish/, which `metalbed netboot serve` serves as http_url,
// and inserts it through metalbed's Redfish VirtualMedia. The machine boots
// the CD, its ramdisk takes a lease from netboot serve (Ironic's
// dhcp_provider is none) and the agent looks the node up with the token
// on the ISO's kernel command line.
//
// Asserted per machine: provide cleans to available; the published ISO
// carries the kernel command line with ipa-api-url and ipa-agent-token (in
// isolinux.cfg or grub.cfg, read with isoinfo); the deploy reaches active
// and the disk holds the image byte for byte; the ISO is unpublished once
// active; undeploy cleans back to available; the machine's timeline shows
// the InsertMedia, the boot from Cd and the agent's steps.
func TestRealIronicVirtualMediaDeploy(t *testing.T) {
	requireIronic(t)
	requireSushy(t)
	for _, tool := range []struct{ name, pkg string }{
		{"mkisofs", "genisoimage"}, {"isoinfo", "genisoimage"}, {"mkfs.vfat", "dosfstools"},
		{"mmd", "mtools"}, {"mcopy", "mtools"}, {"grub-mkimage", "grub-common"},
	} {
		requireInteropTool(t, tool.name, tool.pkg)
	}
	bin := buildMetalbed(t)

	roots := t.TempDir()
	tftpRoot, httpRoot := filepath.Join(roots, "tftpboot"), filepath.Join(roots, "httpboot")
	for _, d := range []string{tftpRoot, filepath.Join(httpRoot, "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// netboot serve is Ironic's web server (http_root) and the DHCP server
	// the media-booted ramdisks ask; it answers any MAC, as the machines
	// start after it.
	nb := startNetboot(t, bin, NetbootOptions{TFTPRoot: tftpRoot, HTTPRoot: httpRoot,
		AnswerUnknown: true, Range: "127.0.0.210-127.0.0.249"})
	topology := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(topology, []byte("machines:\n  - name: vmedia-bios\n    boot_mode: bios\n  - name: vmedia-uefi\n    boot_mode: uefi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fleet := startFleet(t, bin, 2, "--config", topology, "--netboot-dhcp", nb.DHCPAddr, "--netboot-tftp-port", nb.TFTPPort(t),
		"--timeline-addr", "127.0.0.1:0")
	ir := startIronic(t, IronicOptions{HTTPURL: nb.HTTPURL, HTTPRoot: httpRoot, TFTPRoot: tftpRoot,
		AutomatedClean: true, VirtualMedia: true, HeartbeatTimeout: 30})
	t.Logf("netboot serve: dhcp %s http %s; Ironic %s (ready in %s s); timeline %s",
		nb.DHCPAddr, nb.HTTPURL, ir.APIURL, ir.StartSeconds, fleet.Inventory.Timeline)
	esp := buildESP(t, ir.FilesDir)

	for _, m := range fleet.Inventory.Nodes {
		mode := vms.BootMode(m.BootMode)
		t.Run("redfish-virtual-media-whole-disk-"+string(mode), func(t *testing.T) {
			art := buildDeployArtifacts(t, bin, ir.FilesDir, string(mode))
			imageName := "images/" + filepath.Base(art.Image)
			if err := os.Rename(art.Image, filepath.Join(httpRoot, imageName)); err != nil {
				t.Fatal(err)
			}
			e := vmediaEnrolment(t, ir, m, mode, esp)
			deployThroughIronic(t, ir, m, art, nb.HTTPURL+"/"+imageName, e)
			checkVirtualMediaTimeline(t, fleet.Inventory.Timeline, m.Name, vmediaMilestones)
		})
	}
	t.Logf("Ironic calls:\n%s", ir.Calls.Summary())
}

// vmediaEnrolment enrols machine m for Ironic's redfish hardware type
// with the redfish-virtual-media boot interface, at inventory.json's
// Redfish fields, in boot mode mode; UEFI ISOs carry the EFI system
// partition image esp (driver_info bootloader). Once the deploy waits for
// the agent, the ISO Ironic published must carry the agent's command line;
// once active, it must be gone.
func vmediaEnrolment(t *testing.T, ir *Ironic, m inventoryNode, mode vms.BootMode, esp string) ironicEnrolment {
	e := ironicEnrolment{Driver: "redfish", BootIface: "redfish-virtual-media", Mode: mode,
		DriverInfo: redfishDriverInfo(t, m),
		CheckBoot:  func(t *testing.T, uuid string) { checkDeployISO(t, ir, uuid, mode) },
		CheckActive: func(t *testing.T, uuid string) {
			if _, err := os.Stat(publishedISO(ir, uuid)); !os.IsNotExist(err) {
				t.Errorf("the deploy ISO is still published once active (stat: %v)", err)
			}
		},
	}
	if mode == vms.UEFI {
		e.DriverInfo = append(e.DriverInfo, "bootloader=file://"+esp)
	}
	return e
}

// publishedISO is where Ironic publishes a node's deploy ISO with
// [redfish] use_swift = False: http_root/redfish/boot-<node uuid>.iso.
func publishedISO(ir *Ironic, uuid string) string {
	return filepath.Join(ir.HTTPRoot, "redfish", "boot-"+uuid+".iso")
}

// checkDeployISO reads the boot configuration off the ISO Ironic published
// for the node with isoinfo: ISOLINUX's for BIOS, GRUB's at Ironic's
// grub_config_path for UEFI. Its kernel command line must call the agent
// back to this Ironic with the token on the command line.
func checkDeployISO(t *testing.T, ir *Ironic, uuid string, mode vms.BootMode) {
	t.Helper()
	iso := publishedISO(ir, uuid)
	cfg := "/isolinux/isolinux.cfg"
	if mode == vms.UEFI {
		cfg = "/EFI/BOOT/grub.cfg"
	}
	out, err := exec.CommandContext(t.Context(), "isoinfo", "-i", iso, "-R", "-x", cfg).Output()
	if err != nil {
		t.Fatalf("isoinfo -x %s on Ironic's deploy ISO %s: %v", cfg, iso, err)
	}
	t.Logf("%s on Ironic's deploy ISO:\n%s", cfg, out)
	for _, want := range []string{"ipa-api-url=" + ir.APIURL, "ipa-agent-token=", "boot_method=vmedia"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("%s on the deploy ISO lacks %q", cfg, want)
		}
	}
}

// espGrubConfig is the ESP's own grub.cfg: GRUB (prefix /EFI/BOOT on the
// ESP, whose modules directory this image carries) finds the ISO by the
// kernel Ironic puts at its root and reads the grub.cfg Ironic writes at
// its grub_config_path there.
const espGrubConfig = `insmod iso9660
insmod linuxefi
search --no-floppy --file --set=root /vmlinuz
configfile ($root)/EFI/BOOT/grub.cfg
`

// buildESP writes an EFI system partition image for Ironic's UEFI deploy
// ISOs (driver_info bootloader) into dir and returns its path: a FAT file
// system (mkfs.vfat) holding metalbed's GRUB EFI image
// (disk.MakeGrubImages) as EFI/BOOT/BOOTX64.EFI, espGrubConfig beside it,
// and the GRUB modules that image lacks for an ISO (iso9660 and its
// dependency fshelp, linuxefi for Ironic's grub.cfg) with GRUB's module
// lists under EFI/BOOT/x86_64-efi, copied in with mtools.
func buildESP(t testing.TB, dir string) string {
	t.Helper()
	grub, err := disk.MakeGrubImages(t.Context(), "")
	if err != nil {
		t.Fatalf("GRUB EFI image: %v", err)
	}
	if len(grub.EFI) == 0 {
		t.Fatalf("GRUB EFI image: no x86_64-efi modules under %s (Debian package grub-efi-amd64-bin)", disk.DefaultGrubLibDir)
	}
	work := t.TempDir()
	loader, cfg := filepath.Join(work, "BOOTX64.EFI"), filepath.Join(work, "grub.cfg")
	if err := os.WriteFile(loader, grub.EFI, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(espGrubConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	modDir := filepath.Join(disk.DefaultGrubLibDir, "x86_64-efi")
	var mods []string
	for _, f := range []string{"iso9660.mod", "fshelp.mod", "linuxefi.mod", "moddep.lst", "command.lst", "fs.lst"} {
		mods = append(mods, filepath.Join(modDir, f))
	}
	esp := filepath.Join(dir, "esp.img")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	// 4 MiB: GRUB's image and modules take well under 1 MiB.
	run("mkfs.vfat", "-C", "-n", "ESP", esp, fmt.Sprint(4096))
	run("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT", "::/EFI/BOOT/x86_64-efi")
	run("mcopy", "-i", esp, loader, "::/EFI/BOOT/BOOTX64.EFI")
	run("mcopy", "-i", esp, cfg, "::/EFI/BOOT/grub.cfg")
	run("mcopy", append([]string{"-i", esp}, append(mods, "::/EFI/BOOT/x86_64-efi/")...)...)
	return esp
}

// milestone is a timeline entry a check looks for: its kind and the
// beginning of its detail.
type milestone struct{ kind, detail string }

// vmediaDeployMilestones are what a machine's timeline shows, in this
// order, when Ironic deploys it through virtual media: the CD inserted
// (InsertMedia of Ironic's ISO), the boot from it and the agent's lookup;
// the image written; the CD ejected and the boot from disk. Other entries
// may come between.
var vmediaDeployMilestones = []milestone{
	{"bmc.redfish.virtual_media", "insert Cd "}, {"machine.boot", "cdrom"}, {"agent.lookup", ""},
	{"agent.image.written", ""}, {"bmc.redfish.virtual_media", "eject Cd"}, {"machine.boot", "disk"},
}

// vmediaMilestones are vmediaDeployMilestones after automated cleaning on
// provide: the same ramdisk boot from the CD, the agent's lookup,
// heartbeat and cleaning step.
var vmediaMilestones = append([]milestone{
	{"bmc.redfish.virtual_media", "insert Cd "}, {"machine.boot", "cdrom"}, {"agent.lookup", ""},
	{"agent.heartbeat", ""}, {"agent.clean", "erase_devices_metadata"},
}, vmediaDeployMilestones...)

// checkVirtualMediaTimeline reads the machine's timeline from `metalbed
// up`'s timeline endpoint and finds want in it, in order.
func checkVirtualMediaTimeline(t *testing.T, endpoint, machine string, want []milestone) {
	t.Helper()
	if endpoint == "" {
		t.Fatalf("inventory.json of metalbed up --no-provisioner --timeline-addr names no timeline endpoint")
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint+"/v1/nodes/"+url.PathEscape(machine)+"/timeline", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("timeline of %s: %v", machine, err)
	}
	defer resp.Body.Close()
	var doc struct {
		Entries []timelineEntry `json:"entries"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("timeline of %s: %s", machine, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("timeline of %s: %v", machine, err)
	}
	next := 0
	var found strings.Builder
	for _, e := range doc.Entries {
		if next < len(want) && e.Kind == want[next].kind && strings.HasPrefix(e.Detail, want[next].detail) {
			fmt.Fprintf(&found, "  %s %-28s %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Detail)
			next++
		}
	}
	if next == len(want) {
		t.Logf("%s's timeline, the milestones checked:\n%s", machine, found.String())
		return
	}
	var b strings.Builder
	for _, e := range doc.Entries {
		fmt.Fprintf(&b, "  %s %-8s %-28s %s\n", e.Time.Format("15:04:05.000"), e.Source, e.Kind, e.Detail)
	}
	t.Errorf("%s's timeline lacks %s %q after the %d milestones before it; the timeline (%d entries):\n%s",
		machine, want[next].kind, want[next].detail, next, len(doc.Entries), b.String())
}
