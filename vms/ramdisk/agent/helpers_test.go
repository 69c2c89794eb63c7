package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms/ramdisk"
)

// fileDisk is a sparse file as a block device.
type fileDisk struct {
	*os.File
	size int64
}

func (d fileDisk) Size() int64 { return d.size }

func sparseDisk(t testing.TB, name string, size int64) ramdisk.Disk {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name+".img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return ramdisk.Disk{Name: name, SizeBytes: size, Model: "metalbed SIMDISK", Vendor: "metalbed", Serial: name + "-serial", Dev: fileDisk{f, size}}
}

// testEnv is the machine: its disks, a loopback NIC, power.
type testEnv struct {
	disks []ramdisk.Disk
	hw    Hardware

	mu        sync.Mutex
	addr      net.Addr
	powerOffs int
	reboots   int
}

func newTestEnv(disks ...ramdisk.Disk) *testEnv {
	return &testEnv{disks: disks, hw: Hardware{
		NICs:         []NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", IPv4: "127.0.0.1", HasCarrier: true, Vendor: "0x1af4", Product: "0x0001"}},
		CPU:          CPU{ModelName: "metalbed vCPU", Frequency: "2400", Count: 2, Architecture: "x86_64", Flags: []string{"lm", "vmx"}},
		MemoryBytes:  2 << 30,
		PhysicalMB:   2048,
		Vendor:       SystemVendor{ProductName: "metalbed sim", SerialNumber: "bm0", Manufacturer: "metalbed"},
		BootMode:     "uefi",
		PXEInterface: "52:54:00:12:34:56",
		Hostname:     "bm0",
	}}
}

func (e *testEnv) Disks(context.Context) ([]ramdisk.Disk, error) { return e.disks, nil }
func (e *testEnv) Hardware(context.Context) (Hardware, error)    { return e.hw, nil }

// Listen binds 127.0.0.1:0: tests use no fixed ports.
func (e *testEnv) Listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err == nil {
		e.mu.Lock()
		e.addr = ln.Addr()
		e.mu.Unlock()
	}
	return ln, err
}

func (e *testEnv) Reboot(context.Context) error {
	e.mu.Lock()
	e.reboots++
	e.mu.Unlock()
	return nil
}

func (e *testEnv) PowerOff(context.Context) error {
	e.mu.Lock()
	e.powerOffs++
	e.mu.Unlock()
	return nil
}

func (e *testEnv) counts() (powerOffs, reboots int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.powerOffs, e.reboots
}

// request is one request the fake conductor saw.
type request struct {
	at      time.Time
	method  string
	path    string
	version string
	body    map[string]any
	status  int
}

