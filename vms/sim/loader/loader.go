// Package loader is the simulated machine's local boot: what the firmware
// and the boot loader on the disk do between "boot from hard disk" and the
// kernel. It reads the disk as they would — the MBR boot code for BIOS, the
// EFI system partition and \EFI\BOOT\BOOTX64.EFI for UEFI — follows the
// loader's grub.cfg to the kernel on the root file system, and hands over
// to the simulated kernel with the command line grub.cfg gives. It fails
// where hardware would, with the message that hardware shows: no boot code
// the CPU can run, no ESP, no loader, no grub.cfg, a kernel file missing.
package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// Loader implements sim.Firmware for booting from the local disk.
type Loader struct {
	// Kernel configures the simulated kernel the loader hands over to.
	Kernel kernel.Config
}

// ErrNoLoader says the disk holds nothing the firmware can start.
var ErrNoLoader = errors.New("no boot loader")

// kernelLimit bounds a kernel read from an untrusted disk.
const kernelLimit = 256 << 20

// Boot implements sim.Firmware.
func (l Loader) Boot(ctx context.Context, b *sim.BootContext) error {
	con := b.Console
	say := func(format string, a ...any) { fmt.Fprintf(con, format+"\r\n", a...) }
	if b.Disk == nil {
		say("No bootable device.")
		return fmt.Errorf("%w: no disk", ErrNoLoader)
	}
	ins, err := disk.Inspect(b.Disk, b.Disk.Size())
	if err != nil {
		say("Disk 0: %v", err)
		return fmt.Errorf("read disk: %w", err)
	}
	cfgText, cfgPart, err := l.findConfig(ins, b.Mode, say)
	if err != nil {
		return err
	}
	entry, err := disk.ParseGrubConfig(cfgText)
	if err != nil {
		say("error: %v.", err)
		say("grub> ")
		return fmt.Errorf("%w: %v", ErrNoLoader, err)
	}
	// GRUB's $root: the partition "search --fs-uuid --set=root" finds,
	// else the one the config was read from.
	root := cfgPart
	if uuid := searchUUID(cfgText); uuid != "" {
		root = nil
		for i := range ins.Layout.Partitions {
			if strings.EqualFold(ins.Layout.Partitions[i].UUID, uuid) {
				root = &ins.Layout.Partitions[i]
			}
		}
		if root == nil {
			say("error: no such device: %s.", uuid)
			say("grub> ")
			return fmt.Errorf("%w: grub.cfg searches for file system %s, which is not on the disk", ErrNoLoader, uuid)
		}
	}
	if root == nil || !strings.HasPrefix(root.FSType, "ext") {
		say("error: unknown filesystem.")
		return fmt.Errorf("%w: the kernel's file system is not ext2/3/4", ErrNoLoader)
	}
	k, err := disk.ReadExt4File(io.NewSectionReader(b.Disk, root.Start, root.Size), root.Size, entry.Kernel, kernelLimit)
	if err != nil {
		say("error: file '%s' not found.", entry.Kernel)
		say("grub> ")
		return fmt.Errorf("%w: kernel %s: %v", ErrNoLoader, entry.Kernel, err)
	}
	// "probe --set=VAR --part-uuid $root" then $VAR on the linux line, as
	// GRUB expands it.
	cmdline := entry.Cmdline
	for _, v := range entry.PartUUIDVars {
		cmdline = strings.NewReplacer("${"+v+"}", root.PartUUID, "$"+v, root.PartUUID).Replace(cmdline)
	}
	say("Booting `metalbed instance'")
	say("Loading Linux %s ...", entry.Kernel)
	b.Emit(vms.EventConsole, "loader "+entry.Kernel+" "+cmdline)
	img := pxe.Image{KernelName: entry.Kernel, Kernel: pxe.LoadBytes(entry.Kernel, k), Cmdline: strings.TrimSpace("BOOT_IMAGE=" + entry.Kernel + " " + cmdline)}
	return kernel.Boot(ctx, l.Kernel, b, img)
}

// findConfig returns the grub.cfg the boot mode's loader reads and the
// partition it came from (nil for the ESP's).
func (l Loader) findConfig(ins *disk.Inspection, mode vms.BootMode, say func(string, ...any)) (string, *disk.Partition, error) {
	if mode == vms.UEFI {
		switch {
		case ins.ESP == 0:
			say("BdsDxe: No bootable option or device was found.")
			return "", nil, fmt.Errorf("%w: no EFI system partition", ErrNoLoader)
		case !ins.ESPLoader:
			say("BdsDxe: No bootable option or device was found.")
			return "", nil, fmt.Errorf("%w: the EFI system partition has no %s", ErrNoLoader, disk.ESPLoaderPath)
		case !ins.ESPLoaderPE:
			say("BdsDxe: failed to load Boot0001 \"UEFI Misc Device\": Unsupported")
			return "", nil, fmt.Errorf("%w: %s is not an EFI application", ErrNoLoader, disk.ESPLoaderPath)
		}
		say("BdsDxe: starting Boot0001 \"UEFI Misc Device\" from %s", disk.ESPLoaderPath)
		if ins.ESPGrubConfig == "" {
			say("grub> ")
			return "", nil, fmt.Errorf("%w: no %s on the EFI system partition", ErrNoLoader, disk.ESPGrubCfgPath)
		}
		return ins.ESPGrubConfig, nil, nil
	}
	switch ins.BootLoader {
	case "":
		say("Boot failed: not a bootable disk")
		return "", nil, fmt.Errorf("%w: the MBR has no boot code", ErrNoLoader)
	case "unknown":
		say("Boot failed: the simulated CPU cannot run this disk's boot code")
		return "", nil, fmt.Errorf("%w: unknown MBR boot code", ErrNoLoader)
	}
	// metalbed's boot code reads the root — the last partition, where
	// InstallBootloader found grub.cfg; GRUB's core finds its prefix on
	// the first file system holding /boot/grub/grub.cfg.
	var pick *disk.GrubConfig
	for i := range ins.GrubConfigs {
		g := &ins.GrubConfigs[i]
		if ins.BootLoader == "grub" && pick == nil {
			pick = g
		}
		if ins.BootLoader == "metalbed" && len(ins.Layout.Partitions) > 0 && g.Partition == ins.Layout.Partitions[len(ins.Layout.Partitions)-1].Number {
			pick = g
		}
	}
	if pick == nil {
		say("error: file '%s' not found.", disk.GrubConfigPath)
		say("Entering rescue mode...")
		say("grub rescue> ")
		return "", nil, fmt.Errorf("%w: no %s on the root file system", ErrNoLoader, disk.GrubConfigPath)
	}
	return pick.Text, ins.Partition(pick.Partition), nil
}

// searchUUID finds "search ... --fs-uuid ... <uuid>" in a grub.cfg.
func searchUUID(cfg string) string {
	for _, line := range strings.Split(cfg, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "search" && strings.Contains(line, "--fs-uuid") {
			return f[len(f)-1]
		}
	}
	return ""
}
