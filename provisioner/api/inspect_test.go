package api_test

import (
	"testing"

	"github.com/metalbed/metalbed/provisioner"
)

// TestContinueInspection: the ramdisk's unversioned POST
// /v1/continue_inspection is checked against Ironic's schema, refused at
// versioned microversions below 1.84, looks the node up by MAC (404 unless
// it waits in "inspect wait") and answers 202 {"uuid": node}. The stored
// inventory is served at 1.81 (TestAgentInspect, testbed TestAgentInspection).
func TestContinueInspection(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware"}).obj(t)["uuid"].(string)
	s.must(t, 201, "POST", "/v1/ports", "1.82", map[string]any{"address": "52:54:00:12:34:57", "node_uuid": id})
	inv := map[string]any{"inventory": map[string]any{
		"interfaces": []any{map[string]any{"name": "eth0", "mac_address": "52:54:00:12:34:57"}},
		"memory":     map[string]any{"physical_mb": 1024}, "bmc_address": "0.0.0.0"},
		"boot_interface": "52:54:00:12:34:57"}

	for _, tc := range []struct {
		body any
		want string
	}{
		{map[string]any{}, "Schema error for data: 'inventory' is a required property"},
		{map[string]any{"inventory": []any{}}, "Schema error for data: [] is not of type 'object'"},
		{map[string]any{"inventory": map[string]any{}}, "Schema error for data: 'interfaces' is a required property"},
		{map[string]any{"inventory": map[string]any{"interfaces": []any{}}}, "Schema error for data: [] should be non-empty"},
		{map[string]any{"inventory": map[string]any{"interfaces": []any{map[string]any{"name": "eth0"}}}},
			"Schema error for data: 'mac_address' is a required property"},
		{map[string]any{"inventory": map[string]any{"interfaces": []any{map[string]any{"mac_address": 1}}}},
			"Schema error for data: 1 is not of type 'string'"},
		{map[string]any{"inventory": map[string]any{"bmc_address": 5, "interfaces": []any{map[string]any{"mac_address": "x"}}}},
			"Schema error for data: 5 is not of type 'string', 'null'"},
		{"[1, 2", ""},
	} {
		r := s.must(t, 400, "POST", "/v1/continue_inspection", "", tc.body)
		if got := faultstring(t, r); tc.want != "" && got != tc.want {
			t.Errorf("%v: %q, want %q", tc.body, got, tc.want)
		}
	}
	if got := faultstring(t, s.must(t, 404, "POST", "/v1/continue_inspection", "1.68", inv)); got != "API version 1.84 or newer is required" {
		t.Errorf("versioned post: %q", got)
	}
	// Not waiting for inspection: the generic 404.
	if got := faultstring(t, s.must(t, 404, "POST", "/v1/continue_inspection", "", inv)); got != "Resource could not be found." {
		t.Errorf("post for a manageable node: %q", got)
	}
	s.must(t, 404, "GET", "/v1/nodes/"+id+"/inventory", "1.81", nil)

	s.setState(t, id, "inspect wait")
	r := s.must(t, 202, "POST", "/v1/continue_inspection", "", inv).obj(t)
	if len(r) != 1 || r["uuid"] != id {
		t.Errorf("answer %v, want {uuid: %s}", r, id)
	}
	// fake-hardware has no inspect interface to process the data with:
	// the node fails and nothing is stored.
	n := s.waitNode(t, id, "inspect failed", func(n *provisioner.Node) bool { return n.ProvisionState == "inspect failed" })
	if n.LastError != "Failed to inspect hardware. Reason: Driver fake-hardware does not support inspect (disabled or not implemented)." {
		t.Errorf("last_error %q", n.LastError)
	}
	s.must(t, 404, "GET", "/v1/nodes/"+id+"/inventory", "1.81", nil)
	s.must(t, 404, "GET", "/v1/nodes/"+id+"/inventory", "1.80", nil)
}