// fakeIronic answers the agent's calls with the captured bodies.
type fakeIronic struct {
	t          testing.TB
	root       []byte
	lookup     []byte // modern lookup 200 body
	lookupFail int    // answer this many lookups with 404 first
	legacy     []byte // when set: modern lookup always 404, legacy answers this
	// hbStatus decides the answer to the n-th heartbeat (0-based).
	hbStatus func(n int) (int, []byte)

	mu   sync.Mutex
	reqs []request
	srv  *httptest.Server
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// captured returns the "resp" of a capture file as JSON.
func captured(t testing.TB, name string) []byte {
	t.Helper()
	var c struct {
		Resp json.RawMessage `json:"resp"`
	}
	if err := json.Unmarshal(readTestdata(t, name), &c); err != nil {
		t.Fatal(err)
	}
	return c.Resp
}

// lookupWithTimeout is the captured lookup answer with another
// heartbeat_timeout.
func lookupWithTimeout(t testing.TB, seconds int) []byte {
	var doc map[string]any
	if err := json.Unmarshal(captured(t, "agent-lookup-200.json"), &doc); err != nil {
		t.Fatal(err)
	}
	doc["config"].(map[string]any)["heartbeat_timeout"] = seconds
	b, _ := json.Marshal(doc)
	return b
}

func newFakeIronic(t testing.TB) *fakeIronic {
	f := &fakeIronic{t: t, root: readTestdata(t, "root.json"), lookup: captured(t, "agent-lookup-200.json")}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIronic) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m map[string]any
	json.Unmarshal(body, &m)
	rec := request{at: time.Now(), method: r.Method, path: r.URL.RequestURI(), version: r.Header.Get("X-OpenStack-Ironic-API-Version"), body: m}
	status, resp := f.answer(r)
	rec.status = status
	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	f.mu.Unlock()
	w.Header().Set("X-OpenStack-Ironic-API-Minimum-Version", "1.1")
	w.Header().Set("X-OpenStack-Ironic-API-Maximum-Version", "1.82")
	if resp != nil {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	w.Write(resp)
}

var notFound = []byte(`{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Resource could not be found.\", \"debuginfo\": null}"}`)

func (f *fakeIronic) answer(r *http.Request) (int, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := r.URL.Path
	switch {
	case r.Method == http.MethodGet && path == "/":
		return 200, f.root
	case r.Method == http.MethodGet && path == "/v1/lookup":
		if f.legacy != nil {
			return 404, notFound
		}
		n := 0
		for _, q := range f.reqs {
			if strings.HasPrefix(q.path, "/v1/lookup") {
				n++
			}
		}
		if n < f.lookupFail {
			return 404, notFound
		}
		return 200, f.lookup
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/v1/drivers/") && strings.HasSuffix(path, "/vendor_passthru/lookup"):
		if f.legacy == nil {
			return 404, notFound
		}
		return 200, f.legacy
	case r.Method == http.MethodPost && path == "/v1/continue_inspection":
		return 202, []byte(`{"uuid": "` + inspectedUUID + `"}`)
	case r.Method == http.MethodPost && (strings.HasPrefix(path, "/v1/heartbeat/") || strings.HasSuffix(path, "/vendor_passthru/heartbeat")):
		n := 0
		for _, q := range f.reqs {
			if strings.Contains(q.path, "heartbeat") {
				n++
			}
		}
		if f.hbStatus != nil {
			return f.hbStatus(n)
		}
		return 202, nil
	}
	return 404, notFound
}

func (f *fakeIronic) requests(match func(request) bool) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.reqs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

func isHeartbeat(r request) bool { return strings.Contains(r.path, "heartbeat") }

// harness runs one agent against a fake conductor.
type harness struct {
	t      testing.TB
	env    *testEnv
	ironic *fakeIronic
	agent  *Agent
	url    string
	token  string
	done   chan error
	cancel context.CancelFunc
	client *http.Client
}

func startAgent(t testing.TB, ironic *fakeIronic, env *testEnv, mod func(*Config)) *harness {
	t.Helper()
	cfg := Config{
		APIURL:                 ironic.srv.URL,
		Env:                    env,
		LookupInterval:         10 * time.Millisecond,
		LookupTimeout:          30 * time.Second,
		HeartbeatErrorInterval: 50 * time.Millisecond,
		DownloadRetryInterval:  10 * time.Millisecond,
		TempDir:                t.TempDir(),
		Logger:                 slog.New(slog.DiscardHandler),
	}
	if testing.Verbose() {
		cfg.Console = testWriter{t}
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{t: t, env: env, ironic: ironic, agent: a, done: make(chan error, 1), cancel: cancel, client: &http.Client{Timeout: 60 * time.Second}}
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	// The first heartbeat carries the callback URL.
	hb := waitFor(t, "first heartbeat", func() ([]request, bool) {
		r := ironic.requests(isHeartbeat)
		return r, len(r) > 0
	})
	cb, _ := hb[0].body["callback_url"].(string)
	if cb == "" {
		cb, _ = hb[0].body["agent_url"].(string)
	}
	h.url = cb
	h.token, _ = hb[0].body["agent_token"].(string)
	return h
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or 60 s pass.
func waitFor[T any](t testing.TB, what string, cond func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, ok := cond()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// call sends an HTTP request to the agent and decodes the JSON answer.
func (h *harness) call(method, path string, body any) (int, map[string]any) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case []byte:
			rd = bytes.NewReader(b)
		case string:
			rd = strings.NewReader(b)
		default:
			j, _ := json.Marshal(body)
			rd = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		h.t.Fatalf("%s %s: answer is not a JSON object: %v: %q", method, path, err, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		h.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, m
}

// command posts a command with the agent's token.
func (h *harness) command(name string, p any, wait bool) (int, map[string]any) {
	h.t.Helper()
	w := "false"
	if wait {
		w = "true"
	}
	return h.call("POST", "/v1/commands/?wait="+w+"&agent_token="+h.token, map[string]any{"name": name, "params": p})
}

// finished polls GET /v1/commands/ until command id is not RUNNING.
func (h *harness) finished(id string) map[string]any {
	h.t.Helper()
	return waitFor(h.t, "command "+id, func() (map[string]any, bool) {
		_, list := h.call("GET", "/v1/commands/", nil)
		for _, c := range list["commands"].([]any) {
			cm := c.(map[string]any)
			if cm["id"] == id && cm["command_status"] != statusRunning {
				return cm, true
			}
		}
		return nil, false
	})
}

// imageServer serves files by path and counts requests.
type imageServer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gate  map[string]chan struct{} // path -> closed when the rest may go
}

func newImageServer(t testing.TB) *imageServer {
	s := &imageServer{files: map[string][]byte{}, gate: map[string]chan struct{}{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.files[r.URL.Path]
		g := s.gate[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(200)
		if g != nil {
			half := len(b) / 2
			w.Write(b[:half])
			w.(http.Flusher).Flush()
			select {
			case <-g:
			case <-r.Context().Done():
				return
			}
			w.Write(b[half:])
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *imageServer) put(path string, b []byte) string {
	s.mu.Lock()
	s.files[path] = b
	s.mu.Unlock()
	return s.srv.URL + path
}

// hold makes path send half its bytes and wait for the returned release.
func (s *imageServer) hold(path string) (release func()) {
	g := make(chan struct{})
	s.mu.Lock()
	s.gate[path] = g
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(g) }) }
}

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func readDisk(t testing.TB, d ramdisk.Disk, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.Dev.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return b
}
