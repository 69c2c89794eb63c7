package vmedia_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/disk/iso9660/isotest"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
	"github.com/metalbed/metalbed/vms/sim/vmedia"
)

// Ironic's templates (ironic/common/isolinux_config.template and
// grub_conf.template) as Ironic renders them for a virtual media deploy.
const (
	params      = "ipa-api-url=http://127.0.0.1:6385 ipa-agent-token=t0k boot_method=vmedia"
	isolinuxCfg = "default boot\n\nlabel boot\nkernel /vmlinuz\nappend initrd=/initrd text " + params + " --\n"
	grubCfg     = "menuentry \"install\" {\nlinux /vmlinuz " + params + " --\ninitrd /initrd\n}\n"
)

// bzImage passes the Linux boot protocol check.
func bzImage() []byte {
	k := make([]byte, 8192)
	k[510], k[511] = 0x55, 0xAA
	copy(k[0x202:], "HdrS")
	return k
}

var (
	initrd  = []byte("metalbed initrd stand-in")
	padding = bytes.Repeat([]byte{0xA5}, 4<<20) // makes a full download visible
)

func ironicISO(t *testing.T, bios, efi bool) []byte {
	t.Helper()
	s := isotest.Spec{BIOS: bios, Files: map[string][]byte{
		"vmlinuz": bzImage(), "initrd": initrd, "padding.bin": padding,
	}}
	if bios {
		s.Files["isolinux/isolinux.cfg"] = []byte(isolinuxCfg)
	}
	if efi {
		s.ESP = map[string][]byte{"EFI/BOOT/BOOTX64.EFI": []byte("MZ stand-in"), "EFI/BOOT/grub.cfg": []byte(grubCfg)}
	}
	b, err := os.ReadFile(isotest.Build(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve serves image at /image.iso with Range support (http.ServeContent),
// or without (noRange), and counts the bytes sent.
type server struct {
	*httptest.Server
	sent atomic.Int64
}

func serve(t *testing.T, image []byte, noRange bool) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/image.iso" {
			http.NotFound(w, r)
			return
		}
		cw := &countingWriter{ResponseWriter: w, n: &s.sent}
		if noRange {
			cw.Write(image)
			return
		}
		http.ServeContent(cw, r, "image.iso", time.Time{}, bytes.NewReader(image))
	}))
	t.Cleanup(s.Close)
	return s
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.ResponseWriter.Write(p)
}

type booted struct {
	mu     sync.Mutex
	img    *pxe.Image
	events []string
}

func bootCtx(mode vms.BootMode, dev vms.BootDevice, media func(vms.MediaDevice) string) (*sim.BootContext, *testenv.SyncBuffer, *booted) {
	con := &testenv.SyncBuffer{}
	got := &booted{}
	return &sim.BootContext{
		Machine: "node-0", Device: dev, Mode: mode, Console: con,
		NICs:  []vms.NIC{{MAC: sim.MAC("node-0", 0, 0)}},
		Media: media,
		Emit: func(k vms.EventKind, d string) {
			got.mu.Lock()
			got.events = append(got.events, string(k)+" "+d)
			got.mu.Unlock()
		},
	}, con, got
}

func booter(got *booted) vmedia.Booter {
	return vmedia.Booter{Exec: func(ctx context.Context, b *sim.BootContext, img pxe.Image) error {
		got.mu.Lock()
		got.img = &img
		got.mu.Unlock()
		return nil
	}}
}

func inserted(url string) func(vms.MediaDevice) string {
	return func(d vms.MediaDevice) string {
		if d == vms.MediaCD {
			return url
		}
		return ""
	}
}

func checkBooted(t *testing.T, got *booted, con *testenv.SyncBuffer, wantCmdline string) {
	t.Helper()
	if got.img == nil {
		t.Fatalf("nothing booted; console:\n%s", con)
	}
	if got.img.KernelName != "/vmlinuz" || got.img.Kernel.Sum != pxe.Checksum(bzImage()) || got.img.Cmdline != wantCmdline ||
		len(got.img.Initrds) != 1 || got.img.Initrds[0].Name != "/initrd" || got.img.Initrds[0].Sum != pxe.Checksum(initrd) {
		t.Errorf("booted %s %q, %d initrds", got.img.KernelName, got.img.Cmdline, len(got.img.Initrds))
	}
	if got.img.Lease.IP != nil {
		t.Errorf("a media boot hands over with a lease: %v", got.img.Lease)
	}
	for _, want := range []string{"Loading /vmlinuz", "Loading /initrd", "Command line: " + wantCmdline} {
		if !strings.Contains(con.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, con)
		}
	}
}

