package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
)

// TestEnrollRedfishDriver enrolls a machine with metalbed's redfish
// hardware type against the testbed's Redfish service over HTTPS (verified
// with the state dir's CA): validation passes, "manage" reads the power
// state over Redfish, power on and off reach the machine, and a persistent
// pxe boot device shows in the boot flags IPMI reads.
func TestEnrollRedfishDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deploy ramdisk")
	}
	dir := t.TempDir()
	tb, err := New(Config{StateDir: dir, Machines: machines(1), Provisioner: free(), Enroll: true, EnrollDriver: "redfish",
		Redfish: &Redfish{Addr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := NewClient(tb.APIURL())
	id := tb.NodeUUIDs()["node-0"]
	if id == "" {
		t.Fatalf("not enrolled: %v", tb.NodeUUIDs())
	}
	var node struct {
		Driver              string         `json:"driver"`
		PowerInterface      string         `json:"power_interface"`
		ManagementInterface string         `json:"management_interface"`
		BootInterface       string         `json:"boot_interface"`
		DriverInfo          map[string]any `json:"driver_info"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id, nil, &node); err != nil {
		t.Fatal(err)
	}
	inv := tb.Inventory().Nodes[0].Redfish
	di := node.DriverInfo
	if node.Driver != "redfish" || node.PowerInterface != "redfish" || node.ManagementInterface != "redfish" ||
		node.BootInterface != DefaultBootInterface() ||
		di["redfish_address"] != tb.RedfishURL() || di["redfish_system_id"] != inv.SystemID ||
		di["redfish_username"] != "admin" || di["redfish_password"] != "******" ||
		di["redfish_verify_ca"] != filepath.Join(dir, "redfish-ca.pem") || di["ipmi_address"] != nil {
		t.Errorf("node %+v", node)
	}
	var val map[string]struct {
		Result *bool  `json:"result"`
		Reason string `json:"reason"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id+"/validate", nil, &val); err != nil {
		t.Fatal(err)
	}
	for _, iface := range []string{"power", "management"} {
		if r := val[iface]; r.Result == nil || !*r.Result {
			t.Errorf("validate %s: %+v", iface, r)
		}
	}

	if err := c.Provision(ctx, id, "manage"); err != nil {
		t.Fatal(err)
	}
	n, err := c.WaitState(ctx, id, "manageable", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.PowerState == nil || *n.PowerState != "power off" {
		t.Errorf("power state after manage: %v (last_error %q)", n.PowerState, n.lastError())
	}

	m := tb.fleet.nodes[0].machine
	machinePower := func() vms.PowerState {
		st, err := m.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	power := func(target string, want vms.PowerState) {
		t.Helper()
		if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/power", map[string]any{"target": target}, nil); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		testenv.Eventually(t, time.Minute, func() bool {
			n, err := c.Node(ctx, id)
			return err == nil && n.PowerState != nil && *n.PowerState == target
		}, "the node to report %s", target)
		if st := machinePower(); st != want {
			t.Errorf("after %s the machine is %v", target, st)
		}
	}

	if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/management/boot_device",
		map[string]any{"boot_device": "pxe", "persistent": true}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := m.BootFlags(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Valid() || !f.Persistent() || f.Device() != vms.BootPXE || f.EFI() {
		t.Errorf("boot flags after a persistent pxe over Redfish: % x", f)
	}
	var bd struct {
		BootDevice string `json:"boot_device"`
		Persistent bool   `json:"persistent"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id+"/management/boot_device", nil, &bd); err != nil {
		t.Fatal(err)
	}
	if bd.BootDevice != "pxe" || !bd.Persistent {
		t.Errorf("boot device %+v", bd)
	}

	// boot mode set (API 1.76) through the redfish management interface:
	// the BMC's override mode changes and the node records it.
	if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/boot_mode", map[string]any{"target": "uefi"}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() bool {
		var bm struct {
			BootMode  *string `json:"boot_mode"`
			LastError *string `json:"last_error"`
		}
		err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id, nil, &bm)
		if err == nil && bm.LastError != nil && *bm.LastError != "" {
			t.Fatalf("boot mode set: %s", *bm.LastError)
		}
		return err == nil && bm.BootMode != nil && *bm.BootMode == "uefi"
	}, "boot_mode uefi on the node")
	if f, err := m.BootFlags(ctx); err != nil || !f.EFI() {
		t.Errorf("boot flags after boot mode set uefi: % x (%v)", f, err)
	}
	if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/boot_mode", map[string]any{"target": "bios"}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() bool {
		f, err := m.BootFlags(ctx)
		return err == nil && !f.EFI()
	}, "the legacy boot mode back on the BMC")

	power("power on", vms.PowerOn)
	// An iDRAC-like BMC refuses power-on for 3 s after a power-off (409):
	// the driver's retries outlast it.
	rule, _ := json.Marshal(fault.Rule{Node: "node-0", Layer: fault.Redfish, Op: "power-off", Action: "power-on-conflict", Arg: "3", Count: 1})
	res, err := http.Post(tb.TimelineURL()+"/v1/faults", "application/json", bytes.NewReader(rule))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/faults: %s", res.Status)
	}
	power("power off", vms.PowerOff)
	power("power on", vms.PowerOn)
	if !hasKind(tb, "node-0", "fault.redfish.power-on-conflict") {
		t.Errorf("the 409 fault did not fire: %+v", tb.Timeline().Node("node-0"))
	}
	power("power off", vms.PowerOff)
	if !hasKind(tb, "node-0", events.BMCRedfishReset) || !hasKind(tb, "node-0", events.BMCRedfishBoot) {
		t.Errorf("no Redfish reset and boot in the timeline: %+v", tb.Timeline().Node("node-0"))
	}
}

// TestRedfishDriverDirectDeploy deploys a simulated machine to active
// through the redfish hardware type (power and boot device over Redfish,
// plain HTTP), the agent's direct deploy and the PXE/iPXE boot servers.
func TestRedfishDriverDirectDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys a machine")
	}
	nodes := []DemoNode{{Mode: vms.BIOS, Option: "local", Deploy: "direct", What: "agent deploy through redfish, local boot (bios)"}}
	tb, err := New(Config{StateDir: t.TempDir(), Machines: DemoMachines(nodes, false), Provisioner: free(),
		Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	b := tb.provisioner()
	specs := tb.fleet.enrollSpecs(b, "", "redfish", tb.redfish)
	specs[0].deployInterface = "direct"
	uuids, err := b.enroll(t.Context(), specs)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tb.BuildDemoImage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if r := demoDeploy(ctx, NewClient(tb.APIURL()), tb.Timeline(), "node-0", uuids["node-0"], nodes[0], img, nil); r.Err != nil {
		t.Fatalf("deploy: %v", r.Err)
	}
	var n struct {
		Driver         string `json:"driver"`
		ProvisionState string `json:"provision_state"`
	}
	if err := NewClient(tb.APIURL()).Do(ctx, http.MethodGet, "/v1/nodes/node-0", nil, &n); err != nil {
		t.Fatal(err)
	}
	if n.Driver != "redfish" || n.ProvisionState != "active" {
		t.Errorf("node %+v", n)
	}
	if !hasKind(tb, "node-0", events.BMCRedfishReset) || !hasKind(tb, "node-0", events.BMCRedfishBoot) {
		t.Errorf("no Redfish reset and boot in the timeline")
	}
	checkGrubInstalled(t, tb, "node-0", events.AgentBootloader, disk.BootModeBIOS)
}

// checkGrubInstalled checks what a local-boot deploy's bootloader step
// installed on a simulated machine: the deploy ramdisk (DeployImages)
// carries GRUB 2 when this host has grub-mkimage, so GRUB is on the
// machine's disk and the timeline and console name it; without GRUB the
// timeline holds the fallback to the placeholder.
func checkGrubInstalled(t *testing.T, tb *Testbed, node string, kind events.Kind, mode string) {
	t.Helper()
	var detail string
	fallback := false
	for _, e := range tb.Timeline().Node(node) {
		switch e.Kind {
		case kind:
			detail = e.Detail
		case events.RamdiskBootloaderFallback, events.AgentBootloaderFallback:
			fallback = true
		}
	}
	var in InventoryNode
	for _, n := range tb.Inventory().Nodes {
		if n.Name == node {
			in = n
		}
	}
	con, _ := os.ReadFile(in.ConsoleLog)
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		if !fallback {
			t.Errorf("no GRUB on this host and no bootloader fallback in the timeline")
		}
		return
	}
	if detail != mode+" GRUB 2" || fallback || !bytes.Contains(con, []byte("boot loader on /dev/vda (root ")) || !bytes.Contains(con, []byte("GRUB 2")) {
		t.Errorf("%s = %q, fallback %v; console:\n%s", kind, detail, fallback, con)
	}
	f, err := os.Open(in.Disk.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ins, err := disk.Inspect(f, in.Disk.SizeBytes)
	if err != nil {
		t.Fatal(err)
	}
	if (mode == disk.BootModeBIOS && ins.BootLoader != "grub") || (mode == disk.BootModeUEFI && !ins.ESPLoaderGrub) {
		t.Errorf("%s's disk: MBR loader %q, ESP GRUB %v; want GRUB 2 for %s", node, ins.BootLoader, ins.ESPLoaderGrub, mode)
	}
}
