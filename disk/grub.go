package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Real firmware boots metalbed's disks through GRUB 2, the boot loader
// Ironic's ramdisk installs with grub-install. GRUB is GPL-3: metalbed
// neither vendors nor links it. GrubImages are made at run time with
// Debian's grub-mkimage from the modules of grub-pc-bin (BIOS) and
// grub-efi-amd64-bin (UEFI) found on the machine; `metalbed ramdisk build`
// puts them into the deploy ramdisk's initramfs at GrubImagesDir, where the
// ramdisk's bootloader step reads them (it has no GRUB tools of its own).
//
// What InstallBootloader then does is what grub-install and grub-bios-setup
// do, in Go:
//
//   - bios: boot.img goes into the MBR boot code area (the BIOS parameter
//     block, disk identifier and partition table are kept) with the LBA of
//     core.img patched in at 0x5c, boot drive 0xff and the drive check
//     turned off (a hard disk). core.img — diskboot.img followed by GRUB's
//     compressed kernel and modules — goes into the gap between the MBR and
//     the first partition (msdos) or into the BIOS boot partition (gpt), and
//     the blocklist at the end of its first sector names the sectors after
//     it. Reed-Solomon redundancy is not added (grub-bios-setup adds it when
//     embedding; core.img works without, as in a blocklist install).
//   - uefi: the x86_64-efi image becomes \EFI\BOOT\BOOTX64.EFI on the ESP,
//     the removable-media path OVMF starts with no boot entries, and the
//     root's grub.cfg is copied beside it as \EFI\BOOT\grub.cfg.
//
// Both images carry an early config (grubEarlyConfig*) that finds the
// instance's grub.cfg: UEFI reads the one beside the loader ($cmdpath),
// BIOS (and UEFI as a fallback) the first file system holding
// /boot/grub/grub.cfg. grub.cfg itself (GrubConfigText) pins the root by
// file system UUID and turns it into root=PARTUUID= with `probe
// --part-uuid`, because the instance kernel has no initramfs and resolves
// only root=/dev/… and root=PARTUUID=. The modules are embedded, so GRUB
// needs nothing else on the disk.

// GrubImagesDir is where the deploy ramdisk's initramfs holds the GRUB
// images (files GrubBootImg, GrubCoreImg and GrubEFIImg).
const GrubImagesDir = "/lib/metalbed/grub"

// File names in a GRUB images directory.
const (
	GrubBootImg = "boot.img"
	GrubCoreImg = "core.img"
	GrubEFIImg  = "bootx64.efi"
)

// DefaultGrubLibDir is Debian's directory of GRUB platform modules.
const DefaultGrubLibDir = "/usr/lib/grub"

// grubPackages names what to install when GRUB is missing.
const grubPackages = "Debian packages grub-pc-bin (BIOS) and grub-efi-amd64-bin (UEFI), with grub-common's grub-mkimage"

// ErrNoGrub says GRUB's tools or images are not on this machine.
var ErrNoGrub = errors.New("GRUB 2 not found (" + grubPackages + ")")

const (
	grubBootKernelSector = 0x5c // boot.img: LBA of core.img's first sector
	grubBootDrive        = 0x64 // boot.img: 0xff = the drive the BIOS booted
	grubBootDriveCheck   = 0x66 // boot.img: jmp over the drive check
	grubBPBStart         = 0x03
	grubBPBEnd           = 0x5a
	grubBlocklist        = SectorSize - 12 // diskboot.img: {start u64, len u16, segment u16}
	grubCoreSegment      = 0x820           // where diskboot loads sector 2 on
	grubCoreMax          = 1 << 20
	grubEFIMax           = 16 << 20
)

// Modules embedded in the images: disks and partition tables, ext2/3/4
// (and FAT for the ESP), search, probe, the menu (normal) and the Linux
// loader; the EFI image also reads ISO 9660, searches by label and has
// linuxefi/initrdefi, so it boots a deploy ISO (BuildBootISO) whose
// grub.cfg follows Ironic's template; the BIOS image also drives the serial port, so GRUB shows on
// the console that real VMs log (on UEFI, OVMF mirrors its console there).
var (
	grubModulesBIOS = []string{"biosdisk", "part_msdos", "part_gpt", "ext2", "search", "search_fs_uuid",
		"search_fs_file", "configfile", "normal", "linux", "probe", "echo", "test", "serial", "terminal"}
	grubModulesEFI = []string{"part_gpt", "part_msdos", "fat", "ext2", "search", "search_fs_uuid",
		"search_fs_file", "configfile", "normal", "linux", "probe", "echo", "test",
		"iso9660", "search_label", "linuxefi"}
)

