package testbed

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/vms"
)

// TestManualCleaning deploys a simulated machine (direct deploy), undeploys
// it without automated cleaning (its partitions stay), then runs a manual
// cleaning with erase_devices_metadata: the agent ramdisk boots again, runs
// the step, the node returns to manageable and the disk holds no partition
// table. A step the agent does not have is refused with Ironic's 400.
func TestManualCleaning(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys a machine")
	}
	nodes := []DemoNode{{Mode: vms.BIOS, Option: "local", Deploy: "direct", What: "agent deploy, local boot (bios)"}}
	tb, err := New(Config{StateDir: t.TempDir(), Machines: DemoMachines(nodes, false), Provisioner: free()})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	b := tb.provisioner()
	specs := tb.fleet.enrollSpecs(b, "", "", nil)
	specs[0].deployInterface = "direct"
	uuids, err := b.enroll(t.Context(), specs)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tb.BuildDemoImage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	c := NewClient(tb.APIURL())
	id := uuids["node-0"]
	if r := demoDeploy(ctx, c, tb.Timeline(), "node-0", id, nodes[0], img, nil); r.Err != nil {
		t.Fatalf("deploy: %v", r.Err)
	}
	step := func(target, want string, body map[string]any) {
		t.Helper()
		if body == nil {
			body = map[string]any{}
		}
		body["target"] = target
		if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/provision", body, nil); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if _, err := c.WaitState(ctx, id, want, nil); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
	}
	if err := c.Patch(ctx, id, []map[string]any{{"op": "replace", "path": "/automated_clean", "value": false}}); err != nil {
		t.Fatal(err)
	}
	step("deleted", "available", nil)
	step("manage", "manageable", nil)
	d := tb.fleet.nodes[0].machine.Disk()
	partitions := func() int {
		f, err := os.Open(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ins, err := disk.Inspect(f, d.SizeBytes)
		if err != nil {
			t.Fatal(err)
		}
		return len(ins.Layout.Partitions)
	}
	if n := partitions(); n == 0 {
		t.Fatalf("no partitions after a deploy and an undeploy without cleaning")
	}

	err = c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/provision",
		map[string]any{"target": "clean", "clean_steps": []any{map[string]any{"interface": "deploy", "step": "erase_everything"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "node does not support this clean step") {
		t.Fatalf("unknown clean step: %v", err)
	}
	t0 := time.Now()
	step("clean", "manageable", map[string]any{"clean_steps": []any{map[string]any{"interface": "deploy", "step": "erase_devices_metadata"}}})
	if n := partitions(); n != 0 {
		t.Errorf("%d partitions left after erase_devices_metadata", n)
	}
	ran := false
	for _, e := range tb.Timeline().Node("node-0") {
		if e.Kind == events.AgentClean && e.Detail == "erase_devices_metadata" && !e.Time.Before(t0) {
			ran = true
		}
	}
	if !ran {
		t.Errorf("no agent.clean erase_devices_metadata in the timeline after the manual cleaning")
	}
	var n struct {
		DriverInternalInfo map[string]any `json:"driver_internal_info"`
		LastError          *string        `json:"last_error"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id, nil, &n); err != nil {
		t.Fatal(err)
	}
	if _, left := n.DriverInternalInfo["clean_steps"]; left || (n.LastError != nil && *n.LastError != "") {
		t.Errorf("after the manual cleaning: %+v", n)
	}
}
