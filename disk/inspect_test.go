package disk

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// memDisk is a disk held in memory.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, io.ErrShortWrite
	}
	return copy(m[off:], p), nil
}

// seedDisks returns small disks for FuzzInspect: msdos and gpt labels
// around a tiny ext4 with a grub.cfg (made with mkfs.ext4 when present)
// and a swap header.
func seedDisks(t testing.TB) [][]byte {
	const size = 512 << 10
	var fsImg []byte
	if mkfs, err := exec.LookPath("mkfs.ext4"); err == nil {
		dir := t.TempDir()
		tree := filepath.Join(dir, "tree")
		os.MkdirAll(filepath.Join(tree, "boot/grub"), 0o755)
		os.WriteFile(filepath.Join(tree, "boot/grub/grub.cfg"), []byte(GrubConfigText("11111111-2222-3333-4444-555555555555")), 0o644)
		img := filepath.Join(dir, "fs.ext4")
		if out, err := exec.Command(mkfs, "-F", "-q", "-b", "1024", "-O", "^has_journal,^resize_inode", "-N", "16", "-m", "0", "-d", tree, img, "128K").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
		fsImg, _ = os.ReadFile(img)
	}
	u, _ := randomUUID()
	swap, _ := swapHeader(96*SectorSize, u, "swap1")
	var seeds [][]byte
	for _, gpt := range []bool{false, true} {
		d := make(memDisk, size)
		entries := []tableEntry{
			{startLBA: 40, sectors: 96, mbrType: mbrTypeSwap, typeGUID: mustGUID(TypeGUIDLinuxSwap)},
			{startLBA: 256, sectors: 256, mbrType: mbrTypeLinux, typeGUID: mustGUID(TypeGUIDLinuxFS), bootable: true},
		}
		var err error
		if gpt {
			g, _ := randomGUID()
			err = writeGPT(d, size/SectorSize, g, entries)
		} else {
			err = writeMBR(d, biosBootCode(), 0x12345678, entries)
		}
		if err != nil {
			t.Fatal(err)
		}
		copy(d[40*SectorSize:], swap)
		copy(d[256*SectorSize:], fsImg)
		seeds = append(seeds, d)
	}
	return seeds
}

func TestInspectSeeds(t *testing.T) {
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	for i, d := range seedDisks(t) {
		ins, err := Inspect(memDisk(d), int64(len(d)))
		if err != nil {
			t.Fatal(err)
		}
		if len(ins.Layout.Partitions) != 2 || ins.Layout.Partitions[0].Role != RoleSwap || ins.Layout.Partitions[1].Role != RoleRoot {
			t.Fatalf("seed %d: %+v", i, ins.Layout)
		}
		if len(ins.GrubConfigs) != 1 || !strings.Contains(ins.GrubConfigs[0].Text, "--set=root 11111111-2222") {
			t.Fatalf("seed %d grub: %+v problems %v", i, ins.GrubConfigs, ins.Problems)
		}
	}
}

func TestInspectNoLabel(t *testing.T) {
	ins, err := Inspect(make(memDisk, 1<<20), 1<<20)
	if err != nil || ins.Layout.Label != "" || ins.BootCode || ins.BootSignature {
		t.Fatalf("%+v %v", ins, err)
	}
	if _, err := Inspect(make(memDisk, 100), 100); err == nil {
		t.Fatal("no error for a disk without sector 0")
	}
	// A protective MBR without a GPT behind it is a problem, not a panic.
	d := make(memDisk, 1<<20)
	writeGPT(d, (1<<20)/SectorSize, guid{1}, nil)
	clear(d[SectorSize : 2*SectorSize])
	clear(d[len(d)-SectorSize:])
	ins, err = Inspect(d, 1<<20)
	if err != nil || len(ins.Problems) != 1 || ins.Layout.Label != "" {
		t.Fatalf("%+v %v", ins, err)
	}
}

