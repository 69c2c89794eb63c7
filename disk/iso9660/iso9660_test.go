package iso9660_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/disk/iso9660"
	"github.com/metalbed/metalbed/disk/iso9660/isotest"
)

const isolinuxCfg = "default boot\n\nlabel boot\nkernel /vmlinuz\nappend initrd=/initrd text ipa-api-url=http://127.0.0.1:6385 --\n"

const grubCfg = "menuentry \"install\" {\nlinux /vmlinuz text --\ninitrd /initrd\n}\n"

func open(t *testing.T, path string) *iso9660.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	im, err := iso9660.Open(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestRealImages reads images genisoimage and xorriso made, with BIOS
// (isolinux) and EFI (FAT image) El Torito entries, as Ironic builds them.
func TestRealImages(t *testing.T) {
	kernel := bytes.Repeat([]byte("K"), 70000) // spans sectors
	for _, tc := range []struct {
		name string
		spec isotest.Spec
	}{
		{"genisoimage", isotest.Spec{}},
		{"xorriso", isotest.Spec{Xorriso: true}},
		{"joliet", isotest.Spec{NoRockRidge: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.BIOS = true
			s.Files = map[string][]byte{
				"isolinux/isolinux.cfg":            []byte(isolinuxCfg),
				"vmlinuz":                          kernel,
				"initrd":                           []byte("initrd"),
				"boot/grub/grub.cfg":               []byte(grubCfg),
				"a-long-file-name-for-rr.txt":      []byte("long"),
				"deep/er/and/deeper/than/that.txt": []byte("deep"),
			}
			s.ESP = map[string][]byte{"EFI/BOOT/grub.cfg": []byte(grubCfg), "EFI/BOOT/BOOTX64.EFI": []byte("MZ")}
			im := open(t, isotest.Build(t, s))
			if im.VolumeID() != "METALBED" {
				t.Errorf("volume ID %q", im.VolumeID())
			}
			if im.RockRidge() == tc.spec.NoRockRidge || !im.Joliet() {
				t.Errorf("rock ridge %v joliet %v", im.RockRidge(), im.Joliet())
			}
			for p, want := range map[string][]byte{
				"isolinux/isolinux.cfg":            []byte(isolinuxCfg),
				"/ISOLINUX/ISOLINUX.CFG":           []byte(isolinuxCfg),
				"vmlinuz":                          kernel,
				"/boot/grub/grub.cfg":              []byte(grubCfg),
				"a-long-file-name-for-rr.txt":      []byte("long"),
				"deep/er/and/deeper/than/that.txt": []byte("deep"),
			} {
				got, err := im.ReadFile(p, 1<<20)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("ReadFile(%s) = %d bytes, %v", p, len(got), err)
				}
			}
			if _, err := im.ReadFile("vmlinuz", 100); err == nil {
				t.Error("ReadFile over its limit: no error")
			}
			if _, err := im.Open("isolinux/nothere.cfg"); !errors.Is(err, iso9660.ErrNotExist) {
				t.Errorf("missing file: %v", err)
			}
			if _, err := im.Open("isolinux"); err == nil {
				t.Error("Open of a directory: no error")
			}
			ents, err := im.ReadDir("/isolinux")
			if err != nil || len(ents) < 3 {
				t.Errorf("ReadDir isolinux: %v %v", ents, err)
			}

			bios, err := im.BootEntryFor(iso9660.PlatformBIOS)
			if err != nil {
				t.Fatal(err)
			}
			st, err := im.Stat("isolinux/isolinux.bin")
			if err != nil {
				t.Fatal(err)
			}
			if bios.Emulation != iso9660.NoEmulation || bios.Sectors != 4 || bios.LBA != st.LBA {
				t.Errorf("BIOS entry %+v, isolinux.bin at %d", bios, st.LBA)
			}
			bi, err := im.BootImage(bios)
			if err != nil || bi.Size() != 2048 {
				t.Errorf("BIOS boot image: %v, %v", bi, err)
			}
			efi, err := im.BootEntryFor(iso9660.PlatformEFI)
			if err != nil {
				t.Fatal(err)
			}
			esp, err := im.BootImage(efi)
			if err != nil {
				t.Fatal(err)
			}
			est, _ := im.Stat("efiboot.img")
			if esp.Size() != est.Size {
				t.Errorf("ESP image %d bytes, efiboot.img %d", esp.Size(), est.Size)
			}
			got, err := disk.ReadFATFile(esp, esp.Size(), "EFI/BOOT/grub.cfg", 1<<20)
			if err != nil || string(got) != grubCfg {
				t.Errorf("grub.cfg on the ESP: %q %v", got, err)
			}
		})
	}
}

// TestNotBootable: an image without El Torito says so; a BIOS-only one
// has no EFI entry.
func TestNotBootable(t *testing.T) {
	im := open(t, isotest.Build(t, isotest.Spec{Files: map[string][]byte{"README": []byte("x")}}))
	if _, err := im.BootCatalog(); !errors.Is(err, iso9660.ErrNoElTorito) {
		t.Errorf("BootCatalog: %v", err)
	}
	im = open(t, isotest.Build(t, isotest.Spec{BIOS: true, Files: map[string][]byte{"isolinux/isolinux.cfg": []byte(isolinuxCfg)}}))
	if _, err := im.BootEntryFor(iso9660.PlatformEFI); err == nil {
		t.Error("EFI entry of a BIOS-only image: no error")
	}
	if _, err := im.BootEntryFor(iso9660.PlatformBIOS); err != nil {
		t.Error(err)
	}
}

