package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
	"github.com/metalbed/metalbed/internal/testenv"
)

// memFiles is a Files for tests.
type memFiles map[string][]byte

func (m memFiles) Open(name string) (io.ReaderAt, int64, error) {
	b, ok := m[name]
	if !ok {
		return nil, 0, fs.ErrNotExist
	}
	return bytes.NewReader(b), int64(len(b)), nil
}

type fixture struct {
	root   string
	addr   *net.UDPAddr
	mu     sync.Mutex
	events []Event
}

func (f *fixture) eventsFor(name string) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Event
	for _, e := range f.events {
		if e.File == name {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits up to 10 s for the first event of file name (what says
// which transfer that is) and returns it.
func (f *fixture) waitEvent(t *testing.T, name, what string) Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.eventsFor(name)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no event for %s", what)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return f.eventsFor(name)[0]
}

// start serves a temp root holding kernel (random bytes of the given size)
// and pxelinux.cfg/01-52-54-00-00-00-01, plus a secret outside the root
// and a symlink to it.
func start(t *testing.T, kernelSize int) (*fixture, []byte) {
	t.Helper()
	return startWith(t, kernelSize, nil)
}

func startWith(t *testing.T, kernelSize int, mutate func(*Config)) (*fixture, []byte) {
	t.Helper()
	f := &fixture{root: t.TempDir()}
	kernel := make([]byte, kernelSize)
	rand.Read(kernel)
	must(t, os.WriteFile(filepath.Join(f.root, "deploy_kernel"), kernel, 0o644))
	must(t, os.MkdirAll(filepath.Join(f.root, "pxelinux.cfg"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.root, "pxelinux.cfg", "01-52-54-00-00-00-01"), []byte("default deploy\n"), 0o644))
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(f.root, "escape")))
	must(t, os.Symlink("deploy_kernel", filepath.Join(f.root, "inside-link")))
	cfg := Config{
		Root:     f.root,
		Files:    memFiles{"token-1234": []byte("s3cr3t-token")},
		Timeout:  time.Second,
		Observer: func(e Event) { f.mu.Lock(); f.events = append(f.events, e); f.mu.Unlock() },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	must(t, err)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	must(t, err)
	f.addr = conn.LocalAddr().(*net.UDPAddr)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return f, kernel
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCurlBlockSizes(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	f, kernel := start(t, 3<<20+777)
	for _, blk := range []int{512, 1468, 8192} {
		t.Run(fmt.Sprint(blk), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "k")
			cmd := exec.CommandContext(t.Context(), curl, "-sS", "--fail", "--tftp-blksize", fmt.Sprint(blk),
				"-o", out, fmt.Sprintf("tftp://%s/deploy_kernel", f.addr))
			got := fetched(t, cmd, out)
			if !bytes.Equal(got, kernel) {
				t.Fatalf("got %d bytes, differ from the %d served", len(got), len(kernel))
			}
		})
	}
	ev := f.eventsFor("deploy_kernel")
	if len(ev) != 3 || ev[0].Bytes != int64(len(kernel)) || ev[0].Err != nil || !ev[0].Remote.Addr().IsLoopback() {
		t.Fatalf("events %+v", ev)
	}
}

func TestTFTPHPAClient(t *testing.T) {
	tftpc := testenv.RequireTool(t, "tftp", "tftp-hpa")
	f, kernel := start(t, 1<<20+3)
	dir := t.TempDir()
	for _, name := range []string{"deploy_kernel", "pxelinux.cfg/01-52-54-00-00-00-01", "token-1234", "inside-link"} {
		out := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		cmd := exec.CommandContext(t.Context(), tftpc, "-m", "binary", "127.0.0.1", fmt.Sprint(f.addr.Port), "-c", "get", name, out)
		got := fetched(t, cmd, out)
		want := map[string][]byte{
			"deploy_kernel":                     kernel,
			"inside-link":                       kernel,
			"pxelinux.cfg/01-52-54-00-00-00-01": []byte("default deploy\n"),
			"token-1234":                        []byte("s3cr3t-token"),
		}[name]
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes, want %d", name, len(got), len(want))
		}
	}
}

