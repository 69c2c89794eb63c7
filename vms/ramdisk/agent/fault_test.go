package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
)

// asked counts the questions about op.
func asked(in *faulttest.Injector, op string) int {
	n := 0
	for _, a := range in.Asked() {
		if a.Op == op {
			n++
		}
	}
	return n
}

// TestFaultLookup404: the lookup is answered 404 (the modern and then the
// legacy endpoint) for as long as the fault lasts, without reaching Ironic
// (which would mint the node's one agent token); the agent retries and
// looks up once the fault is gone.
func TestFaultLookup404(t *testing.T) {
	ironic := newFakeIronic(t)
	in := faulttest.New(t, fault.Rule{Layer: fault.Agent, Op: "lookup", Action: "lookup-404", Count: 4})
	startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), func(c *Config) { c.Faults = in })
	modern := ironic.requests(func(r request) bool { return strings.HasPrefix(r.path, "/v1/lookup") })
	legacy := ironic.requests(func(r request) bool { return strings.HasSuffix(r.path, "/vendor_passthru/lookup") })
	if len(modern) != 1 || len(legacy) != 0 {
		t.Errorf("%d modern and %d legacy lookups reached Ironic; want only the one after the fault", len(modern), len(legacy))
	}
	// Two faulty rounds (modern and legacy each), then one that succeeds.
	if n := asked(in, "lookup"); n != 5 {
		t.Errorf("the fault was asked %d times about lookups; want 5", n)
	}
}

// TestFaultLookup404Forever: with the fault on for good the agent gives up
// after LookupTimeout with IPA's message.
func TestFaultLookup404Forever(t *testing.T) {
	ironic := newFakeIronic(t)
	in := faulttest.New(t, fault.Rule{Layer: fault.Agent, Op: "lookup", Action: "lookup-404"})
	a, err := New(Config{APIURL: ironic.srv.URL, Env: newTestEnv(), LookupTimeout: 300 * time.Millisecond,
		LookupInterval: 20 * time.Millisecond, Faults: in})
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
	// The first heartbeat goes out (skip 1), none after it.
	in := faulttest.New(t, fault.Rule{Layer: fault.Agent, Op: "heartbeat", Action: "heartbeat-stop", Skip: 1})
	h := startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), func(c *Config) { c.Faults = in })
	// Heartbeats are due every 0.3–0.6 s: wait until several were
	// suppressed, then check none went out.
	waitFor(t, "4 suppressed heartbeats", func() (int, bool) {
		n := len(in.Hits())
		return n, n >= 4
	})
	if who := in.Hits()[0].Who; who.Node == "" {
		t.Errorf("heartbeat fault asked without the node's UUID: %+v", who)
	}
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
	in := faulttest.New(t,
		fault.Rule{Layer: fault.Agent, Op: "standby.get_partition_uuids", Action: "busy"},
		fault.Rule{Layer: fault.Agent, Op: "deploy.execute_deploy_step", Action: "command-failed", Arg: "disk on fire"},
		fault.Rule{Layer: fault.Agent, Op: "standby.sync", Action: "command-failed"})
	h, _ := smallAgent(t, func(c *Config) { c.Faults = in })
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
