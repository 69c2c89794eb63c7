package iso9660_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk/iso9660"
	"github.com/metalbed/metalbed/disk/iso9660/isotest"
	"github.com/metalbed/metalbed/internal/testenv"
)

// written is an image Writer made and the files it holds.
type written struct {
	path  string
	files map[string][]byte
}

// writeImage writes files (and isolinux.bin and an EFI image, for the
// boot entries) with Writer. Enough files to need a second directory
// sector, long and lower-case names, deep directories and an empty file.
func writeImage(t *testing.T, bios, efi bool) written {
	t.Helper()
	files := map[string][]byte{
		"vmlinuz":                          bytes.Repeat([]byte("K"), 70000),
		"initrd":                           bytes.Repeat([]byte("initrd"), 100000),
		"isolinux/isolinux.cfg":            []byte(isolinuxCfg),
		"EFI/BOOT/grub.cfg":                []byte(grubCfg),
		"a-long-file-name-for-rr.txt":      []byte("long"),
		"deep/er/and/deeper/than/that.txt": []byte("deep"),
		"empty":                            nil,
	}
	for i := range 80 {
		files[fmt.Sprintf("many/file-number-%03d.data", i)] = []byte(fmt.Sprint(i))
	}
	w := &iso9660.Writer{VolumeID: "VMEDIA_BOOT_ISO", Publisher: "metalbed tests", Time: time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)}
	if bios {
		testenv.RequireFile(t, isotest.IsolinuxBin, "isolinux")
		b, err := os.ReadFile(isotest.IsolinuxBin)
		if err != nil {
			t.Fatal(err)
		}
		files["isolinux/isolinux.bin"] = b
		if err := w.AddBoot(iso9660.BootSpec{Platform: iso9660.PlatformBIOS, Path: "isolinux/isolinux.bin", Sectors: 4, InfoTable: true}); err != nil {
			t.Fatal(err)
		}
	}
	if efi {
		files["boot/grub/efiboot.img"] = isotest.ESPImage(t, map[string][]byte{"EFI/BOOT/BOOTX64.EFI": []byte("MZ"), "EFI/BOOT/grub.cfg": []byte(grubCfg)})
		if err := w.AddBoot(iso9660.BootSpec{Platform: iso9660.PlatformEFI, Path: "boot/grub/efiboot.img"}); err != nil {
			t.Fatal(err)
		}
	}
	for p, b := range files {
		if err := w.AddFile(p, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "written.iso")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return written{out, files}
}

