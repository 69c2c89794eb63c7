package disk

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/disk/iso9660"
	"github.com/metalbed/metalbed/internal/testenv"
)

const isoCmdline = "ipa-api-url=http://127.0.0.1:6385 ipa-agent-token=t0k boot_method=vmedia"

// isoLoaders finds ISOLINUX and builds GRUB EFI, or skips.
func isoLoaders(t testing.TB) ISOLoaders {
	t.Helper()
	l, err := DefaultISOLoaders(t.Context(), true, true)
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	return l
}

// isoInputs writes a kernel and an initrd of odd sizes (random bytes, so
// a misplaced sector shows) and returns their paths and contents.
func isoInputs(t testing.TB) (kernel, initrd string, kb, ib []byte) {
	t.Helper()
	r := rand.NewChaCha8([32]byte{1})
	kb, ib = make([]byte, 3<<20+123), make([]byte, 5<<20+4567)
	r.Read(kb)
	r.Read(ib)
	dir := t.TempDir()
	kernel, initrd = filepath.Join(dir, "deploy.kernel"), filepath.Join(dir, "deploy.initramfs")
	if err := os.WriteFile(kernel, kb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, ib, 0o644); err != nil {
		t.Fatal(err)
	}
	return kernel, initrd, kb, ib
}

func openISO(t testing.TB, p string) *iso9660.Image {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	im, err := iso9660.Open(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestBuildBootISO builds the three kinds of deploy ISO and reads them
// back with our reader and with mtools and dosfstools for the ESP.
func TestBuildBootISO(t *testing.T) {
	loaders := isoLoaders(t)
	kernel, initrd, kb, ib := isoInputs(t)
	for _, tc := range []struct {
		name       string
		bios, uefi bool
	}{{"bios", true, false}, {"uefi", false, true}, {"both", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "boot.iso")
			err := BuildBootISO(t.Context(), BootISOConfig{Kernel: kernel, Initrd: initrd, Cmdline: isoCmdline,
				BIOS: tc.bios, UEFI: tc.uefi, Loaders: loaders}, out)
			if err != nil {
				t.Fatal(err)
			}
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".boot.iso.*")); len(m) != 0 {
				t.Errorf("temporary files left: %v", m)
			}
			im := openISO(t, out)
			if im.VolumeID() != DefaultBootISOLabel || !im.RockRidge() || !im.Joliet() {
				t.Errorf("volume %q rock ridge %v joliet %v", im.VolumeID(), im.RockRidge(), im.Joliet())
			}
			want := map[string][]byte{"vmlinuz": kb, "initrd": ib}
			if tc.bios {
				want["isolinux/isolinux.cfg"] = []byte(IsolinuxConfigText(isoCmdline))
				want["isolinux/ldlinux.c32"], _ = os.ReadFile(DefaultLdlinuxC32)
			}
			if tc.uefi {
				want["EFI/BOOT/grub.cfg"] = []byte(BootISOGrubConfigText(isoCmdline))
			}
			for p, w := range want {
				if got, err := im.ReadFile(p, 64<<20); err != nil || !bytes.Equal(got, w) {
					t.Errorf("%s: %d bytes, %v; want %d", p, len(got), err, len(w))
				}
			}
			ents, err := im.BootCatalog()
			if err != nil {
				t.Fatal(err)
			}
			if n := btoi(tc.bios) + btoi(tc.uefi); len(ents) != n {
				t.Fatalf("%d boot entries, want %d: %+v", len(ents), n, ents)
			}
			if tc.bios {
				checkIsolinuxEntry(t, im, ents[0])
			} else if _, err := im.Stat("isolinux"); !errors.Is(err, iso9660.ErrNotExist) {
				t.Errorf("UEFI-only ISO has isolinux/: %v", err)
			}
			if tc.uefi {
				checkESP(t, im, ents[len(ents)-1], loaders.GrubEFI)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkIsolinuxEntry: the first entry boots isolinux.bin (4 sectors) with
// the boot information table as genisoimage -boot-info-table writes it.
func checkIsolinuxEntry(t *testing.T, im *iso9660.Image, e iso9660.BootEntry) {
	t.Helper()
	bin, err := im.Stat("isolinux/isolinux.bin")
	if err != nil {
		t.Fatal(err)
	}
	if e.Platform != iso9660.PlatformBIOS || !e.Bootable || e.Emulation != iso9660.NoEmulation || e.Sectors != 4 || e.LBA != bin.LBA {
		t.Errorf("BIOS entry %+v; isolinux.bin at %d", e, bin.LBA)
	}
	b, err := im.ReadFile("isolinux/isolinux.bin", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	table, ok, err := iso9660.ReadBootInfoTable(b)
	if err != nil || !ok || table.PVD != 16 || table.File != bin.LBA || table.Length != bin.Size {
		t.Errorf("boot info table %+v (checksum ok %v, %v)", table, ok, err)
	}
}

// checkESP: the EFI entry is a FAT image that fsck.vfat accepts, mdir
// lists and mcopy reads: GRUB as BOOTX64.EFI and a grub.cfg that leads to
// the ISO's.
func checkESP(t *testing.T, im *iso9660.Image, e iso9660.BootEntry, grub []byte) {
	t.Helper()
	espFile, err := im.Stat("boot/grub/efiboot.img")
	if err != nil {
		t.Fatal(err)
	}
	if e.Platform != iso9660.PlatformEFI || !e.Bootable || e.LBA != espFile.LBA {
		t.Errorf("EFI entry %+v; efiboot.img at %d", e, espFile.LBA)
	}
	esp, err := im.BootImage(e)
	if err != nil {
		t.Fatal(err)
	}
	if esp.Size() != espFile.Size {
		t.Errorf("the EFI image's FAT says %d bytes, efiboot.img has %d", esp.Size(), espFile.Size)
	}
	if got, err := ReadFATFile(esp, esp.Size(), ESPLoaderPath, 16<<20); err != nil || !bytes.Equal(got, grub) {
		t.Errorf("%s: %d bytes, %v", ESPLoaderPath, len(got), err)
	}
	img := extract(t, esp, 0, esp.Size(), "efiboot.img")
	checkFATTools(t, img, map[string][]byte{"EFI/BOOT/BOOTX64.EFI": grub, "EFI/BOOT/grub.cfg": []byte(espChainConfig(DefaultBootISOLabel))})
}

// checkFATTools runs fsck.vfat -n, mdir and mcopy on a FAT image.
func checkFATTools(t *testing.T, img string, files map[string][]byte) {
	t.Helper()
	fsck := testenv.RequireTool(t, "fsck.vfat", "dosfstools")
	mdir := testenv.RequireTool(t, "mdir", "mtools")
	mcopy := testenv.RequireTool(t, "mcopy", "mtools")
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	if out := run(t, fsck, "-n", img); strings.Contains(out, "differ") || !strings.Contains(out, "files") {
		t.Errorf("fsck.vfat -n:\n%s", out)
	}
	for p, want := range files {
		dir, name := filepath.Split(p)
		if out := run(t, mdir, "-b", "-i", img, "::"+dir); !strings.Contains(strings.ToUpper(out), strings.ToUpper(name)) {
			t.Errorf("mdir ::%s lacks %s:\n%s", dir, name, out)
		}
		if got := run(t, mcopy, "-n", "-i", img, "::"+p, "-"); got != string(want) {
			t.Errorf("mcopy ::%s: %d bytes, want %d", p, len(got), len(want))
		}
	}
}

// TestMakeFATImage checks FAT12 and FAT16 images with the real tools.
func TestMakeFATImage(t *testing.T) {
	for _, size := range []int{0, 1, 3 << 20, 9 << 20, 40 << 20} {
		data := bytes.Repeat([]byte{0x5a}, size)
		files := map[string][]byte{"EFI/BOOT/BOOTX64.EFI": data, "EFI/BOOT/grub.cfg": []byte("configfile /x\n"), "readme": []byte("hi")}
		var in []fatImageFile
		for p, b := range files {
			in = append(in, fatImageFile{p, b})
		}
		img, err := makeFATImage("EFIBOOT", in)
		if err != nil {
			t.Fatal(err)
		}
		f, err := openFAT(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		if f.fat12 != (size < 8<<20) || f.label != "EFIBOOT" || len(img)%iso9660.SectorSize != 0 {
			t.Errorf("%d bytes of files: FAT12 %v, label %q, %d bytes", size, f.fat12, f.label, len(img))
		}
		p := filepath.Join(t.TempDir(), "fat.img")
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		checkFATTools(t, p, files)
	}
	if _, err := makeFATImage("EFIBOOT", []fatImageFile{{"a-long-name.efi", nil}}); err == nil || !strings.Contains(err.Error(), "8.3") {
		t.Errorf("long name: %v", err)
	}
	if _, err := makeFATImage("EFIBOOT", []fatImageFile{{"big", make([]byte, 200<<20)}}); err == nil || !strings.Contains(err.Error(), "FAT16") {
		t.Errorf("too big: %v", err)
	}
}

func TestBuildBootISOErrors(t *testing.T) {
	kernel, initrd, _, _ := isoInputs(t)
	out := filepath.Join(t.TempDir(), "boot.iso")
	missing := filepath.Join(t.TempDir(), "missing")
	ok := BootISOConfig{Kernel: kernel, Initrd: initrd, BIOS: true}
	for _, tc := range []struct {
		name string
		edit func(*BootISOConfig)
		want string
	}{
		{"no mode", func(c *BootISOConfig) { c.BIOS = false }, "no boot mode"},
		{"no kernel", func(c *BootISOConfig) { c.Kernel = "" }, "no kernel"},
		{"missing kernel", func(c *BootISOConfig) { c.Kernel = missing }, "kernel"},
		{"missing initrd", func(c *BootISOConfig) { c.Initrd = missing }, "initrd"},
		{"kernel is a directory", func(c *BootISOConfig) { c.Kernel = t.TempDir() }, "not a file"},
		{"no isolinux", func(c *BootISOConfig) { c.Loaders.IsolinuxBin = missing }, "isolinux.bin (Debian package isolinux)"},
		{"no ldlinux", func(c *BootISOConfig) { c.Loaders.LdlinuxC32 = missing }, "ldlinux.c32"},
		{"no GRUB", func(c *BootISOConfig) { c.UEFI = true }, "GRUB EFI image"},
		{"GRUB not PE", func(c *BootISOConfig) { c.UEFI, c.Loaders.GrubEFI = true, []byte("grub") }, "PE/COFF"},
		{"long label", func(c *BootISOConfig) { c.Label = strings.Repeat("L", 33) }, "longer than 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			err := BuildBootISO(t.Context(), cfg, out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output written: %v", err)
			}
		})
	}
}
