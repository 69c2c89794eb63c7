package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"strings"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// installBootloader is image.install_bootloader. On a disk laid out for a
// partition image it does what grub-install does (disk.InstallBootloader:
// MBR boot code for bios, loader and grub.cfg on the ESP for uefi). On a
// whole-disk image it checks that the image boots in the target mode, as
// IPA's efibootmgr step only registers what the image brought.
func (a *Agent) installBootloader(ctx context.Context, p params) error {
	var rootUUID, espUUID, target string
	var ignore *bool
	for k, dst := range map[string]any{"root_uuid": &rootUUID, "efi_system_part_uuid": &espUUID, "target_boot_mode": &target, "ignore_bootloader_failure": &ignore} {
		if err := p.decode(k, dst); err != nil {
			return err
		}
	}
	if target == "" {
		target = disk.BootModeBIOS
	}
	disk, err := a.installDevice(ctx)
	if err != nil {
		return err
	}
	device := "/dev/" + disk.Name
	detail, err := a.bootloader(ctx, disk.Dev, disk.SizeBytes, device, rootUUID, espUUID, target)
	if err != nil && ignore != nil && *ignore {
		a.say("error setting up bootloader (ignored): %v", err)
		return nil
	}
	if err == nil {
		a.milestone(events.AgentBootloader, detail)
	}
	return err
}

func (a *Agent) bootloader(ctx context.Context, dev disk.Disk, size int64, device, rootUUID, espUUID, target string) (detail string, err error) {
	ins, err := disk.Inspect(dev, size)
	if err != nil {
		return "", errExecution(fmt.Sprintf("Installing GRUB2 boot loader to device %s failed with %v.", device, err))
	}
	var root *disk.Partition
	for i := range ins.Layout.Partitions {
		pt := &ins.Layout.Partitions[i]
		if rootUUID != "" && strings.EqualFold(pt.UUID, rootUUID) {
			root = pt
		}
	}
	if root == nil {
		// A whole-disk image: the root "uuid" is its disk identifier.
		var id [4]byte
		dev.ReadAt(id[:], 440)
		diskID := fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(id[:]))
		whole := rootUUID == "" || rootUUID == "0x00000000" || strings.EqualFold(rootUUID, diskID) ||
			strings.EqualFold(rootUUID, ins.Layout.DiskID)
		if !whole {
			return "", &restError{Type: "DeviceNotFound", Code: 404,
				Message: "Error finding the disk or partition device to deploy the image onto",
				Details: fmt.Sprintf("No partition with UUID %s found on device %s", rootUUID, device)}
		}
		switch {
		case target == disk.BootModeUEFI && ins.ESPLoader:
			a.say("whole-disk image on %s has an EFI loader on partition %d; boot entry set", device, ins.ESP)
			return target + " whole-disk image's own loader", nil
		case target == disk.BootModeUEFI:
			return "", errExecution(fmt.Sprintf("No EFI boot loader found on the whole-disk image on %s (no ESP with %s)", device, disk.ESPLoaderPath))
		case rootUUID == "" || rootUUID == "0x00000000" || ins.BootCode:
			a.say("not using grub2-install on the whole-disk image on %s", device)
			return target + " whole-disk image's own loader", nil
		}
		return "", errExecution(fmt.Sprintf("The whole-disk image on %s has no boot code for %s boot", device, target))
	}
	bl, err := a.bootloaders()
	if err != nil {
		return "", errExecution(fmt.Sprintf("Installing GRUB2 boot loader to device %s failed with %v.", device, err))
	}
	installed, err := bl.Install(ctx, dev, size, target)
	if err != nil {
		return "", errExecution(fmt.Sprintf("Installing GRUB2 boot loader to device %s failed with %v.", device, err))
	}
	a.say("installed the %s boot loader on %s (root %s): %s", target, device, rootUUID, installed.Loader)
	if installed.Fallback != "" {
		a.say("ERROR: %s", installed.Fallback)
		a.milestone(events.AgentBootloaderFallback, installed.Fallback)
	}
	return target + " " + installed.Short(), nil
}

// bootloaders are Config.Bootloaders, else the running ramdisk's.
func (a *Agent) bootloaders() (ramdisk.Bootloaders, error) {
	if a.cfg.Bootloaders != nil {
		return *a.cfg.Bootloaders, nil
	}
	return ramdisk.LocalBootloaders()
}
