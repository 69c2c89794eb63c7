package redfish

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/bmcemu"
)

// mediaMachine is a fake machine with virtual media drives.
type mediaMachine struct {
	*fakeMachine
	mu    sync.Mutex
	calls []string
	fail  error
}

var _ bmcemu.MediaMachine = (*mediaMachine)(nil)

func (m *mediaMachine) InsertMedia(_ context.Context, dev bmcemu.MediaDevice, url string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.calls = append(m.calls, "insert "+string(dev)+" "+url)
	return nil
}

func (m *mediaMachine) EjectMedia(_ context.Context, dev bmcemu.MediaDevice) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.calls = append(m.calls, "eject "+string(dev))
	return nil
}

func (m *mediaMachine) callList() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

// TestMediaReachesTheMachine: InsertMedia and EjectMedia on Cd and
// UsbStick reach a machine with drives; a machine's refusal is a 500 and
// leaves the Redfish state as it was.
func TestMediaReachesTheMachine(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, media: true})
	mgr := "/redfish/v1/Managers/" + b.machines[0].hw.UUID + "/VirtualMedia/"
	post := func(path string, body any, want int) {
		t.Helper()
		if st, _, eb := b.do(t, "POST", mgr+path, "basic", body); st != want {
			t.Fatalf("POST %s: %d %v", path, st, eb)
		}
	}
	post("Cd/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": "http://127.0.0.1/boot.iso"}, 204)
	post("UsbStick/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": "https://127.0.0.1/stick.img", "Inserted": true}, 204)
	post("Cd/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": "http://x/y.iso"}, 409) // full: never reaches the machine
	post("Cd/Actions/VirtualMedia.EjectMedia", "", 204)
	want := []string{"insert cd http://127.0.0.1/boot.iso", "insert usb https://127.0.0.1/stick.img", "eject cd"}
	if got := b.media[0].callList(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("machine saw %q, want %q", got, want)
	}
	b.media[0].mu.Lock()
	b.media[0].fail = errors.New("drive jammed")
	b.media[0].mu.Unlock()
	st, _, eb := b.do(t, "POST", mgr+"Cd/Actions/VirtualMedia.InsertMedia", "basic", map[string]any{"Image": "http://127.0.0.1/boot.iso"})
	checkError(t, "insert refused by the machine", st, 500, eb)
	_, _, v := b.do(t, "GET", mgr+"Cd", "basic", nil)
	if v["Inserted"] != false {
		t.Errorf("a refused insert shows as inserted: %v", v)
	}
}
