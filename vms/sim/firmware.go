package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/timing"
)

// Firmware is what runs on a machine from power-on or reset until power
// goes away: the seam where a network boot client (PXE) and a local-boot
// loader plug in. The machine cancels ctx when it powers off or resets.
//
// Boot returns nil when the booted program ended on its own, and an error
// saying why when the machine could not boot (it then stays on, halted, as
// hardware sitting at "No bootable device." does); the machine records that
// as a boot-failed event. A canceled ctx is not a failure.
type Firmware interface {
	Boot(ctx context.Context, b *BootContext) error
}

// BootContext is the machine as firmware sees it for one boot.
type BootContext struct {
	Machine string
	UUID    [16]byte
	// Device is the effective boot device: the override's, or vms.BootNone
	// for the firmware's own boot order.
	Device vms.BootDevice
	// HTTPBootURI, with Device vms.BootPXE, makes this boot a UEFI HTTP
	// boot of the URI (Redfish's UefiHttp override with HttpBootUri).
	HTTPBootURI string
	// Override says Device came from a valid boot flags override;
	// Persistent says that override applies to every boot.
	Override, Persistent bool
	// Mode is the boot mode of this boot: the override's EFI bit when an
	// override is valid, else the machine's configured mode.
	Mode vms.BootMode
	Disk Disk
	NICs []vms.NIC
	// Console is the serial port (log and SOL); ConsoleInput yields what
	// SOL clients type.
	Console      io.Writer
	ConsoleInput <-chan []byte
	// Emit records a machine event (vms.EventBoot with the device booted,
	// vms.EventConsole for a line worth a timeline entry).
	Emit func(kind vms.EventKind, detail string)
	// Media is the image URL a virtual media drive holds now ("" when
	// empty): firmware reading a medium asks at every read, so an eject
	// during the boot is seen. nil => no virtual media drives.
	Media func(dev vms.MediaDevice) string
	// Eject empties a virtual media drive, as EjectMedia does: firmware
	// losing its medium mid-boot (the fault eject-during-boot) pulls it
	// here. nil => no virtual media drives.
	Eject func(dev vms.MediaDevice)
	// Pace is the machine's hardware pace: firmware waits its POST and
	// a NIC's LinkUp (vms/timing).
	Pace timing.Figures
	// Reset resets the machine as reboot(2) or the reset line does, and
	// PowerOff powers it off as an OS shutdown does. Both return at once;
	// the running program then sees ctx end. They do nothing once this boot
	// is over (the machine was reset or powered off meanwhile).
	Reset, PowerOff func()
}

// Disk is a machine's local disk as firmware reads and writes it. A boot's
// Disk is detached when that boot ends (power off, reset): later reads and
// writes fail, as they would on a machine that lost power.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
}

// ErrNoBootDevice is the failure of a boot with nothing bootable.
var ErrNoBootDevice = errors.New("no bootable device")

// StockFirmware is the firmware a simulated machine ships with: it POSTs
// to the console, picks the boot device, and hands over to a boot stage.
// The zero value is complete for today's build: a disk boot really reads
// the disk and fails as hardware does when nothing bootable is there, and a
// network boot says no network boot program is in this build.
type StockFirmware struct {
	// NetBoot runs a network boot (the PXE client). nil => no network boot
	// program in this build: PXE boots fail.
	NetBoot Firmware
	// MediaBoot boots the medium in a virtual media drive: it is called
	// with Device set to vms.BootCDROM or vms.BootUSB. nil => booting
	// virtual media fails, saying no media boot is in this build.
	MediaBoot Firmware
	// HTTPBoot runs a UEFI HTTP boot of BootContext.HTTPBootURI (UEFI
	// mode only). nil => such boots fail, saying no HTTP boot is in this
	// build.
	HTTPBoot Firmware
	// LocalBoot runs what a bootable disk holds (the local-boot loader).
	// nil => a disk with a valid boot sector or ESP still fails to boot,
	// saying the loader is not in this build.
	LocalBoot Firmware
}