// TestBootIronicISO boots the ISO Ironic builds for virtual media: BIOS
// through ISOLINUX's isolinux.cfg, UEFI through the El Torito EFI image's
// grub.cfg; the image is read with range requests, never whole.
func TestBootIronicISO(t *testing.T) {
	iso := ironicISO(t, true, true)
	for _, tc := range []struct {
		mode    vms.BootMode
		cmdline string
		console string
	}{
		{vms.BIOS, "BOOT_IMAGE=/vmlinuz initrd=/initrd text " + params + " --", "ISOLINUX reads /isolinux/isolinux.cfg"},
		{vms.UEFI, "BOOT_IMAGE=/vmlinuz " + params + " --", "GRUB reads /EFI/BOOT/grub.cfg on the EFI image"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			srv := serve(t, iso, false)
			b, con, got := bootCtx(tc.mode, vms.BootCDROM, inserted(srv.URL+"/image.iso"))
			if err := booter(got).Boot(t.Context(), b); err != nil {
				t.Fatalf("%v; console:\n%s", err, con)
			}
			checkBooted(t, got, con, tc.cmdline)
			if !strings.Contains(con.String(), tc.console) || !strings.Contains(con.String(), "read on demand") {
				t.Errorf("console lacks %q:\n%s", tc.console, con)
			}
			if sent := srv.sent.Load(); sent >= int64(len(padding)) {
				t.Errorf("the server sent %d bytes of a %d-byte image: not read on demand", sent, len(iso))
			}
			if !slicesContains(got.events, "boot cdrom") {
				t.Errorf("events %v", got.events)
			}
		})
	}
}

