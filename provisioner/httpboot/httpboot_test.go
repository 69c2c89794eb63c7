package httpboot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
	"github.com/metalbed/metalbed/internal/testenv"
)

type memFiles map[string][]byte

func (m memFiles) Open(name string) (io.ReaderAt, int64, error) {
	b, ok := m[name]
	if !ok {
		return nil, 0, fs.ErrNotExist
	}
	return bytes.NewReader(b), int64(len(b)), nil
}

type fixture struct {
	base   string
	root   string
	image  []byte
	mu     sync.Mutex
	events []Event
}

func (f *fixture) last() Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) == 0 {
		return Event{}
	}
	return f.events[len(f.events)-1]
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{root: t.TempDir(), image: make([]byte, 1<<20+5)}
	rand.Read(f.image)
	must(t, os.MkdirAll(filepath.Join(f.root, "images"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.root, "images", "disk.img"), f.image, 0o644))
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(f.root, "escape")))
	s, err := New(Config{
		Root:     f.root,
		Files:    memFiles{"boot.ipxe": []byte("#!ipxe\nchain tftp://192.0.2.1/pxelinux.0\n")},
		Observer: func(e Event) { f.mu.Lock(); f.events = append(f.events, e); f.mu.Unlock() },
	})
	must(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	f.base = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCurl(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	f := start(t)
	out := filepath.Join(t.TempDir(), "img")
	if b, err := exec.CommandContext(t.Context(), curl, "-sS", "--fail", "-o", out, f.base+"/images/disk.img").CombinedOutput(); err != nil {
		t.Fatalf("curl: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	must(t, err)
	if !bytes.Equal(got, f.image) {
		t.Fatal("image bytes differ")
	}
	if e := f.last(); e.Path != "images/disk.img" || e.Bytes != int64(len(f.image)) || e.Status != 200 {
		t.Fatalf("event %+v", e)
	}
	// A range, as a resumed download asks.
	b, err := exec.CommandContext(t.Context(), curl, "-sS", "--fail", "-r", "1000-1999", f.base+"/images/disk.img").Output()
	must(t, err)
	if !bytes.Equal(b, f.image[1000:2000]) {
		t.Fatalf("range: %d bytes, differ", len(b))
	}
	if e := f.last(); e.Status != http.StatusPartialContent || e.Bytes != 1000 {
		t.Fatalf("range event %+v", e)
	}
	// Generated iPXE script.
	b, err = exec.CommandContext(t.Context(), curl, "-sS", "--fail", f.base+"/boot.ipxe").Output()
	must(t, err)
	if !strings.HasPrefix(string(b), "#!ipxe\n") {
		t.Fatalf("script %q", b)
	}
	// Traversal, sent as is.
	for _, p := range []string{"/../../etc/passwd", "/images/../../secret", "/escape", "/a%5C..%5Csecret"} {
		code, err := exec.CommandContext(t.Context(), curl, "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", f.base+p).Output()
		must(t, err)
		if c := string(code); c != "403" && c != "404" && c != "400" {
			t.Errorf("%s: status %s", p, c)
		}
	}
}

func TestNetHTTP(t *testing.T) {
	f := start(t)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.base+"/images/disk.img", nil)
	req.Header.Set("Range", "bytes=-10")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, f.image[len(f.image)-10:]) {
		t.Fatalf("suffix range: %s %d bytes", resp.Status, len(b))
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodHead, "/images/disk.img", 200},
		{http.MethodPost, "/images/disk.img", 405},
		{http.MethodGet, "/nope", 404},
		{http.MethodGet, "/images", 404},
		{http.MethodGet, "/", 403},
		{http.MethodGet, "/escape", 403},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, f.base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		if tc.method == http.MethodHead && resp.ContentLength != int64(len(f.image)) {
			t.Errorf("HEAD length %d", resp.ContentLength)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/boot.ipxe", "/../x", "/a/./b//c", "/a\\..\\b", "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		clean, err := cleanPath(p)
		if err != nil {
			return
		}
		if !filepath.IsLocal(clean) || strings.ContainsAny(clean, "\x00\\") {
			t.Fatalf("cleanPath(%q) = %q", p, clean)
		}
	})
}

// TestFault: a "status" fault answers with its status instead of the file
// (op: the cleaned path; asked by the client's IP and the path's machine
// folder); other paths and a server without Faults answer the file.
func TestFault(t *testing.T) {
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "a"), []byte("aaa"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "node-0"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "node-0", "img"), []byte("img"), 0o644))
	in := faulttest.New(t,
		fault.Rule{Layer: fault.HTTP, Op: "a", Action: "status"},
		fault.Rule{Layer: fault.HTTP, Op: "node-0/img", Action: "status", Arg: "503"})
	s, err := New(Config{Root: root, Faults: in})
	must(t, err)
	for path, want := range map[string]int{"/a": http.StatusNotFound, "//node-0/./img": http.StatusServiceUnavailable, "/b": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("faulted GET %s = %d, want %d", path, rec.Code, want)
		}
	}
	asked := in.Asked()
	if len(asked) != 3 {
		t.Errorf("asked %+v", asked)
	}
	for _, a := range asked {
		if a.Who.IP != "192.0.2.1" {
			t.Errorf("request asked without the client's IP: %+v", a)
		}
		switch a.Op {
		case "a":
			if a.Who.Machine != "" || !a.Hit {
				t.Errorf("plain request asked as %+v", a)
			}
		case "node-0/img":
			if a.Who.Machine != "node-0" || !a.Hit {
				t.Errorf("folder request asked as %+v", a)
			}
		}
	}
	s, err = New(Config{Root: root})
	must(t, err)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/a", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "aaa" {
		t.Errorf("GET /a = %d %q", rec.Code, rec.Body.String())
	}
}