// firmwareVersion is what POST prints; BMC Get Device ID reports 2.x too.
const firmwareVersion = "2.1"

// Boot implements Firmware.
func (fw StockFirmware) Boot(ctx context.Context, b *BootContext) error {
	con := b.Console
	fmt.Fprintf(con, "\r\nmetalbed SimBIOS %s (%s)\r\n", firmwareVersion, b.Machine)
	fmt.Fprintf(con, "System UUID %s\r\n", FormatUUID(b.UUID))
	fmt.Fprintf(con, "Boot mode: %s\r\n", modeName(b.Mode))
	for i, n := range b.NICs {
		fmt.Fprintf(con, "NIC%d: %s\r\n", i, n.MAC)
	}
	if b.Disk != nil {
		fmt.Fprintf(con, "Disk 0: %d MiB\r\n", b.Disk.Size()>>20)
	}
	if b.Pace.POST > 0 {
		fmt.Fprintf(con, "Memory test and option ROMs (POST %s)...\r\n", b.Pace.POST.Round(time.Millisecond))
		if !sleep(ctx, b.Pace.POST) {
			return nil
		}
	}
	order := []vms.BootDevice{b.Device}
	switch {
	case b.Override && b.Persistent:
		fmt.Fprintf(con, "Boot device: %s (persistent override)\r\n", b.Device)
	case b.Override:
		fmt.Fprintf(con, "Boot device: %s (one-time override)\r\n", b.Device)
	default:
		order = []vms.BootDevice{vms.BootDisk, vms.BootPXE}
		fmt.Fprintf(con, "Boot device: boot order (disk, network)\r\n")
	}
	var errs []error
	for _, d := range order {
		if err := ctx.Err(); err != nil {
			return nil
		}
		err := fw.bootFrom(ctx, b, d)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		errs = append(errs, err)
	}
	fmt.Fprintf(con, "No bootable device.\r\n")
	return fmt.Errorf("%w: %w", ErrNoBootDevice, errors.Join(errs...))
}

func (fw StockFirmware) bootFrom(ctx context.Context, b *BootContext, d vms.BootDevice) error {
	con := b.Console
	switch d {
	case vms.BootPXE:
		if b.HTTPBootURI != "" {
			return fw.httpBoot(ctx, b)
		}
		fmt.Fprintf(con, "Booting from network (%s PXE)...\r\n", modeName(b.Mode))
		if fw.NetBoot == nil {
			fmt.Fprintf(con, "PXE: no network boot program is available in this build\r\n")
			return errors.New("pxe: no network boot program is available in this build")
		}
		b.Emit(vms.EventBoot, vms.BootPXE.String())
		return fw.NetBoot.Boot(ctx, b)
	case vms.BootDisk:
		fmt.Fprintf(con, "Booting from hard disk (%s)...\r\n", modeName(b.Mode))
		if err := checkBootable(b.Disk, b.Mode); err != nil {
			fmt.Fprintf(con, "Disk 0: %v\r\n", err)
			return fmt.Errorf("disk: %w", err)
		}
		if fw.LocalBoot == nil {
			fmt.Fprintf(con, "Disk 0 is bootable; no local-boot loader is available in this build\r\n")
			return errors.New("disk: bootable, but no local-boot loader is available in this build")
		}
		b.Emit(vms.EventBoot, vms.BootDisk.String())
		return fw.LocalBoot.Boot(ctx, b)
	case vms.BootCDROM, vms.BootUSB:
		what, dev := "virtual CD", vms.MediaCD
		if d == vms.BootUSB {
			what, dev = "virtual USB stick", vms.MediaUSB
		}
		fmt.Fprintf(con, "Booting from %s (%s)...\r\n", what, modeName(b.Mode))
		url := ""
		if b.Media != nil {
			url = b.Media(dev)
		}
		if url == "" {
			fmt.Fprintf(con, "%s: no medium\r\n", what)
			return fmt.Errorf("%s: no medium", d)
		}
		if fw.MediaBoot == nil {
			fmt.Fprintf(con, "%s: no virtual media boot is available in this build\r\n", what)
			return fmt.Errorf("%s: no virtual media boot is available in this build", d)
		}
		mb := *b
		mb.Device = d
		if err := fw.MediaBoot.Boot(ctx, &mb); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		return nil
	case vms.BootSetup:
		fmt.Fprintf(con, "Entering firmware setup (nothing to configure); halted\r\n")
		b.Emit(vms.EventBoot, vms.BootSetup.String())
		<-ctx.Done()
		return nil
	default:
		fmt.Fprintf(con, "Boot device %s is not present on this machine\r\n", d)
		return fmt.Errorf("%s: device not present", d)
	}
}