func TestNotAnISO(t *testing.T) {
	if _, err := iso9660.Open(bytes.NewReader(make([]byte, 40<<10)), 40<<10); !errors.Is(err, iso9660.ErrNotISO9660) {
		t.Errorf("zeros: %v", err)
	}
	if _, err := iso9660.Open(bytes.NewReader(nil), 0); !errors.Is(err, iso9660.ErrNotISO9660) {
		t.Errorf("empty: %v", err)
	}
}

// minimalISO is a hand-made image for fuzz seeds: a PVD, an El Torito
// boot record, a root directory with one file, and a boot catalog.
func minimalISO() []byte {
	b := make([]byte, 24*iso9660.SectorSize)
	sec := func(n int) []byte { return b[n*iso9660.SectorSize : (n+1)*iso9660.SectorSize] }
	rec := func(dst []byte, lba, size uint32, dir bool, name string) int {
		n := 33 + len(name)
		if n%2 == 1 {
			n++
		}
		dst[0] = byte(n)
		binary.LittleEndian.PutUint32(dst[2:], lba)
		binary.BigEndian.PutUint32(dst[6:], lba)
		binary.LittleEndian.PutUint32(dst[10:], size)
		binary.BigEndian.PutUint32(dst[14:], size)
		if dir {
			dst[25] = 2
		}
		dst[32] = byte(len(name))
		copy(dst[33:], name)
		return n
	}
	pvd := sec(16)
	pvd[0], pvd[6] = 1, 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:72], "SEED                            ")
	binary.LittleEndian.PutUint16(pvd[128:], 2048)
	rec(pvd[156:], 19, 2048, true, "\x00")
	br := sec(17)
	copy(br[1:], "CD001")
	br[6] = 1
	copy(br[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(br[0x47:], 20)
	term := sec(18)
	term[0] = 255
	copy(term[1:], "CD001")
	root := sec(19)
	off := rec(root, 19, 2048, true, "\x00")
	off += rec(root[off:], 19, 2048, true, "\x01")
	rec(root[off:], 21, 5, false, "BOOT.IMG;1")
	copy(sec(21), "hello")
	cat := sec(20)
	cat[0] = 1
	cat[30], cat[31] = 0x55, 0xAA
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	binary.LittleEndian.PutUint16(cat[28:], -sum)
	cat[32] = 0x88
	binary.LittleEndian.PutUint16(cat[32+6:], 4)
	binary.LittleEndian.PutUint32(cat[32+8:], 21)
	cat[64], cat[65] = 0x91, 0xEF
	binary.LittleEndian.PutUint16(cat[66:], 1)
	cat[96] = 0x88
	binary.LittleEndian.PutUint32(cat[96+8:], 22)
	return b
}

func TestMinimal(t *testing.T) {
	b := minimalISO()
	im, err := iso9660.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := im.ReadFile("boot.img", 100); err != nil || string(got) != "hello" {
		t.Errorf("boot.img: %q %v", got, err)
	}
	ents, err := im.BootCatalog()
	if err != nil || len(ents) != 2 || ents[0].Platform != iso9660.PlatformBIOS || ents[1].Platform != iso9660.PlatformEFI || ents[1].LBA != 22 {
		t.Errorf("catalog %+v %v", ents, err)
	}
}

// FuzzOpen: no image makes the reader panic, loop or allocate without
// bound. An image is at least 17 sectors, too large for the fuzzer to
// mutate and minimise quickly, so the input is a list of patches to the
// hand-made image: 3 bytes each, a little-endian offset (modulo the
// image's size) and the byte to put there; a trailing 2 bytes, when the
// length says so, truncate the image. Inputs of 32 KiB or more are images
// as they are.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x47 + 0x00, 0x88, 0xff}) // the boot record's catalog pointer, sector 17
	f.Add([]byte{0x20, 0x80, 0x00})        // the catalog's default entry: not bootable
	f.Add([]byte{0x00, 0x98, 0x40, 0x00, 0x50})
	f.Fuzz(func(t *testing.T, p []byte) {
		b := minimalISO()
		if len(p) >= 32<<10 {
			b = p
		} else {
			for i := 0; i+3 <= len(p); i += 3 {
				b[int(binary.LittleEndian.Uint16(p[i:]))%len(b)] = p[i+2]
			}
			if len(p)%3 == 2 {
				b = b[:int(binary.LittleEndian.Uint16(p[len(p)-2:]))%len(b)]
			}
		}
		im, err := iso9660.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		im.ReadDir("/")
		im.ReadFile("boot.img", 1<<20)
		im.Stat("a/b/c")
		if ents, err := im.BootCatalog(); err == nil {
			for _, e := range ents {
				if sr, err := im.BootImage(e); err == nil {
					disk.ReadFATFile(sr, sr.Size(), "EFI/BOOT/grub.cfg", 1<<20)
				}
			}
		}
	})
}
