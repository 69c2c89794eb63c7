package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"

	"github.com/metalbed/metalbed/testbed"
)

// requirePyghmi checks /usr/bin/python3 can import pyghmi.
func requirePyghmi(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import pyghmi.ipmi.command").Run(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("pyghmi not importable by %s: install the Debian package python3-pyghmi: %v", py, err))
	}
	return py
}

// upRun is one in-process `metalbed up`.
type upRun struct {
	dir            string
	cancel         context.CancelFunc
	done           chan error
	stdout, stderr *testenv.SyncBuffer
	inv            testbed.Inventory
}

// startUp runs `metalbed up --no-provisioner --bmc-base-port 0` on dir and
// waits for the ready line.
func startUp(t *testing.T, dir string, extra ...string) *upRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	u := &upRun{dir: dir, cancel: cancel, done: make(chan error, 1), stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}}
	args := append([]string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--state-dir", dir, "--bmc-base-port", "0"}, extra...)
	go func() { u.done <- Run(ctx, args, u.stdout, u.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-u.done
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(u.stdout.String(), "\n") {
		select {
		case err := <-u.done:
			t.Fatalf("metalbed up ended before it was ready: %v\nstderr:\n%s", err, u.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("metalbed up not ready within 30s; stderr:\n%s", u.stderr)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "inventory.json"))
	if err != nil {
		t.Fatalf("ready but no inventory: %v", err)
	}
	if err := json.Unmarshal(b, &u.inv); err != nil {
		t.Fatalf("inventory.json: %v\n%s", err, b)
	}
	return u
}

// stop cancels the run as SIGINT does and checks it ended cleanly.
func (u *upRun) stop(t *testing.T) {
	t.Helper()
	u.cancel()
	select {
	case err := <-u.done:
		u.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("metalbed up ended with %v\nstderr:\n%s", err, u.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("metalbed up did not stop within 30s of cancel")
	}
}

func (u *upRun) node(t *testing.T, name string) testbed.InventoryNode {
	t.Helper()
	for _, n := range u.inv.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no %s in inventory %+v", name, u.inv)
	return testbed.InventoryNode{}
}

// ipmitool runs the real ipmitool against a node's BMC with a password
// file, as Ironic's ipmitool driver does.
func ipmitool(t *testing.T, n testbed.InventoryNode, iface string, suite string, args ...string) string {
	t.Helper()
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(n.BMC.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	full := []string{"-I", iface, "-H", n.BMC.Address, "-p", strconv.Itoa(n.BMC.Port), "-U", n.BMC.Username, "-f", pw, "-R", "3", "-N", "1"}
	full = append(full, "-L", "ADMINISTRATOR")
	if suite != "" {
		full = append(full, "-C", suite)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// machineState reads what a machine persisted: the simulated machine's
// own record of its power and boot flags.
func machineState(t *testing.T, dir, name string) (power, flags string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Power     string `json:"power"`
		BootFlags string `json:"boot_flags"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Power, st.BootFlags
}

func waitState(t *testing.T, dir, name, power string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := machineState(t, dir, name)
		if got == power {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: power %s, want %s", name, got, power)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConsole waits until a machine's console log holds every want.
func waitConsole(t *testing.T, path string, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		missing := ""
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q:\n%s", path, missing, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

func mustNotContain(t *testing.T, what, out string, bad ...string) {
	t.Helper()
	for _, w := range bad {
		if strings.Contains(out, w) {
			t.Errorf("%s: output has %q:\n%s", what, w, out)
		}
	}
}

func checkInventoryShape(t *testing.T, dir string, nodes int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "inventory.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Without the provisioner: the nodes, the machines' timeline and
	// fault endpoint, and the dashboard and the Redfish service when they
	// run.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatalf("inventory is not a JSON object: %v\n%s", err, b)
	}
	for k := range top {
		if k != "nodes" && k != "timeline" && k != "web" && k != "redfish" {
			t.Errorf("inventory has %q; want only nodes, timeline (and web, redfish)\n%s", k, b)
		}
	}
	var raw struct {
		Nodes   []map[string]json.RawMessage `json:"nodes"`
		Web     string                       `json:"web"`
		Redfish string                       `json:"redfish"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("inventory is not {\"nodes\": [...], \"web\": URL, \"redfish\": URL}: %v\n%s", err, b)
	}
	if w, ok := top["web"]; ok && !strings.HasPrefix(raw.Web, "http://") {
		t.Errorf("inventory web %s, want an http:// URL", w)
	}
	if r, ok := top["redfish"]; ok && !strings.HasPrefix(raw.Redfish, "http") {
		t.Errorf("inventory redfish %s, want a URL", r)
	}
	if len(raw.Nodes) != nodes {
		t.Fatalf("%d nodes in inventory, want %d", len(raw.Nodes), nodes)
	}
	macRE := regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`)
	for i, n := range raw.Nodes {
		for _, k := range []string{"name", "bmc", "macs", "disk"} {
			if _, ok := n[k]; !ok {
				t.Errorf("node %d lacks %q", i, k)
			}
		}
		var name string
		json.Unmarshal(n["name"], &name)
		if want := fmt.Sprintf("node-%d", i); name != want {
			t.Errorf("node %d named %q, want %q", i, name, want)
		}
		var bmc map[string]any
		json.Unmarshal(n["bmc"], &bmc)
		if len(bmc) != 4 || bmc["address"] != "127.0.0.1" || bmc["username"] != "admin" || bmc["password"] != "password" {
			t.Errorf("node %d bmc %v", i, bmc)
		}
		if p, ok := bmc["port"].(float64); !ok || p <= 0 || p > 65535 {
			t.Errorf("node %d bmc port %v", i, bmc["port"])
		}
		var macs []string
		json.Unmarshal(n["macs"], &macs)
		if len(macs) != 1 || !macRE.MatchString(macs[0]) {
			t.Errorf("node %d macs %v", i, macs)
		}
		var disk map[string]any
		json.Unmarshal(n["disk"], &disk)
		path, _ := disk["path"].(string)
		size, _ := disk["size_bytes"].(float64)
		fi, err := os.Stat(path)
		if len(disk) != 2 || err != nil || fi.Size() != int64(size) || size != 10<<30 {
			t.Errorf("node %d disk %v: %v", i, disk, err)
		}
	}
}

func TestUpEndToEnd(t *testing.T) {
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	py := requirePyghmi(t)
	dir := t.TempDir()
	u := startUp(t, dir, "--nodes", "3")

	lines := strings.Split(strings.TrimRight(u.stdout.String(), "\n"), "\n")
	if len(lines) != 1 || !regexp.MustCompile(`^metalbed: 3 machines up, BMCs on 127\.0\.0\.1:\d+ .* inventory .*inventory\.json$`).MatchString(lines[0]) {
		t.Errorf("ready line(s): %q", lines)
	}
	checkInventoryShape(t, dir, 3)
	n0, n1, n2 := u.node(t, "node-0"), u.node(t, "node-1"), u.node(t, "node-2")

	// ipmitool lanplus with cipher suites 3 and 17, as a deploy drives them.
	for _, c := range []struct {
		n     testbed.InventoryNode
		suite string
	}{{n0, "3"}, {n1, "17"}} {
		ipmi := func(args ...string) string { return ipmitool(t, c.n, "lanplus", c.suite, args...) }
		what := c.n.Name + " -C " + c.suite
		mustContain(t, what, ipmi("power", "status"), "Chassis Power is off")
		ipmi("raw", "0x00", "0x08", "0x03", "0x08")
		ipmi("chassis", "bootdev", "pxe")
		out := ipmi("chassis", "bootparam", "get", "5")
		mustContain(t, what+" bootdev pxe", out, "Force PXE")
		mustNotContain(t, what+" bootdev pxe", out, "Options apply to all future boots")
		if _, flags := machineState(t, dir, c.n.Name); flags != "8004000000" {
			t.Errorf("%s: machine stored flags %s, want 8004000000", what, flags)
		}
		ipmi("power", "on")
		waitState(t, dir, c.n.Name, "on")
		mustContain(t, what, ipmi("power", "status"), "Chassis Power is on")
		// The one-time override was consumed by that one power-on.
		out = ipmi("chassis", "bootparam", "get", "5")
		mustContain(t, what+" after power on", out, "No override")
		if _, flags := machineState(t, dir, c.n.Name); flags != "0000000000" {
			t.Errorf("%s: flags after one boot %s, want consumed", what, flags)
		}
		// A persistent override stays across boots.
		ipmi("chassis", "bootdev", "disk", "options=persistent")
		ipmi("power", "reset")
		ipmi("power", "cycle")
		out = ipmi("chassis", "bootparam", "get", "5")
		mustContain(t, what+" persistent", out, "Force Boot from default Hard-Drive", "Options apply to all future boots")
	}

	// Diagnostic interrupt reaches the running OS; a soft power-off is an
	// ACPI request the OS honours after a moment.
	ipmitool(t, n1, "lanplus", "17", "power", "diag")
	ipmitool(t, n1, "lanplus", "17", "power", "soft")
	waitState(t, dir, "node-1", "off")
	con, err := os.ReadFile(filepath.Join(dir, "node-1", "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "node-1 console", string(con), "metalbed SimBIOS", "NMI received", "ACPI: power button pressed", "reboot: Power down")

	// The exact command lines Ironic sends (UEFI boot device via raw).
	ironic := func(args ...string) string { return ipmitool(t, n2, "lanplus", "3", args...) }
	ironic("raw", "0x00", "0x08", "0x03", "0x08")
	ironic("raw", "0x00", "0x08", "0x05", "0xa0", "0x04", "0x00", "0x00", "0x00")
	mustContain(t, "ironic uefi pxe", ironic("chassis", "bootparam", "get", "5"), "Force PXE", "BIOS EFI boot")
	if _, flags := machineState(t, dir, "node-2"); flags != "a004000000" {
		t.Errorf("node-2 stored %s after Ironic's raw a0 04", flags)
	}
	ironic("power", "on")
	waitState(t, dir, "node-2", "on")
	// node-2 is configured bios; the override's EFI bit makes this boot UEFI.
	waitConsole(t, filepath.Join(dir, "node-2", "console.log"), "Boot mode: UEFI\r\n", "Booting from network (UEFI PXE)")
	ironic("power", "off")
	waitState(t, dir, "node-2", "off")
	mustContain(t, "no -C", ipmitool(t, n2, "lanplus", "", "power", "status"), "Chassis Power is off")
	mustContain(t, "-I lan (IPMI 1.5)", ipmitool(t, n2, "lan", "", "power", "status"), "Chassis Power is off")

	// pyghmi, as Ironic's pyghmi-based paths and vbmc users drive a BMC.
	script := `
import json, sys, time
from pyghmi.ipmi import command
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = command.Command(bmc=host, userid=user, password=pw, port=port)
out = {}
t = time.time(); out["power0"] = c.get_power()["powerstate"]; out["t_get_power"] = time.time() - t
t = time.time(); c.set_bootdev("network", persist=True); out["t_set_bootdev"] = time.time() - t
t = time.time(); bd = c.get_bootdev(); out["t_get_bootdev"] = time.time() - t
out["bootdev"], out["persistent"] = bd.get("bootdev"), bd.get("persistent")
t = time.time(); out["power1"] = c.set_power("on", wait=True)["powerstate"]; out["t_set_power"] = time.time() - t
bd = c.get_bootdev(); out["bootdev_after"], out["persistent_after"] = bd.get("bootdev"), bd.get("persistent")
print(json.dumps(out))
`
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	pyOut, err := exec.CommandContext(ctx, py, "-c", script, n2.BMC.Address, strconv.Itoa(n2.BMC.Port), n2.BMC.Username, n2.BMC.Password).CombinedOutput()
	if err != nil {
		t.Fatalf("pyghmi: %v\n%s", err, pyOut)
	}
	var pr map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(pyOut[bytes.LastIndexByte(bytes.TrimSpace(pyOut), '\n')+1:]), &pr); err != nil {
		t.Fatalf("pyghmi output: %v\n%s", err, pyOut)
	}
	if pr["power0"] != "off" || pr["power1"] != "on" || pr["bootdev"] != "network" || pr["persistent"] != true ||
		pr["bootdev_after"] != "network" || pr["persistent_after"] != true {
		t.Errorf("pyghmi saw %v", pr)
	}
	t.Logf("pyghmi call times (s): get_power %.3f set_bootdev %.3f get_bootdev %.3f set_power(wait) %.3f",
		pr["t_get_power"], pr["t_set_bootdev"], pr["t_get_bootdev"], pr["t_set_power"])
	waitState(t, dir, "node-2", "on")

	// Bytes an image writer put on node-0's disk.
	payload := []byte("metalbed keeps every disk byte")
	f, err := os.OpenFile(n0.Disk.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(payload, 5<<30); err != nil {
		t.Fatal(err)
	}
	f.Close()

	u.stop(t)
	// Every socket is closed: each BMC port can be bound again.
	for _, n := range u.inv.Nodes {
		c, err := net.ListenPacket("udp", net.JoinHostPort(n.BMC.Address, strconv.Itoa(n.BMC.Port)))
		if err != nil {
			t.Errorf("%s's BMC port still bound after stop: %v", n.Name, err)
			continue
		}
		c.Close()
	}

	// Restart on the same state dir: machines, power, flags, MACs and disk
	// kept. The old inventory is gone until the new one is written.
	u2 := startUp(t, dir, "--nodes", "3")
	checkInventoryShape(t, dir, 3)
	for _, n := range u.inv.Nodes {
		m := u2.node(t, n.Name)
		if fmt.Sprint(m.MACs) != fmt.Sprint(n.MACs) || m.Disk != n.Disk || m.UUID != n.UUID {
			t.Errorf("%s changed across restart: %+v -> %+v", n.Name, n, m)
		}
	}
	r0, r1, r2 := u2.node(t, "node-0"), u2.node(t, "node-1"), u2.node(t, "node-2")
	mustContain(t, "node-0 after restart", ipmitool(t, r0, "lanplus", "3", "power", "status"), "Chassis Power is on")
	mustContain(t, "node-1 after restart", ipmitool(t, r1, "lanplus", "17", "chassis", "bootparam", "get", "5"),
		"Force Boot from default Hard-Drive", "Options apply to all future boots")
	mustContain(t, "node-2 after restart", ipmitool(t, r2, "lanplus", "17", "power", "status"), "Chassis Power is on")
	mustContain(t, "node-1 after restart", ipmitool(t, r1, "lanplus", "17", "power", "status"), "Chassis Power is off")
	got := make([]byte, len(payload))
	f, err = os.Open(r0.Disk.Path)
	if err != nil {
		t.Fatal(err)
	}
	f.ReadAt(got, 5<<30)
	f.Close()
	if !bytes.Equal(got, payload) {
		t.Errorf("disk bytes after restart: %q", got)
	}
	u2.stop(t)
}

// TestUpBMCPerIP gives each BMC its own loopback address on port 623,
// which needs root (or CAP_NET_BIND_SERVICE).
func TestUpBMCPerIP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("--bmc-per-ip binds port 623: needs root")
	}
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	dir := t.TempDir()
	u := startUp(t, dir, "--nodes", "2", "--bmc-per-ip")
	for i, n := range u.inv.Nodes {
		want := fmt.Sprintf("127.0.1.%d", i+1)
		if n.BMC.Address != want || n.BMC.Port != 623 {
			t.Errorf("%s BMC at %s:%d, want %s:623", n.Name, n.BMC.Address, n.BMC.Port, want)
		}
		mustContain(t, n.Name, ipmitool(t, n, "lanplus", "17", "power", "status"), "Chassis Power is off")
	}
	if !strings.Contains(u.stdout.String(), "127.0.1.1:623 … 127.0.1.2:623") {
		t.Errorf("ready line %q", u.stdout.String())
	}
	u.stop(t)
}

// TestUpThousandBMCs runs 1 000 machines and BMCs in this test process and
// opens an RMCP+ session (go-ipmi's client, suite 17) with every one of them.
func TestUpThousandBMCs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 1 000 BMCs")
	}
	const n = 1000
	dir := t.TempDir()
	u := startUp(t, dir, "--nodes", strconv.Itoa(n), "--disk-size", "1MiB")
	if len(u.inv.Nodes) != n {
		t.Fatalf("%d nodes in inventory", len(u.inv.Nodes))
	}
	var (
		mu     sync.Mutex
		failed []string
	)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, node := range u.inv.Nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := nativeStatus(t.Context(), node); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s: %v", node.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d BMCs failed, first: %v", len(failed), n, failed[0])
	}
	for _, i := range []int{0, n / 2, n - 1} {
		mustContain(t, u.inv.Nodes[i].Name, ipmitool(t, u.inv.Nodes[i], "lanplus", "3", "power", "status"), "Chassis Power is off")
	}
	u.stop(t)
}

func TestUpPortInUse(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	var out, errb bytes.Buffer
	err = Run(t.Context(), []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--nodes", "2", "--state-dir", t.TempDir(),
		"--bmc-base-port", strconv.Itoa(port)}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "--bmc-base-port") {
		t.Errorf("port in use: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed a ready line although a BMC could not listen: %q", out.String())
	}
}

func TestUpInterruptedWhileStarting(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errb bytes.Buffer
	if err := Run(ctx, []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--nodes", "50", "--state-dir", t.TempDir(), "--bmc-base-port", "0"}, &out, &errb); err != nil {
		t.Errorf("interrupted start: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("ready line although interrupted: %q", out.String())
	}
}

func TestUpCorruptStateNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	u := startUp(t, dir, "--nodes", "2", "--disk-size", "1MiB")
	u.stop(t)
	bad := filepath.Join(dir, "node-1", "state.json")
	if err := os.WriteFile(bad, []byte("{\"version\": 1, \"power\": "), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := Run(t.Context(), []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--nodes", "2", "--state-dir", dir, "--bmc-base-port", "0"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("corrupt state: %v, want an error naming %s", err, bad)
	}
	if fi, err := os.Stat(filepath.Join(dir, "node-1", "disk.img")); err != nil || fi.Size() != 1<<20 {
		t.Errorf("disk after a refused start: %v %v", fi, err)
	}
}

func TestUpStateDirLocked(t *testing.T) {
	dir := t.TempDir()
	u := startUp(t, dir, "--nodes", "1", "--disk-size", "1MiB")
	var out, errb bytes.Buffer
	err := Run(t.Context(), []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--nodes", "1", "--state-dir", dir, "--bmc-base-port", "0"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "in use by another metalbed") {
		t.Errorf("second up on the same state dir: %v", err)
	}
	u.stop(t)
	u2 := startUp(t, dir, "--nodes", "1") // the lock is released on stop
	u2.stop(t)
}

// TestUpSOLConsole: ipmitool sol activate streams the machine's serial
// console (the firmware's POST and boot failure) and what is typed echoes.
func TestUpSOLConsole(t *testing.T) {
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	dir := t.TempDir()
	u := startUp(t, dir, "--nodes", "1", "--disk-size", "1MiB")
	n := u.node(t, "node-0")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// ipmitool's stdout is a pipe here, so stdio would buffer the console
	// until exit: stdbuf (coreutils) makes it unbuffered.
	stdbuf := testenv.RequireTool(t, "stdbuf", "coreutils")
	cmd := exec.CommandContext(ctx, stdbuf, "-o0", bin, "-I", "lanplus", "-C", "17", "-H", n.BMC.Address, "-p", strconv.Itoa(n.BMC.Port),
		"-U", n.BMC.Username, "-P", n.BMC.Password, "sol", "activate")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	waitOutput := func(want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("SOL output lacks %q:\n%s", want, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOutput("SOL Session operational")
	ipmitool(t, n, "lanplus", "3", "power", "on")
	waitOutput("metalbed SimBIOS")
	waitOutput("No bootable device.")
	if _, err := stdin.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	waitOutput("hello\r\n")
	ipmitool(t, n, "lanplus", "3", "sol", "deactivate")
	u.stop(t)
}

func TestUpRemovesStaleInventory(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(stale, []byte(`{"nodes":[{"name":"old"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A start that fails (bad topology on disk: a machine's state is
	// corrupt) must not leave the stale inventory looking current.
	if err := os.MkdirAll(filepath.Join(dir, "node-0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node-0", "state.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := Run(t.Context(), []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--nodes", "1", "--state-dir", dir, "--bmc-base-port", "0"}, &out, &errb); err == nil {
		t.Fatal("started on a corrupt state")
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale inventory still there after a failed start: %v", err)
	}
}

func TestUpCallbackTimeoutFlag(t *testing.T) {
	var out, errb bytes.Buffer
	err := Run(t.Context(), []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--nodes", "1", "--state-dir", t.TempDir(), "--deploy-callback-timeout", "-5s"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--deploy-callback-timeout") {
		t.Fatalf("negative --deploy-callback-timeout: got %v, want a usage error naming the flag", err)
	}
}

func TestUpNetbootFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--netboot-dhcp", "127.0.0.1:6767"}, "--no-provisioner"},
		{[]string{"--no-provisioner", "--netboot-dhcp", "192.0.2.1:67"}, "loopback"},
		{[]string{"--no-provisioner", "--netboot-dhcp", "127.0.0.1"}, "loopback"},
		{[]string{"--no-provisioner", "--netboot-dhcp", "127.0.0.1:6767", "--netboot-tftp-port", "0"}, "--netboot-tftp-port"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--nodes", "1", "--state-dir", t.TempDir(), "--bmc-base-port", "0"}, c.args...)
		err := Run(t.Context(), args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("up %q: got %v, want an error naming %q", c.args, err, c.want)
		}
	}
}

// TestUpRedfish: `up` serves every machine over Redfish by default (HTTPS,
// the CA in the state dir, named by inventory.json), plain HTTP on
// request, none with --redfish-addr "".
func TestUpRedfish(t *testing.T) {
	for _, c := range []struct {
		name  string
		extra []string
		check func(t *testing.T, dir string, r *testbed.InventoryRedfish)
	}{
		{"https", nil, func(t *testing.T, dir string, r *testbed.InventoryRedfish) {
			if r == nil || !strings.HasPrefix(r.Address, "https://127.0.0.1:") || r.VerifyCA != filepath.Join(dir, "redfish-ca.pem") {
				t.Fatalf("redfish %+v", r)
			}
		}},
		{"plain-http", []string{"--redfish-plain-http"}, func(t *testing.T, _ string, r *testbed.InventoryRedfish) {
			if r == nil || !strings.HasPrefix(r.Address, "http://127.0.0.1:") || r.VerifyCA != false {
				t.Fatalf("redfish %+v", r)
			}
			req, _ := http.NewRequestWithContext(t.Context(), "GET", r.Address+r.SystemID, nil)
			req.SetBasicAuth(r.Username, r.Password)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("GET %s: %d", r.SystemID, resp.StatusCode)
			}
		}},
		{"off", []string{"--redfish-addr", ""}, func(t *testing.T, _ string, r *testbed.InventoryRedfish) {
			if r != nil {
				t.Fatalf("redfish %+v with --redfish-addr \"\"", r)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			u := startUp(t, dir, c.extra...)
			n := u.node(t, "node-0")
			if n.Redfish != nil && (n.Redfish.SystemID != "/redfish/v1/Systems/"+n.UUID || n.Redfish.Username != n.BMC.Username || n.Redfish.Password != n.BMC.Password) {
				t.Errorf("redfish %+v of node %+v", n.Redfish, n)
			}
			c.check(t, dir, n.Redfish)
			u.stop(t)
		})
	}
	var out, errb bytes.Buffer
	if err := Run(t.Context(), []string{"up", "--no-provisioner", "--redfish-addr", "nonsense", "--state-dir", t.TempDir()}, &out, &errb); err == nil {
		t.Error("--redfish-addr nonsense accepted")
	}
	// Real VMs cannot reach a DHCP server on loopback.
	err := Run(t.Context(), []string{"up", "--no-provisioner", "--backend", "libvirt", "--netboot-dhcp", "127.0.0.1:6767", "--state-dir", t.TempDir()}, &out, &errb)
	if ExitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), "boot network's namespace") {
		t.Errorf("--backend libvirt --netboot-dhcp: %v (exit %d), want a usage error pointing to the boot network", err, ExitCode(err))
	}
	// Enrolling with the redfish hardware type needs the Redfish service;
	// other hardware types are refused.
	for driver, args := range map[string][]string{
		"redfish": {"--redfish-addr", "", "needs the Redfish service"},
		"idrac":   {"want ipmi or redfish"},
	} {
		want := args[len(args)-1]
		err := Run(t.Context(), append([]string{"up", "--enroll", "--enroll-driver", driver, "--state-dir", t.TempDir()}, args[:len(args)-1]...), &out, &errb)
		if ExitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("--enroll-driver %s: %v (exit %d), want a usage error naming %q", driver, err, ExitCode(err), want)
		}
	}
}

// TestUpMachinesTimeline: `up --no-provisioner --timeline-addr` names its
// machines' timeline in its ready line and inventory.json, and `metalbed
// timeline` reads a machine's there (its first entry: the machine up, its
// BMC wired); without --timeline-addr there is none.
func TestUpMachinesTimeline(t *testing.T) {
	u := startUp(t, t.TempDir(), "--nodes", "1", "--timeline-addr", "127.0.0.1:0")
	if u.inv.Timeline == "" || !strings.Contains(u.stdout.String(), ", timeline "+u.inv.Timeline+",") {
		t.Fatalf("inventory timeline %q, ready line %q: want the machines' timeline named in both", u.inv.Timeline, u.stdout)
	}
	var out, errb bytes.Buffer
	if err := Run(t.Context(), []string{"timeline", "node-0", "--url", u.inv.Timeline}, &out, &errb); err != nil {
		t.Fatalf("metalbed timeline node-0: %v\n%s", err, errb.String())
	}
	mustContain(t, "metalbed timeline node-0", out.String(), "machine.up")
	mustContain(t, "metalbed timeline node-0", out.String(), "BMC wired")
	// Without --timeline-addr the endpoint (timeline and faults) is on a
	// free port; --timeline-addr "" turns it off.
	if plain := startUp(t, t.TempDir(), "--nodes", "1"); !strings.HasPrefix(plain.inv.Timeline, "http://127.0.0.1:") {
		t.Errorf("up --no-provisioner without --timeline-addr: timeline %q, want one on a free port", plain.inv.Timeline)
	}
	if off := startUp(t, t.TempDir(), "--nodes", "1", "--timeline-addr", ""); off.inv.Timeline != "" {
		t.Errorf("up --no-provisioner --timeline-addr \"\" names a timeline: %q", off.inv.Timeline)
	}
}