func TestBusyboxBlockSize(t *testing.T) {
	bb := testenv.RequireTool(t, "busybox", "busybox")
	f, kernel := start(t, 2<<20+1)
	for _, blk := range []int{1468, 8192} {
		out := filepath.Join(t.TempDir(), "k")
		cmd := exec.CommandContext(t.Context(), bb, "tftp", "-g", "-b", fmt.Sprint(blk), "-r", "deploy_kernel", "-l", out, "127.0.0.1", fmt.Sprint(f.addr.Port))
		got := fetched(t, cmd, out)
		if !bytes.Equal(got, kernel) {
			t.Fatalf("blksize %d: bytes differ", blk)
		}
	}
}

// rrq sends a raw read request and returns the first reply's opcode and
// its payload as text (the message of an ERROR, the options of an OACK).
func rrq(t *testing.T, addr *net.UDPAddr, name string, opts ...string) (opcode uint16, msg string) {
	t.Helper()
	return rrqFrom(t, net.IPv4(127, 0, 0, 1), addr, name, opts...)
}

// rrqFrom is rrq from the address src. The transfer is left
// unacknowledged: the server holds it until its retries run out.
func rrqFrom(t *testing.T, src net.IP, addr *net.UDPAddr, name string, opts ...string) (opcode uint16, msg string) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src})
	must(t, err)
	defer c.Close()
	p := []byte{0, 1}
	p = append(p, name...)
	p = append(p, 0)
	p = append(p, "octet"...)
	p = append(p, 0)
	for _, o := range opts {
		p = append(append(p, o...), 0)
	}
	_, err = c.WriteToUDP(p, addr)
	must(t, err)
	must(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 70000)
	n, _, err := c.ReadFromUDP(buf)
	must(t, err)
	if n < 4 {
		t.Fatalf("short reply %x", buf[:n])
	}
	op := binary.BigEndian.Uint16(buf)
	switch op {
	case 5:
		msg = strings.TrimRight(string(buf[4:n]), "\x00")
	case 6:
		msg = strings.ReplaceAll(strings.TrimRight(string(buf[2:n]), "\x00"), "\x00", " ")
	}
	return op, msg
}

func TestEscapesRefused(t *testing.T) {
	f, _ := start(t, 100)
	for _, name := range []string{
		"../secret",
		"pxelinux.cfg/../../secret",
		"/etc/passwd",
		`..\secret`,
		"C:/Windows/win.ini",
		"escape", // symlink pointing outside the root
		"pxelinux.cfg",
		"no-such-file",
		".",
	} {
		op, msg := rrq(t, f.addr, name)
		if op != 5 {
			t.Errorf("%q: opcode %d, want ERROR", name, op)
			continue
		}
		if strings.Contains(msg, f.root) {
			t.Errorf("%q: error names the host path: %q", name, msg)
		}
	}
	// The server is still serving.
	if op, _ := rrq(t, f.addr, "deploy_kernel"); op != 3 {
		t.Fatalf("after refusals: opcode %d, want DATA", op)
	}
	ev := f.eventsFor("escape")
	if len(ev) != 1 || !errors.Is(ev[0].Err, ErrAccess) {
		t.Fatalf("escape events %+v", ev)
	}
}

