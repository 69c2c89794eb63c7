package bmcemu

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/handlers"

	"github.com/metalbed/metalbed/internal/testenv"
)

var update = flag.Bool("update", false, "re-record the golden packets under testdata/packets")

// recordConn records every datagram through a PacketConn.
type recordConn struct {
	net.PacketConn
	mu  sync.Mutex
	log []recorded
}

type recorded struct {
	in   bool
	data []byte
}

func (r *recordConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := r.PacketConn.ReadFrom(b)
	if err == nil {
		r.mu.Lock()
		r.log = append(r.log, recorded{true, bytes.Clone(b[:n])})
		r.mu.Unlock()
	}
	return n, addr, err
}

func (r *recordConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	r.mu.Lock()
	r.log = append(r.log, recorded{false, bytes.Clone(b)})
	r.mu.Unlock()
	return r.PacketConn.WriteTo(b, addr)
}

// goldenSessions are the real clients recorded into testdata/packets.
var goldenSessions = []struct {
	name string
	args []string
}{
	{"lanplus-c3-power-status", []string{"-I", "lanplus", "-C", "3", "power", "status"}},
	{"lanplus-c17-bootparam-get-5", []string{"-I", "lanplus", "-C", "17", "chassis", "bootparam", "get", "5"}},
	{"lanplus-noc-bootdev-pxe", []string{"-I", "lanplus", "chassis", "bootdev", "pxe", "options=persistent"}},
	{"lan-power-on", []string{"-I", "lan", "power", "on"}},
	{"lanplus-c3-sdr", []string{"-I", "lanplus", "-C", "3", "sdr"}},
}

func recordGolden(t *testing.T) {
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	dir := filepath.Join("testdata", "packets")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, gs := range goldenSessions {
		srv, err := New(Config{Machine: newTestMachine(), Password: "password", GUID: [16]byte{1, 2, 3, 4}})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		rc := &recordConn{PacketConn: pc}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(ctx, rc) }()
		args := append([]string{"-H", "127.0.0.1", "-p", strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port),
			"-U", "admin", "-P", "password", "-L", "ADMINISTRATOR"}, gs.args...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		cancel()
		<-done
		pc.Close()
		if err != nil {
			t.Fatalf("%s: %v\n%s", gs.name, err, out)
		}
		rc.mu.Lock()
		for i, r := range rc.log {
			dirn := "out"
			if r.in {
				dirn = "in"
			}
			name := filepath.Join(dir, fmt.Sprintf("%s-%02d-%s.bin", gs.name, i, dirn))
			if err := os.WriteFile(name, r.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		rc.mu.Unlock()
	}
}

func goldenFiles(t testing.TB, suffix string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "packets", "*-"+suffix+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// TestGoldenPackets: every recorded client packet decodes, and the
// deterministic pre-session exchanges (the first request of each session:
// Get Channel Authentication Capabilities, and Get Channel Cipher Suites)
// are answered byte for byte as recorded. go test -run Golden -update
// re-records them against real ipmitool.
func TestGoldenPackets(t *testing.T) {
	if *update {
		recordGolden(t)
	}
	in := goldenFiles(t, "in")
	if len(in) < 20 {
		t.Fatalf("only %d golden packets under testdata/packets (run with -update)", len(in))
	}
	for _, f := range in {
		pkt, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h, err := parseHeader(pkt)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if h.plain != nil && (!h.rmcpPlus || h.payloadType == payloadIPMI) {
			if _, err := parseIPMIRequest(h.plain); err != nil {
				t.Errorf("%s: IPMI request: %v", f, err)
			}
		}
	}

	srv, err := New(Config{Machine: newTestMachine(), Password: "password", GUID: [16]byte{1, 2, 3, 4}, ReplyDelay: -1, ResendAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	mc := newMemConn()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, mc) }()
	defer func() { cancel(); <-done }()
	compared := 0
	for _, gs := range goldenSessions {
		for i := 0; ; i += 2 {
			req, err1 := os.ReadFile(filepath.Join("testdata", "packets", fmt.Sprintf("%s-%02d-in.bin", gs.name, i)))
			want, err2 := os.ReadFile(filepath.Join("testdata", "packets", fmt.Sprintf("%s-%02d-out.bin", gs.name, i+1)))
			if err1 != nil || err2 != nil {
				break
			}
			h, err := parseHeader(req)
			if err != nil || h.plain == nil || h.sessionID != 0 {
				break // session established: keys are random from here on
			}
			r, _ := parseIPMIRequest(h.plain)
			if r.netfn != netfnApp || (r.cmd != 0x38 && r.cmd != 0x54) {
				break
			}
			got := mc.exchange(t, req)
			compared++
			if !bytes.Equal(got, want) {
				t.Errorf("%s packet %d (cmd %#x): reply\n% x\nwant\n% x", gs.name, i, r.cmd, got, want)
			}
		}
	}
	if compared < len(goldenSessions) {
		t.Errorf("compared only %d golden replies", compared)
	}
}

// memConn is an in-memory PacketConn for driving a Server directly.
type memConn struct {
	in       chan memPacket
	out      chan memPacket
	mu       sync.Mutex
	deadline chan struct{}
}

type memPacket struct {
	data []byte
	addr net.Addr
}

func newMemConn() *memConn {
	return &memConn{in: make(chan memPacket), out: make(chan memPacket, 1024), deadline: make(chan struct{})}
}

var (
	fuzzClient = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
	probeAddr  = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3), Port: 40001}
)

