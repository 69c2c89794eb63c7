package conductor

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// recordingBoot is a boot interface double that keeps the ramdisk
// parameters it was handed and whether the ramdisk's configuration is in
// place.
type recordingBoot struct {
	drivers.FakeBoot
	mu       sync.Mutex
	params   map[string]string
	prepared bool
}

func (b *recordingBoot) PrepareRamdisk(_ context.Context, _ *drivers.Task, params map[string]string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.params, b.prepared = params, true
	return nil
}

func (b *recordingBoot) CleanUpRamdisk(context.Context, *drivers.Task) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prepared = false
	return nil
}

func (b *recordingBoot) state() (map[string]string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.params, b.prepared
}

// inspectTypes is testTypes with the "agent" inspect interface enabled
// beside "no-inspect" and boot interface b.
func inspectTypes(t *testing.T, p *testPower, b *recordingBoot) *drivers.Registry {
	t.Helper()
	ai, err := drivers.NewAgentInspect("http://192.0.2.1:6385/")
	if err != nil {
		t.Fatal(err)
	}
	fake := drivers.NewFakeHardware()
	enabled := map[drivers.Role][]string{}
	for _, r := range drivers.Roles() {
		enabled[r] = []string{"no-" + string(r)}
	}
	enabled[drivers.RolePower] = []string{"testpower"}
	enabled[drivers.RoleBoot] = []string{"fake"}
	enabled[drivers.RoleManagement] = []string{"fake"}
	enabled[drivers.RoleInspect] = []string{"no-inspect", "agent"}
	reg, err := drivers.NewRegistry(&drivers.HardwareType{
		Name: "test", Enabled: enabled,
		Power:      map[string]drivers.PowerInterface{"testpower": p},
		Boot:       map[string]drivers.BootInterface{"fake": b},
		Management: fake.Management,
		Inspect:    map[string]drivers.InspectInterface{"agent": ai},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// inspectableNode is a manageable node with the agent inspect interface,
// its BMC at bmc.
func inspectableNode(t *testing.T, h *harness, bmc string) *provisioner.Node {
	t.Helper()
	n := &provisioner.Node{Driver: "test", ProvisionState: provisioner.StateManageable,
		DriverInfo: map[string]any{"address": bmc, "ipmi_address": bmc},
		Interfaces: provisioner.Interfaces{Inspect: "agent"}}
	if err := h.c.CreateNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	return n
}

// postedData is what the agent posts: an inventory with two NICs (the
// first the PXE one), 4 GiB of RAM, 2 CPUs and two disks, and the root
// disk it picked.
func postedData(t *testing.T, bmc string) InspectionData {
	t.Helper()
	const body = `{
		"inventory": {
			"interfaces": [
				{"name": "eth0", "mac_address": "52:54:00:AA:00:01"},
				{"name": "eth1", "mac_address": "52:54:00:aa:00:02"},
				{"name": "lo", "mac_address": "not-a-mac"}
			],
			"cpu": {"count": 2, "architecture": "aarch64"},
			"memory": {"total": 4000000000, "physical_mb": 4096},
			"disks": [{"name": "/dev/sda", "size": 21474836480}, {"name": "/dev/sdb", "size": 10737418240}],
			"bmc_address": "BMC",
			"boot": {"current_boot_mode": "uefi", "pxe_interface": "52:54:00:aa:00:01"}
		},
		"root_disk": {"name": "/dev/sda", "size": 21474836480},
		"boot_interface": "01-52-54-00-aa-00-01",
		"error": null
	}`
	var raw map[string]any
	if err := json.Unmarshal([]byte(strings.Replace(body, "BMC", bmc, 1)), &raw); err != nil {
		t.Fatal(err)
	}
	inv := raw["inventory"].(map[string]any)
	delete(raw, "inventory")
	return InspectionData{Inventory: inv, PluginData: raw}
}

// TestAgentInspect: inspect boots the ramdisk with the inspection callback
// and waits; the posted inventory is looked up by the BMC address (the node
// has no ports), fills the properties, creates a port per valid MAC
// (pxe_enabled for the booting one), is stored, and the node is powered
// off, its ramdisk configuration removed, manageable. A second post finds
// the node by its new ports, not waiting any more: the same 404 as for an
// unknown machine.
func TestAgentInspect(t *testing.T) {
	p := &testPower{state: provisioner.PowerOn}
	b := &recordingBoot{}
	h := start(t, openStore(t, ":memory:"), inspectTypes(t, p, b), nil)
	n := inspectableNode(t, h, "192.0.2.10")

	if err := h.c.Provision(t.Context(), n.UUID, "inspect", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, h.st, n.UUID, provisioner.StateInspectWait)
	if got.TargetProvisionState != provisioner.StateManageable {
		t.Errorf("inspect wait target %q", got.TargetProvisionState)
	}
	params, prepared := b.state()
	if !prepared || params["ipa-inspection-callback-url"] != "http://192.0.2.1:6385/v1/continue_inspection" ||
		params["ipa-api-url"] != "http://192.0.2.1:6385" {
		t.Errorf("ramdisk prepared %v with %v", prepared, params)
	}
	p.mu.Lock()
	calls := slices.Clone(p.calls)
	p.mu.Unlock()
	if !slices.Equal(calls, []string{"power off", "power on"}) {
		t.Errorf("power calls %v, want off then on", calls)
	}

	if _, err := h.c.ContinueInspection(t.Context(), postedData(t, "192.0.2.99")); KindOf(err) != KindNotFound {
		t.Fatalf("post from an unknown BMC: %v, want not found", err)
	}
	if _, err := h.c.ContinueInspection(t.Context(), InspectionData{Inventory: map[string]any{}}); KindOf(err) != KindInvalid {
		t.Fatalf("post without MACs or BMC: %v, want invalid", err)
	}
	id, err := h.c.ContinueInspection(t.Context(), postedData(t, "192.0.2.10"))
	if err != nil || id != n.UUID {
		t.Fatalf("continue inspection: %q, %v", id, err)
	}
	got = waitState(t, h.st, n.UUID, provisioner.StateManageable)
	// The store keeps properties as JSON: numbers come back as float64.
	want := map[string]any{"cpus": float64(2), "memory_mb": float64(4096), "local_gb": float64(19), "cpu_arch": "aarch64"}
	for k, v := range want {
		if got.Properties[k] != v {
			t.Errorf("properties[%s] = %v (%T), want %v", k, got.Properties[k], got.Properties[k], v)
		}
	}
	if _, ok := got.DriverInternalInfo[lookupBMCKey]; ok || got.PowerState != provisioner.PowerOff || got.LastError != "" {
		t.Errorf("after inspection: power %q, last_error %q, driver_internal_info %v", got.PowerState, got.LastError, got.DriverInternalInfo)
	}
	if _, prepared := b.state(); prepared {
		t.Errorf("ramdisk boot configuration left after inspection")
	}
	ports, err := h.st.Ports(t.Context(), store.PortFilter{NodeUUID: n.UUID})
	if err != nil {
		t.Fatal(err)
	}
	pxe := map[string]bool{}
	for _, pt := range ports {
		pxe[pt.Address.String()] = pt.PXEEnabled
	}
	if len(ports) != 2 || !pxe["52:54:00:aa:00:01"] || pxe["52:54:00:aa:00:02"] {
		t.Errorf("ports (mac: pxe_enabled) %v, want 52:54:00:aa:00:01 pxe and :02 not", pxe)
	}
	inv, err := h.c.Inventory(t.Context(), n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]any
	if err := json.Unmarshal(inv.Inventory, &stored); err != nil || stored["bmc_address"] != "192.0.2.10" {
		t.Errorf("stored inventory %s: %v", inv.Inventory, err)
	}
	if !strings.Contains(string(inv.PluginData), `"boot_interface":"01-52-54-00-aa-00-01"`) || strings.Contains(string(inv.PluginData), `"inventory"`) {
		t.Errorf("stored plugin data %s", inv.PluginData)
	}

	if _, err := h.c.ContinueInspection(t.Context(), postedData(t, "192.0.2.10")); KindOf(err) != KindNotFound {
		t.Fatalf("post for a node no longer waiting: %v, want not found", err)
	}
	other := inspectableNode(t, h, "192.0.2.11")
	if _, err := h.c.Inventory(t.Context(), other.UUID); KindOf(err) != KindNotFound ||
		err.Error() != "Node inventory for node "+other.UUID+" could not be found." {
		t.Errorf("inventory of a node never inspected: %v", err)
	}
}

// TestAgentInspectBMCLookupAmbiguous: two nodes waiting behind the same BMC
// address, neither with ports: Ironic cannot tell them apart and answers
// the generic 404.
func TestAgentInspectBMCLookupAmbiguous(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), inspectTypes(t, p, &recordingBoot{}), nil)
	for range 2 {
		n := inspectableNode(t, h, "192.0.2.20")
		if err := h.c.Provision(t.Context(), n.UUID, "inspect", ProvisionOptions{}); err != nil {
			t.Fatal(err)
		}
		waitState(t, h.st, n.UUID, provisioner.StateInspectWait)
	}
	if _, err := h.c.ContinueInspection(t.Context(), postedData(t, "192.0.2.20")); KindOf(err) != KindNotFound {
		t.Fatalf("ambiguous BMC lookup: %v, want not found", err)
	}
}

// TestAgentInspectTimeoutAndAbort: a node left in inspect wait past
// inspect_wait_timeout fails with Ironic's message, powered off, the
// ramdisk configuration removed; inspect again from inspect failed, then
// abort, fails it with the abort message.
func TestAgentInspectTimeoutAndAbort(t *testing.T) {
	p := &testPower{}
	b := &recordingBoot{}
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	h := start(t, openStore(t, ":memory:"), inspectTypes(t, p, b),
		func(c *Config) { c.InspectWaitTimeout, c.Now = time.Minute, clock.Now })
	n := inspectableNode(t, h, "192.0.2.30")
	if err := h.c.Provision(t.Context(), n.UUID, "inspect", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, h.st, n.UUID, provisioner.StateInspectWait)
	clock.Advance(time.Minute - time.Second)
	h.c.CheckTimeouts(t.Context())
	if got, _ := h.st.Node(t.Context(), n.UUID); got.ProvisionState != provisioner.StateInspectWait {
		t.Fatalf("failed before the timeout: %s %q", got.ProvisionState, got.LastError)
	}
	clock.Advance(time.Second)
	h.c.CheckTimeouts(t.Context())
	got := waitState(t, h.st, n.UUID, provisioner.StateInspectFailed)
	if got.LastError != "timeout reached while inspecting the node" || got.PowerState != provisioner.PowerOff {
		t.Errorf("after the timeout: last_error %q, power %q", got.LastError, got.PowerState)
	}
	if _, prepared := b.state(); prepared {
		t.Errorf("ramdisk boot configuration left after the timeout")
	}

	if err := h.c.Provision(t.Context(), n.UUID, "inspect", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, h.st, n.UUID, provisioner.StateInspectWait)
	if err := h.c.Provision(t.Context(), n.UUID, "abort", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	got = waitState(t, h.st, n.UUID, provisioner.StateInspectFailed)
	if got.LastError != "Inspection was aborted by request." {
		t.Errorf("after abort: last_error %q", got.LastError)
	}
	if _, prepared := b.state(); prepared {
		t.Errorf("ramdisk boot configuration left after abort")
	}
}

// TestInspectValidatesPower: inspect validates the power interface
// synchronously, as Ironic's inspect_hardware: refused with its reason,
// the node untouched.
func TestInspectValidatesPower(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), inspectTypes(t, p, &recordingBoot{}), nil)
	n := inspectableNode(t, h, "192.0.2.40")
	h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error {
		delete(n.DriverInfo, "address")
		return nil
	})
	err := h.c.Provision(t.Context(), n.UUID, "inspect", ProvisionOptions{})
	if KindOf(err) != KindInvalid || !strings.Contains(err.Error(), "Missing the following IPMI credentials") {
		t.Fatalf("inspect without power credentials: %v", err)
	}
	if got, _ := h.st.Node(t.Context(), n.UUID); got.ProvisionState != provisioner.StateManageable || got.Reservation != "" {
		t.Errorf("refused inspect changed the node: %s %q", got.ProvisionState, got.Reservation)
	}
}

