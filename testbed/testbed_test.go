package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/metalbed/metalbed/internal/events"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// machines are n machines with BMCs on free loopback ports.
func machines(n int) []Machine {
	ms := make([]Machine, n)
	for i := range ms {
		name := "node-" + string(rune('0'+i))
		ms[i] = Machine{Name: name, MACs: []net.HardwareAddr{sim.MAC(name, 0, 0)}, DiskBytes: 64 << 20, BootMode: vms.BIOS,
			BMCAddress: "127.0.0.1", Username: "admin", Password: "password"}
	}
	return ms
}

// free puts every provisioner socket on a free loopback port.
func free() *Provisioner {
	const f = "127.0.0.1:0"
	return &Provisioner{APIAddr: f, TimelineAddr: f, DHCPAddr: f, TFTPAddr: f, HTTPAddr: f, NotifyDelay: -1}
}

func TestNewChecksConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []Config{
		{Machines: machines(1)},
		{StateDir: dir},
		{StateDir: dir, Machines: machines(1), Backend: "qemu"},
		{StateDir: dir, Machines: machines(1), Backend: "libvirt", ExternalDHCP: "127.0.0.1:6767"},
		{StateDir: dir, Machines: machines(1), Backend: "libvirt", Provisioner: free(), Libvirt: Libvirt{BootNetwork: "10.0.0.100/24"}},
		{StateDir: dir, Machines: machines(1), Enroll: true},
		{StateDir: dir, Machines: machines(1), ExternalDHCP: "10.0.0.1:67"},
		{StateDir: dir, Machines: machines(1), ExternalDHCP: "127.0.0.1:6767", Provisioner: free()},
		{StateDir: dir, Machines: machines(1), Provisioner: &Provisioner{DHCPRange: "10.0.0.1-10.0.0.9"}},
		{StateDir: dir, Machines: machines(1), Provisioner: &Provisioner{DHCPRange: "127.1.0.1"}},
		{StateDir: dir, Machines: machines(1), Provisioner: &Provisioner{DHCPAddr: "0.0.0.0:67"}},
		{StateDir: dir, Machines: machines(1), Provisioner: &Provisioner{CallbackTimeout: -time.Second}},
		{StateDir: dir, Machines: machines(1), Provisioner: free(), Enroll: true, EnrollDriver: "redfish"},
		{StateDir: dir, Machines: machines(1), Provisioner: free(), Enroll: true, EnrollDriver: "idrac", Redfish: &Redfish{}},
		{StateDir: dir, Machines: machines(1), Provisioner: free(), Enroll: true, BootInterface: "redfish-virtual-media"},
		{StateDir: dir, Machines: machines(1), Provisioner: free(), Enroll: true, BootInterface: "http"},
	} {
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", c, err)
		}
	}
	if _, err := New(Config{StateDir: dir, Machines: machines(1), Provisioner: free()}); err != nil {
		t.Errorf("a valid config: %v", err)
	}
}

// serve runs tb until the test ends and waits for Ready.
func serve(t *testing.T, tb *Testbed) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tb.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	select {
	case <-tb.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("Serve ended before Ready: %v", err)
	case <-time.After(5 * time.Minute): // the deploy ramdisk is built first
		t.Fatal("not ready")
	}
}

// TestServeMachinesOnly runs machines and BMCs without a provisioner: the
// inventory names them, with no API.
func TestServeMachinesOnly(t *testing.T) {
	dir := t.TempDir()
	ms := machines(2)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0") // a BMC socket opened by the caller
	if err != nil {
		t.Fatal(err)
	}
	ms[1].BMCConn = conn
	tb, err := New(Config{StateDir: dir, Machines: ms})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	b, err := os.ReadFile(filepath.Join(dir, InventoryFile))
	if err != nil {
		t.Fatal(err)
	}
	var inv Inventory
	if err := json.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	if len(inv.Nodes) != 2 || inv.API != "" || inv.Nodes[1].Name != "node-1" || inv.Nodes[0].BMC.Port == 0 || tb.APIURL() != "" ||
		inv.Nodes[1].BMC.Port != conn.LocalAddr().(*net.UDPAddr).Port {
		t.Errorf("inventory %s", b)
	}
	// The state directory is locked while the testbed runs.
	other, _ := New(Config{StateDir: dir, Machines: machines(1)})
	if err := other.Serve(t.Context()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second testbed on the same state dir: %v", err)
	}
}

// TestConductorKillRestarts kills the conductor with a conductor fault:
// the same service serves again on the same API socket, and the restart is
// in the node's timeline.
func TestConductorKillRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deploy ramdisk")
	}
	p := free()
	api, err := net.Listen("tcp", "127.0.0.1:0") // opened by the caller
	if err != nil {
		t.Fatal(err)
	}
	p.Listeners.API = api
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: p, Enroll: true})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	if tb.APIURL() != "http://"+api.Addr().String() {
		t.Errorf("API %s, listener %s", tb.APIURL(), api.Addr())
	}
	if tb.NodeUUIDs()["node-0"] == "" {
		t.Fatalf("not enrolled: %v", tb.NodeUUIDs())
	}
	rule, _ := json.Marshal(fault.Rule{Node: "node-0", Layer: fault.Conductor, Op: "now", Action: "kill", Count: 1})
	res, err := http.Post(tb.TimelineURL()+"/v1/faults", "application/json", bytes.NewReader(rule))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/faults: %s", res.Status)
	}
	deadline := time.Now().Add(time.Minute)
	for !hasKind(tb, "node-0", "conductor.restart") {
		if time.Now().After(deadline) {
			t.Fatalf("no conductor.restart in %+v", tb.Timeline().Node("node-0"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		n, err := NewClient(tb.APIURL()).Node(ctx, "node-0")
		if err == nil && n.ProvisionState == "enroll" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("API after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !hasKind(tb, "node-0", "fault.conductor.kill") {
		t.Errorf("no fault.conductor.kill in %+v", tb.Timeline().Node("node-0"))
	}
}

func hasKind(tb *Testbed, node string, kind events.Kind) bool {
	for _, e := range tb.Timeline().Node(node) {
		if e.Kind == kind {
			return true
		}
	}
	return false
}
