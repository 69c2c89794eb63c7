package testbed

import (
	"context"
	"fmt"
	"io"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// bmcMachine adapts a vms.Machine to the bmcemu.Machine a BMC drives.
type bmcMachine struct {
	m    vms.Machine
	mode vms.BootMode // the firmware's own boot mode
}

// Hardware implements bmcemu.Machine.
func (a bmcMachine) Hardware() bmcemu.Hardware {
	h := bmcemu.Hardware{
		Name:        a.m.Name(),
		UUID:        sim.FormatUUID(a.m.UUID()),
		DiskBytes:   a.m.Disk().SizeBytes,
		CPUs:        simCPUs,
		MemoryBytes: simMemoryMB << 20, // what enrollment reports (enroll.go)
		UEFI:        a.mode == vms.UEFI,
	}
	for _, n := range a.m.NICs() {
		h.MACs = append(h.MACs, n.MAC)
	}
	return h
}

var _ bmcemu.Machine = bmcMachine{}

// mediaBMCMachine is a bmcMachine whose machine has virtual media drives:
// what Redfish inserts reaches the machine's firmware.
type mediaBMCMachine struct {
	bmcMachine
	mm vms.MediaMachine
}

var _ bmcemu.MediaMachine = mediaBMCMachine{}

// httpBootBMCMachine is a mediaBMCMachine whose firmware also does UEFI
// HTTP boot (simulated machines): a Redfish UefiHttp override reaches it.
type httpBootBMCMachine struct {
	mediaBMCMachine
	hm vms.HTTPBootMachine
}

var _ bmcemu.HTTPBootMachine = httpBootBMCMachine{}

func (a httpBootBMCMachine) SetHTTPBoot(ctx context.Context, data [5]byte, uri string) error {
	return a.hm.SetHTTPBoot(ctx, vms.BootFlags(data), uri)
}

// newBMCMachine adapts m for a BMC, with its virtual media drives when it
// has them (simulated machines: CD and USB stick; libvirt VMs: the CD) and
// its UEFI HTTP boot (simulated machines).
func newBMCMachine(m vms.Machine, mode vms.BootMode) bmcemu.Machine {
	a := bmcMachine{m: m, mode: mode}
	mm, ok := m.(vms.MediaMachine)
	if !ok {
		return a
	}
	media := mediaBMCMachine{bmcMachine: a, mm: mm}
	if hm, ok := m.(vms.HTTPBootMachine); ok {
		return httpBootBMCMachine{mediaBMCMachine: media, hm: hm}
	}
	return media
}

// mediaDevices maps a BMC's virtual media drives to the machine's.
var mediaDevices = map[bmcemu.MediaDevice]vms.MediaDevice{
	bmcemu.MediaCD:       vms.MediaCD,
	bmcemu.MediaUSBStick: vms.MediaUSB,
}

func (a mediaBMCMachine) InsertMedia(ctx context.Context, dev bmcemu.MediaDevice, imageURL string) error {
	d, ok := mediaDevices[dev]
	if !ok {
		return fmt.Errorf("virtual media %q: %w", dev, vms.ErrNoMediaDrive)
	}
	return a.mm.InsertMedia(ctx, d, imageURL)
}

func (a mediaBMCMachine) EjectMedia(ctx context.Context, dev bmcemu.MediaDevice) error {
	d, ok := mediaDevices[dev]
	if !ok {
		return fmt.Errorf("virtual media %q: %w", dev, vms.ErrNoMediaDrive)
	}
	return a.mm.EjectMedia(ctx, d)
}

func (a bmcMachine) PowerState(ctx context.Context) (bool, error) {
	ps, err := a.m.PowerState(ctx)
	return ps == vms.PowerOn, err
}

// powerActions maps the chassis controls a BMC accepts to machine power actions.
var powerActions = map[bmcemu.PowerAction]vms.PowerAction{
	bmcemu.PowerDown:           vms.ActionOff,
	bmcemu.PowerUp:             vms.ActionOn,
	bmcemu.PowerCycle:          vms.ActionCycle,
	bmcemu.HardReset:           vms.ActionReset,
	bmcemu.DiagnosticInterrupt: vms.ActionDiag,
	bmcemu.SoftShutdown:        vms.ActionSoft,
}

func (a bmcMachine) Control(ctx context.Context, act bmcemu.PowerAction) error {
	va, ok := powerActions[act]
	if !ok {
		return fmt.Errorf("chassis control %d: not supported", act)
	}
	return a.m.Power(ctx, va)
}

func (a bmcMachine) BootFlags(ctx context.Context) ([5]byte, error) {
	f, err := a.m.BootFlags(ctx)
	return [5]byte(f), err
}

func (a bmcMachine) SetBootFlags(ctx context.Context, data [5]byte) error {
	return a.m.SetBootFlags(ctx, vms.BootFlags(data))
}

func (a bmcMachine) AttachConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	return a.m.AttachConsole(ctx)
}

// selEvents maps the machine events a BMC records in its SEL; it ignores the others.
var selEvents = map[vms.EventKind]bmcemu.MachineEventKind{
	vms.EventPowerOn:  bmcemu.EventPowerOn,
	vms.EventPowerOff: bmcemu.EventPowerOff,
	vms.EventReset:    bmcemu.EventReset,
	vms.EventBoot:     bmcemu.EventBoot,
}

// Subscribe forwards the events a BMC records in its SEL.
func (a bmcMachine) Subscribe(fn func(bmcemu.MachineEvent)) (cancel func()) {
	return a.m.Subscribe(func(ev vms.Event) {
		if k, ok := selEvents[ev.Kind]; ok {
			fn(bmcemu.MachineEvent{Time: ev.Time, Kind: k, Detail: ev.Detail})
		}
	})
}
