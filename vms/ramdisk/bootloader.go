package ramdisk

import (
	"context"
	"errors"
	"fmt"

	"github.com/metalbed/metalbed/provisioner/images"
)

// InstallBootloader is the ramdisk's bootloader step for local boot: on the
// disk the conductor partitioned, it installs the loader the boot mode needs
// and checks grub.cfg on the root boots its kernel from that root (see
// images.InstallBootloader). The GRUB images come from
// images.GrubImagesDir, where `metalbed ramdisk build` puts them into the
// initramfs; see InstallBootloaderFrom.
func InstallBootloader(ctx context.Context, disk Disk, bootMode string) error {
	return InstallBootloaderFrom(images.GrubImagesDir)(ctx, disk, bootMode)
}

// InstallBootloaderFrom returns the bootloader step with the GRUB images of
// dir. When dir holds none (a simulated machine, whose ramdisk runs on the
// host, or an initramfs built without GRUB) it installs metalbed's
// placeholder loader, which only simulated firmware boots; the ramdisk
// says which loader it installed on the console.
func InstallBootloaderFrom(dir string) BootloaderInstaller {
	return func(ctx context.Context, disk Disk, bootMode string) error {
		g, err := images.ReadGrubImages(dir)
		if errors.Is(err, images.ErrNoGrub) {
			g, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("GRUB images: %w", err)
		}
		_, err = images.InstallBootloader(ctx, disk.Dev, disk.SizeBytes, bootMode, g)
		return err
	}
}

// loaderName names the loader found on a disk after the bootloader step,
// for the console.
func loaderName(disk Disk, bootMode string) string {
	ins, err := images.Inspect(disk.Dev, disk.SizeBytes)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	grub := ins.BootLoader == "grub"
	if bootMode == images.BootModeUEFI {
		grub = ins.ESPLoaderGrub
	}
	if grub {
		return "GRUB 2"
	}
	return fmt.Sprintf("metalbed's placeholder (no GRUB images in %s; boots on simulated firmware only)", images.GrubImagesDir)
}
