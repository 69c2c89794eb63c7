package testbed

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/vms"
)

// TestRedfishHTTPSDeploy deploys a UEFI simulated machine through
// metalbed's conductor with the redfish hardware type, the redfish-https
// boot interface (UEFI HTTP boot of the deploy ISO) and the agent's direct
// deploy, to active, and undeploys it back to available (automated
// cleaning boots the agent by UEFI HTTP again). Its timeline shows, in
// order: a Once UefiHttp override with the ISO's URL, the machine's HTTP
// boot of that URL, the agent's lookup and heartbeat, the image written, a
// Continuous Hdd override, the boot from disk; no virtual media is ever
// inserted and the ISO is gone after the deploy and after cleaning. A
// BIOS node with redfish-https fails validation with Ironic's message.
func TestRedfishHTTPSDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys a machine")
	}
	requireISOLoaders(t, false, true)
	nodes := []DemoNode{
		{Mode: vms.UEFI, Option: "local", Deploy: "direct", What: "agent deploy by UEFI HTTP boot"},
		{Mode: vms.BIOS, Option: "local", Deploy: "direct", What: "refused: legacy BIOS has no HTTP boot"},
	}
	tb, uuids := isoBed(t, nodes, boot.HTTPSName)
	b := tb.provisioner()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	var val map[string]struct {
		Result *bool  `json:"result"`
		Reason string `json:"reason"`
	}
	if err := b.client().Do(ctx, http.MethodGet, "/v1/nodes/"+uuids["node-1"]+"/validate", nil, &val); err != nil {
		t.Fatal(err)
	}
	if r := val["boot"]; r.Result == nil || *r.Result || !strings.Contains(r.Reason, "does not support feature UefiHttp boot in bios boot mode") {
		t.Errorf("validate boot of the bios node: %+v", r)
	}

	img, err := tb.BuildDemoImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := demoDeploy(ctx, b.client(), tb.Timeline(), "node-0", uuids["node-0"], nodes[0], img, nil)
	entries := tb.Timeline().Node("node-0")
	if r.Err != nil {
		t.Fatalf("deploy: %v\n%s", r.Err, dumpEntries(entries))
	}
	iso := b.httpURL() + "/redfish/boot-" + r.UUID + ".iso"
	at := 0
	for _, s := range []struct {
		kind events.Kind
		sub  string
	}{
		{events.BMCRedfishBoot, "target UefiHttp, Once, UEFI"},
		{events.MachineBoot, "http " + iso},
		{events.AgentLookup, ""},
		{events.AgentHeartbeat, ""},
		{events.AgentImageWritten, ""},
		{events.BMCRedfishBoot, "target Hdd, Continuous"},
		{events.MachineBoot, "disk"},
		{events.InstanceBooted, ""},
	} {
		i := firstIndex(entries, at, s.kind, s.sub)
		if i < 0 {
			t.Fatalf("no %s %q after entry %d in the timeline:\n%s", s.kind, s.sub, at, dumpEntries(entries))
		}
		if s.kind == events.BMCRedfishBoot && strings.Contains(s.sub, "UefiHttp") && !strings.HasSuffix(entries[i].Detail, "uri "+iso) {
			t.Errorf("the UefiHttp override %q does not name the ISO %s", entries[i].Detail, iso)
		}
		at = i + 1
	}
	if i := firstIndex(entries, 0, events.BMCRedfishMedia, ""); i >= 0 {
		t.Errorf("virtual media used by redfish-https: %s", entries[i].Detail)
	}
	isoPath := filepath.Join(b.httpRoot(), "redfish", "boot-"+r.UUID+".iso")
	if _, err := os.Stat(isoPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the ISO is still published after the deploy (%v)", err)
	}

	t0 := time.Now()
	results := []DemoResult{r}
	tb.UndeployDemo(ctx, results)
	if err := results[0].UndeployErr; err != nil {
		t.Fatalf("undeploy: %v", err)
	}
	if !results[0].Wiped {
		t.Errorf("cleaning did not wipe the disk")
	}
	if got := kindsAfter(tb, "node-0", events.MachineBoot, t0); !containsPrefix(got, "http "+iso) {
		t.Errorf("machine boots while cleaning %q, want one by UEFI HTTP of %s", got, iso)
	}
	if _, err := os.Stat(isoPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the ISO is still published after cleaning (%v)", err)
	}
}

// containsPrefix reports whether one of details starts with prefix.
func containsPrefix(details []string, prefix string) bool {
	for _, d := range details {
		if strings.HasPrefix(d, prefix) {
			return true
		}
	}
	return false
}

// TestRedfishHTTPSConfig: redfish-https needs enroll driver redfish,
// simulated machines, and UEFI ones.
func TestRedfishHTTPSConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"ipmi", Config{EnrollDriver: "ipmi", Machines: []Machine{{Name: "m", BootMode: vms.UEFI}}},
			"boot interface redfish-https needs enroll driver redfish"},
		{"bios", Config{EnrollDriver: "redfish", Machines: []Machine{{Name: "m", BootMode: vms.UEFI}, {Name: "old"}}},
			"boot interface redfish-https boots UEFI machines only (legacy BIOS has no HTTP boot): machine old boots bios (--boot-mode uefi)"},
		{"libvirt", Config{EnrollDriver: "redfish", Backend: "libvirt", Machines: []Machine{{Name: "m", BootMode: vms.UEFI}}},
			"boot interface redfish-https is for simulated machines"},
	} {
		c.cfg.BootInterface = boot.HTTPSName
		c.cfg.Backend = cmp.Or(c.cfg.Backend, "sim")
		tb := &Testbed{cfg: c.cfg}
		if err := tb.checkBootInterface(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a config error with %q", c.name, err, c.want)
		}
	}
	tb := &Testbed{cfg: Config{EnrollDriver: "redfish", Backend: "sim", BootInterface: boot.HTTPSName, Machines: []Machine{{Name: "m", BootMode: vms.UEFI}}}}
	if err := tb.checkBootInterface(); err != nil {
		t.Errorf("UEFI simulated machines: %v", err)
	}
}
