package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestUpInspectBaremetalCLI: `metalbed up --enroll --enroll-driver
// redfish`, the node's ports and scheduling properties removed with the
// real baremetal CLI, inspect_interface set to agent, then `baremetal node
// inspect --wait`: the node is manageable again with the machine's
// properties and a port per MAC, and its inventory is served. (The
// installed python3-ironicclient 5.0.1 has no `node inventory save`; the
// test reads GET /v1/nodes/{node}/inventory itself.)
func TestUpInspectBaremetalCLI(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	u := startLongUp(t, "inspects a machine", "--nodes", "1", "--enroll-driver", "redfish")
	api := u.inv.API
	n := u.inv.Nodes[0]

	for _, id := range strings.Fields(baremetal(t, api, "port", "list", "--node", n.Name, "-f", "value", "-c", "UUID")) {
		baremetal(t, api, "port", "delete", id)
	}
	baremetal(t, api, "node", "unset", n.Name, "--property", "cpus", "--property", "memory_mb",
		"--property", "local_gb", "--property", "cpu_arch")
	baremetal(t, api, "node", "manage", n.Name, "--wait", "60")
	baremetal(t, api, "node", "set", n.Name, "--inspect-interface", "agent")
	baremetal(t, api, "node", "inspect", n.Name, "--wait", "180")

	node := showNode(t, api, n.Name)
	props, _ := node["properties"].(map[string]any)
	localGB := n.Disk.SizeBytes >> 30
	if localGB > 0 {
		localGB--
	}
	want := map[string]string{"cpus": "2", "memory_mb": "2048", "local_gb": fmt.Sprint(localGB), "cpu_arch": "x86_64"}
	for k, v := range want {
		if fmt.Sprint(props[k]) != v {
			t.Errorf("properties[%s] = %v, want %s (all: %v)", k, props[k], v, props)
		}
	}
	if node["provision_state"] != "manageable" || node["power_state"] != "power off" || node["inspect_interface"] != "agent" {
		t.Errorf("after inspect: %v, %v, %v", node["provision_state"], node["power_state"], node["inspect_interface"])
	}
	ports := strings.Fields(baremetal(t, api, "port", "list", "--node", n.Name, "-f", "value", "-c", "Address"))
	slices.Sort(ports)
	macs := slices.Sorted(slices.Values(n.MACs))
	if !slices.Equal(ports, macs) {
		t.Errorf("ports %v, want one per MAC %v", ports, macs)
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, api+"/v1/nodes/"+n.Name+"/inventory", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.81")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var inv struct {
		Inventory struct {
			Interfaces []struct {
				MAC string `json:"mac_address"`
			} `json:"interfaces"`
		} `json:"inventory"`
		PluginData map[string]any `json:"plugin_data"`
	}
	if err := json.Unmarshal(body, &inv); err != nil || resp.StatusCode != http.StatusOK ||
		len(inv.Inventory.Interfaces) != len(n.MACs) || inv.PluginData["root_disk"] == nil {
		t.Errorf("GET inventory: %d %s (%v)", resp.StatusCode, body, err)
	}
}
