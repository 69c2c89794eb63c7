package agent

import (
	"strings"
	"testing"
)

// inspectedUUID is the node the fake conductor's continue_inspection
// answers with.
const inspectedUUID = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"

// TestInspectionPostsInventory: with ipa-inspection-callback-url the agent
// posts IPA's inspection data there before its lookup, unversioned as
// IPA's requests.post, and looks up with the node UUID it was answered.
func TestInspectionPostsInventory(t *testing.T) {
	env := newTestEnv(sparseDisk(t, "sda", 8<<30), sparseDisk(t, "sdb", 5<<30))
	env.hw.PXEInterface = "52:54:00:12:34:56"
	ironic := newFakeIronic(t)
	startAgent(t, ironic, env, func(c *Config) {
		c.InspectionCallbackURL = ironic.srv.URL + "/v1/continue_inspection"
	})
	posts := ironic.requests(func(r request) bool { return r.path == "/v1/continue_inspection" })
	if len(posts) != 1 {
		t.Fatalf("%d posts to continue_inspection, want 1", len(posts))
	}
	p := posts[0]
	if p.method != "POST" || p.version != "" {
		t.Errorf("posted %s with version %q, want POST without one", p.method, p.version)
	}
	inv, _ := p.body["inventory"].(map[string]any)
	ifaces, _ := inv["interfaces"].([]any)
	root, _ := p.body["root_disk"].(map[string]any)
	if len(ifaces) == 0 || inv["memory"] == nil || inv["cpu"] == nil {
		t.Errorf("inventory %v", inv)
	}
	if root["size"] != float64(5<<30) || p.body["boot_interface"] != "52:54:00:12:34:56" {
		t.Errorf("root_disk %v, boot_interface %v: want the 5 GiB disk and the PXE MAC", root, p.body["boot_interface"])
	}
	if _, ok := p.body["error"]; !ok || p.body["error"] != nil {
		t.Errorf("error %v, want null", p.body["error"])
	}
	lookups := ironic.requests(func(r request) bool { return strings.HasPrefix(r.path, "/v1/lookup") })
	if len(lookups) == 0 || !strings.Contains(lookups[0].path, "node_uuid="+inspectedUUID) || lookups[0].at.Before(p.at) {
		t.Errorf("lookups %v after the post at %v, want node_uuid=%s", lookups, p.at, inspectedUUID)
	}
}
