//go:build libvirt_dlopen

package libvirt_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/disk/iso9660/isotest"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// TestVirtualMediaBoot: an ISO built with genisoimage, as Ironic builds
// its deploy ISO — ISOLINUX for BIOS, an EFI El Torito image with GRUB for
// UEFI — is inserted into a real VM's CD drive from an HTTP URL; a
// one-time Cd override boots it under SeaBIOS or OVMF (the kernel and
// initramfs from the ISO, the command line from isolinux.cfg or grub.cfg),
// is consumed, and the eject empties the drive.
//
// The "built" cases boot the ISO metalbed's conductor builds in Go
// (disk.BuildBootISO: Ironic's layout and templates, ISOLINUX with the
// boot info table, efiboot.img with grub-mkimage's GRUB).
func TestVirtualMediaBoot(t *testing.T) {
	requireLibvirt(t)
	for i, tc := range []struct {
		name  string
		mode  vms.BootMode
		built bool
	}{
		{"bios", vms.BIOS, false}, {"uefi", vms.UEFI, false},
		{"built-bios", vms.BIOS, true}, {"built-uefi", vms.UEFI, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testVirtualMediaBoot(t, tc.mode, tc.built, i) })
	}
}

// builtISO writes disk.BuildBootISO's image of kernel and initrd to
// dir/image.iso.
func builtISO(t *testing.T, mode vms.BootMode, kernel, initrd, params, dir string) string {
	t.Helper()
	loaders, err := disk.DefaultISOLoaders(t.Context(), mode == vms.BIOS, mode == vms.UEFI)
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	out := filepath.Join(dir, "image.iso")
	err = disk.BuildBootISO(t.Context(), disk.BootISOConfig{Kernel: kernel, Initrd: initrd, Cmdline: params,
		BIOS: mode == vms.BIOS, UEFI: mode == vms.UEFI, Loaders: loaders}, out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testVirtualMediaBoot(t *testing.T, mode vms.BootMode, built bool, idx int) {
	ctx := t.Context()
	dir := t.TempDir()
	buildInitramfs(t, filepath.Join(dir, "initrd.gz"))
	kernel, err := os.ReadFile(kernelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := os.ReadFile(filepath.Join(dir, "initrd.gz"))
	if err != nil {
		t.Fatal(err)
	}
	nonceB := make([]byte, 8)
	rand.Read(nonceB)
	nonce := hex.EncodeToString(nonceB)
	params := "console=ttyS0,115200 panic=-1 mbnonce=" + nonce
	spec := isotest.Spec{Files: map[string][]byte{"vmlinuz": kernel, "initrd": initrd}}
	if mode == vms.BIOS {
		// Ironic's isolinux_config.template, filled in.
		spec.BIOS = true
		spec.Files["isolinux/isolinux.cfg"] = []byte("default boot\n\nlabel boot\nkernel /vmlinuz\nappend initrd=/initrd text " + params + " --\n")
	} else {
		// Ironic's grub_config.template on the ISO, and an ESP whose GRUB
		// finds the ISO's files (Ironic copies the distribution's signed
		// shim and GRUB there; here a GRUB built with grub-mkstandalone).
		cfg := "set default=0\nset timeout=1\nmenuentry \"boot_partition\" {\nlinux /vmlinuz " + params + " --\ninitrd /initrd\n}\n"
		spec.Files["EFI/BOOT/grub.cfg"] = []byte(cfg)
		spec.ESP = map[string][]byte{"EFI/BOOT/BOOTX64.EFI": grubEFI(t, "search --no-floppy --file /vmlinuz --set=root\nconfigfile /EFI/BOOT/grub.cfg\n")}
	}
	var iso string
	if built {
		iso = builtISO(t, mode, kernelPath(t), filepath.Join(dir, "initrd.gz"), params, t.TempDir())
	} else {
		iso = isotest.Build(t, spec)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(iso))))
	defer srv.Close()

	id := fmt.Sprintf("m%d%d", os.Getpid()%1e6, idx)
	netw := createNetwork(t, id, fmt.Sprintf("10.233.%d.1/24", 9+idx))
	consoleLog := filepath.Join(dir, "console.log")
	m := newMachine(t, libvirt.Config{
		Name: "mbtest-" + id, MAC: []byte{0x52, 0x54, 0x00, 0xcd, byte(os.Getpid()), byte(idx)}, Bridge: netw.Bridge,
		Disk: filepath.Join(dir, "disk.img"), DiskBytes: 64 << 20,
		SerialLog: consoleLog, BootMode: mode,
	})
	if err := m.InsertMedia(ctx, vms.MediaCD, srv.URL+"/missing.iso"); err == nil {
		t.Error("a 404 image was inserted")
	}
	if err := m.InsertMedia(ctx, vms.MediaUSB, srv.URL+"/image.iso"); err == nil {
		t.Error("a USB stick was inserted into a VM")
	}
	url := srv.URL + "/image.iso"
	if err := m.InsertMedia(ctx, vms.MediaCD, url); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Media(ctx, vms.MediaCD); got != url {
		t.Errorf("Media = %q, want %q", got, url)
	}
	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootCDROM, false, mode == vms.UEFI)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Power(ctx, vms.ActionOn); err != nil {
		t.Fatal(err)
	}
	if f, err := m.BootFlags(ctx); err != nil || f != (vms.BootFlags{}) {
		t.Errorf("boot flags after the boot: % x, %v; want the one-time Cd consumed", f, err)
	}
	want := []byte("metalbed-pxe-init: booted nonce=" + nonce)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		log, _ := os.ReadFile(consoleLog)
		if bytes.Contains(log, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the serial console after %v:\n%s", want, time.Since(start), tail(log, 3000))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("%s: power on to the ISO's init on the console: %v", mode, time.Since(start))
	// /init powers the machine off; then the tray is emptied.
	for {
		ps, err := m.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ps == vms.PowerOff {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine still %s after /init powered off", ps)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := m.EjectMedia(ctx, vms.MediaCD); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Media(ctx, vms.MediaCD); got != "" {
		t.Errorf("Media after eject = %q", got)
	}
}

// grubEFI builds a standalone GRUB EFI binary (Debian's
// grub-efi-amd64-bin) whose embedded configuration is cfg.
func grubEFI(t *testing.T, cfg string) []byte {
	t.Helper()
	mk := testenv.RequireTool(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "grub.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "BOOTX64.EFI")
	cmd := exec.CommandContext(t.Context(), mk, "-O", "x86_64-efi", "-o", out,
		"--modules=part_gpt part_msdos iso9660 fat search linux normal configfile",
		"boot/grub/grub.cfg="+filepath.Join(dir, "grub.cfg"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("grub-mkstandalone: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