func TestGPTBackupUsedWhenPrimaryIsDamaged(t *testing.T) {
	d := make(memDisk, 4<<20)
	g, _ := randomGUID()
	if err := writeGPT(d, int64(len(d))/SectorSize, g, []tableEntry{{startLBA: 2048, sectors: 2048, typeGUID: mustGUID(TypeGUIDLinuxFS)}}); err != nil {
		t.Fatal(err)
	}
	d[SectorSize+100] ^= 0xff // break the primary header's CRC
	ins, err := Inspect(d, int64(len(d)))
	if err != nil || ins.Layout.Label != LabelGPT || ins.Layout.DiskID != g.String() || len(ins.Layout.Partitions) != 1 {
		t.Fatalf("%+v %v", ins, err)
	}
}

func FuzzInspect(f *testing.F) {
	for _, d := range seedDisks(f) {
		f.Add([]byte(d))
	}
	f.Add([]byte{})
	// An msdos disk whose one partition ends just after an ISO 9660 magic.
	iso := make(memDisk, 64<<10)
	writeMBR(iso, nil, 1, []tableEntry{{startLBA: 1, sectors: 70, mbrType: mbrTypeLinux}})
	copy(iso[SectorSize+32769:], "CD001")
	f.Add([]byte(iso))
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		ins, err := Inspect(memDisk(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range ins.Layout.Partitions {
			if p.Start < 0 || p.Size <= 0 || p.Start+p.Size > int64(len(b)) {
				t.Fatalf("partition outside the disk: %+v (disk %d)", p, len(b))
			}
		}
		for _, g := range ins.GrubConfigs {
			ParseGrubConfig(g.Text)
		}
		// The readers also take any region directly.
		ReadExt4File(memDisk(b), int64(len(b)), GrubConfigPath, grubConfigLimit)
		ReadFATFile(memDisk(b), int64(len(b)), ESPLoaderPath, 1<<20)
		decodeConfigDrive(b)
	})
}

func TestConfigDriveForms(t *testing.T) {
	cd := fatConfigDrive(t)
	raw, err := decodeConfigDrive(cd)
	if err != nil {
		t.Fatal(err)
	}
	if fstype, label, uuid := probeFS(raw); fstype != "vfat" || label != "config-2" || len(uuid) != 9 {
		t.Fatalf("probe: %s %q %q", fstype, label, uuid)
	}
	// The raw image itself is accepted too.
	if again, err := decodeConfigDrive(raw); err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("raw config drive: %v", err)
	}
	if _, err := decodeConfigDrive(make([]byte, ConfigDriveMaxBytes+1)); err == nil {
		t.Fatal("accepted junk")
	}
}

// FuzzReadExt4File feeds the ext4 reader whole file systems directly, so
// mutations reach inodes, extents and directories without a partition
// table in the way.
func FuzzReadExt4File(f *testing.F) {
	for _, d := range seedDisks(f)[:1] {
		f.Add([]byte(d[256*SectorSize : 512*SectorSize]))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []string{GrubConfigPath, "/", "/boot", "/lost+found/x"} {
			ReadExt4File(memDisk(b), int64(len(b)), p, grubConfigLimit)
		}
	})
}

func TestBootLoaderOf(t *testing.T) {
	grub := make([]byte, mbrBootCodeSize)
	copy(grub[0x180:], "GRUB \x00Geom\x00Hard Disk\x00Read\x00 Error")
	other := make([]byte, mbrBootCodeSize)
	copy(other, []byte{0xeb, 0x63, 0x90, 0x10, 0x8e, 0xd0})
	for _, c := range []struct {
		code    []byte
		present bool
		want    string
	}{
		{append(biosBootCode(), make([]byte, 8)...), true, "metalbed"},
		{grub, true, "grub"},
		{other, true, "unknown"},
		{make([]byte, mbrBootCodeSize), false, ""},
	} {
		if got := bootLoaderOf(c.code, c.present); got != c.want {
			t.Errorf("bootLoaderOf = %q, want %q", got, c.want)
		}
	}
	// GRUB's real boot.img, when Debian's grub-pc-bin is installed.
	if img, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img"); err == nil {
		if got := bootLoaderOf(img[:mbrBootCodeSize], true); got != "grub" {
			t.Errorf("Debian's boot.img recognised as %q", got)
		}
	}
}
