package bmcemu

import (
	"context"
	"io"
	"net"
	"time"
)

// Machine is what one virtual BMC manages. bmcemu never imports vms: the
// command wiring adapts a vms machine (simulated or libvirt) to this.
type Machine interface {
	// PowerState reports whether the machine is powered on.
	PowerState(ctx context.Context) (on bool, err error)
	// Control carries out a Chassis Control action.
	Control(ctx context.Context, a PowerAction) error
	// BootFlags returns boot option parameter 5 exactly as last stored
	// (IPMI v2.0 table 28-14): byte 0 bit 7 valid, bit 6 persistent,
	// bit 5 EFI; byte 1 bits 5:2 device selector. A one-time override is
	// cleared by the machine when it is consumed by a boot.
	BootFlags(ctx context.Context) ([5]byte, error)
	// SetBootFlags stores boot option parameter 5 byte for byte.
	SetBootFlags(ctx context.Context, data [5]byte) error
	// AttachConsole returns the machine's serial console from now on:
	// reads yield console output, writes are keystrokes. Close detaches;
	// so does the end of ctx.
	AttachConsole(ctx context.Context) (io.ReadWriteCloser, error)
	// Subscribe calls fn for every machine event (power transitions,
	// boots) until cancel is called. fn must not block.
	Subscribe(fn func(MachineEvent)) (cancel func())
	// Hardware describes the machine as its inventory shows it (Redfish
	// ComputerSystem, NICs, disk). It does not change while the machine
	// is open.
	Hardware() Hardware
}

// MediaDevice names a virtual media drive of a machine.
type MediaDevice string

// Virtual media drives a Redfish Manager offers: a CD/DVD drive and a USB
// stick slot.
const (
	MediaCD       MediaDevice = "cd"
	MediaUSBStick MediaDevice = "usb"
)

// MediaMachine is a Machine whose firmware boots virtual media: a Redfish
// service hands InsertMedia and EjectMedia to it (and keeps its own
// VirtualMedia state as well), so a boot from Cd reads the inserted image.
// Machines without it keep virtual media as Redfish state only.
type MediaMachine interface {
	Machine
	// InsertMedia puts the image at imageURL (http or https) into device;
	// the machine reads it when it boots from that device.
	InsertMedia(ctx context.Context, device MediaDevice, imageURL string) error
	// EjectMedia empties device; an empty device is not an error.
	EjectMedia(ctx context.Context, device MediaDevice) error
}

// HTTPBootMachine is a Machine whose UEFI firmware does HTTP boot: a
// Redfish service sets a UefiHttp override through it, so the next boot
// (while the flags stand) fetches the URI. Machines without it see a
// UefiHttp override as a network boot, its URI as Redfish state only.
type HTTPBootMachine interface {
	Machine
	// SetHTTPBoot stores parameter 5 as SetBootFlags does and, with uri
	// not "", makes a boot under exactly these flags a UEFI HTTP boot from
	// uri (http or https: an ISO image or an EFI application); uri ""
	// clears it. SetBootFlags clears it too.
	SetHTTPBoot(ctx context.Context, data [5]byte, uri string) error
}

// Hardware is what a BMC reports of a machine's make-up.
type Hardware struct {
	// Name is the machine's name; UUID its SMBIOS system UUID in the
	// canonical textual form (8-4-4-4-12 lowercase hex).
	Name, UUID string
	// MACs are its NICs' addresses, in NIC order.
	MACs []net.HardwareAddr
	// DiskBytes is the size of its one local disk (0: no disk).
	DiskBytes int64
	// CPUs and MemoryBytes are its processors and memory.
	CPUs        int
	MemoryBytes int64
	// UEFI says the firmware boots in UEFI mode when no boot override is
	// valid (false: legacy BIOS).
	UEFI bool
}

// PowerAction is a Chassis Control action (IPMI v2.0 table 28-4, data byte 1).
type PowerAction uint8

// Chassis Control actions as they appear on the wire.
const (
	PowerDown           PowerAction = 0
	PowerUp             PowerAction = 1
	PowerCycle          PowerAction = 2
	HardReset           PowerAction = 3
	DiagnosticInterrupt PowerAction = 4
	SoftShutdown        PowerAction = 5
)

// MachineEventKind says what happened to a machine.
type MachineEventKind string

// Machine event kinds a BMC records in its SEL.
const (
	EventPowerOn  MachineEventKind = "power-on"
	EventPowerOff MachineEventKind = "power-off"
	EventReset    MachineEventKind = "reset"
	EventBoot     MachineEventKind = "boot" // Detail names the boot device
)

// MachineEvent is one thing that happened to a machine.
type MachineEvent struct {
	Time   time.Time
	Kind   MachineEventKind
	Detail string
}