// serveFault serves root over a real listener with rule on every path.
func serveFault(t *testing.T, root string, rule fault.Rule) string {
	t.Helper()
	rule.Layer = fault.HTTP
	s, err := New(Config{Root: root, Faults: faulttest.New(t, rule)})
	must(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestFaultTruncateCurl: the real curl sees the announced length, fewer
// bytes, and fails (exit 18, partial file); HEAD is untouched.
func TestFaultTruncateCurl(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	root := t.TempDir()
	data := make([]byte, 100000)
	rand.Read(data)
	must(t, os.WriteFile(filepath.Join(root, "img"), data, 0o644))
	base := serveFault(t, root, fault.Rule{Action: "truncate", Arg: "4096"})
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.CommandContext(t.Context(), curl, "-sS", "-o", out, base+"/img")
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 18 {
		t.Fatalf("curl of a truncated body: %v (want exit 18, partial file)\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, data[:4096]) {
		t.Errorf("curl got %d bytes, want the first 4096", len(got))
	}
	head, err := exec.CommandContext(t.Context(), curl, "-sS", "-I", base+"/img").CombinedOutput()
	if err != nil || !strings.Contains(string(head), "Content-Length: 100000") {
		t.Errorf("HEAD: %v\n%s", err, head)
	}
}

// TestFaultCorrupt: net/http gets every byte but one flipped.
func TestFaultCorrupt(t *testing.T) {
	root := t.TempDir()
	data := make([]byte, 100000)
	rand.Read(data)
	must(t, os.WriteFile(filepath.Join(root, "img"), data, 0o644))
	base := serveFault(t, root, fault.Rule{Action: "corrupt", Arg: "70000"})
	resp, err := http.Get(base + "/img")
	must(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	must(t, err)
	if len(got) != len(data) {
		t.Fatalf("corrupt body has %d bytes, want %d", len(got), len(data))
	}
	want := bytes.Clone(data)
	want[70000] ^= 0xff
	if !bytes.Equal(got, want) {
		t.Error("corrupt body differs from the file in more than byte 70000")
	}
}

// TestFaultTruncate: net/http sees the announced length and an unexpected
// EOF after Arg bytes (default: half the file); HEAD is untouched.
func TestFaultTruncate(t *testing.T) {
	root := t.TempDir()
	data := make([]byte, 100000)
	rand.Read(data)
	must(t, os.WriteFile(filepath.Join(root, "img"), data, 0o644))
	for arg, n := range map[string]int{"4096": 4096, "": 50000} {
		base := serveFault(t, root, fault.Rule{Action: "truncate", Arg: arg})
		resp, err := http.Get(base + "/img")
		must(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ContentLength != 100000 || !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, data[:n]) {
			t.Errorf("arg %q: length %d, %d bytes, %v; want %d bytes then an unexpected EOF", arg, resp.ContentLength, len(got), err, n)
		}
		head, err := http.Head(base + "/img")
		must(t, err)
		head.Body.Close()
		if head.StatusCode != http.StatusOK || head.ContentLength != 100000 {
			t.Errorf("HEAD: %d, length %d", head.StatusCode, head.ContentLength)
		}
	}
}

// TestAnswerFaultOf: each action's arguments and defaults.
func TestAnswerFaultOf(t *testing.T) {
	for _, c := range []struct {
		h    fault.Hit
		want answerFault
	}{
		{fault.Hit{Action: "status"}, answerFault{Status: 404}},
		{fault.Hit{Action: "status", Arg: "200"}, answerFault{Status: 404}},
		{fault.Hit{Action: "status", Arg: "500", Delay: time.Second}, answerFault{Status: 500, Delay: time.Second}},
		{fault.Hit{Action: "truncate"}, answerFault{Truncate: true}},
		{fault.Hit{Action: "truncate", Arg: "10"}, answerFault{Truncate: true, TruncateAt: 10}},
		{fault.Hit{Action: "corrupt"}, answerFault{Corrupt: true}},
		{fault.Hit{Action: "corrupt", Arg: "0x10"}, answerFault{Corrupt: true, CorruptAt: 16}},
	} {
		if got := answerFaultOf(c.h); got != c.want {
			t.Errorf("%+v: %+v, want %+v", c.h, got, c.want)
		}
	}
}

// TestIdleConnectionsClosed: a keep-alive connection left idle is closed
// by the server after IdleTimeout, so idle clients cannot hold its
// descriptors for ever.
func TestIdleConnectionsClosed(t *testing.T) {
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644))
	s, err := New(Config{Root: root, IdleTimeout: 200 * time.Millisecond})
	must(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		<-done
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	must(t, err)
	defer c.Close()
	_, err = c.Write([]byte("GET /f HTTP/1.1\r\nHost: x\r\n\r\n"))
	must(t, err)
	must(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	must(t, err)
	resp.Body.Close()
	// Idle now: the server hangs up well before the 10 s deadline.
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on the idle connection: %v, want EOF (closed by the server)", err)
	}
	t.Logf("idle connection closed after %v", time.Since(start))
}
