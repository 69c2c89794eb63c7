package api_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
)

// freeForm are user- or driver-defined dictionaries: only their type is
// compared, never their keys.
var freeForm = map[string]bool{
	"driver_info": true, "driver_internal_info": true, "properties": true, "instance_info": true,
	"extra": true, "clean_step": true, "deploy_step": true, "raid_config": true, "target_raid_config": true,
	"network_data": true, "internal_info": true, "local_link_connection": true,
}

// sameShape compares two decoded JSON documents: identical key sets at
// every level, identical types where both sides are non-null (null is
// nullable and matches any type).
func sameShape(path string, want, got any) []string {
	if want == nil || got == nil {
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want object, got %T", path, got)}
		}
		if freeForm[lastKey(path)] {
			return nil
		}
		var diffs []string
		for k := range w {
			if _, ok := g[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s.%s: missing", path, k))
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s.%s: not in Ironic's answer", path, k))
			}
		}
		for k, wv := range w {
			if gv, ok := g[k]; ok {
				diffs = append(diffs, sameShape(path+"."+k, wv, gv)...)
			}
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want array, got %T", path, got)}
		}
		if len(w) == 0 || len(g) == 0 {
			return nil
		}
		return sameShape(path+"[]", w[0], g[0])
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return []string{fmt.Sprintf("%s: want %T, got %T (%v)", path, want, got, got)}
		}
	}
	return nil
}

func lastKey(path string) string {
	return path[strings.LastIndex(path, ".")+1:]
}

func capture(t *testing.T, name string) any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "ironic", name))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// captureStatus reads the status code from <name>.headers.
func captureStatus(t *testing.T, name string) (int, string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "ironic", name+".headers"))
	if err != nil {
		t.Fatal(err)
	}
	var code int
	fmt.Sscanf(string(raw), "HTTP/1.1 %d", &code)
	return code, string(raw)
}

// TestGoldenShapes makes the request each capture of the real Ironic 21.4
// recorded and checks metalbed answers with the same status, the same key
// sets and the same types.
func TestGoldenShapes(t *testing.T) {
	s := newStack(t, stackOpts{})
	ipmi := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{
		"driver": "ipmi", "name": "bm0",
		"driver_info": map[string]any{"ipmi_address": "127.0.0.1", "ipmi_port": 9623, "ipmi_username": "admin",
			"ipmi_password": "password", "ipmi_cipher_suite": 3},
		"properties": map[string]any{"cpus": 2, "memory_mb": 2048, "local_gb": 10, "cpu_arch": "x86_64"},
	}).obj(t)
	id := ipmi["uuid"].(string)
	s.setState(t, id, "manageable")
	s.must(t, 201, "POST", "/v1/ports", "1.82", map[string]any{"address": "52:54:00:12:34:56", "node_uuid": id})

	fakeCreated := s.do(t, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware", "name": "fake0"})
	fake := fakeCreated.obj(t)["uuid"].(string)

	for _, tc := range []struct {
		capture, method, path, version string
		body                           any
		got                            *resp
	}{
		{capture: "root", method: "GET", path: "/"},
		{capture: "v1", method: "GET", path: "/v1"},
		{capture: "v1-latest", method: "GET", path: "/v1", version: "latest"},
		{capture: "node-create-fake-1.82", got: &fakeCreated},
		{capture: "node-show-1.82", method: "GET", path: "/v1/nodes/" + id, version: "1.82"},
		{capture: "node-show-byname-1.82", method: "GET", path: "/v1/nodes/bm0", version: "1.82"},
		{capture: "node-show-default", method: "GET", path: "/v1/nodes/" + id},
		{capture: "nodes-list-1.82", method: "GET", path: "/v1/nodes?driver=ipmi", version: "1.82"},
		{capture: "nodes-list-default", method: "GET", path: "/v1/nodes?driver=ipmi"},
		{capture: "nodes-detail-1.82", method: "GET", path: "/v1/nodes/detail?driver=ipmi", version: "1.82"},
		{capture: "node-states-1.82", method: "GET", path: "/v1/nodes/" + id + "/states", version: "1.82"},
		{capture: "node-vendor-methods-1.82", method: "GET", path: "/v1/nodes/" + id + "/vendor_passthru/methods", version: "1.82"},
		{capture: "node-history-1.82", method: "GET", path: "/v1/nodes/" + id + "/history", version: "1.82"},
		{capture: "node-ports-1.82", method: "GET", path: "/v1/nodes/" + id + "/ports", version: "1.82"},
		{capture: "ports-list-1.82", method: "GET", path: "/v1/ports", version: "1.82"},
		{capture: "ports-detail-1.82", method: "GET", path: "/v1/ports/detail", version: "1.82"},
		{capture: "conductors-1.82", method: "GET", path: "/v1/conductors", version: "1.82"},
		{capture: "drivers-1.82", method: "GET", path: "/v1/drivers", version: "1.82"},
		{capture: "driver-ipmi-1.82", method: "GET", path: "/v1/drivers/ipmi", version: "1.82"},
		{capture: "node-bootdevice-1.82", method: "GET", path: "/v1/nodes/" + fake + "/management/boot_device", version: "1.82"},
		{capture: "node-patch-1.82", method: "PATCH", path: "/v1/nodes/" + fake, version: "1.82",
			body: []map[string]any{{"op": "add", "path": "/extra/foo", "value": "bar"}}},
		{capture: "err-node-404", method: "GET", path: "/v1/nodes/00000000-0000-0000-0000-000000000000", version: "1.82"},
		{capture: "err-port-create-bad-mac", method: "POST", path: "/v1/ports", version: "1.82",
			body: map[string]any{"address": "zz", "node_uuid": id}},
		{capture: "err-field-needs-version", method: "GET", path: "/v1/nodes/" + id + "?fields=description", version: "1.50"},
		{capture: "err-version-too-high", method: "GET", path: "/v1/nodes", version: "1.99"},
		{capture: "err-version-bad", method: "GET", path: "/v1/nodes", version: "abc"},
		{capture: "lookup-old-version", method: "GET", path: "/v1/lookup?addresses=52:54:00:12:34:56", version: "1.1"},
		{capture: "lookup-not-allowed-state", method: "GET", path: "/v1/lookup?addresses=52:54:00:12:34:56", version: "1.68"},
	} {
		t.Run(tc.capture, func(t *testing.T) {
			got := tc.got
			if got == nil {
				r := s.do(t, tc.method, tc.path, tc.version, tc.body)
				got = &r
			}
			wantStatus, headers := captureStatus(t, tc.capture)
			if got.status != wantStatus {
				t.Fatalf("status %d, Ironic %d: %s", got.status, wantStatus, got.body)
			}
			for _, h := range []string{"X-Openstack-Ironic-Api-Minimum-Version", "X-Openstack-Ironic-Api-Maximum-Version", "X-Openstack-Ironic-Api-Version"} {
				if strings.Contains(headers, h+":") != (got.header.Get(h) != "") {
					t.Errorf("header %s: Ironic sends it: %v, metalbed: %q", h, strings.Contains(headers, h+":"), got.header.Get(h))
				}
			}
			want := capture(t, tc.capture+".json")
			for _, d := range sameShape("$", want, got.json(t)) {
				t.Error(d)
			}
			// Error bodies: the same text, byte for byte.
			if w, ok := want.(map[string]any)["error_message"]; ok {
				if g := got.obj(t)["error_message"]; g != w {
					t.Errorf("error_message\n got %v\nwant %v", g, w)
				}
			}
		})
	}
}