func TestInspectedProperties(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inv     string
		plugin  string
		want    map[string]any
		wantErr string
	}{
		{"memory total, smallest disk", `{"cpu": {"count": 4, "architecture": "x86_64"}, "memory": {"total": 2147483648},
			"disks": [{"size": 5368709120}, {"size": 3221225472}]}`, `{}`,
			map[string]any{"cpus": int64(4), "cpu_arch": "x86_64", "memory_mb": int64(2048), "local_gb": int64(2)}, ""},
		{"disk under a GiB", `{"cpu": {"count": 1}, "memory": {"physical_mb": 512}, "disks": [{"size": 67108864}]}`, `{}`,
			map[string]any{"cpus": int64(1), "memory_mb": int64(512), "local_gb": int64(0)}, ""},
		{"no disks", `{"memory": {"physical_mb": 512}}`, `{}`,
			map[string]any{"memory_mb": int64(512), "local_gb": int64(0)}, ""},
		{"no memory", `{"cpu": {"count": 1}, "memory": {}}`, `{}`, nil, "No information about memory"},
		{"garbage", `{"cpu": "x", "memory": [1], "disks": {"a": 1}}`, `{"root_disk": 7}`, nil, "No information about memory"},
	} {
		var d InspectionData
		if err := json.Unmarshal([]byte(tc.inv), &d.Inventory); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(tc.plugin), &d.PluginData); err != nil {
			t.Fatal(err)
		}
		got, err := inspectedProperties(d)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.name, k, got[k], v)
			}
		}
	}
}
