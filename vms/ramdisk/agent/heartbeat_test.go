package agent

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms/ramdisk"
)

// TestHeartbeatInterval checks the gaps between heartbeats against IPA's
// band, 0.3–0.6 × heartbeat_timeout (1 s here), with a generous upper
// margin for a loaded machine.
func TestHeartbeatInterval(t *testing.T) {
	ironic := newFakeIronic(t)
	ironic.lookup = lookupWithTimeout(t, 1)
	startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), nil)
	hbs := waitFor(t, "6 heartbeats", func() ([]request, bool) {
		r := ironic.requests(isHeartbeat)
		return r, len(r) >= 6
	})
	for i := 1; i < len(hbs); i++ {
		gap := hbs[i].at.Sub(hbs[i-1].at)
		if gap < 280*time.Millisecond || gap > 2*time.Second {
			t.Errorf("heartbeat %d came %v after the previous one; want 0.3–0.6 s", i, gap)
		}
	}
}

// TestHeartbeatAfterDeploy answers heartbeats with the captured 400 (token
// wiped after the deploy): the agent logs it and keeps heartbeating at the
// error interval, as IPA does.
func TestHeartbeatAfterDeploy(t *testing.T) {
	ironic := newFakeIronic(t)
	ironic.lookup = lookupWithTimeout(t, 1)
	body400 := captured(t, "agent-heartbeat-400-after-deploy.json")
	ironic.hbStatus = func(n int) (int, []byte) {
		if n >= 2 {
			return 400, body400
		}
		return 202, nil
	}
	h := startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), nil)
	waitFor(t, "4 refused heartbeats", func() (int, bool) {
		n := len(ironic.requests(func(r request) bool { return isHeartbeat(r) && r.status == 400 }))
		return n, n >= 4
	})
	select {
	case err := <-h.done:
		t.Fatalf("agent stopped after refused heartbeats: %v", err)
	default:
	}
	if !strings.Contains(string(h.agent.log.bytes()), "Error 400: Invalid or missing agent token received.") {
		t.Errorf("the refusal was not logged:\n%s", h.agent.log.bytes())
	}
}

// TestLookupRetries: Ironic does not know the node at first (404 as for a
// node outside the lookup states); the agent retries, trying the legacy
// endpoint each time, and succeeds once Ironic answers.
func TestLookupRetries(t *testing.T) {
	ironic := newFakeIronic(t)
	ironic.lookupFail = 3
	startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), nil)
	modern := ironic.requests(func(r request) bool { return strings.HasPrefix(r.path, "/v1/lookup") })
	legacy := ironic.requests(func(r request) bool { return strings.HasSuffix(r.path, "/vendor_passthru/lookup") })
	if len(modern) != 4 || len(legacy) != 3 {
		t.Errorf("%d modern and %d legacy lookups; want 4 and 3", len(modern), len(legacy))
	}
	if p := legacy[0].path; p != "/v1/drivers/agent_ipmitool/vendor_passthru/lookup" {
		t.Errorf("legacy lookup path %s", p)
	}
}

