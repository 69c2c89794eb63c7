package disk

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

func TestInstallBootloader(t *testing.T) {
	img := buildImage(t, KindPartition, "")
	imgFile := openImage(t, img)
	kernelPath, err := DefaultKernel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile(kernelPath)
	if err != nil {
		t.Fatal(err)
	}
	grub := grubImages(t)
	for _, c := range []struct {
		mode, label string
		grub        *GrubImages
	}{
		{BootModeUEFI, LabelGPT, nil}, {BootModeBIOS, LabelMSDOS, nil}, {BootModeBIOS, LabelGPT, nil},
		{BootModeUEFI, LabelGPT, grub}, {BootModeBIOS, LabelMSDOS, grub}, {BootModeBIOS, LabelGPT, grub},
	} {
		loader, wantLoader := "placeholder", kernel
		if c.grub != nil {
			loader, wantLoader = "grub", grub.EFI
		}
		t.Run(c.mode+"-"+c.label+"-"+loader, func(t *testing.T) {
			disk := sparseDisk(t, testDiskSize)
			p := PartitionParams{BootMode: c.mode, BootOption: BootOptionLocal, DiskLabel: c.label, RootMB: 100, SwapMB: 16, ConfigDrive: fatConfigDrive(t)}
			res, err := DeployPartitionImage(t.Context(), strictDisk{disk}, testDiskSize, imgFile, img.Size, p)
			if err != nil {
				t.Fatal(err)
			}
			before, err := Inspect(disk, testDiskSize)
			if err != nil || before.BootCode || before.ESPLoader {
				t.Fatalf("before: boot code %v loader %v (%v)", before.BootCode, before.ESPLoader, err)
			}
			ins, err := InstallBootloader(t.Context(), strictDisk{disk}, testDiskSize, c.mode, c.grub)
			if err != nil {
				t.Fatal(err)
			}
			if ins.Layout.DiskID != res.Layout.DiskID || len(ins.Layout.Partitions) != len(res.Layout.Partitions) {
				t.Fatalf("layout changed: %+v", ins.Layout)
			}
			// The partition table is intact for the real tools.
			tab := sfdiskJSON(t, disk.Name())
			if len(tab.PartitionTable.Partitions) != len(res.Layout.Partitions) {
				t.Fatalf("sfdisk after install: %+v", tab.PartitionTable)
			}
			if c.mode == BootModeBIOS {
				want := "metalbed"
				if c.grub != nil {
					want = "grub"
					checkGrubBIOS(t, disk, grub, res.Layout)
				}
				if !ins.BootCode || !ins.BootSignature || ins.BootLoader != want {
					t.Fatalf("boot code %v signature %v loader %q", ins.BootCode, ins.BootSignature, ins.BootLoader)
				}
				return
			}
			if !ins.ESPLoader || !ins.ESPLoaderPE || ins.ESPLoaderGrub != (c.grub != nil) || !strings.Contains(ins.ESPGrubConfig, "--set=root "+img.RootUUID) {
				t.Fatalf("ESP loader %v PE %v GRUB %v grub.cfg %q", ins.ESPLoader, ins.ESPLoaderPE, ins.ESPLoaderGrub, ins.ESPGrubConfig)
			}
			esp := ins.Layout.Find(RoleESP)
			espImg := extract(t, disk, esp.Start, esp.Size, "esp.img")
			run(t, testenv.RequireTool(t, "fsck.vfat", "dosfstools"), "-n", espImg)
			if got := run(t, testenv.RequireTool(t, "mtype", "mtools"), "-i", espImg, "::/EFI/BOOT/BOOTX64.EFI"); got != string(wantLoader) {
				t.Fatalf("BOOTX64.EFI: %d bytes, want %d", len(got), len(wantLoader))
			}
			if tags := blkidAt(t, disk.Name(), esp.Start, esp.Size); tags["LABEL"] != ESPLabel || tags["UUID"] != res.ESPUUID {
				t.Fatalf("blkid ESP after install: %v", tags)
			}
			// A second install finds the loader there and refuses to clobber it.
			if _, err := InstallBootloader(t.Context(), disk, testDiskSize, c.mode, c.grub); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("second install: %v", err)
			}
		})
	}
	t.Run("bios gpt without BIOS boot partition", func(t *testing.T) {
		disk := sparseDisk(t, testDiskSize)
		p := PartitionParams{BootMode: BootModeBIOS, BootOption: BootOptionNetboot, DiskLabel: LabelGPT, RootMB: 100}
		if _, err := DeployPartitionImage(t.Context(), disk, testDiskSize, imgFile, img.Size, p); err != nil {
			t.Fatal(err)
		}
		before := digest(t, disk)
		if _, err := InstallBootloader(t.Context(), disk, testDiskSize, BootModeBIOS, grub); err == nil || !strings.Contains(err.Error(), "BIOS boot partition") {
			t.Fatalf("error %v", err)
		}
		if digest(t, disk) != before {
			t.Fatal("disk changed")
		}
	})
	t.Run("uefi without ESP", func(t *testing.T) {
		disk := sparseDisk(t, testDiskSize)
		if _, err := DeployPartitionImage(t.Context(), disk, testDiskSize, imgFile, img.Size, PartitionParams{BootMode: BootModeUEFI, RootMB: 100}); err != nil {
			t.Fatal(err)
		}
		before := digest(t, disk)
		if _, err := InstallBootloader(t.Context(), disk, testDiskSize, BootModeUEFI, nil); err == nil || !strings.Contains(err.Error(), "no EFI system partition") {
			t.Fatalf("error %v", err)
		}
		if digest(t, disk) != before {
			t.Fatal("disk changed")
		}
	})
	t.Run("blank disk", func(t *testing.T) {
		disk := sparseDisk(t, 64<<20)
		if _, err := InstallBootloader(t.Context(), disk, 64<<20, BootModeBIOS, nil); err == nil || !strings.Contains(err.Error(), "no partitions") {
			t.Fatalf("error %v", err)
		}
	})
}

