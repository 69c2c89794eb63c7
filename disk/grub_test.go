package disk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGrubImagesDir(t *testing.T) {
	g := grubImages(t)
	dir := t.TempDir()
	for name, b := range g.Files() {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	back, err := ReadGrubImages(dir)
	if err != nil || !back.Has(BootModeBIOS) || !back.Has(BootModeUEFI) || len(back.BIOSCore) != len(g.BIOSCore) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := ReadGrubImages(t.TempDir()); !errors.Is(err, ErrNoGrub) || !strings.Contains(err.Error(), "grub-pc-bin") {
		t.Fatalf("empty dir: %v", err)
	}
	// core.img without boot.img, and a boot.img that is not one.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, GrubCoreImg), g.BIOSCore, 0o644)
	if _, err := ReadGrubImages(bad); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("core without boot: %v", err)
	}
	os.WriteFile(filepath.Join(bad, GrubBootImg), make([]byte, SectorSize), 0o644)
	if _, err := ReadGrubImages(bad); err == nil || !strings.Contains(err.Error(), "boot sector") {
		t.Fatalf("blank boot.img: %v", err)
	}
	os.WriteFile(filepath.Join(bad, GrubBootImg), g.BIOSBoot, 0o644)
	os.WriteFile(filepath.Join(bad, GrubEFIImg), g.BIOSCore, 0o644)
	if _, err := ReadGrubImages(bad); err == nil || !strings.Contains(err.Error(), "PE/COFF") {
		t.Fatalf("EFI image that is not PE: %v", err)
	}
	if _, err := MakeGrubImages(t.Context(), t.TempDir()); !errors.Is(err, ErrNoGrub) {
		t.Fatalf("no modules: %v", err)
	}
}

func TestGrubCoreDoesNotFit(t *testing.T) {
	g := grubImages(t)
	d := make(memDisk, 2<<20)
	d[510], d[511] = 0x55, 0xaa
	before := string(d)
	// A first partition at LBA 64 leaves 63 sectors: core.img needs more.
	if err := installGrubBIOS(d, g, 1, 64); err == nil || !strings.Contains(err.Error(), "sectors") {
		t.Fatalf("error %v", err)
	}
	if string(d) != before {
		t.Fatal("disk changed")
	}
}

func TestParseGrubConfigProbe(t *testing.T) {
	e, err := ParseGrubConfig(GrubConfigText("1234"))
	if err != nil || e.RootUUID != "1234" || len(e.PartUUIDVars) != 1 || e.PartUUIDVars[0] != "partuuid" || !strings.Contains(e.Cmdline, "root=PARTUUID=$partuuid") {
		t.Fatalf("%+v %v", e, err)
	}
	e, err = ParseGrubConfig("menuentry x {\n\tprobe --set p --part-uuid $root\n\tlinux /k root=UUID=abc\n}\n")
	if err != nil || e.RootUUID != "abc" || len(e.PartUUIDVars) != 1 || e.PartUUIDVars[0] != "p" {
		t.Fatalf("%+v %v", e, err)
	}
}
