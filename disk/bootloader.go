package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// kernelLimit bounds the kernel InstallBootloader copies to the ESP.
const kernelLimit = 128 << 20

// InstallBootloader does, on a disk the conductor partitioned for local
// boot, what the deploy ramdisk's bootloader step stands for (Ironic's
// ramdisk runs grub-install there): root is the last partition, and its
// /boot/grub/grub.cfg must boot a kernel of that file system and search
// for the root by its file system UUID.
//
// With GRUB images for the boot mode (see GrubImages; grub.go tells how
// they are placed), real firmware boots the disk:
//
//   - bios: boot.img in the MBR boot code area (the partition table is
//     kept), core.img in the post-MBR gap (msdos) or the BIOS boot
//     partition (gpt).
//   - uefi: the partition labelled efi-part (FAT32) gets GRUB as
//     EFI/BOOT/BOOTX64.EFI and the root's grub.cfg as EFI/BOOT/grub.cfg.
//
// With grub nil (or lacking the mode's images) it writes metalbed's
// placeholder instead, which only the simulated firmware boots: bios, the
// MBR code of biosBootCode (it prints that there is no boot loader);
// uefi, the kernel named by grub.cfg (an EFI stub image) as BOOTX64.EFI,
// which real firmware starts without a command line. The returned
// Inspection tells which: BootLoader "grub" or "metalbed" for bios,
// ESPLoaderGrub for uefi.
//
// Nothing is written unless every check passed.
func InstallBootloader(ctx context.Context, disk Disk, diskSize int64, bootMode string, grub *GrubImages) (*Inspection, error) {
	diskSize = diskSize / SectorSize * SectorSize
	sd := &sectorDisk{r: disk, w: disk, size: diskSize}
	ins, err := Inspect(sd, diskSize)
	if err != nil {
		return nil, fmt.Errorf("install bootloader: %w", err)
	}
	parts := ins.Layout.Partitions
	if len(parts) == 0 {
		return nil, errors.New("install bootloader: the disk has no partitions")
	}
	root := parts[len(parts)-1]
	var cfg string
	for _, g := range ins.GrubConfigs {
		if g.Partition == root.Number {
			cfg = g.Text
		}
	}
	if cfg == "" {
		return nil, fmt.Errorf("install bootloader: root (partition %d, %s) has no %s", root.Number, root.FSType, GrubConfigPath)
	}
	entry, err := ParseGrubConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("install bootloader: %w", err)
	}
	if entry.RootUUID != root.UUID {
		return nil, fmt.Errorf("install bootloader: grub.cfg boots the file system with UUID %q but the root partition's UUID is %s", entry.RootUUID, root.UUID)
	}
	rootFS := io.NewSectionReader(sd, root.Start, root.Size)
	kernel, err := ReadExt4File(rootFS, root.Size, entry.Kernel, kernelLimit)
	if err != nil {
		return nil, fmt.Errorf("install bootloader: kernel %s: %w", entry.Kernel, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	useGrub := grub.Has(bootMode)
	switch bootMode {
	case BootModeBIOS:
		if useGrub {
			start, limit, err := grubCoreRange(ins.Layout)
			if err != nil {
				return nil, fmt.Errorf("install bootloader: %w", err)
			}
			if err := installGrubBIOS(sd, grub, start, limit); err != nil {
				return nil, fmt.Errorf("install bootloader: %w", err)
			}
			break
		}
		sec := make([]byte, SectorSize)
		if _, err := sd.ReadAt(sec, 0); err != nil {
			return nil, fmt.Errorf("install bootloader: read MBR: %w", err)
		}
		code := biosBootCode()
		clear(sec[:mbrBootCodeSize])
		copy(sec, code)
		if _, err := sd.WriteAt(sec, 0); err != nil {
			return nil, fmt.Errorf("install bootloader: write MBR: %w", err)
		}
	case BootModeUEFI:
		if ins.ESP == 0 {
			return nil, fmt.Errorf("install bootloader: no EFI system partition (FAT labelled %s)", ESPLabel)
		}
		loader := kernel
		if useGrub {
			loader = grub.EFI
		} else if !IsPE(kernel) {
			return nil, fmt.Errorf("install bootloader: kernel %s is not an EFI stub (PE/COFF) image", entry.Kernel)
		}
		esp := ins.Partition(ins.ESP)
		f, err := openFAT(io.NewSectionReader(sd, esp.Start, esp.Size), esp.Size)
		if err != nil {
			return nil, fmt.Errorf("install bootloader: ESP: %w", err)
		}
		w, err := newFATWriter(sd, f, esp.Start)
		if err != nil {
			return nil, fmt.Errorf("install bootloader: ESP: %w", err)
		}
		for _, ef := range []struct {
			path string
			data []byte
		}{{ESPLoaderPath, loader}, {ESPGrubCfgPath, []byte(cfg)}} {
			if err := w.addFile(ef.path, ef.data); err != nil {
				return nil, fmt.Errorf("install bootloader: ESP %s: %w", ef.path, err)
			}
		}
		if err := w.writeFSInfo(); err != nil {
			return nil, fmt.Errorf("install bootloader: %w", err)
		}
	default:
		return nil, fmt.Errorf("install bootloader: boot mode %q: want bios or uefi", bootMode)
	}
	if err := syncDisk(disk); err != nil {
		return nil, fmt.Errorf("install bootloader: %w", err)
	}
	after, err := Inspect(sd, diskSize)
	if err != nil {
		return nil, fmt.Errorf("install bootloader: read back: %w", err)
	}
	if bootMode == BootModeUEFI && (!after.ESPLoader || !bytes.Contains([]byte(after.ESPGrubConfig), []byte(root.UUID))) {
		return nil, errors.New("install bootloader: the ESP does not show the loader after writing it")
	}
	return after, nil
}
