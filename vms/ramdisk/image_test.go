package ramdisk

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
)

func buildTestImage(t *testing.T) []byte {
	t.Helper()
	init := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(init, []byte("#!/bin/sh\necho not really\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := BuildInitramfs(&b, ImageConfig{Init: init, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestInitramfsRoundTrip(t *testing.T) {
	img := buildTestImage(t)
	m, err := ReadMarker(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "test" || len(m.Modes) == 0 || m.Modes[0] != "iscsi" {
		t.Errorf("marker = %+v", m)
	}
}

// TestInitramfsReadableByCpio checks the archive with GNU cpio, a reader
// nobody here wrote: the kernel's unpacker takes the same newc format.
func TestInitramfsReadableByCpio(t *testing.T) {
	cpioBin := testenv.RequireTool(t, "cpio", "cpio")
	img := buildTestImage(t)
	zr, err := gzip.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpioBin, "-t", "-v")
	cmd.Stdin = zr
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	for _, want := range []string{"init", "dev/console", MarkerPath, "proc", "sys"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio listing lacks %s:\n%s", want, out)
		}
	}
	if !strings.Contains(string(out), "-rwxr-xr-x") {
		t.Errorf("/init not executable in listing:\n%s", out)
	}
}

func TestReadMarkerRefusesOthers(t *testing.T) {
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	zw.Write([]byte("070701 but garbage after the magic"))
	zw.Close()
	for name, b := range map[string][]byte{
		"empty":        {},
		"kernel":       append(make([]byte, 0x202), []byte("HdrS")...),
		"gzip garbage": plain.Bytes(),
		"bad gzip":     {0x1f, 0x8b, 0, 0, 0, 0, 0},
	} {
		if _, err := ReadMarker(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrNotRamdisk) {
			t.Errorf("%s: err = %v, want ErrNotRamdisk", name, err)
		}
	}
}

func FuzzReadInitramfs(f *testing.F) {
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadInitramfs(bytes.NewReader(b), int64(len(b)), "fuzz")
	})
}

func TestCheckStaticRejectsDynamic(t *testing.T) {
	f, err := os.Open("/bin/true")
	if err != nil {
		t.Skip("no /bin/true")
	}
	defer f.Close()
	if err := CheckStatic(f); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("CheckStatic(/bin/true) = %v, want dynamically linked", err)
	}
	if err := CheckStatic(strings.NewReader("#!/bin/sh\n")); err == nil {
		t.Error("CheckStatic(a shell script) = nil, want an error")
	}
}

// TestInitramfsCarriesGrub unpacks the initramfs with GNU cpio, as the
// kernel would, and reads the GRUB images back from disk.GrubImagesDir
// the way the bootloader step does.
func TestInitramfsCarriesGrub(t *testing.T) {
	cpioBin := testenv.RequireTool(t, "cpio", "cpio")
	testenv.RequireTool(t, "grub-mkimage", "grub-common")
	g, err := disk.MakeGrubImages(t.Context(), "")
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	init := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(init, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := BuildInitramfs(&b, ImageConfig{Init: init, Version: "test", Grub: g}); err != nil {
		t.Fatal(err)
	}
	img := bytes.Clone(b.Bytes())
	zr, err := gzip.NewReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cmd := exec.Command(cpioBin, "-i", "-d", "--quiet")
	cmd.Dir, cmd.Stdin = root, zr
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	back, err := disk.ReadGrubImages(filepath.Join(root, disk.GrubImagesDir))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.BIOSBoot, g.BIOSBoot) || !bytes.Equal(back.BIOSCore, g.BIOSCore) || !bytes.Equal(back.EFI, g.EFI) {
		t.Fatal("GRUB images differ after the initramfs round trip")
	}
	// The simulated kernel reads them from the archive itself.
	fs, err := ReadInitramfs(bytes.NewReader(img), int64(len(img)), "initrd")
	if err != nil {
		t.Fatal(err)
	}
	if bl := fs.Bootloaders; bl.Err != nil || bl.Placeholder || !bytes.Equal(bl.Grub.BIOSCore, g.BIOSCore) || !bytes.Equal(bl.Grub.EFI, g.EFI) ||
		bl.From != "initrd:"+disk.GrubImagesDir {
		t.Errorf("bootloaders read from the archive: %+v", bl)
	}
	if bl, err := BootloadersFrom(root); err != nil || bl.Placeholder || !bl.Grub.Has(disk.BootModeBIOS) || !bl.Grub.Has(disk.BootModeUEFI) {
		t.Errorf("BootloadersFrom(unpacked) = %+v, %v", bl, err)
	}
}

// TestInitramfsBootloaders reads what the bootloader step would install
// out of archives without GRUB (asked for or not) and with broken images.
func TestInitramfsBootloaders(t *testing.T) {
	init := filepath.Join(t.TempDir(), "init")
	os.WriteFile(init, []byte("program"), 0o755)
	read := func(cfg ImageConfig) Bootloaders {
		t.Helper()
		cfg.Init, cfg.Version = init, "t"
		var b bytes.Buffer
		if err := BuildInitramfs(&b, cfg); err != nil {
			t.Fatal(err)
		}
		fs, err := ReadInitramfs(bytes.NewReader(b.Bytes()), int64(b.Len()), "rd")
		if err != nil {
			t.Fatal(err)
		}
		return fs.Bootloaders
	}
	if bl := read(ImageConfig{}); bl.Grub != nil || bl.Placeholder || bl.Err != nil {
		t.Errorf("without GRUB: %+v", bl)
	}
	if bl := read(ImageConfig{Placeholder: true}); bl.Grub != nil || !bl.Placeholder || bl.Err != nil {
		t.Errorf("placeholder asked: %+v", bl)
	}
	broken := &disk.GrubImages{EFI: []byte("not a PE image")}
	bl := read(ImageConfig{Grub: broken})
	if bl.Err == nil || !strings.Contains(bl.Err.Error(), "PE/COFF") || !strings.Contains(bl.Err.Error(), "rd:"+disk.GrubImagesDir) {
		t.Fatalf("broken GRUB: %+v", bl)
	}
	if _, err := bl.Install(t.Context(), nil, 0, disk.BootModeUEFI); err != bl.Err {
		t.Errorf("Install with broken GRUB = %v, want %v", err, bl.Err)
	}
	// An image too large to be GRUB's is not read: the archive still
	// unpacks, the step fails.
	huge := read(ImageConfig{Grub: &disk.GrubImages{EFI: make([]byte, 33<<20)}})
	if huge.Err == nil || !strings.Contains(huge.Err.Error(), disk.GrubEFIImg) || huge.Grub != nil {
		t.Errorf("huge GRUB image: %+v", huge)
	}
}