func TestOptionsNegotiated(t *testing.T) {
	f, _ := start(t, 5000)
	// blksize, tsize and windowsize (RFC 7440) are acknowledged in an OACK.
	op, oack := rrq(t, f.addr, "deploy_kernel", "blksize", "1468", "tsize", "0", "windowsize", "8")
	if op != 6 {
		t.Fatalf("opcode %d (%s), want OACK", op, oack)
	}
	if oack != "blksize 1468 tsize 5000 windowsize 8" {
		t.Errorf("OACK %q", oack)
	}

	capped, _ := startWith(t, 5000, func(c *Config) { c.MaxBlockSize = 1024 })
	if _, oack := rrq(t, capped.addr, "deploy_kernel", "blksize", "8192"); !strings.Contains(oack, "blksize 1024") {
		t.Errorf("MaxBlockSize 1024: OACK %q", oack)
	}
	if _, err := New(Config{Root: ".", MaxBlockSize: 100}); err == nil {
		t.Error("MaxBlockSize 100 accepted")
	}
}

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		"pxelinux.0":                 "pxelinux.0",
		"pxelinux.cfg/01-aa":         "pxelinux.cfg/01-aa",
		"./a//b/./c":                 "a/b/c",
		`boot\x86\pxe.com`:           "boot/x86/pxe.com",
		"1234/deploy_kernel":         "1234/deploy_kernel",
		"a..b":                       "a..b",
		"...":                        "...",
		"token-0b2c5f0e-0000-4000-8": "token-0b2c5f0e-0000-4000-8",
	}
	for in, want := range ok {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/", "/etc/passwd", "..", "a/../..", "a/..", `\\server\share`, "a\x00b", "c:x", ".", "./"} {
		if got, err := CleanPath(in); !errors.Is(err, ErrAccess) {
			t.Errorf("CleanPath(%q) = %q, %v; want ErrAccess", in, got, err)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"pxelinux.0", "../x", "/x", `a\..\..\b`, "a\x00", "a/./b//c", "C:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		clean, err := CleanPath(name)
		if err != nil {
			return
		}
		if clean == "" || strings.HasPrefix(clean, "/") || strings.ContainsRune(clean, 0) || strings.Contains(clean, `\`) {
			t.Fatalf("CleanPath(%q) = %q", name, clean)
		}
		for _, p := range strings.Split(clean, "/") {
			if p == ".." || p == "." || p == "" {
				t.Fatalf("CleanPath(%q) = %q has element %q", name, clean, p)
			}
		}
		if !filepath.IsLocal(clean) {
			t.Fatalf("CleanPath(%q) = %q is not local", name, clean)
		}
		if again, err := CleanPath(clean); err != nil || again != clean {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", name, clean, again, err)
		}
	})
}

// receive fetches name with pin/tftp's client.
func receive(t *testing.T, f *fixture, name string, timeout time.Duration) ([]byte, error) {
	t.Helper()
	c, err := tftp.NewClient(f.addr.String())
	must(t, err)
	c.SetTimeout(timeout)
	c.SetRetries(1)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), err
}

// TestFaultActions carries out each action of layer tftp against the Go
// client: "missing" refuses one file (op: the file name) and lets others
// through, "slow" still delivers the whole file, "stall" stops after Arg
// bytes; the server asks with the client's IP and the cleaned name.
func TestFaultActions(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		in := faulttest.New(t, fault.Rule{Layer: fault.TFTP, Op: "deploy_kernel", Action: "missing"})
		f, _ := startWith(t, 4096, func(c *Config) { c.Faults = in })
		if _, err := receive(t, f, "./deploy_kernel", time.Second); err == nil || !strings.Contains(err.Error(), "deploy_kernel: file not found") {
			t.Errorf("missing file: %v", err)
		}
		if got, err := receive(t, f, "token-1234", time.Second); err != nil || string(got) != "s3cr3t-token" {
			t.Errorf("untouched file: %q, %v", got, err)
		}
		asked := in.Asked()
		if len(asked) != 2 || asked[0].Op != "deploy_kernel" || asked[0].Who.IP != "127.0.0.1" || !asked[0].Hit || asked[1].Hit {
			t.Errorf("asked %+v", asked)
		}
	})
	t.Run("slow", func(t *testing.T) {
		f, kernel := startWith(t, 16<<10, func(c *Config) {
			c.Faults = faulttest.New(t, fault.Rule{Layer: fault.TFTP, Action: "slow", Arg: "1ms"})
		})
		got, err := receive(t, f, "deploy_kernel", 2*time.Second)
		if err != nil || !bytes.Equal(got, kernel) {
			t.Errorf("slow transfer: %d bytes, %v; want the file's %d", len(got), err, len(kernel))
		}
	})
	t.Run("stall", func(t *testing.T) {
		f, _ := startWith(t, 64<<10, func(c *Config) {
			c.Faults = faulttest.New(t, fault.Rule{Layer: fault.TFTP, Action: "stall", Arg: "8192", Delay: 300 * time.Millisecond})
		})
		got, err := receive(t, f, "deploy_kernel", 100*time.Millisecond)
		if err == nil || len(got) > 8192 {
			t.Errorf("stalled transfer: %d bytes, %v", len(got), err)
		}
		if ev := f.waitEvent(t, "deploy_kernel", "the stalled transfer"); ev.Err == nil || ev.Bytes > 8192 {
			t.Errorf("stalled transfer event %+v", ev)
		}
	})
}

// TestTransferFaultOf: each action's arguments and defaults.
func TestTransferFaultOf(t *testing.T) {
	for _, c := range []struct {
		h    fault.Hit
		want transferFault
	}{
		{fault.Hit{Action: "stall"}, transferFault{StallAfter: 64 << 10, StallFor: time.Minute}},
		{fault.Hit{Action: "stall", Arg: "0x100", Delay: time.Second}, transferFault{StallAfter: 256, StallFor: time.Second}},
		{fault.Hit{Action: "slow"}, transferFault{BlockDelay: 2 * time.Millisecond}},
		{fault.Hit{Action: "slow", Arg: "7ms", Delay: time.Second}, transferFault{Delay: time.Second, BlockDelay: 7 * time.Millisecond}},
		{fault.Hit{Action: "other", Delay: time.Second}, transferFault{Delay: time.Second}},
	} {
		if got := transferFaultOf(c.h, "f"); got != c.want {
			t.Errorf("%+v: %+v, want %+v", c.h, got, c.want)
		}
	}
	if got := transferFaultOf(fault.Hit{Action: "missing", Delay: time.Second}, "f"); got.Delay != time.Second || got.Refuse == nil || got.Refuse.Error() != "f: file not found" {
		t.Errorf("missing: %+v", got)
	}
}

// TestFaultRefuses: a "missing" fault answers a read request with its error,
// as the real tftp-hpa client sees it, and lets other files through.
func TestFaultRefuses(t *testing.T) {
	tftpc := testenv.RequireTool(t, "tftp", "tftp-hpa")
	f, _ := startWith(t, 4096, func(c *Config) {
		c.Faults = faulttest.New(t, fault.Rule{Layer: fault.TFTP, Op: "deploy_kernel", Action: "missing"})
	})
	dir := t.TempDir()
	get := func(name string) string {
		cmd := exec.CommandContext(t.Context(), tftpc, "-m", "binary", "127.0.0.1", fmt.Sprint(f.addr.Port), "-c", "get", name, filepath.Join(dir, "out"))
		b, _ := cmd.CombinedOutput()
		return string(b)
	}
	if out := get("deploy_kernel"); !strings.Contains(out, "file not found") {
		t.Errorf("refused get printed %q", out)
	}
	if evs := f.eventsFor("deploy_kernel"); len(evs) != 1 || evs[0].Err == nil {
		t.Errorf("events %+v", evs)
	}
	if out := get("token-1234"); strings.Contains(out, "Error") {
		t.Errorf("untouched get printed %q", out)
	}
}

// TestFaultStall: a transfer stalled after 8 KiB sends no further block;
// the real tftp-hpa client gives up, the server ends the transfer with an
// error after StallFor, having sent exactly the bytes before the stall.
func TestFaultStall(t *testing.T) {
	tftpc := testenv.RequireTool(t, "tftp", "tftp-hpa")
	f, _ := startWith(t, 64<<10, func(c *Config) {
		c.Faults = faulttest.New(t, fault.Rule{Layer: fault.TFTP, Action: "stall", Arg: "8192", Delay: 2 * time.Second})
	})
	out := filepath.Join(t.TempDir(), "out")
	// -v verbose; rexmt 1 s, timeout 3 s: tftp-hpa gives up well before
	// the 2 s stall ends only if it stops retrying, so wait for the event.
	cmd := exec.CommandContext(t.Context(), tftpc, "-m", "binary", "127.0.0.1", fmt.Sprint(f.addr.Port), "-c", "get", "deploy_kernel", out)
	b, _ := cmd.CombinedOutput()
	if fi, err := os.Stat(out); err == nil && fi.Size() >= 64<<10 {
		t.Fatalf("stalled transfer delivered the whole file (%d bytes); tftp said %q", fi.Size(), b)
	}
	ev := f.waitEvent(t, "deploy_kernel", "the stalled transfer")
	if !errors.Is(ev.Err, errStalled) && (ev.Err == nil || !strings.Contains(ev.Err.Error(), "stalled")) {
		t.Errorf("stalled transfer ended with %v, want %v", ev.Err, errStalled)
	}
	if ev.Bytes > 8<<10 {
		t.Errorf("sent %d bytes, want at most %d before the stall", ev.Bytes, 8<<10)
	}
}

// TestFaultSlow: a per-block delay still delivers the whole file, byte
// for byte, to the real tftp-hpa client.
func TestFaultSlow(t *testing.T) {
	tftpc := testenv.RequireTool(t, "tftp", "tftp-hpa")
	f, kernel := startWith(t, 16<<10, func(c *Config) {
		c.Faults = faulttest.New(t, fault.Rule{Layer: fault.TFTP, Action: "slow", Arg: "5ms"})
	})
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.CommandContext(t.Context(), tftpc, "-m", "binary", "127.0.0.1", fmt.Sprint(f.addr.Port), "-c", "get", "deploy_kernel", out)
	got := fetched(t, cmd, out)
	if !bytes.Equal(got, kernel) {
		t.Fatalf("slow transfer delivered %d bytes, not the file's %d", len(got), len(kernel))
	}
}

// TestFaultStallEndsWithServer: a transfer stalled for an hour ends when
// the server stops (Serve returns; the cleanup waits for it), after the
// client has given up on its own.
func TestFaultStallEndsWithServer(t *testing.T) {
	f, _ := startWith(t, 64<<10, func(c *Config) {
		c.Faults = faulttest.New(t, fault.Rule{Layer: fault.TFTP, Action: "stall", Arg: "4096", Delay: time.Hour})
	})
	c, err := tftp.NewClient(f.addr.String())
	must(t, err)
	c.SetTimeout(200 * time.Millisecond)
	c.SetRetries(1)
	wt, err := c.Receive("deploy_kernel", "octet")
	if err == nil {
		var buf bytes.Buffer
		_, err = wt.WriteTo(&buf)
	}
	if err == nil {
		t.Fatal("a stalled transfer completed")
	}
}

// TestSinglePortTFTPHPAClient runs transfers of tftp-hpa's client, several
// at once, against a server answering from its one listening socket: every
// transfer arrives whole.
func TestSinglePortTFTPHPAClient(t *testing.T) {
	tftpc := testenv.RequireTool(t, "tftp", "tftp-hpa")
	f, kernel := startWith(t, 3<<20+7, func(c *Config) { c.SinglePort = true })
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(dir, fmt.Sprint("k", i))
			cmd := exec.CommandContext(t.Context(), tftpc, "-m", "binary", "127.0.0.1", fmt.Sprint(f.addr.Port), "-c", "get", "deploy_kernel", out)
			if b, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(b), "Error") {
				errs <- fmt.Errorf("tftp get #%d: %v %s", i, err, b)
				return
			}
			got, err := os.ReadFile(out)
			if err == nil && !bytes.Equal(got, kernel) {
				err = fmt.Errorf("transfer #%d: got %d bytes, want the kernel's %d", i, len(got), len(kernel))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(f.eventsFor("deploy_kernel")); n != 4 {
		t.Errorf("%d transfer events, want 4", n)
	}
}

// TestTransfersBounded: unacknowledged transfers count against
// MaxPerClient and MaxTransfers; a request beyond either gets an ERROR
// saying the server is busy at once, while other clients are served, and
// the slots free again when the held transfers end.
func TestTransfersBounded(t *testing.T) {
	f, _ := startWith(t, 4<<10, func(c *Config) {
		c.MaxPerClient, c.MaxTransfers = 2, 3
		c.Timeout, c.Retries = 300*time.Millisecond, 2
	})
	from := func(last byte) net.IP { return net.IPv4(127, 0, 0, last) }
	expect := func(src net.IP, wantOp uint16, what string) {
		t.Helper()
		op, msg := rrqFrom(t, src, f.addr, "deploy_kernel")
		if op != wantOp || (wantOp == 5 && !strings.Contains(msg, "server busy")) {
			t.Fatalf("%s: opcode %d %q, want %d", what, op, msg, wantOp)
		}
	}
	expect(from(1), 3, "first transfer to 127.0.0.1")
	expect(from(1), 3, "second transfer to 127.0.0.1")
	expect(from(1), 5, "third transfer to one client (MaxPerClient 2)")
	expect(from(2), 3, "another client")
	expect(from(3), 5, "fourth transfer in all (MaxTransfers 3)")
	// The held transfers time out; the slots come back.
	testenv.Eventually(t, 10*time.Second, func() bool {
		op, _ := rrqFrom(t, from(1), f.addr, "deploy_kernel")
		return op == 3
	}, "a slot freed for 127.0.0.1")
}

// fetched runs a real client's command that writes a file to out and
// returns what it wrote; a failed command (or tftp-hpa's "Error" line,
// as it exits 0 on a TFTP error) fails the test.
func fetched(t *testing.T, cmd *exec.Cmd, out string) []byte {
	t.Helper()
	if b, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(b), "Error") {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(cmd.Path), cmd.Args[1:], err, b)
	}
	got, err := os.ReadFile(out)
	must(t, err)
	return got
}
