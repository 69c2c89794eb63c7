package testbed

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

// TestAgentInspection inspects a simulated machine with inspect_interface
// agent, its scheduling properties taken away after enrollment: with the
// redfish hardware type its ports are taken away too, and inspection
// creates a port per NIC the Redfish service lists; with ipmi the ports
// stay (the PXE boot needs them) and the inventory is looked up by MAC.
// Either way the agent ramdisk boots by PXE with
// ipa-inspection-callback-url, posts its inventory to
// /v1/continue_inspection, and the node returns to manageable, powered
// off, with cpus, memory_mb, local_gb and cpu_arch of the machine and its
// inventory served on GET /v1/nodes/{node}/inventory (1.81).
func TestAgentInspection(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the agent ramdisk")
	}
	for _, driver := range []string{"redfish", "ipmi"} {
		t.Run(driver, func(t *testing.T) { testAgentInspection(t, driver) })
	}
}

func testAgentInspection(t *testing.T, driver string) {
	ms := machines(1)
	ms[0].DiskBytes = 3 << 30 // sparse: local_gb 2
	tb, err := New(Config{StateDir: t.TempDir(), Machines: ms, Provisioner: free(),
		Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	b := tb.provisioner()
	specs := tb.fleet.enrollSpecs(b, "", driver, tb.redfish)
	specs[0].deployInterface = "direct"
	uuids, err := b.enroll(t.Context(), specs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := NewClient(tb.APIURL())
	id := uuids["node-0"]
	forgetHardware(ctx, t, c, id, driver == "redfish")

	if err := c.Provision(ctx, id, "manage"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitState(ctx, id, "manageable", nil); err != nil {
		t.Fatal(err)
	}
	// The default is Ironic's no-inspect.
	err = c.Provision(ctx, id, "inspect")
	if err == nil || !strings.Contains(err.Error(), "does not support inspect") {
		t.Fatalf("inspect with no-inspect: %v", err)
	}
	if err := c.Patch(ctx, id, []map[string]any{{"op": "replace", "path": "/inspect_interface", "value": "agent"}}); err != nil {
		t.Fatal(err)
	}
	var states []string
	if err := c.Provision(ctx, id, "inspect"); err != nil {
		t.Fatal(err)
	}
	n, err := c.WaitState(ctx, id, "manageable", func(n *Node) { states = append(states, n.ProvisionState) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(states, "inspect wait") {
		t.Errorf("states seen %v, want inspect wait among them", states)
	}
	if n.PowerState == nil || *n.PowerState != "power off" {
		t.Errorf("power state after inspection %v, want power off", n.PowerState)
	}

	var node struct {
		Properties map[string]any `json:"properties"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id, nil, &node); err != nil {
		t.Fatal(err)
	}
	m := tb.cfg.Machines[0]
	want := map[string]any{"cpus": float64(simCPUs), "memory_mb": float64(simMemoryMB),
		"local_gb": float64(localGB(m.DiskBytes)), "cpu_arch": simCPUArch}
	for k, v := range want {
		if node.Properties[k] != v {
			t.Errorf("properties[%s] = %v (%T), want %v", k, node.Properties[k], node.Properties[k], v)
		}
	}

	var ports struct {
		Ports []struct {
			Address    string `json:"address"`
			PXEEnabled bool   `json:"pxe_enabled"`
		} `json:"ports"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id+"/ports/detail", nil, &ports); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ports.Ports {
		got = append(got, p.Address)
		if !p.PXEEnabled {
			t.Errorf("port %s not pxe_enabled", p.Address)
		}
	}
	var macs []string
	for _, mac := range m.MACs {
		macs = append(macs, mac.String())
	}
	slices.Sort(got)
	slices.Sort(macs)
	if !slices.Equal(got, macs) {
		t.Errorf("ports %v, want one per MAC %v", got, macs)
	}

	inv := getInventory(ctx, t, tb.APIURL(), id)
	if inv.Inventory.CPU.Count != simCPUs || len(inv.Inventory.Interfaces) != len(m.MACs) ||
		inv.Inventory.Interfaces[0].MAC != m.MACs[0].String() || len(inv.Inventory.Disks) != 1 ||
		inv.Inventory.Disks[0].Size != m.DiskBytes {
		t.Errorf("stored inventory %+v", inv.Inventory)
	}
	if inv.PluginData["boot_interface"] != m.MACs[0].String() || inv.PluginData["root_disk"] == nil {
		t.Errorf("stored plugin data %v", inv.PluginData)
	}
	if driver == "redfish" && !slices.ContainsFunc(tb.Timeline().Node("node-0"), func(e events.Entry) bool {
		return e.Kind == events.PortCreated && e.Detail == m.MACs[0].String()
	}) {
		t.Errorf("no %s for %s in the timeline", events.PortCreated, m.MACs[0])
	}
}

// localGB is what inspection reports for a disk: whole GiB less one for
// partitioning, 0 for a disk under 2 GiB.
func localGB(size int64) int64 {
	if g := size >> 30; g > 0 {
		return g - 1
	}
	return 0
}

// forgetHardware removes the node's scheduling properties and, with
// ports, its ports, so that only inspection can know them.
func forgetHardware(ctx context.Context, t *testing.T, c *Client, id string, ports bool) {
	t.Helper()
	if ports {
		deletePorts(ctx, t, c, id)
	}
	var ops []map[string]any
	for _, k := range []string{"cpus", "memory_mb", "local_gb", "cpu_arch"} {
		ops = append(ops, map[string]any{"op": "remove", "path": "/properties/" + k})
	}
	if err := c.Patch(ctx, id, ops); err != nil {
		t.Fatal(err)
	}
}

// deletePorts deletes the node's ports.
func deletePorts(ctx context.Context, t *testing.T, c *Client, id string) {
	t.Helper()
	var ports struct {
		Ports []struct {
			UUID string `json:"uuid"`
		} `json:"ports"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id+"/ports", nil, &ports); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports.Ports {
		if err := c.Do(ctx, http.MethodDelete, "/v1/ports/"+p.UUID, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// storedInventory is GET /v1/nodes/{node}/inventory, the parts checked.
type storedInventory struct {
	Inventory struct {
		CPU struct {
			Count int `json:"count"`
		} `json:"cpu"`
		Interfaces []struct {
			MAC string `json:"mac_address"`
		} `json:"interfaces"`
		Disks []struct {
			Size int64 `json:"size"`
		} `json:"disks"`
	} `json:"inventory"`
	PluginData map[string]any `json:"plugin_data"`
}

// getInventory reads the node's inventory at microversion 1.81.
func getInventory(ctx context.Context, t *testing.T, api, id string) storedInventory {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/v1/nodes/"+id+"/inventory", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.81")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET inventory: %d %s", resp.StatusCode, body)
	}
	var inv storedInventory
	if err := json.Unmarshal(body, &inv); err != nil {
		t.Fatalf("inventory %s: %v", body, err)
	}
	return inv
}
