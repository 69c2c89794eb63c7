package drivers

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/bmcemu/redfish"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
	"github.com/metalbed/metalbed/provisioner"
)

// mediaMachine is the machine behind the real Redfish service: power,
// boot flags and its drives' images kept in memory.
type mediaMachine struct {
	mu     sync.Mutex
	on     bool
	flags  [5]byte
	drives map[bmcemu.MediaDevice]string
}

func (m *mediaMachine) PowerState(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *mediaMachine) Control(_ context.Context, a bmcemu.PowerAction) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = a == bmcemu.PowerUp || a == bmcemu.PowerCycle || a == bmcemu.HardReset
	return nil
}

func (m *mediaMachine) BootFlags(context.Context) ([5]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flags, nil
}

func (m *mediaMachine) SetBootFlags(_ context.Context, f [5]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flags = f
	return nil
}

func (m *mediaMachine) AttachConsole(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.New("no console")
}

func (m *mediaMachine) Subscribe(func(bmcemu.MachineEvent)) func() { return func() {} }

func (m *mediaMachine) Hardware() bmcemu.Hardware {
	return bmcemu.Hardware{Name: "vm0", UUID: "8a4b7c1e-0000-4000-8000-000000000001", UEFI: true}
}

func (m *mediaMachine) InsertMedia(_ context.Context, dev bmcemu.MediaDevice, url string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drives[dev] = url
	return nil
}

func (m *mediaMachine) EjectMedia(_ context.Context, dev bmcemu.MediaDevice) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.drives, dev)
	return nil
}

func (m *mediaMachine) drive(dev bmcemu.MediaDevice) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drives[dev]
}

// startRedfishService serves machine m through bmcemu's Redfish service
// (plain HTTP) with faults from inj and returns a node pointing at it and
// the events the service recorded.
func startRedfishService(t *testing.T, m *mediaMachine, inj fault.Injector) (*provisioner.Node, *events.Timeline) {
	t.Helper()
	tl := events.New(events.Config{})
	srv, err := redfish.New(redfish.Config{PlainHTTP: true, Recorder: tl, Faults: inj,
		Systems: []redfish.System{{Machine: m, Username: "admin", Password: "secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &provisioner.Node{UUID: "node-vmedia", DriverInfo: map[string]any{
		"redfish_address": "http://" + ln.Addr().String(), "redfish_username": "admin", "redfish_password": "secret",
	}}, tl
}

func newRedfishManagement(t *testing.T) *RedfishManagement {
	t.Helper()
	h, err := NewRedfish(RedfishConfig{ConnectionAttempts: 2, ConnectionRetryInterval: 1})
	if err != nil {
		t.Fatal(err)
	}
	return h.Management["redfish"].(*RedfishManagement)
}

// TestRedfishVirtualMedia inserts and ejects a CD and a USB stick image
// through bmcemu's Redfish service, found as sushy finds them (the
// system's Managers, devices by MediaTypes), and checks what the machine
// and the service's events saw.
func TestRedfishVirtualMedia(t *testing.T) {
	m := &mediaMachine{drives: map[bmcemu.MediaDevice]string{}}
	node, tl := startRedfishService(t, m, nil)
	mgmt := newRedfishManagement(t)
	ctx := t.Context()
	const iso = "http://127.0.0.1:8080/redfish/boot-node-vmedia.iso"

	if err := mgmt.EjectMedia(ctx, node, MediaCD); err != nil {
		t.Fatalf("eject of an empty CD: %v", err)
	}
	if err := mgmt.InsertMedia(ctx, node, MediaCD, iso); err != nil {
		t.Fatal(err)
	}
	if got := m.drive(bmcemu.MediaCD); got != iso {
		t.Errorf("CD holds %q, want %q", got, iso)
	}
	// The same image again is a no-op (the service would answer 409).
	if err := mgmt.InsertMedia(ctx, node, MediaCD, iso); err != nil {
		t.Errorf("insert of the inserted image: %v", err)
	}
	// Another image finds no free CD drive.
	err := mgmt.InsertMedia(ctx, node, MediaCD, iso+"2")
	if !errors.Is(err, ErrInvalidParameter) || err.Error() != "No suitable virtual media device found" {
		t.Errorf("insert into a full CD drive: %v", err)
	}
	if err := mgmt.InsertMedia(ctx, node, MediaUSB, iso+".img"); err != nil {
		t.Fatal(err)
	}
	if err := mgmt.EjectMedia(ctx, node, MediaCD); err != nil {
		t.Fatal(err)
	}
	if got := m.drive(bmcemu.MediaCD); got != "" {
		t.Errorf("CD holds %q after eject", got)
	}
	if got := m.drive(bmcemu.MediaUSBStick); got != iso+".img" {
		t.Errorf("USB stick holds %q after ejecting the CD", got)
	}
	var details []string
	for _, e := range tl.Node("vm0") {
		if e.Kind == events.BMCRedfishMedia {
			details = append(details, e.Detail)
		}
	}
	want := []string{"insert Cd " + iso, "insert UsbStick " + iso + ".img", "eject Cd"}
	if len(details) != len(want) {
		t.Fatalf("virtual media events %q, want %q", details, want)
	}
	for i := range want {
		if details[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, details[i], want[i])
		}
	}
	if err := mgmt.InsertMedia(ctx, node, "floppy", iso); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("insert into a floppy: %v", err)
	}
}

// TestRedfishVirtualMediaServiceUnavailable: a 503 on every InsertMedia
// is retried ConnectionAttempts times and then fails with Ironic's
// Redfish exception text; the drive stays empty.
func TestRedfishVirtualMediaServiceUnavailable(t *testing.T) {
	m := &mediaMachine{drives: map[bmcemu.MediaDevice]string{}}
	inj := faulttest.New(t, fault.Rule{Layer: fault.Redfish, Op: "VirtualMedia.InsertMedia", Action: "status", Arg: "503"})
	node, _ := startRedfishService(t, m, inj)
	mgmt := newRedfishManagement(t)
	err := mgmt.InsertMedia(t.Context(), node, MediaCD, "http://127.0.0.1:1/boot.iso")
	var rerr *RedfishError
	if !errors.As(err, &rerr) || rerr.Status != 503 {
		t.Fatalf("insert under 503: %v", err)
	}
	if got := m.drive(bmcemu.MediaCD); got != "" {
		t.Errorf("CD holds %q", got)
	}
	// Only the inserts were hit (both tries); the GETs finding the drive
	// and other POSTs pass.
	if hits := inj.Hits(); len(hits) != 2 {
		t.Errorf("fault hits %+v, want the 2 tries of InsertMedia", hits)
	}
	if err := mgmt.EjectMedia(t.Context(), node, MediaCD); err != nil {
		t.Errorf("eject under an InsertMedia fault: %v", err)
	}
}
