package agent

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultTable is a Config.Fault answering fixed actions per op, counting
// the questions.
type faultTable struct {
	mu      sync.Mutex
	actions map[string][2]string // op -> action, arg
	left    map[string]int       // op -> hits left; absent = without limit
	asked   map[string]int
}

func (f *faultTable) fault(op string) (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.asked == nil {
		f.asked = map[string]int{}
	}
	f.asked[op]++
	a, ok := f.actions[op]
	if !ok {
		return "", ""
	}
	if n, limited := f.left[op]; limited {
		if n == 0 {
			return "", ""
		}
		f.left[op] = n - 1
	}
	return a[0], a[1]
}

// TestFaultLookup404: the lookup is answered 404 (the modern and then the
// legacy endpoint) for as long as the fault lasts, without reaching Ironic
// (which would mint the node's one agent token); the agent retries and
// looks up once the fault is gone.
func TestFaultLookup404(t *testing.T) {
	ironic := newFakeIronic(t)
	ft := &faultTable{actions: map[string][2]string{"lookup": {"lookup-404", ""}}, left: map[string]int{"lookup": 4}}
	startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), func(c *Config) { c.Fault = ft.fault })
	modern := ironic.requests(func(r request) bool { return strings.HasPrefix(r.path, "/v1/lookup") })
	legacy := ironic.requests(func(r request) bool { return strings.HasSuffix(r.path, "/vendor_passthru/lookup") })
	if len(modern) != 1 || len(legacy) != 0 {
		t.Errorf("%d modern and %d legacy lookups reached Ironic; want only the one after the fault", len(modern), len(legacy))
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	// Two faulty rounds (modern and legacy each), then one that succeeds.
	if ft.asked["lookup"] != 5 {
		t.Errorf("the fault was asked %d times about lookups; want 5", ft.asked["lookup"])
	}
}

// TestFaultLookup404Forever: with the fault on for good the agent gives up
// after LookupTimeout with IPA's message.
func TestFaultLookup404Forever(t *testing.T) {
	ironic := newFakeIronic(t)
	ft := &faultTable{actions: map[string][2]string{"lookup": {"lookup-404", ""}}}
	a, err := New(Config{APIURL: ironic.srv.URL, Env: newTestEnv(), LookupTimeout: 300 * time.Millisecond,
		LookupInterval: 20 * time.Millisecond, Fault: ft.fault})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "Could not look up node info") || !strings.Contains(err.Error(), "could not be found") {
		t.Fatalf("Run: %v", err)
	}
}

// TestFaultHeartbeatStop: after the first heartbeat none is sent, though
// the agent keeps running and serving its API.
func TestFaultHeartbeatStop(t *testing.T) {
	ironic := newFakeIronic(t)
	ironic.lookup = lookupWithTimeout(t, 1)
	ft := &faultTable{actions: map[string][2]string{"heartbeat": {"heartbeat-stop", ""}}}
	var once sync.Once
	first := make(chan struct{})
	h := startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), func(c *Config) {
		c.Fault = func(op string) (string, string) {
			if op == "heartbeat" {
				sent := false
				once.Do(func() { sent = true; close(first) })
				if sent {
					return "", ""
				}
			}
			return ft.fault(op)
		}
	})
	<-first
	// Heartbeats are due every 0.3–0.6 s: wait until several were
	// suppressed, then check none went out.
	waitFor(t, "4 suppressed heartbeats", func() (int, bool) {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		return ft.asked["heartbeat"], ft.asked["heartbeat"] >= 4
	})
	if n := len(ironic.requests(isHeartbeat)); n != 1 {
		t.Errorf("%d heartbeats reached Ironic; want only the first", n)
	}
	if st, _ := h.call("GET", "/v1/commands/", nil); st != 200 {
		t.Errorf("the agent API answers %d with heartbeats stopped", st)
	}
}

// TestFaultCommandBusyAndFailed: "busy" refuses a command with IPA's 409;
// "command-failed" ends it FAILED with the rule's text, synchronous or not.
func TestFaultCommandBusyAndFailed(t *testing.T) {
	ft := &faultTable{actions: map[string][2]string{
		"standby.get_partition_uuids": {"busy", ""},
		"deploy.execute_deploy_step":  {"command-failed", "disk on fire"},
		"standby.sync":                {"command-failed", ""},
	}}
	h, _ := smallAgent(t, func(c *Config) { c.Fault = ft.fault })
	st, busy := h.command("standby.get_partition_uuids", map[string]any{}, true)
	if st != 409 || busy["faultstring"] != "Agent is busy: executing command (injected fault)" {
		t.Errorf("busy: %d %v", st, busy)
	}
	st, got := h.command("deploy.execute_deploy_step", map[string]any{
		"step": map[string]any{"interface": "deploy", "step": "write_image", "args": map[string]any{}},
		"node": map[string]any{"uuid": "n"}, "ports": []any{}}, false)
	if st != 200 {
		t.Fatalf("execute_deploy_step: %d %v", st, got)
	}
	done := h.finished(got["id"].(string))
	e, _ := done["command_error"].(map[string]any)
	if done["command_status"] != statusFailed || e["details"] != "disk on fire" {
		t.Errorf("failed async command: %v", done)
	}
	st, got = h.command("standby.sync", map[string]any{}, true)
	e, _ = got["command_error"].(map[string]any)
	if st != 200 || got["command_status"] != statusFailed || !strings.Contains(e["details"].(string), "standby.sync failed") {
		t.Errorf("failed sync command: %d %v", st, got)
	}
}
