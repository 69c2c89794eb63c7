package images

import (
	"os"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

func TestInstallBootloader(t *testing.T) {
	img := buildImage(t, KindPartition, "")
	imgFile, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer imgFile.Close()
	kernelPath, err := DefaultKernel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile(kernelPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ mode, label string }{
		{BootModeUEFI, LabelGPT}, {BootModeBIOS, LabelMSDOS}, {BootModeBIOS, LabelGPT},
	} {
		t.Run(c.mode+"-"+c.label, func(t *testing.T) {
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
			ins, err := InstallBootloader(t.Context(), strictDisk{disk}, testDiskSize, c.mode)
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
				if !ins.BootCode || !ins.BootSignature || ins.BootLoader != "metalbed" {
					t.Fatalf("boot code %v signature %v loader %q", ins.BootCode, ins.BootSignature, ins.BootLoader)
				}
				return
			}
			if !ins.ESPLoader || !ins.ESPLoaderPE || !strings.Contains(ins.ESPGrubConfig, "root=UUID="+img.RootUUID) {
				t.Fatalf("ESP loader %v PE %v grub %q", ins.ESPLoader, ins.ESPLoaderPE, ins.ESPGrubConfig)
			}
			esp := ins.Layout.Find(RoleESP)
			espImg := extract(t, disk, esp.Start, esp.Size, "esp.img")
			run(t, testenv.RequireTool(t, "fsck.vfat", "dosfstools"), "-n", espImg)
			if got := run(t, testenv.RequireTool(t, "mtype", "mtools"), "-i", espImg, "::/EFI/BOOT/BOOTX64.EFI"); got != string(kernel) {
				t.Fatalf("BOOTX64.EFI: %d bytes, kernel %d", len(got), len(kernel))
			}
			if tags := blkidAt(t, disk.Name(), esp.Start, esp.Size); tags["LABEL"] != ESPLabel || tags["UUID"] != res.ESPUUID {
				t.Fatalf("blkid ESP after install: %v", tags)
			}
			// A second install finds the loader there and refuses to clobber it.
			if _, err := InstallBootloader(t.Context(), disk, testDiskSize, c.mode); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("second install: %v", err)
			}
		})
	}
	t.Run("uefi without ESP", func(t *testing.T) {
		disk := sparseDisk(t, testDiskSize)
		if _, err := DeployPartitionImage(t.Context(), disk, testDiskSize, imgFile, img.Size, PartitionParams{BootMode: BootModeUEFI, RootMB: 100}); err != nil {
			t.Fatal(err)
		}
		before := digest(t, disk)
		if _, err := InstallBootloader(t.Context(), disk, testDiskSize, BootModeUEFI); err == nil || !strings.Contains(err.Error(), "no EFI system partition") {
			t.Fatalf("error %v", err)
		}
		if digest(t, disk) != before {
			t.Fatal("disk changed")
		}
	})
	t.Run("blank disk", func(t *testing.T) {
		disk := sparseDisk(t, 64<<20)
		if _, err := InstallBootloader(t.Context(), disk, 64<<20, BootModeBIOS); err == nil || !strings.Contains(err.Error(), "no partitions") {
			t.Fatalf("error %v", err)
		}
	})
}
