package redfish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/metalbed/metalbed/bmcemu"
)

// fakeMachine is a bmcemu.Machine that boots as the simulated machine
// does: power-on consumes a one-time override (the flags become zero), a
// persistent one stays.
type fakeMachine struct {
	hw bmcemu.Hardware

	mu      sync.Mutex
	on      bool
	flags   [5]byte
	actions []bmcemu.PowerAction
	boots   []string // "<selector> efi=<bool>" per boot
	// httpURI is the UEFI HTTP boot URI set with flags (SetHTTPBoot);
	// httpBoots the URI each boot fetched ("" for none).
	httpURI   string
	httpBoots []string
	subs      map[int]func(bmcemu.MachineEvent)
	nextSub   int
}

func newFakeMachine(name string, n int) *fakeMachine {
	mac, _ := net.ParseMAC(fmt.Sprintf("52:54:00:00:00:%02x", n))
	return &fakeMachine{
		hw: bmcemu.Hardware{
			Name: name, UUID: fmt.Sprintf("6d62%04x-0000-4000-8000-00000000%04x", n, n),
			MACs: []net.HardwareAddr{mac}, DiskBytes: 10 << 30, CPUs: 2, MemoryBytes: 2 << 30,
		},
		subs: map[int]func(bmcemu.MachineEvent){},
	}
}

func (m *fakeMachine) Hardware() bmcemu.Hardware { return m.hw }

func (m *fakeMachine) PowerState(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *fakeMachine) Control(_ context.Context, a bmcemu.PowerAction) error {
	m.mu.Lock()
	m.actions = append(m.actions, a)
	var evs []bmcemu.MachineEvent
	switch a {
	case bmcemu.PowerUp:
		if !m.on {
			evs = m.bootLocked(bmcemu.EventPowerOn)
		}
	case bmcemu.PowerDown, bmcemu.SoftShutdown:
		if m.on {
			m.on = false
			evs = []bmcemu.MachineEvent{{Kind: bmcemu.EventPowerOff}}
		}
	case bmcemu.PowerCycle, bmcemu.HardReset:
		if !m.on {
			m.mu.Unlock()
			return errors.New("powered off")
		}
		evs = m.bootLocked(bmcemu.EventReset)
	case bmcemu.DiagnosticInterrupt:
	}
	subs := make([]func(bmcemu.MachineEvent), 0, len(m.subs))
	for _, fn := range m.subs {
		subs = append(subs, fn)
	}
	m.mu.Unlock()
	for _, ev := range evs {
		for _, fn := range subs {
			fn(ev)
		}
	}
	return nil
}

func (m *fakeMachine) bootLocked(why bmcemu.MachineEventKind) []bmcemu.MachineEvent {
	m.on = true
	dev := "none"
	efi := m.hw.UEFI
	uri := ""
	if m.flags[0]&0x80 != 0 {
		dev = fmt.Sprintf("%d", m.flags[1]>>2&0x0f)
		efi = m.flags[0]&0x20 != 0
		uri = m.httpURI
		if m.flags[0]&0x40 == 0 {
			m.flags, m.httpURI = [5]byte{}, ""
		}
	}
	m.httpBoots = append(m.httpBoots, uri)
	m.boots = append(m.boots, fmt.Sprintf("%s efi=%v", dev, efi))
	return []bmcemu.MachineEvent{{Kind: why}, {Kind: bmcemu.EventBoot, Detail: dev}}
}

func (m *fakeMachine) BootFlags(context.Context) ([5]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flags, nil
}

func (m *fakeMachine) SetBootFlags(ctx context.Context, f [5]byte) error {
	return m.SetHTTPBoot(ctx, f, "")
}

// SetHTTPBoot implements bmcemu.HTTPBootMachine as the simulated machine
// does: the URI holds while the flags do, and a boot consumes both.
func (m *fakeMachine) SetHTTPBoot(_ context.Context, f [5]byte, uri string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flags, m.httpURI = f, uri
	return nil
}

// lastHTTPBoot is the URI the last boot fetched by UEFI HTTP boot.
func (m *fakeMachine) lastHTTPBoot() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.httpBoots) == 0 {
		return ""
	}
	return m.httpBoots[len(m.httpBoots)-1]
}

func (m *fakeMachine) AttachConsole(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.New("no console")
}

func (m *fakeMachine) Subscribe(fn func(bmcemu.MachineEvent)) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = fn
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.subs, id)
	}
}

func (m *fakeMachine) lastBoot() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.boots) == 0 {
		return ""
	}
	return m.boots[len(m.boots)-1]
}

func (m *fakeMachine) lastAction() (bmcemu.PowerAction, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.actions) == 0 {
		return 0, false
	}
	return m.actions[len(m.actions)-1], true
}
