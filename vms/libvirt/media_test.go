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
	"path/filepath"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk/iso9660/isotest"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// TestVirtualMediaBoot: an ISO built with genisoimage and ISOLINUX, as
// Ironic builds its deploy ISO for BIOS machines, is inserted into a real
// VM's CD drive from an HTTP URL; a one-time Cd override boots it under
// SeaBIOS (the kernel and initramfs from the ISO, the command line from
// isolinux.cfg), is consumed, and the eject empties the drive.
func TestVirtualMediaBoot(t *testing.T) {
	requireLibvirt(t)
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
	// Ironic's isolinux_config.template, filled in.
	cfg := "default boot\n\nlabel boot\nkernel /vmlinuz\nappend initrd=/initrd text console=ttyS0,115200 panic=-1 mbnonce=" + nonce + " --\n"
	iso := isotest.Build(t, isotest.Spec{BIOS: true, Files: map[string][]byte{
		"vmlinuz": kernel, "initrd": initrd, "isolinux/isolinux.cfg": []byte(cfg),
	}})
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(iso))))
	defer srv.Close()

	id := fmt.Sprintf("m%d", os.Getpid()%1e6)
	netw := createNetwork(t, id, "10.233.9.1/24")
	consoleLog := filepath.Join(dir, "console.log")
	m := newMachine(t, libvirt.Config{
		Name: "mbtest-" + id, MAC: []byte{0x52, 0x54, 0x00, 0xcd, byte(os.Getpid()), 1}, Bridge: netw.Bridge,
		Disk: filepath.Join(dir, "disk.img"), DiskBytes: 64 << 20,
		SerialLog: consoleLog, BootMode: vms.BIOS,
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
	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootCDROM, false, false)); err != nil {
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
	t.Logf("power on to the ISO's init on the console: %v", time.Since(start))
	if err := m.EjectMedia(ctx, vms.MediaCD); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Media(ctx, vms.MediaCD); got != "" {
		t.Errorf("Media after eject = %q", got)
	}
}
