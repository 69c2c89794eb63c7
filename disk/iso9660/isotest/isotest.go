// Package isotest builds bootable ISO 9660 images for tests with the real
// tools Ironic and distributions use: genisoimage (Ironic runs it as
// mkisofs) or xorriso, ISOLINUX for the BIOS El Torito entry, and
// dosfstools and mtools for the FAT image of the EFI entry. A missing tool
// skips the test (fails it under METALBED_INTEROP=required). Only tests
// import it.
package isotest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// Where Debian's isolinux and syslinux-common install the BIOS loader.
const (
	IsolinuxBin = "/usr/lib/ISOLINUX/isolinux.bin"
	LdlinuxC32  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// Spec is what goes into an image.
type Spec struct {
	// Files are the image's files by slash-separated path.
	Files map[string][]byte
	// BIOS adds isolinux/isolinux.bin (and ldlinux.c32) as the BIOS
	// no-emulation El Torito entry, with -boot-load-size 4
	// -boot-info-table as Ironic passes them.
	BIOS bool
	// ESP, when not nil, is the files of a FAT image (efiboot.img) added
	// as the EFI El Torito entry (-eltorito-alt-boot -e efiboot.img).
	ESP map[string][]byte
	// Xorriso builds with xorriso -as mkisofs instead of genisoimage.
	Xorriso bool
	// Label is the volume ID; default "METALBED".
	Label string
	// NoRockRidge leaves out -r: names come from the Joliet tree.
	NoRockRidge bool
}

// Build writes the image into a temporary directory and returns its path.
func Build(t testing.TB, s Spec) string {
	t.Helper()
	var cmd []string
	if s.Xorriso {
		cmd = []string{testenv.RequireTool(t, "xorriso", "xorriso"), "-as", "mkisofs"}
	} else {
		cmd = []string{testenv.RequireTool(t, "genisoimage", "genisoimage")}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	write := func(p string, b []byte) {
		t.Helper()
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, b := range s.Files {
		write(p, b)
	}
	label := s.Label
	if label == "" {
		label = "METALBED"
	}
	out := filepath.Join(dir, "image.iso")
	args := append(cmd, "-o", out, "-quiet", "-J", "-V", label)
	if !s.NoRockRidge {
		args = append(args, "-r")
	}
	if s.BIOS {
		testenv.RequireFile(t, IsolinuxBin, "isolinux")
		testenv.RequireFile(t, LdlinuxC32, "syslinux-common")
		for _, f := range []string{IsolinuxBin, LdlinuxC32} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			write("isolinux/"+filepath.Base(f), b)
		}
		args = append(args, "-b", "isolinux/isolinux.bin", "-c", "boot.cat",
			"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table")
	}
	if s.ESP != nil {
		write("efiboot.img", ESPImage(t, s.ESP))
		if s.BIOS {
			args = append(args, "-eltorito-alt-boot")
		} else {
			args = append(args, "-c", "boot.cat")
		}
		args = append(args, "-e", "efiboot.img", "-no-emul-boot")
	}
	args = append(args, src)
	if b, err := exec.CommandContext(t.Context(), args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, b)
	}
	return out
}

// ESPImage makes a FAT image (mkfs.vfat, then mtools' mmd and mcopy)
// holding files, as Ironic's efiboot.img holds EFI/BOOT.
func ESPImage(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	mkfs := testenv.RequireTool(t, "mkfs.vfat", "dosfstools")
	mmd := testenv.RequireTool(t, "mmd", "mtools")
	mcopy := testenv.RequireTool(t, "mcopy", "mtools")
	dir := t.TempDir()
	img := filepath.Join(dir, "efiboot.img")
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}
	kib := total/1024 + 1024
	run := func(args ...string) {
		t.Helper()
		c := exec.CommandContext(t.Context(), args[0], args[1:]...)
		c.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, b)
		}
	}
	run(mkfs, "-C", img, strconv.FormatInt(kib, 10))
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	made := map[string]bool{}
	for _, p := range paths {
		var dirs []string
		for d := filepath.Dir(p); d != "." && d != "/"; d = filepath.Dir(d) {
			dirs = append([]string{d}, dirs...)
		}
		for _, d := range dirs {
			if !made[d] {
				run(mmd, "-i", img, "::"+d)
				made[d] = true
			}
		}
		local := filepath.Join(dir, "f")
		if err := os.WriteFile(local, files[p], 0o644); err != nil {
			t.Fatal(err)
		}
		run(mcopy, "-i", img, local, "::"+p)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Mkisofs writes files into a directory and runs genisoimage (what Ironic
// runs as mkisofs) with args, then "-o <image> <dir>", exactly as a caller
// spells them: for reproducing a particular builder's command line.
func Mkisofs(t testing.TB, files map[string][]byte, args ...string) string {
	t.Helper()
	tool := testenv.RequireTool(t, "genisoimage", "genisoimage")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for p, b := range files {
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "image.iso")
	args = append(args, "-quiet", "-o", out, src)
	if b, err := exec.CommandContext(t.Context(), tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage %v: %v\n%s", args, err, b)
	}
	return out
}