// TestBootBuiltISO boots the deploy ISO metalbed's conductor builds
// (disk.BuildBootISO, Ironic's layout without mkisofs): BIOS through
// ISOLINUX, UEFI through GRUB on the EFI image, which leads to the ISO's
// /EFI/BOOT/grub.cfg.
func TestBootBuiltISO(t *testing.T) {
	loaders, err := disk.DefaultISOLoaders(t.Context(), true, true)
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	dir := t.TempDir()
	kernel, initrdFile, iso := filepath.Join(dir, "kernel"), filepath.Join(dir, "initrd"), filepath.Join(dir, "boot.iso")
	if err := os.WriteFile(kernel, bzImage(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrdFile, initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	err = disk.BuildBootISO(t.Context(), disk.BootISOConfig{Kernel: kernel, Initrd: initrdFile, Cmdline: params,
		BIOS: true, UEFI: true, Loaders: loaders}, iso)
	if err != nil {
		t.Fatal(err)
	}
	image, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode    vms.BootMode
		cmdline string
		console string
	}{
		{vms.BIOS, "BOOT_IMAGE=/vmlinuz initrd=/initrd text " + params + " --", "ISOLINUX reads /isolinux/isolinux.cfg"},
		{vms.UEFI, "BOOT_IMAGE=/vmlinuz " + params + " --", "GRUB reads /EFI/BOOT/grub.cfg\r"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			srv := serve(t, image, false)
			b, con, got := bootCtx(tc.mode, vms.BootCDROM, inserted(srv.URL+"/image.iso"))
			if err := booter(got).Boot(t.Context(), b); err != nil {
				t.Fatalf("%v; console:\n%s", err, con)
			}
			checkBooted(t, got, con, tc.cmdline)
			if !strings.Contains(con.String(), tc.console) {
				t.Errorf("console lacks %q:\n%s", tc.console, con)
			}
		})
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestServerIgnoresRange: a server that answers 200 to a range request
// still boots, downloading the image once, and the console says so.
func TestServerIgnoresRange(t *testing.T) {
	srv := serve(t, ironicISO(t, true, false), true)
	b, con, got := bootCtx(vms.BIOS, vms.BootCDROM, inserted(srv.URL+"/image.iso"))
	if err := booter(got).Boot(t.Context(), b); err != nil {
		t.Fatalf("%v; console:\n%s", err, con)
	}
	checkBooted(t, got, con, "BOOT_IMAGE=/vmlinuz initrd=/initrd text "+params+" --")
	if !strings.Contains(con.String(), "ignores Range requests: downloaded whole") {
		t.Errorf("console:\n%s", con)
	}
}

// TestBootFailures: what real firmware fails on fails here, on the console.
func TestBootFailures(t *testing.T) {
	biosOnly := serve(t, ironicISO(t, true, false), false)
	efiOnly := serve(t, ironicISO(t, false, true), false)
	notISO := serve(t, make([]byte, 64<<10), false)
	for _, tc := range []struct {
		name    string
		mode    vms.BootMode
		url     string
		is      error
		console string
	}{
		{"404", vms.BIOS, biosOnly.URL + "/missing.iso", vmedia.ErrHTTPStatus, "404 Not Found"},
		{"unreachable", vms.BIOS, "http://127.0.0.1:1/x.iso", nil, "connection refused"},
		{"bios-only on uefi", vms.UEFI, biosOnly.URL + "/image.iso", vmedia.ErrNotBootable, "no El Torito EFI entry"},
		{"efi-only on bios", vms.BIOS, efiOnly.URL + "/image.iso", vmedia.ErrNotBootable, "no El Torito BIOS entry"},
		{"not an iso", vms.BIOS, notISO.URL + "/image.iso", vmedia.ErrNotBootable, "not an ISO 9660 image"},
		{"not http", vms.BIOS, "nfs://server/x.iso", nil, "only http and https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, con, got := bootCtx(tc.mode, vms.BootCDROM, inserted(tc.url))
			err := booter(got).Boot(t.Context(), b)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(con.String(), tc.console) {
				t.Errorf("console lacks %q:\n%s", tc.console, con)
			}
			if got.img != nil {
				t.Error("booted anyway")
			}
		})
	}
}

// TestEjectDuringBoot: the medium leaves the drive after the firmware
// started reading it; the next read fails as a pulled CD does.
func TestEjectDuringBoot(t *testing.T) {
	srv := serve(t, ironicISO(t, true, false), false)
	url := srv.URL + "/image.iso"
	var calls atomic.Int32
	media := func(vms.MediaDevice) string {
		if calls.Add(1) > 3 { // the firmware's look, the probe, one read
			return ""
		}
		return url
	}
	b, con, got := bootCtx(vms.BIOS, vms.BootCDROM, media)
	err := booter(got).Boot(t.Context(), b)
	if !errors.Is(err, vmedia.ErrEjected) {
		t.Fatalf("err = %v; console:\n%s", err, con)
	}
	if !strings.Contains(con.String(), "the medium was ejected") || got.img != nil {
		t.Errorf("console:\n%s", con)
	}
}

// TestEjectDuringBootFault: a fault eject-during-boot (layer redfish, op
// vmedia-boot) asked once as the boot starts ejects the medium through the
// machine after Arg reads; the read after fails as a pulled CD does. A
// rule for the next boot only (count 1) leaves the second boot alone.
func TestEjectDuringBootFault(t *testing.T) {
	srv := serve(t, ironicISO(t, true, false), false)
	url := srv.URL + "/image.iso"
	faults := faulttest.New(t, fault.Rule{Layer: fault.Redfish, Action: "eject-during-boot", Arg: "2", Count: 1})
	var mu sync.Mutex
	drive := url
	media := func(vms.MediaDevice) string { mu.Lock(); defer mu.Unlock(); return drive }
	var ejected []vms.MediaDevice
	eject := func(dev vms.MediaDevice) { mu.Lock(); defer mu.Unlock(); drive = ""; ejected = append(ejected, dev) }

	b, con, got := bootCtx(vms.BIOS, vms.BootCDROM, media)
	b.Eject = eject
	bt := booter(got)
	bt.Faults = faults
	err := bt.Boot(t.Context(), b)
	if !errors.Is(err, vmedia.ErrEjected) || got.img != nil {
		t.Fatalf("err = %v, booted %v; console:\n%s", err, got.img != nil, con)
	}
	if !strings.Contains(con.String(), "read error: the medium was ejected") {
		t.Errorf("console:\n%s", con)
	}
	if len(ejected) != 1 || ejected[0] != vms.MediaCD {
		t.Errorf("ejected %v, want [cd] once", ejected)
	}
	if asked := faults.Asked(); len(asked) != 1 || asked[0].Op != "vmedia-boot" || asked[0].Who.Machine != "node-0" || !asked[0].Hit {
		t.Errorf("asked %+v, want one hit at vmedia-boot for node-0", asked)
	}

	mu.Lock()
	drive = url
	mu.Unlock()
	b, con, got = bootCtx(vms.BIOS, vms.BootCDROM, media)
	b.Eject = eject
	bt = booter(got)
	bt.Faults = faults
	if err := bt.Boot(t.Context(), b); err != nil {
		t.Fatalf("second boot: %v; console:\n%s", err, con)
	}
	checkBooted(t, got, con, "BOOT_IMAGE=/vmlinuz initrd=/initrd text "+params+" --")
}

// TestUSBStickFAT boots a FAT USB stick image in UEFI mode.
func TestUSBStickFAT(t *testing.T) {
	img := isotest.ESPImage(t, map[string][]byte{
		"EFI/BOOT/BOOTX64.EFI": []byte("MZ"), "EFI/BOOT/grub.cfg": []byte(grubCfg),
		"vmlinuz": bzImage(), "initrd": initrd,
	})
	srv := serve(t, img, false)
	b, con, got := bootCtx(vms.UEFI, vms.BootUSB, func(d vms.MediaDevice) string {
		if d == vms.MediaUSB {
			return srv.URL + "/image.iso"
		}
		return ""
	})
	if err := booter(got).Boot(t.Context(), b); err != nil {
		t.Fatalf("%v; console:\n%s", err, con)
	}
	checkBooted(t, got, con, "BOOT_IMAGE=/vmlinuz "+params+" --")
}

// TestHTTPSVerification: an image over HTTPS is read when its certificate
// chains to the CA file, refused otherwise, read with Insecure.
func TestHTTPSVerification(t *testing.T) {
	iso := ironicISO(t, true, false)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "image.iso", time.Time{}, bytes.NewReader(iso))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	if _, err := vmedia.OpenHTTPImage(t.Context(), srv.URL+"/image.iso", vmedia.ImageOptions{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v", err)
	}
	for _, opt := range []vmedia.ImageOptions{{CAFile: ca}, {Insecure: true}} {
		im, err := vmedia.OpenHTTPImage(t.Context(), srv.URL+"/image.iso", opt)
		if err != nil {
			t.Fatalf("%+v: %v", opt, err)
		}
		if im.Size() != int64(len(iso)) || !im.Ranged() {
			t.Errorf("size %d ranged %v", im.Size(), im.Ranged())
		}
	}
}

// TestHTTPImageReads: reads across blocks match the image, the cache stays
// bounded, and every request is a range request.
func TestHTTPImageReads(t *testing.T) {
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	srv := serve(t, data, false)
	im, err := vmedia.OpenHTTPImage(t.Context(), srv.URL+"/image.iso", vmedia.ImageOptions{BlockSize: 4096, CacheBlocks: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ off, n int }{{0, 10}, {4090, 20}, {100000, 30000}, {len(data) - 5, 5}, {7, 4096 * 3}} {
		p := make([]byte, c.n)
		if n, err := im.ReadAt(p, int64(c.off)); err != nil || n != c.n || !bytes.Equal(p, data[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d, %d) = %d, %v", c.off, c.n, n, err)
		}
	}
	p := make([]byte, 10)
	if n, err := im.ReadAt(p, int64(len(data)-4)); n != 4 || err == nil {
		t.Errorf("read over the end: %d %v", n, err)
	}
	if sent := srv.sent.Load(); sent > 200<<10 {
		t.Errorf("sent %d bytes for reads of ~70 KiB", sent)
	}
}

// TestIronicMkisofsCommands boots ISOs made with the very mkisofs command
// lines of Ironic 21.4's images.py: create_isolinux_image_for_bios (no
// -c, ISOLINUX at isolinux/isolinux.bin) and create_esp_image_for_uefi
// (EFI only: -e boot/grub/efiboot.img; grub.cfg on the ISO at
// grub_config_path, EFI/BOOT/grub.cfg, found by the ESP's own grub.cfg
// through search and configfile).
func TestIronicMkisofsCommands(t *testing.T) {
	testenv.RequireFile(t, isotest.IsolinuxBin, "isolinux")
	isolinux, err := os.ReadFile(isotest.IsolinuxBin)
	if err != nil {
		t.Fatal(err)
	}
	bios := isotest.Mkisofs(t, map[string][]byte{
		"vmlinuz": bzImage(), "initrd": initrd, "isolinux/isolinux.bin": isolinux,
		"isolinux/isolinux.cfg": []byte(isolinuxCfg),
	}, "-r", "-V", "VMEDIA_BOOT_ISO", "-J", "-l", "-publisher", "ironic", "-no-emul-boot",
		"-boot-load-size", "4", "-boot-info-table", "-b", "isolinux/isolinux.bin")
	espGrub := "search --no-floppy --set=root --label VMEDIA_BOOT_ISO\nset prefix=($root)/EFI/BOOT\nconfigfile $prefix/grub.cfg\n"
	uefi := isotest.Mkisofs(t, map[string][]byte{
		"vmlinuz": bzImage(), "initrd": initrd, "EFI/BOOT/grub.cfg": []byte(grubCfg),
		"boot/grub/efiboot.img": isotest.ESPImage(t, map[string][]byte{
			"EFI/BOOT/BOOTX64.EFI": []byte("MZ"), "EFI/BOOT/grub.cfg": []byte(espGrub)}),
	}, "-r", "-V", "VMEDIA_BOOT_ISO", "-l", "-publisher", "ironic", "-e", "boot/grub/efiboot.img", "-no-emul-boot")
	for _, tc := range []struct {
		iso     string
		mode    vms.BootMode
		cmdline string
		fail    string
	}{
		{bios, vms.BIOS, "BOOT_IMAGE=/vmlinuz initrd=/initrd text " + params + " --", ""},
		{uefi, vms.UEFI, "BOOT_IMAGE=/vmlinuz " + params + " --", ""},
		{bios, vms.UEFI, "", "no El Torito EFI entry"},
		{uefi, vms.BIOS, "", "no El Torito BIOS entry"},
	} {
		b, err := os.ReadFile(tc.iso)
		if err != nil {
			t.Fatal(err)
		}
		srv := serve(t, b, false)
		bc, con, got := bootCtx(tc.mode, vms.BootCDROM, inserted(srv.URL+"/image.iso"))
		err = booter(got).Boot(t.Context(), bc)
		if tc.fail != "" {
			if err == nil || !strings.Contains(con.String(), tc.fail) {
				t.Errorf("%s on %s: %v; console:\n%s", filepath.Base(filepath.Dir(tc.iso)), tc.mode, err, con)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v; console:\n%s", tc.mode, err, con)
		}
		checkBooted(t, got, con, tc.cmdline)
	}
}

// TestMislabelledEFIImage: an El Torito entry for the x86 platform whose
// image is an ESP boots in UEFI mode, as with EDK2, which ignores the
// platform ID.
func TestMislabelledEFIImage(t *testing.T) {
	iso := isotest.Mkisofs(t, map[string][]byte{
		"vmlinuz": bzImage(), "initrd": initrd, "boot/grub/grub.cfg": []byte(grubCfg),
		"efiboot.img": isotest.ESPImage(t, map[string][]byte{"EFI/BOOT/BOOTX64.EFI": []byte("MZ")}),
	}, "-r", "-J", "-b", "efiboot.img", "-no-emul-boot")
	b, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, b, false)
	bc, con, got := bootCtx(vms.UEFI, vms.BootCDROM, inserted(srv.URL+"/image.iso"))
	if err := booter(got).Boot(t.Context(), bc); err != nil {
		t.Fatalf("%v; console:\n%s", err, con)
	}
	checkBooted(t, got, con, "BOOT_IMAGE=/vmlinuz "+params+" --")
}
