package testbed

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
)

// ipxeEFI is Debian's iPXE EFI binary (package ipxe).
const ipxeEFI = "/usr/lib/ipxe/ipxe.efi"

// TestRedfishUefiHttpBoot: a Once UefiHttp override with HttpBootUri set
// through Redfish boots the simulated machine from that URI in UEFI mode:
// an ISO built as Ironic builds its virtual media ISO boots the ramdisk in
// it; Debian's ipxe.efi runs iPXE, which asks DHCP and boots the kernel and
// ramdisk of the script it is given. The override reads Disabled after
// the boot. A URI that is 404 and an HTTP boot under legacy BIOS flags
// fail on the console and as boot-failed events.
func TestRedfishUefiHttpBoot(t *testing.T) {
	testenv.RequireFile(t, ipxeEFI, "ipxe")
	efi, err := os.ReadFile(ipxeEFI)
	if err != nil {
		t.Fatal(err)
	}
	kernel, initrd := deployKernelInitrd(t)
	isos := deployISOs(t)
	srv := serveFiles(t, map[string][]byte{
		"/both.iso": isos["both"], "/ipxe.efi": efi, "/vmlinuz": kernel, "/initrd": initrd,
		// iPXE resolves the script's relative names against its URL.
		"/boot.ipxe": []byte("#!ipxe\nkernel vmlinuz " + vmediaParams + "\ninitrd initrd\nboot\n"),
	})
	leased := net.IPv4(127, 77, 1, 9)
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), ExternalDHCP: bootDHCP(t, leased, srv+"/boot.ipxe"),
		Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	m := tb.fleet.nodes[0].machine
	var mu sync.Mutex
	var failed []string
	defer m.Subscribe(func(ev vms.Event) {
		if ev.Kind == vms.EventBootFail {
			mu.Lock()
			failed = append(failed, ev.Detail)
			mu.Unlock()
		}
	})()
	bootFailed := func(n int, want string) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(failed) >= n && strings.Contains(failed[n-1], want)
		}, "boot-failed event %d with %q (have %q)", n, want, stringer(func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(failed, " | ") }))
	}
	rf := newRedfishClient(t, tb, 0)
	bootHTTP := func(uri string) {
		t.Helper()
		rf.must("POST", rf.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceOff"}, 204)
		rf.must("PATCH", rf.sys, map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "UefiHttp",
			"BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI", "HttpBootUri": uri}}, 200)
		rf.must("POST", rf.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, 204)
	}
	override := func() string {
		_, s := rf.do("GET", rf.sys, nil)
		b, _ := s["Boot"].(map[string]any)
		return b["BootSourceOverrideEnabled"].(string)
	}

	// An ISO: booted as the virtual CD would be, through its EFI image.
	off := consoleLen(m)
	bootHTTP(srv + "/both.iso")
	con := consoleSince(t, m, off,
		"Booting from network (UEFI HTTP): "+srv+"/both.iso",
		"an ISO 9660 image; booting it as a RAM disk CD",
		"GRUB reads /EFI/BOOT/grub.cfg on the EFI image",
		"Command line: BOOT_IMAGE=/vmlinuz "+vmediaParams+" --",
		"Unpacking initramfs /initrd (metalbed-ramdisk")
	t.Logf("UEFI HTTP boot of an ISO:\n%s", con)
	if o := override(); o != "Disabled" {
		t.Errorf("Once UefiHttp after the boot reads %s", o)
	}

	// iPXE's EFI binary: iPXE runs, asks DHCP, boots the script's kernel.
	off = consoleLen(m)
	bootHTTP(srv + "/ipxe.efi")
	con = consoleSince(t, m, off,
		"Booting from network (UEFI HTTP): "+srv+"/ipxe.efi",
		"iPXE 1.21.1",
		"Filename: "+srv+"/boot.ipxe",
		"Unpacking initramfs initrd (metalbed-ramdisk")
	t.Logf("UEFI HTTP boot of ipxe.efi:\n%s", con)
	if o := override(); o != "Disabled" {
		t.Errorf("Once UefiHttp after the iPXE boot reads %s", o)
	}

	// A URI that is not there.
	n := len(failedSoFar(&mu, &failed))
	off = consoleLen(m)
	bootHTTP(srv + "/gone.efi")
	consoleSince(t, m, off, "404", "No bootable device.")
	bootFailed(n+1, "404")

	// Legacy BIOS has no HTTP boot (Redfish refuses the pair; the machine
	// is told it directly here).
	rf.must("POST", rf.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceOff"}, 204)
	hm, ok := m.(vms.HTTPBootMachine)
	if !ok {
		t.Fatalf("the simulated machine %T does no HTTP boot", m)
	}
	if err := hm.SetHTTPBoot(t.Context(), vms.NewBootFlags(vms.BootPXE, false, false), srv+"/ipxe.efi"); err != nil {
		t.Fatal(err)
	}
	off = consoleLen(m)
	rf.must("POST", rf.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, 204)
	consoleSince(t, m, off, "Booting from network (legacy BIOS HTTP)", "not available in legacy BIOS mode", "No bootable device.")
	bootFailed(n+2, "legacy BIOS")
}

// failedSoFar copies the boot failures recorded so far.
func failedSoFar(mu *sync.Mutex, failed *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *failed...)
}