func (m *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	m.mu.Lock()
	dl := m.deadline
	m.mu.Unlock()
	select {
	case p := <-m.in:
		return copy(b, p.data), p.addr, nil
	case <-dl:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (m *memConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case m.out <- memPacket{bytes.Clone(b), addr}:
	default: // nobody listening: drop like UDP
	}
	return len(b), nil
}

func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 623} }
func (m *memConn) SetDeadline(t time.Time) error    { return m.SetReadDeadline(t) }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }
func (m *memConn) SetReadDeadline(t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.IsZero() {
		m.deadline = make(chan struct{})
		return nil
	}
	if !t.After(time.Now()) {
		select {
		case <-m.deadline:
		default:
			close(m.deadline)
		}
	}
	return nil
}

// exchange sends req from probeAddr and returns the reply to it.
func (m *memConn) exchange(t testing.TB, req []byte) []byte {
	t.Helper()
	m.in <- memPacket{req, probeAddr}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-m.out:
			if p.addr.String() == probeAddr.String() {
				return p.data
			}
		case <-timeout:
			t.Fatal("no reply from the server")
		}
	}
}

func addGoldenSeeds(f *testing.F) {
	for _, file := range goldenFiles(f, "in") {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzServePacket feeds arbitrary datagrams to a serving BMC and checks it
// still answers a well-formed request afterwards.
func FuzzServePacket(f *testing.F) {
	addGoldenSeeds(f)
	f.Add([]byte{})
	f.Add([]byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x00, 0x00, 0x00})
	probe, err := os.ReadFile(filepath.Join("testdata", "packets", "lanplus-c3-power-status-00-in.bin"))
	if err != nil {
		f.Fatalf("golden probe packet: %v", err)
	}
	srv, err := New(Config{Machine: newTestMachine(), Password: "password", ReplyDelay: -1, ResendAfter: -1})
	if err != nil {
		f.Fatal(err)
	}
	mc := newMemConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, mc) }()
	f.Cleanup(func() { cancel(); <-done })
	f.Fuzz(func(t *testing.T, data []byte) {
		mc.in <- memPacket{data, fuzzClient}
		if len(mc.exchange(t, probe)) == 0 {
			t.Fatal("empty reply")
		}
	})
}

// FuzzParseHeader checks the RMCP/session header decoder on arbitrary bytes.
func FuzzParseHeader(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h, err := parseHeader(pkt)
		if err != nil {
			return
		}
		if len(h.plain) > len(pkt) {
			t.Fatalf("plain message longer than the packet")
		}
		if h.plain != nil {
			_, _ = parseIPMIRequest(h.plain)
			_, _ = ipmiResponseCC(h.plain)
		}
	})
}

// FuzzCommands feeds arbitrary request data to every command bmcemu
// decodes itself and checks the answer is well-formed.
func FuzzCommands(f *testing.F) {
	seeds := [][]byte{
		{}, {0x01}, {0x05, 0xe0, 0x04, 0, 0, 0}, {0x05, 0, 0}, {0x00, 0x01}, {0x04, 0x01, 0x01},
		{0, 0, 0, 0, 0, 0xff}, {1, 0, 'C', 'L', 'R', 0xaa}, {0x02}, {0x03},
	}
	for i := range 20 {
		for _, s := range seeds {
			f.Add(uint8(i), s)
		}
	}
	m := newTestMachine()
	srv, err := New(Config{Machine: m, Password: "password", SELCapacity: 8})
	if err != nil {
		f.Fatal(err)
	}
	table := commandTable
	f.Fuzz(func(t *testing.T, which uint8, req []byte) {
		c := table[int(which)%len(table)]
		resp, cc := c.fn(srv, t.Context(), req)
		if cc != ccOK && resp != nil {
			t.Fatalf("%s: cc %#x with data % x", c.name, cc, resp)
		}
		if len(resp) > 64 {
			t.Fatalf("%s: %d-byte response", c.name, len(resp))
		}
	})
}

// FuzzActivateSession15 feeds arbitrary Activate Session request data to
// bmcemu's IPMI 1.5 handler for a pending session.
func FuzzActivateSession15(f *testing.F) {
	f.Add([]byte{})
	f.Add(append(append([]byte{0x02, 0x04}, make([]byte, 16)...), 1, 0, 0, 0))
	f.Add(append(append([]byte{0x02, 0x05}, make([]byte, 16)...), 0, 0, 0, 0))
	srv, err := New(Config{Machine: newTestMachine(), Password: "password"})
	if err != nil {
		f.Fatal(err)
	}
	user, err := srv.bmc.Users.Get(2)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		pending, err := srv.bmc.V15Sessions.CreatePending(bmc.V15AuthTypeMD5, user, [16]byte{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		resp, cc, err := srv.activateSession15(t.Context(), &handlers.HandlerContext{BMC: srv.bmc, V15Session: pending, User: user}, req)
		if err != nil {
			t.Fatal(err)
		}
		if cc == ccOK && len(resp) != 10 {
			t.Fatalf("activated with a %d-byte response", len(resp))
		}
		if cc != ccOK && resp != nil {
			t.Fatalf("cc %#x with data", cc)
		}
		_ = srv.bmc.V15Sessions.Close(pending.TempSessionID)
		_ = srv.bmc.V15Sessions.Close(pending.SessionID)
	})
}