// checkGrubBIOS checks GRUB's BIOS install as grub-bios-setup leaves it:
// boot.img's code in the MBR pointing at core.img, core.img where it
// belongs with its blocklist naming the sectors after its first.
func checkGrubBIOS(t *testing.T, disk *os.File, g *GrubImages, l Layout) {
	t.Helper()
	mbr := make([]byte, SectorSize)
	if _, err := disk.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	coreLBA := int64(1)
	if l.Label == LabelGPT {
		coreLBA = l.Find(RoleBIOSBoot).Start / SectorSize
	}
	if got := int64(binary.LittleEndian.Uint64(mbr[0x5c:])); got != coreLBA {
		t.Fatalf("boot.img points at LBA %d, core.img is at %d", got, coreLBA)
	}
	if !bytes.Equal(mbr[0x68:mbrBootCodeSize], g.BIOSBoot[0x68:mbrBootCodeSize]) || mbr[0x64] != 0xff || mbr[0x66] != 0x90 {
		t.Fatal("MBR code is not boot.img's")
	}
	core := make([]byte, len(g.BIOSCore))
	if _, err := disk.ReadAt(core, coreLBA*SectorSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(core[SectorSize:], g.BIOSCore[SectorSize:]) {
		t.Fatal("core.img on the disk differs after its first sector")
	}
	nsec := (len(g.BIOSCore) + SectorSize - 1) / SectorSize
	bl := core[SectorSize-12:]
	if start, n, seg := binary.LittleEndian.Uint64(bl), binary.LittleEndian.Uint16(bl[8:]), binary.LittleEndian.Uint16(bl[10:]); int64(start) != coreLBA+1 || int(n) != nsec-1 || seg != 0x820 {
		t.Fatalf("blocklist start %d len %d segment %#x; want %d %d 0x820", start, n, seg, coreLBA+1, nsec-1)
	}
}