const grubEarlyConfigBIOS = `serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --file --set=root /boot/grub/grub.cfg
configfile /boot/grub/grub.cfg
`

const grubEarlyConfigEFI = `if [ -f "$cmdpath/grub.cfg" ]; then
	configfile "$cmdpath/grub.cfg"
fi
search --no-floppy --file --set=root /boot/grub/grub.cfg
configfile /boot/grub/grub.cfg
`

// GrubImages are the GRUB 2 images InstallBootloader writes. A nil
// *GrubImages, or an empty field, selects metalbed's placeholder loader for
// that boot mode (see InstallBootloader), which only simulated firmware
// boots.
type GrubImages struct {
	BIOSBoot []byte // i386-pc boot.img, 512 bytes
	BIOSCore []byte // i386-pc core.img from grub-mkimage, diskboot.img first
	EFI      []byte // x86_64-efi image from grub-mkimage (PE/COFF)
}

// MakeGrubImages builds GrubImages with grub-mkimage from the modules under
// libDir (default DefaultGrubLibDir): i386-pc for BIOS, x86_64-efi for
// UEFI. Either platform may be missing (its fields stay empty); if both
// are, or grub-mkimage is, the error wraps ErrNoGrub.
func MakeGrubImages(ctx context.Context, libDir string) (*GrubImages, error) {
	if libDir == "" {
		libDir = DefaultGrubLibDir
	}
	mk, err := exec.LookPath("grub-mkimage")
	if err != nil {
		return nil, fmt.Errorf("%w: grub-mkimage: %v", ErrNoGrub, err)
	}
	work, err := os.MkdirTemp("", "metalbed-grub-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	g := &GrubImages{}
	pc := filepath.Join(libDir, "i386-pc")
	if _, err := os.Stat(filepath.Join(pc, "boot.img")); err == nil {
		if g.BIOSBoot, err = os.ReadFile(filepath.Join(pc, "boot.img")); err != nil {
			return nil, err
		}
		if g.BIOSCore, err = mkimage(ctx, mk, work, pc, "i386-pc", "/boot/grub", grubEarlyConfigBIOS, grubModulesBIOS); err != nil {
			return nil, err
		}
	}
	if g.EFI, err = grubEFI(ctx, mk, work, libDir); err != nil {
		return nil, err
	}
	if g.BIOSCore == nil && g.EFI == nil {
		return nil, fmt.Errorf("%w: no i386-pc or x86_64-efi modules under %s", ErrNoGrub, libDir)
	}
	return g, g.check()
}

// grubEFI builds the x86_64-efi image from the modules under libDir, or
// returns nil if they are not there.
func grubEFI(ctx context.Context, mk, work, libDir string) ([]byte, error) {
	efi := filepath.Join(libDir, "x86_64-efi")
	if _, err := os.Stat(filepath.Join(efi, "linux.mod")); err != nil {
		return nil, nil
	}
	return mkimage(ctx, mk, work, efi, "x86_64-efi", "/EFI/BOOT", grubEarlyConfigEFI, grubModulesEFI)
}

func mkimage(ctx context.Context, mk, work, dir, format, prefix, early string, modules []string) ([]byte, error) {
	cfg := filepath.Join(work, format+".cfg")
	if err := os.WriteFile(cfg, []byte(early), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(work, format+".img")
	args := append([]string{"-O", format, "-d", dir, "-o", out, "-c", cfg, "-p", prefix}, modules...)
	if o, err := exec.CommandContext(ctx, mk, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("grub-mkimage -O %s: %w: %s", format, err, bytes.TrimSpace(o))
	}
	return os.ReadFile(out)
}

// check validates the images as far as InstallBootloader relies on them.
func (g *GrubImages) check() error {
	if len(g.BIOSBoot) > 0 || len(g.BIOSCore) > 0 {
		switch {
		case len(g.BIOSBoot) != SectorSize || g.BIOSBoot[510] != 0x55 || g.BIOSBoot[511] != 0xaa:
			return fmt.Errorf("GRUB %s: not a 512-byte boot sector", GrubBootImg)
		case len(g.BIOSCore) < 2*SectorSize || len(g.BIOSCore) > grubCoreMax:
			return fmt.Errorf("GRUB %s: %d bytes", GrubCoreImg, len(g.BIOSCore))
		case binary.LittleEndian.Uint16(g.BIOSCore[grubBlocklist+10:]) != grubCoreSegment:
			return fmt.Errorf("GRUB %s: does not start with diskboot.img (no blocklist)", GrubCoreImg)
		}
	}
	if len(g.EFI) > 0 && (len(g.EFI) > grubEFIMax || !isPE(g.EFI)) {
		return fmt.Errorf("GRUB %s: not a PE/COFF image", GrubEFIImg)
	}
	return nil
}

// ReadGrubImages reads the images a directory holds (GrubBootImg and
// GrubCoreImg for BIOS, GrubEFIImg for UEFI). A directory holding neither
// set is an error wrapping ErrNoGrub.
func ReadGrubImages(dir string) (*GrubImages, error) {
	g := &GrubImages{}
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{GrubBootImg, &g.BIOSBoot}, {GrubCoreImg, &g.BIOSCore}, {GrubEFIImg, &g.EFI}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		*f.dst = b
	}
	if len(g.BIOSCore) == 0 && len(g.EFI) == 0 {
		return nil, fmt.Errorf("%w: no GRUB images in %s", ErrNoGrub, dir)
	}
	if (len(g.BIOSCore) == 0) != (len(g.BIOSBoot) == 0) {
		return nil, fmt.Errorf("GRUB images in %s: %s and %s go together", dir, GrubBootImg, GrubCoreImg)
	}
	return g, g.check()
}

// Files returns the images by file name, as a GRUB images directory holds
// them.
func (g *GrubImages) Files() map[string][]byte {
	m := map[string][]byte{}
	if len(g.BIOSCore) > 0 {
		m[GrubBootImg], m[GrubCoreImg] = g.BIOSBoot, g.BIOSCore
	}
	if len(g.EFI) > 0 {
		m[GrubEFIImg] = g.EFI
	}
	return m
}

// has reports whether g holds the images for a boot mode.
func (g *GrubImages) has(bootMode string) bool {
	if g == nil {
		return false
	}
	if bootMode == BootModeUEFI {
		return len(g.EFI) > 0
	}
	return len(g.BIOSCore) > 0
}

// installGrubBIOS writes boot.img into sector 0 and core.img at coreLBA,
// after checking that core.img fits before limitLBA.
func installGrubBIOS(d Disk, g *GrubImages, coreLBA, limitLBA int64) error {
	if err := g.check(); err != nil {
		return err
	}
	core := bytes.Clone(g.BIOSCore)
	if r := len(core) % SectorSize; r != 0 {
		core = append(core, make([]byte, SectorSize-r)...)
	}
	nsec := int64(len(core) / SectorSize)
	if coreLBA+nsec > limitLBA {
		return fmt.Errorf("GRUB core.img needs %d sectors from LBA %d, only %d are free", nsec, coreLBA, limitLBA-coreLBA)
	}
	// One blocklist entry: the sectors after the first, loaded from
	// segment 0x820 on; the entry before it (a terminator) stays zero.
	bl := core[grubBlocklist:]
	binary.LittleEndian.PutUint64(bl[0:], uint64(coreLBA+1))
	binary.LittleEndian.PutUint16(bl[8:], uint16(nsec-1))
	binary.LittleEndian.PutUint16(bl[10:], grubCoreSegment)
	clear(core[grubBlocklist-12 : grubBlocklist])

	mbr := make([]byte, SectorSize)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("read MBR: %w", err)
	}
	boot := bytes.Clone(g.BIOSBoot)
	copy(boot[grubBPBStart:grubBPBEnd], mbr[grubBPBStart:grubBPBEnd])
	binary.LittleEndian.PutUint64(boot[grubBootKernelSector:], uint64(coreLBA))
	boot[grubBootDrive] = 0xff
	boot[grubBootDriveCheck], boot[grubBootDriveCheck+1] = 0x90, 0x90
	copy(mbr[:mbrBootCodeSize], boot[:mbrBootCodeSize])

	if _, err := d.WriteAt(core, coreLBA*SectorSize); err != nil {
		return fmt.Errorf("write GRUB core.img: %w", err)
	}
	if _, err := d.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	return nil
}

// grubCoreRange says where core.img goes on a disk: the BIOS boot
// partition on gpt, else the gap between the MBR and the first partition.
func grubCoreRange(l Layout) (start, limit int64, err error) {
	if l.Label == LabelGPT {
		bb := l.Find(RoleBIOSBoot)
		if bb == nil {
			return 0, 0, errors.New("a gpt disk needs a BIOS boot partition for GRUB's core image")
		}
		return bb.Start / SectorSize, (bb.Start + bb.Size) / SectorSize, nil
	}
	limit = -1
	for _, p := range l.Partitions {
		if s := p.Start / SectorSize; limit < 0 || s < limit {
			limit = s
		}
	}
	if limit < 0 {
		return 0, 0, errors.New("the disk has no partitions")
	}
	return 1, limit, nil
}
