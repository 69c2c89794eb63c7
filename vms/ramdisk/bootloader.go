package ramdisk

import (
	"context"

	"github.com/metalbed/metalbed/provisioner/images"
)

// InstallBootloader is the ramdisk's bootloader step for local boot: on the
// disk the conductor partitioned, it installs the loader the boot mode needs
// (bios: MBR boot code; uefi: \EFI\BOOT on the ESP labelled efi-part) and
// checks grub.cfg on the root boots its kernel with root=UUID of that root.
func InstallBootloader(ctx context.Context, disk Disk, bootMode string) error {
	_, err := images.InstallBootloader(ctx, disk.Dev, disk.SizeBytes, bootMode)
	return err
}