// TestGoldenFakeActive walks a fake-hardware node to active through the API
// as the capture run did, then compares the active node and the refusal of
// "manage" (err-prov-bad-transition) with Ironic's.
func TestGoldenFakeActive(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware", "name": "fake0"}).obj(t)["uuid"].(string)
	for _, step := range []struct{ target, state string }{{"manage", "manageable"}, {"provide", "available"}, {"active", "active"}} {
		r := s.must(t, 202, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", map[string]any{"target": step.target})
		if r.header.Get("Location") != s.url+"/v1/nodes/"+id+"/states" || len(r.body) != 0 {
			t.Errorf("%s: Location %q body %q", step.target, r.header.Get("Location"), r.body)
		}
		s.waitNode(t, id, step.state, func(n *provisioner.Node) bool {
			return string(n.ProvisionState) == step.state && n.Reservation == ""
		})
	}
	power := s.must(t, 202, "PUT", "/v1/nodes/"+id+"/states/power", "1.82", map[string]any{"target": "power on"})
	if power.header.Get("Location") != s.url+"/v1/nodes/"+id+"/states" {
		t.Errorf("power: Location %q", power.header.Get("Location"))
	}
	s.waitNode(t, id, "power on", func(n *provisioner.Node) bool { return n.PowerState == "power on" && n.Reservation == "" })

	got := s.must(t, 200, "GET", "/v1/nodes/"+id, "1.82", nil)
	for _, d := range sameShape("$", capture(t, "node-show-fake-active-1.82.json"), got.json(t)) {
		t.Error(d)
	}
	bad := s.must(t, 400, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", map[string]any{"target": "manage"})
	want := capture(t, "err-prov-bad-transition.json").(map[string]any)["error_message"].(string)
	want = strings.ReplaceAll(want, "ea57e0b4-b7d8-42ec-9efb-95250a432b56", id)
	if g := bad.obj(t)["error_message"]; g != want {
		t.Errorf("bad transition\n got %v\nwant %v", g, want)
	}
}

// TestGoldenValidate checks node validate's shape against Ironic's: the
// same interfaces, each {"result": true} or {"result": false, "reason": …}.
func TestGoldenValidate(t *testing.T) {
	s := newStack(t, stackOpts{})
	n := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "ipmi",
		"driver_info": map[string]any{"ipmi_address": "127.0.0.1", "ipmi_port": 9623, "ipmi_username": "admin", "ipmi_password": "p"}}).obj(t)
	got := s.must(t, 200, "GET", "/v1/nodes/"+n["uuid"].(string)+"/validate", "1.82", nil).obj(t)
	want := capture(t, "node-validate-1.82.json").(map[string]any)
	var wk, gk []string
	for k := range want {
		wk = append(wk, k)
	}
	for k, v := range got {
		gk = append(gk, k)
		res := v.(map[string]any)
		if res["result"] == false {
			if r, _ := res["reason"].(string); r == "" {
				t.Errorf("%s: false without a reason", k)
			}
		} else if len(res) != 1 {
			t.Errorf("%s: true with extra keys %v", k, res)
		}
	}
	sort.Strings(wk)
	sort.Strings(gk)
	if strings.Join(wk, ",") != strings.Join(gk, ",") {
		t.Fatalf("interfaces %v, Ironic %v", gk, wk)
	}
	for _, k := range []string{"power", "management", "network", "storage"} {
		if got[k].(map[string]any)["result"] != true {
			t.Errorf("%s: %v", k, got[k])
		}
	}
	for _, k := range []string{"bios", "console", "inspect", "raid", "rescue"} {
		if got[k].(map[string]any)["reason"] != want[k].(map[string]any)["reason"] {
			t.Errorf("%s: reason %q, Ironic %q", k, got[k], want[k])
		}
	}
}
