package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/api"
	"github.com/metalbed/metalbed/provisioner/conductor"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
	"github.com/metalbed/metalbed/provisioner/store/sqlite"
)

// stack is a provisioner (store, conductor, API) served on 127.0.0.1:0.
type stack struct {
	url  string
	st   store.Store
	c    *conductor.Conductor
	stop func()
}

type stackOpts struct {
	htpasswd   string
	dbPath     string
	ipmiClient string // drivers.ClientIPMITool (default) or drivers.ClientNative
	timeline   http.Handler
	metrics    *prometheus.Registry // the API's and conductor's metrics, served at /metrics
	// redfish adds the "redfish" hardware type, its deploy interface
	// "fake" (synchronous, as fake-hardware's) and boot interface "fake".
	redfish bool
	// recorder gets the conductor's events.
	recorder events.Recorder
}

func newStack(t testing.TB, o stackOpts) *stack {
	t.Helper()
	if o.dbPath == "" {
		o.dbPath = ":memory:"
	}
	st, err := sqlite.Open(t.Context(), o.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	ipmi, err := drivers.NewIPMI(drivers.IPMIConfig{
		Client:             o.ipmiClient,
		MinCommandInterval: 10 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		CommandRetryTimeout: 10 * time.Second, PowerTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	types := []*drivers.HardwareType{ipmi, drivers.NewFakeHardware()}
	if o.redfish {
		rf, err := drivers.NewRedfish(drivers.RedfishConfig{PollInterval: 20 * time.Millisecond, PowerTimeout: 10 * time.Second,
			ConnectionAttempts: 2, ConnectionRetryInterval: 50 * time.Millisecond,
			Boot:   map[string]drivers.BootInterface{"fake": drivers.FakeBoot{}},
			Deploy: map[string]drivers.DeployInterface{"fake": drivers.FakeDeploy{}}})
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, rf)
	}
	reg, err := drivers.NewRegistry(types...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := conductor.New(conductor.Config{Hostname: "test-conductor", Store: st, Drivers: reg,
		PowerSyncInterval: -1, CheckProvisionInterval: -1, LockRetries: -1, Registerer: registerer(o.metrics),
		Recorder: o.recorder})
	if err != nil {
		t.Fatal(err)
	}
	var creds *api.Credentials
	if o.htpasswd != "" {
		if creds, err = api.LoadHTPasswd(o.htpasswd); err != nil {
			t.Fatal(err)
		}
	}
	acfg := api.Config{Conductor: c, Store: st, Credentials: creds, Timeline: o.timeline}
	if o.metrics != nil {
		acfg.Registerer, acfg.Gatherer = o.metrics, o.metrics
	}
	srv, err := api.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	serveDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	go func() { serveDone <- srv.Serve(ctx, ln) }()
	// The conductor registers itself first thing; wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, _ := st.Conductors(context.Background())
		if len(recs) == 1 && recs[0].Online {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("conductor did not register")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := &stack{url: "http://" + ln.Addr().String(), st: st, c: c}
	stopped := false
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-serveDone; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
		st.Close()
	}
	t.Cleanup(s.stop)
	return s
}

// resp is a recorded answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	return v
}

func (r resp) obj(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.json(t).(map[string]any)
	if !ok {
		t.Fatalf("response is not an object: %s", r.body)
	}
	return m
}

// do sends a request; version "" sends no version header.
func (s *stack) do(t *testing.T, method, path, version string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if version != "" {
		req.Header.Set("X-OpenStack-Ironic-API-Version", version)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

func (s *stack) must(t *testing.T, want int, method, path, version string, body any) resp {
	t.Helper()
	r := s.do(t, method, path, version, body)
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// waitNode polls the store until cond holds for the node.
func (s *stack) waitNode(t *testing.T, uuid string, what string, cond func(n *provisioner.Node) bool) *provisioner.Node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := s.st.Node(context.Background(), uuid)
		if err == nil && cond(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: timed out waiting for %s (node %+v)", uuid, what, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setState forces a node's provision state in the store (test setup).
func (s *stack) setState(t *testing.T, uuid string, state provisioner.ProvisionState) {
	t.Helper()
	n, err := s.st.Node(context.Background(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	n.ProvisionState = state
	if err := s.st.UpdateNode(context.Background(), n); err != nil {
		t.Fatal(err)
	}
}

func newStackB(b *testing.B) *stack { return newStack(b, stackOpts{}) }

// mustB sends a request with a JSON body and fails b unless it succeeds.
func (s *stack) mustB(b *testing.B, method, path, body string) {
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.78")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode >= 300 {
		b.Fatalf("%s %s: %d", method, path, res.StatusCode)
	}
}