// TestWriterReadBack reads what Writer wrote with our reader: every file
// by its real name, the El Torito entries and the patched boot
// information table.
func TestWriterReadBack(t *testing.T) {
	img := writeImage(t, true, true)
	im := open(t, img.path)
	if im.VolumeID() != "VMEDIA_BOOT_ISO" || !im.RockRidge() || !im.Joliet() {
		t.Fatalf("volume %q rock ridge %v joliet %v", im.VolumeID(), im.RockRidge(), im.Joliet())
	}
	for p, want := range img.files {
		got, err := im.ReadFile(p, 1<<30)
		if err != nil || !bytes.Equal(got, want) && p != "isolinux/isolinux.bin" {
			t.Errorf("ReadFile(%s) = %d bytes, %v; want %d", p, len(got), err, len(want))
		}
	}
	ents, err := im.BootCatalog()
	if err != nil || len(ents) != 2 {
		t.Fatalf("catalog %+v %v", ents, err)
	}
	bin, _ := im.Stat("isolinux/isolinux.bin")
	esp, _ := im.Stat("boot/grub/efiboot.img")
	if e := ents[0]; e.Platform != iso9660.PlatformBIOS || !e.Bootable || e.Emulation != iso9660.NoEmulation || e.Sectors != 4 || e.LBA != bin.LBA {
		t.Errorf("BIOS entry %+v, isolinux.bin at %d", e, bin.LBA)
	}
	if e := ents[1]; e.Platform != iso9660.PlatformEFI || !e.Bootable || int64(e.Sectors)*512 != esp.Size || e.LBA != esp.LBA {
		t.Errorf("EFI entry %+v, efiboot.img at %d (%d bytes)", e, esp.LBA, esp.Size)
	}
	patched, err := im.ReadFile("isolinux/isolinux.bin", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	table, ok, err := iso9660.ReadBootInfoTable(patched)
	if err != nil || !ok || table.PVD != 16 || table.File != bin.LBA || table.Length != bin.Size {
		t.Errorf("boot info table %+v checksum ok %v %v; file at %d, %d bytes", table, ok, err, bin.LBA, bin.Size)
	}
	orig := img.files["isolinux/isolinux.bin"]
	if !bytes.Equal(patched[:8], orig[:8]) || !bytes.Equal(patched[64:], orig[64:]) {
		t.Error("isolinux.bin changed outside the boot info table")
	}
}

// TestWriterGenisoimageBootInfoTable checks our boot information table
// against the one genisoimage -boot-info-table writes for the same file.
func TestWriterGenisoimageBootInfoTable(t *testing.T) {
	testenv.RequireFile(t, isotest.IsolinuxBin, "isolinux")
	ref := open(t, isotest.Build(t, isotest.Spec{BIOS: true, Files: map[string][]byte{"x": []byte("x")}}))
	refBin, err := ref.ReadFile("isolinux/isolinux.bin", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	refTable, ok, err := iso9660.ReadBootInfoTable(refBin)
	if err != nil || !ok {
		t.Fatalf("genisoimage's table %+v %v %v", refTable, ok, err)
	}
	im := open(t, writeImage(t, true, false).path)
	ours, err := im.ReadFile("isolinux/isolinux.bin", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	table, _, _ := iso9660.ReadBootInfoTable(ours)
	if table.Checksum != refTable.Checksum || table.Length != refTable.Length {
		t.Errorf("ours %+v, genisoimage's %+v", table, refTable)
	}
}

func run(t *testing.T, tool, pkg string, args ...string) string {
	t.Helper()
	path := testenv.RequireTool(t, tool, pkg)
	out, err := exec.CommandContext(t.Context(), path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
	return string(out)
}

// TestWriterIsoinfo reads the image with genisoimage's isoinfo: the
// descriptors, the Rock Ridge and Joliet trees.
func TestWriterIsoinfo(t *testing.T) {
	img := writeImage(t, true, true)
	d := run(t, "isoinfo", "genisoimage", "-d", "-i", img.path)
	for _, want := range []string{
		"Volume id: VMEDIA_BOOT_ISO", "Publisher id: metalbed tests", "Logical block size is: 2048",
		"El Torito VD version 1 found", "Rock Ridge signatures version 1 found", "Joliet with UCS level 3 found",
		"Bootid 88 (bootable)", "Boot media 0 (No Emulation Boot)", "Nsect 4",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("isoinfo -d lacks %q:\n%s", want, d)
		}
	}
	for _, mode := range []string{"-R", "-J"} {
		list := run(t, "isoinfo", "genisoimage", mode, "-f", "-i", img.path)
		for p := range img.files {
			if !regexp.MustCompile(`(?m)^/` + regexp.QuoteMeta(p) + `$`).MatchString(list) {
				t.Errorf("isoinfo %s -f lacks /%s:\n%s", mode, p, list)
			}
		}
	}
	long := run(t, "isoinfo", "genisoimage", "-R", "-l", "-i", img.path)
	if !strings.Contains(long, "Directory listing of /deep/er/and/deeper/than/") || !strings.Contains(long, "-r--r--r--") {
		t.Errorf("isoinfo -R -l:\n%s", long)
	}
}

// TestWriterXorriso has xorriso report the El Torito entries and osirrox
// extract every file byte for byte.
func TestWriterXorriso(t *testing.T) {
	img := writeImage(t, true, true)
	rep := run(t, "xorriso", "xorriso", "-indev", img.path, "-report_el_torito", "plain")
	for _, re := range []string{
		`El Torito boot img :\s+1\s+BIOS\s+y\s+none\s+0x0000\s+0x00\s+4\s+\d+`,
		`El Torito boot img :\s+2\s+UEFI\s+y\s+none\s+0x0000\s+0x00\s+\d+\s+\d+`,
		`El Torito img path :\s+1\s+/isolinux/isolinux.bin`,
		`El Torito img path :\s+2\s+/boot/grub/efiboot.img`,
		`El Torito img opts :\s+1\s+boot-info-table`,
	} {
		if !regexp.MustCompile(re).MatchString(rep) {
			t.Errorf("xorriso -report_el_torito lacks %s:\n%s", re, rep)
		}
	}
	dir := filepath.Join(t.TempDir(), "x")
	run(t, "xorriso", "xorriso", "-osirrox", "on", "-indev", img.path, "-extract", "/", dir)
	for p, want := range img.files {
		got, err := os.ReadFile(filepath.Join(dir, p))
		if p == "isolinux/isolinux.bin" {
			want = append(append(bytes.Clone(want[:8]), got[8:64]...), want[64:]...)
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("extracted %s: %d bytes, %v; want %d", p, len(got), err, len(want))
		}
	}
}

// TestWriterTruncated opens the writer's image cut at every sector and at
// odd offsets: the reader errs, never panics.
func TestWriterTruncated(t *testing.T) {
	img := writeImage(t, true, true)
	full, err := os.ReadFile(img.path)
	if err != nil {
		t.Fatal(err)
	}
	cuts := []int{0, 1, 16*iso9660.SectorSize + 100}
	for n := 16 * iso9660.SectorSize; n < len(full) && n < 200*iso9660.SectorSize; n += iso9660.SectorSize {
		cuts = append(cuts, n, n+777)
	}
	for _, n := range cuts {
		b := full[:min(n, len(full))]
		im, err := iso9660.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			continue
		}
		im.BootCatalog()
		for p := range img.files {
			im.ReadFile(p, 1<<30)
		}
		im.ReadDir("many")
	}
}

func TestWriterErrors(t *testing.T) {
	w := &iso9660.Writer{}
	if err := w.AddFile("big", bytes.NewReader(nil), 5<<30); err == nil || !strings.Contains(err.Error(), "4 GiB") {
		t.Errorf("5 GiB file: %v", err)
	}
	if err := w.AddFile("a/b", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.AddFile("A/B", bytes.NewReader(nil), 0); err == nil {
		t.Error("same name twice")
	}
	if err := w.AddFile("a", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "both a file and a directory") {
		t.Errorf("file and directory: %v", err)
	}
	w = &iso9660.Writer{}
	w.AddFile("x", bytes.NewReader(nil), 0)
	w.AddBoot(iso9660.BootSpec{Platform: iso9660.PlatformBIOS, Path: "isolinux.bin"})
	if err := w.Write(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "isolinux.bin") {
		t.Errorf("missing boot file: %v", err)
	}
	w = &iso9660.Writer{}
	w.AddFile("short", bytes.NewReader([]byte("abc")), 10)
	if err := w.Write(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "short") {
		t.Errorf("source shorter than said: %v", err)
	}
}
