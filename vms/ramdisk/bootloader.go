package ramdisk

import (
	"context"
	"errors"
	"fmt"

	"github.com/metalbed/metalbed/disk"
)

// InstallBootloader is the ramdisk's bootloader step for local boot: on the
// disk the conductor partitioned, it installs the loader the boot mode needs
// and checks grub.cfg on the root boots its kernel from that root (see
// disk.InstallBootloader). The GRUB images come from
// disk.GrubImagesDir, where `metalbed ramdisk build` puts them into the
// initramfs; see InstallBootloaderFrom.
func InstallBootloader(ctx context.Context, d Disk, bootMode string) error {
	return InstallBootloaderFrom(disk.GrubImagesDir)(ctx, d, bootMode)
}

// InstallBootloaderFrom returns the bootloader step with the GRUB images of
// dir. When dir holds none (a simulated machine, whose ramdisk runs on the
// host, or an initramfs built without GRUB) it installs metalbed's
// placeholder loader, which only simulated firmware boots; the ramdisk
// says which loader it installed on the console.
func InstallBootloaderFrom(dir string) BootloaderInstaller {
	return func(ctx context.Context, d Disk, bootMode string) error {
		g, err := disk.ReadGrubImages(dir)
		if errors.Is(err, disk.ErrNoGrub) {
			g, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("GRUB images: %w", err)
		}
		_, err = disk.InstallBootloader(ctx, d.Dev, d.SizeBytes, bootMode, g)
		return err
	}
}

// loaderName names the loader found on a disk after the bootloader step,
// for the console.
func loaderName(d Disk, bootMode string) string {
	ins, err := disk.Inspect(d.Dev, d.SizeBytes)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	grub := ins.BootLoader == "grub"
	if bootMode == disk.BootModeUEFI {
		grub = ins.ESPLoaderGrub
	}
	if grub {
		return "GRUB 2"
	}
	return fmt.Sprintf("metalbed's placeholder (no GRUB images in %s; boots on simulated firmware only)", disk.GrubImagesDir)
}