// httpBoot is a UEFI HTTP boot: UEFI firmware only — legacy BIOS has
// none, and the boot fails as on hardware.
func (fw StockFirmware) httpBoot(ctx context.Context, b *BootContext) error {
	con := b.Console
	fmt.Fprintf(con, "Booting from network (%s HTTP): %s\r\n", modeName(b.Mode), b.HTTPBootURI)
	if b.Mode != vms.UEFI {
		fmt.Fprintf(con, "HTTP boot: not available in legacy BIOS mode (UEFI HTTP boot needs UEFI firmware)\r\n")
		return errors.New("http boot: not available in legacy BIOS mode")
	}
	if fw.HTTPBoot == nil {
		fmt.Fprintf(con, "HTTP boot: no HTTP boot is available in this build\r\n")
		return errors.New("http boot: no HTTP boot is available in this build")
	}
	b.Emit(vms.EventBoot, "http "+b.HTTPBootURI)
	if err := fw.HTTPBoot.Boot(ctx, b); err != nil {
		return fmt.Errorf("http boot %s: %w", b.HTTPBootURI, err)
	}
	return nil
}

func modeName(m vms.BootMode) string {
	if m == vms.UEFI {
		return "UEFI"
	}
	return "legacy BIOS"
}

// espType is the EFI System Partition type GUID as stored on disk
// (C12A7328-F81F-11D2-BA4B-00A0C93EC93B, mixed endian).
const espType = "\x28\x73\x2a\xc1\x1f\xf8\xd2\x11\xba\x4b\x00\xa0\xc9\x3e\xc9\x3b"

const sectorSize = 512

// checkBootable reads the disk as firmware does: legacy BIOS needs the
// 0x55AA signature in sector 0; UEFI needs a GPT with an EFI System
// Partition.
func checkBootable(d Disk, mode vms.BootMode) error {
	if d == nil {
		return errors.New("not present")
	}
	mbr := make([]byte, sectorSize)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("read sector 0: %w", err)
	}
	if mode != vms.UEFI {
		if mbr[510] != 0x55 || mbr[511] != 0xaa {
			return errors.New("no boot signature (0x55AA) in sector 0")
		}
		return nil
	}
	hdr := make([]byte, sectorSize)
	if _, err := d.ReadAt(hdr, sectorSize); err != nil {
		return fmt.Errorf("read GPT header: %w", err)
	}
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) {
		return errors.New("no GPT (no \"EFI PART\" header in sector 1)")
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count := binary.LittleEndian.Uint32(hdr[80:])
	size := binary.LittleEndian.Uint32(hdr[84:])
	if size < 128 || size > 4096 || count > 1024 || entriesLBA == 0 ||
		entriesLBA > uint64(d.Size()/sectorSize) {
		return fmt.Errorf("GPT header is invalid (entries at LBA %d, %d entries of %d bytes)", entriesLBA, count, size)
	}
	entries := make([]byte, int(count)*int(size))
	if _, err := d.ReadAt(entries, int64(entriesLBA)*sectorSize); err != nil {
		return fmt.Errorf("read GPT entries: %w", err)
	}
	for i := range int(count) {
		if string(entries[i*int(size):i*int(size)+16]) == espType {
			return nil
		}
	}
	return errors.New("GPT has no EFI System Partition")
}

// sleep waits d, or less if ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
