package bmcemu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// testMachine is an in-memory Machine: power, boot flags with the one-time
// consume rule, a console and events.
type testMachine struct {
	mu       sync.Mutex
	on       bool
	flags    [5]byte
	boots    []string // boot devices, in order
	actions  []PowerAction
	subs     map[int]func(MachineEvent)
	nextSub  int
	console  *testConsole
	typed    bytes.Buffer // keystrokes received
	typedSig chan struct{}
}

func newTestMachine() *testMachine {
	return &testMachine{subs: make(map[int]func(MachineEvent)), typedSig: make(chan struct{}, 1)}
}

func (m *testMachine) PowerState(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *testMachine) Control(_ context.Context, a PowerAction) error {
	m.mu.Lock()
	var evs []MachineEvent
	m.actions = append(m.actions, a)
	switch a {
	case PowerUp:
		if !m.on {
			m.on = true
			evs = append(evs, MachineEvent{Kind: EventPowerOn}, m.bootLocked())
		}
	case PowerDown, SoftShutdown:
		if m.on {
			m.on = false
			evs = append(evs, MachineEvent{Kind: EventPowerOff})
		}
	case PowerCycle, HardReset:
		if a == PowerCycle {
			evs = append(evs, MachineEvent{Kind: EventPowerOff}, MachineEvent{Kind: EventPowerOn})
		} else {
			evs = append(evs, MachineEvent{Kind: EventReset})
		}
		m.on = true
		evs = append(evs, m.bootLocked())
	case DiagnosticInterrupt:
	default:
		m.mu.Unlock()
		return errors.New("bad action")
	}
	subs := make([]func(MachineEvent), 0, len(m.subs))
	for _, fn := range m.subs {
		subs = append(subs, fn)
	}
	m.mu.Unlock()
	for _, ev := range evs {
		ev.Time = time.Now()
		for _, fn := range subs {
			fn(ev)
		}
	}
	return nil
}

// bootLocked boots: a valid override picks the device; a one-time override
// is consumed.
func (m *testMachine) bootLocked() MachineEvent {
	dev := "disk"
	if m.flags[0]&0x80 != 0 {
		switch m.flags[1] >> 2 & 0x0f {
		case 1:
			dev = "pxe"
		case 2:
			dev = "disk"
		case 5:
			dev = "cdrom"
		case 6:
			dev = "bios"
		}
		if m.flags[0]&0x40 == 0 {
			m.flags = [5]byte{}
		}
	}
	m.boots = append(m.boots, dev)
	return MachineEvent{Kind: EventBoot, Detail: dev}
}

func (m *testMachine) Hardware() Hardware {
	return Hardware{Name: "test", UUID: "00000000-0000-0000-0000-000000000001"}
}

func (m *testMachine) BootFlags(context.Context) ([5]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flags, nil
}

func (m *testMachine) SetBootFlags(_ context.Context, f [5]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flags = f
	return nil
}

// AttachConsole detaches when ctx ends, as the simulated machine does, so
// the tests catch a BMC that ties a SOL session to a request's context.
func (m *testMachine) AttachConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.console != nil {
		return nil, errors.New("console busy")
	}
	pr, pw := io.Pipe()
	c := &testConsole{m: m, r: pr, w: pw}
	m.console = c
	context.AfterFunc(ctx, func() { c.Close() })
	return c, nil
}

// writeConsole is the machine printing on its serial port; it blocks until
// a console is attached and reading.
func (m *testMachine) writeConsole(p []byte) error {
	m.mu.Lock()
	c := m.console
	m.mu.Unlock()
	if c == nil {
		return errors.New("no console attached")
	}
	_, err := c.w.Write(p)
	return err
}

func (m *testMachine) bootLog() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.boots...)
}

func (m *testMachine) keystrokes() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.typed.String()
}

func (m *testMachine) Subscribe(fn func(MachineEvent)) func() {
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

type testConsole struct {
	m    *testMachine
	r    *io.PipeReader
	w    *io.PipeWriter
	once sync.Once
}

func (c *testConsole) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *testConsole) Write(p []byte) (int, error) {
	c.m.mu.Lock()
	c.m.typed.Write(p)
	c.m.mu.Unlock()
	select {
	case c.m.typedSig <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *testConsole) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.m.mu.Lock()
		if c.m.console == c {
			c.m.console = nil
		}
		c.m.mu.Unlock()
	})
	return nil
}

// startBMC serves a BMC for m on 127.0.0.1:0 until the test ends and
// returns its UDP port.
func startBMC(t testing.TB, m Machine, mod func(*Config)) (*Server, int) {
	t.Helper()
	cfg := Config{Machine: m, Name: t.Name(), Username: "admin", Password: "password"}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		conn.Close()
	})
	return srv, conn.LocalAddr().(*net.UDPAddr).Port
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
