// Package vms holds the machines metalbed runs: the Machine model shared by
// the in-process simulated machine (vms/sim) and libvirt VMs (vms/libvirt).
package vms

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// ErrPoweredOff is returned for a power action that needs the machine on
// (reset, cycle) while it is off; a BMC answers it with completion code
// 0xD5 (not supported in present state).
var ErrPoweredOff = errors.New("machine is powered off")

// Machine is one server: power, boot device, NICs, a disk and a serial
// console. Implementations persist their state so a restart loses nothing.
type Machine interface {
	Name() string
	// UUID is the machine's SMBIOS system UUID.
	UUID() [16]byte
	PowerState(ctx context.Context) (PowerState, error)
	Power(ctx context.Context, a PowerAction) error
	BootFlags(ctx context.Context) (BootFlags, error)
	SetBootFlags(ctx context.Context, f BootFlags) error
	NICs() []NIC
	Disk() Disk
	// AttachConsole streams console output from now on; writes are input.
	AttachConsole(ctx context.Context) (io.ReadWriteCloser, error)
	// Subscribe calls fn (which must not block) for every event until cancel.
	Subscribe(fn func(Event)) (cancel func())
	Close() error
}

// MediaDevice names a virtual media drive.
type MediaDevice string

// Virtual media drives: a CD/DVD drive (boot device BootCDROM) and a USB
// stick slot (BootUSB).
const (
	MediaCD  MediaDevice = "cd"
	MediaUSB MediaDevice = "usb"
)

// ErrNoMediaDrive is returned for a drive a machine does not have.
var ErrNoMediaDrive = errors.New("no such virtual media drive")

// MediaMachine is a Machine with virtual media drives a BMC fills: what is
// inserted is an image URL (http or https) the firmware reads when it boots
// from that drive. Ejecting an empty drive is not an error.
type MediaMachine interface {
	Machine
	InsertMedia(ctx context.Context, dev MediaDevice, imageURL string) error
	EjectMedia(ctx context.Context, dev MediaDevice) error
	// Media is the image URL in dev ("" when empty).
	Media(ctx context.Context, dev MediaDevice) (string, error)
}

// HTTPBootMachine is a Machine whose UEFI firmware does HTTP boot
// (Redfish's UefiHttp boot override with HttpBootUri).
type HTTPBootMachine interface {
	Machine
	// SetHTTPBoot stores the boot flags as SetBootFlags does and, with uri
	// not "", makes a boot under exactly these flags a UEFI HTTP boot of
	// uri (http or https: an ISO image or an EFI application); uri ""
	// clears it, and so does SetBootFlags. A consumed one-time override
	// takes the URI with it.
	SetHTTPBoot(ctx context.Context, f BootFlags, uri string) error
}

// PowerState of a machine.
type PowerState string

// Power states.
const (
	PowerOn  PowerState = "on"
	PowerOff PowerState = "off"
)

// PowerAction is something done to a machine's power.
type PowerAction string

// Power actions, as a chassis offers them.
const (
	ActionOn    PowerAction = "on"
	ActionOff   PowerAction = "off"   // hard off
	ActionCycle PowerAction = "cycle" // off, then on
	ActionReset PowerAction = "reset" // hard reset while on
	ActionSoft  PowerAction = "soft"  // ACPI shutdown request
	ActionDiag  PowerAction = "diag"  // NMI
)

// BootFlags is boot option parameter 5 byte for byte (IPMI v2.0 table
// 28-14), the form in which firmware reads its boot override from the BMC.
type BootFlags [5]byte

// BootDevice is the device selector (byte 1 bits 5:2).
type BootDevice uint8

// Boot device selectors.
const (
	BootNone   BootDevice = 0x0
	BootPXE    BootDevice = 0x1
	BootDisk   BootDevice = 0x2
	BootSafe   BootDevice = 0x3
	BootDiag   BootDevice = 0x4
	BootCDROM  BootDevice = 0x5
	BootSetup  BootDevice = 0x6
	BootRemote BootDevice = 0x9
	// BootUSB is "primary removable media" (0xF): Redfish's Usb target,
	// a virtual USB stick.
	BootUSB BootDevice = 0xf
)

func (d BootDevice) String() string {
	switch d {
	case BootNone:
		return "none"
	case BootPXE:
		return "pxe"
	case BootDisk:
		return "disk"
	case BootSafe:
		return "safe"
	case BootDiag:
		return "diag"
	case BootCDROM:
		return "cdrom"
	case BootSetup:
		return "bios"
	case BootRemote:
		return "remote"
	case BootUSB:
		return "usb"
	}
	return "unknown"
}

// Valid reports byte 0 bit 7: the flags hold an override.
func (f BootFlags) Valid() bool { return f[0]&0x80 != 0 }

// Persistent reports byte 0 bit 6: the override applies to all future boots.
func (f BootFlags) Persistent() bool { return f[0]&0x40 != 0 }

// EFI reports byte 0 bit 5: boot in EFI mode.
func (f BootFlags) EFI() bool { return f[0]&0x20 != 0 }

// Device is the selected boot device.
func (f BootFlags) Device() BootDevice { return BootDevice(f[1] >> 2 & 0x0f) }

// NewBootFlags builds valid flags for a device. The zero BootFlags means
// "no override": the firmware's own boot order; a consumed one-time
// override becomes the zero value.
func NewBootFlags(d BootDevice, persistent, efi bool) BootFlags {
	var f BootFlags
	f[0] = 0x80
	if persistent {
		f[0] |= 0x40
	}
	if efi {
		f[0] |= 0x20
	}
	f[1] = byte(d&0x0f) << 2
	return f
}

// BootMode is the firmware flavour.
type BootMode string

// Boot modes.
const (
	BIOS BootMode = "bios"
	UEFI BootMode = "uefi"
)

// NIC is one network interface.
type NIC struct {
	MAC net.HardwareAddr
}

// Disk is the machine's local disk.
type Disk struct {
	Path      string
	SizeBytes int64
}

// EventKind says what happened.
type EventKind string

// Event kinds.
const (
	EventPowerOn  EventKind = "power-on"
	EventPowerOff EventKind = "power-off"
	EventReset    EventKind = "reset"
	EventBoot     EventKind = "boot" // Detail: the device booted from
	EventBootFail EventKind = "boot-failed"
	EventConsole  EventKind = "console" // Detail: a console line worth a timeline entry
)

// Event is one thing that happened to a machine.
type Event struct {
	Time    time.Time
	Machine string
	Kind    EventKind
	Detail  string
}

// Subscribers holds the functions a Machine's Subscribe added; the zero
// value is ready and safe for concurrent use.
type Subscribers struct {
	mu   sync.Mutex
	fns  map[uint64]func(Event)
	next uint64
}

// Subscribe adds fn until cancel, as Machine.Subscribe does.
func (s *Subscribers) Subscribe(fn func(Event)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = map[uint64]func(Event){}
	}
	id := s.next
	s.next++
	s.fns[id] = fn
	return func() {
		s.mu.Lock()
		delete(s.fns, id)
		s.mu.Unlock()
	}
}

// Emit calls every function subscribed when it is called, outside the lock.
func (s *Subscribers) Emit(ev Event) {
	s.mu.Lock()
	fns := make([]func(Event), 0, len(s.fns))
	for _, fn := range s.fns {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}