func TestLookupTimeout(t *testing.T) {
	ironic := newFakeIronic(t)
	ironic.lookupFail = 1 << 30
	a, err := New(Config{APIURL: ironic.srv.URL, Env: newTestEnv(), LookupTimeout: 300 * time.Millisecond, LookupInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "Could not look up node info") {
		t.Fatalf("Run: %v", err)
	}
	if n := len(ironic.requests(func(r request) bool { return strings.HasPrefix(r.path, "/v1/lookup") })); n < 2 {
		t.Errorf("%d lookups before giving up", n)
	}
}

// TestLegacyLookup: a Liberty-era Ironic knows only the vendor_passthru
// lookup and heartbeat. With an API root older than 1.22 the agent goes
// there at once; with a newer one after the modern lookup's 404.
func TestLegacyLookup(t *testing.T) {
	for _, tc := range []struct {
		name, root string
		modern     int
	}{
		{"old-api", `{"default_version": {"id": "v1", "version": "1.9"}}`, 0},
		{"fallback", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ironic := newFakeIronic(t)
			if tc.root != "" {
				ironic.root = []byte(tc.root)
			}
			ironic.legacy = []byte(`{"node": {"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {}}, "heartbeat_timeout": 1}`)
			h := startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), func(c *Config) { c.DriverName = "agent_ipmitool"; c.MinDiskBytes = -1 })
			if n := len(ironic.requests(func(r request) bool { return strings.HasPrefix(r.path, "/v1/lookup") })); n != tc.modern {
				t.Errorf("%d modern lookups, want %d", n, tc.modern)
			}
			lk := ironic.requests(func(r request) bool { return strings.HasSuffix(r.path, "/vendor_passthru/lookup") })[0]
			inv, _ := lk.body["inventory"].(map[string]any)
			if lk.body["version"] != "2" || inv == nil || inv["interfaces"].([]any)[0].(map[string]any)["mac_address"] != "52:54:00:12:34:56" ||
				inv["disks"].([]any)[0].(map[string]any)["name"] != "/dev/vda" || inv["boot"].(map[string]any)["current_boot_mode"] != "uefi" {
				t.Errorf("legacy lookup body %v", lk.body)
			}
			hb := ironic.requests(isHeartbeat)[0]
			if hb.path != "/v1/nodes/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/vendor_passthru/heartbeat" || len(hb.body) != 1 || hb.body["agent_url"] == nil {
				t.Errorf("legacy heartbeat %s %v", hb.path, hb.body)
			}
			// No token was issued: commands run without one.
			h.token = ""
			if st, got := h.command("standby.sync", map[string]any{}, true); st != 200 || got["command_status"] != statusSucceeded {
				t.Errorf("command without token after legacy lookup: %d %v", st, got)
			}
		})
	}
}

func TestConfigFromParams(t *testing.T) {
	p, err := ramdisk.ParseCmdline("ipa-api-url=http://127.0.0.1:6385/ ipa-driver-name=agent_ipmitool ipa-listen-port=9998 ipa-agent-token=tok ipa-ironic-api-version=1.31")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFromParams(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIURL != "http://127.0.0.1:6385" || cfg.AgentPort != 9998 || cfg.AgentToken != "tok" || cfg.IronicAPIVersion != "1.31" || cfg.DriverName != "agent_ipmitool" {
		t.Errorf("%+v", cfg)
	}
	if cfg.HTTP != nil {
		t.Error("a client without ipa-insecure")
	}
	p.Raw["ipa-insecure"] = "1"
	if cfg, err := ConfigFromParams(p); err != nil || !cfg.HTTP.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify {
		t.Errorf("ipa-insecure=1: %v", err)
	}
	if _, err := ConfigFromParams(ramdisk.Params{Raw: map[string]string{}}); err == nil {
		t.Error("no ipa-api-url accepted")
	}
}

func TestEnvFrom(t *testing.T) {
	base := newTestEnv(sparseDisk(t, "vda", 1<<20))
	off := 0
	env := EnvFrom(base, base.hw, func(context.Context) error { off++; return nil })
	if hw, _ := env.Hardware(t.Context()); hw.Hostname != "bm0" {
		t.Errorf("hardware %+v", hw)
	}
	if d, _ := env.Disks(t.Context()); len(d) != 1 || env.PowerOff(t.Context()) != nil || off != 1 {
		t.Error("disks or power off not passed through")
	}
	if EnvFrom(base, Hardware{}, nil).PowerOff(t.Context()) == nil {
		t.Error("power off without a line succeeded")
	}
}

// TestForcedHeartbeat: with heartbeat_timeout 300 the next regular
// heartbeat is minutes away, but an asynchronous command that ends forces
// one once the last is 5 s old, as IPA tells Ironic it is done.
func TestForcedHeartbeat(t *testing.T) {
	ironic := newFakeIronic(t)
	h := startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), func(c *Config) { c.MinDiskBytes = -1 })
	first := ironic.requests(isHeartbeat)[0].at
	_, got := h.command("standby.run_image", map[string]any{}, false)
	h.finished(got["id"].(string))
	hbs := waitFor(t, "forced heartbeat", func() ([]request, bool) {
		r := ironic.requests(isHeartbeat)
		return r, len(r) >= 2
	})
	if gap := hbs[1].at.Sub(first); gap < forcedMinAge-50*time.Millisecond || gap > 60*time.Second {
		t.Errorf("forced heartbeat %v after the first; want once it is 5 s old", gap)
	}
}
