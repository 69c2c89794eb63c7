package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"

	"github.com/metalbed/metalbed/testbed"
)

// requireBootLoaders skips (or, with METALBED_INTEROP=required, fails)
// when the boot programs the pxe boot interface copies into the TFTP root
// are missing.
func requireBootLoaders(t *testing.T) {
	t.Helper()
	for _, f := range []struct{ path, pkg string }{
		{"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
		{"/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
		{"/usr/lib/ipxe/ipxe.efi", "ipxe"},
	} {
		testenv.RequireFile(t, f.path, f.pkg)
	}
}

// TestDemo runs `metalbed demo` as a user does: four machines deployed
// at once (iSCSI netboot bios, local boot bios, local boot uefi; the agent
// booted from Redfish virtual media, bios), every instance booted, then
// undeployed. It fails if any instance does not boot.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo deploys four machines")
	}
	requireBootLoaders(t)
	out, errb := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	err := Run(ctx, []string{"demo", "--state-dir", dir, "--log-level", "warn"}, out, errb)
	s := out.String()
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, s, errb)
	}
	if !strings.Contains(s, "4 of 4 instances booted") || strings.Contains(s, "FAILED") {
		t.Errorf("demo output:\n%s", s)
	}
	// The phase table: one row per node, every phase reached (the netboot
	// node installs no bootloader), no line past 120 runes.
	num := `\s+\d+\.\d\d?`
	for _, row := range []struct{ node, what string }{
		{"node-0", `iSCSI, netboot, bios(` + num + `){5}\s+-(` + num + `){3}\s+booted`},
		{"node-1", `iSCSI, local, bios(` + num + `){9}\s+booted`},
		{"node-2", `iSCSI, local, uefi(` + num + `){9}\s+booted`},
		{"node-3", `agent, Redfish CD, bios(` + num + `){9}\s+booted`},
	} {
		if !regexp.MustCompile(`(?m)^` + row.node + `\s+` + row.what + `$`).MatchString(s) {
			t.Errorf("no complete phase row for %s:\n%s", row.node, s)
		}
	}
	from, to := strings.Index(s, "NODE    DEPLOY"), strings.Index(s, "`metalbed up`)")
	if from < 0 || to < from {
		t.Fatalf("no phase table:\n%s", s)
	}
	for _, l := range strings.Split(s[from:to], "\n") {
		if n := utf8.RuneCountInString(l); n > 120 {
			t.Errorf("table line of %d runes: %q", n, l)
		}
	}
	if n := strings.Count(s, "available again in"); n != 4 || strings.Count(s, "wiped the partition tables") != 4 {
		t.Errorf("%d nodes undeployed, want 4:\n%s", n, s)
	}
	// Undeploy cleaned: no disk holds a partition table any more.
	for i := range 4 {
		path := filepath.Join(dir, fmt.Sprintf("node-%d", i), "disk.img")
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ins, err := disk.Inspect(f, testbed.DemoMachines(testbed.DemoNodes(false), false)[i].DiskBytes)
		f.Close()
		if err != nil || ins.BootSignature || len(ins.Layout.Partitions) != 0 {
			t.Errorf("%s after undeploy: %+v, %v", path, ins, err)
		}
	}
}

// startLongUp skips a -short run (why says what takes long), needs the
// boot loaders, and starts a provisioned `metalbed up` in a new state
// directory (u.dir).
func startLongUp(t *testing.T, why string, extra ...string) *upRun {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
	requireBootLoaders(t)
	return startProvisionedUp(t, t.TempDir(), extra...)
}

// startProvisionedUp runs `metalbed up --enroll` with every port free and
// waits for its ready line.
func startProvisionedUp(t *testing.T, dir string, extra ...string) *upRun {
	t.Helper()
	args := []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--enroll", "--state-dir", dir, "--bmc-base-port", "0", "--api-addr", "127.0.0.1:0",
		"--dhcp-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--timeline-addr", "127.0.0.1:0", "--notify-delay", "100ms"}
	return startUpArgs(t, dir, append(args, extra...)...)
}

// startUpArgs runs `metalbed ARGS…` (up on state dir dir) and waits for its
// ready line.
func startUpArgs(t *testing.T, dir string, args ...string) *upRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	u := &upRun{dir: dir, cancel: cancel, done: make(chan error, 1), stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}}
	go func() { u.done <- Run(ctx, args, u.stdout, u.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-u.done
	})
	deadline := time.Now().Add(5 * time.Minute) // the deploy ramdisk is built first
	for !strings.Contains(u.stdout.String(), "\n") {
		select {
		case err := <-u.done:
			t.Fatalf("metalbed up ended before it was ready: %v\nstderr:\n%s", err, u.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("metalbed up not ready in time; stderr:\n%s", u.stderr)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, testbed.InventoryFile))
	if err != nil {
		t.Fatalf("ready but no inventory: %v", err)
	}
	if err := json.Unmarshal(b, &u.inv); err != nil {
		t.Fatalf("inventory.json: %v\n%s", err, b)
	}
	return u
}

// baremetal runs the real python-ironicclient CLI against api.
func baremetal(t *testing.T, api string, args ...string) string {
	t.Helper()
	bin := testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "OS_AUTH_TYPE=none", "OS_ENDPOINT="+api)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("baremetal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// showNode is `baremetal node show NODE -f json`.
func showNode(t *testing.T, api, node string) map[string]any {
	t.Helper()
	var n map[string]any
	out := baremetal(t, api, "node", "show", node, "-f", "json")
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		t.Fatalf("node show: %v\n%s", err, out)
	}
	return n
}

// makeAvailable moves node from enroll to available as an operator does.
func makeAvailable(t *testing.T, api, node string) {
	t.Helper()
	baremetal(t, api, "node", "manage", node, "--wait", "60")
	waitProvision(t, api, node, "manageable", time.Minute)
	baremetal(t, api, "node", "provide", node, "--wait", "300")
	waitProvision(t, api, node, "available", 5*time.Minute)
}

// waitProvision polls `baremetal node show` until the node rests in want.
func waitProvision(t *testing.T, api, node, want string, within time.Duration) map[string]any {
	t.Helper()
	return waitNode(t, api, node, want, within, func(n map[string]any) bool {
		if n["provision_state"] == want && n["target_provision_state"] == nil {
			return true
		}
		if s, _ := n["provision_state"].(string); strings.HasSuffix(s, "failed") {
			t.Fatalf("%s: %s: %v", node, s, n["last_error"])
		}
		return false
	})
}

// waitNode polls `baremetal node show` until there says the node is where
// the test wants it (want names that place); there fails the test for a
// state the node will not leave.
func waitNode(t *testing.T, api, node, want string, within time.Duration, there func(n map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := showNode(t, api, node)
		if there(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %v (target %v) after %s, want %s", node, n["provision_state"], n["target_provision_state"], within, want)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestUpEnrollBaremetalCLI is issue 4's "done when" and issue 5's part 9:
// `metalbed up --nodes 2 --enroll`, both nodes walked from enroll to
// available with the real baremetal CLI, then node-1 deployed with
// `baremetal node set --instance-info` and `baremetal node deploy` (local
// boot) until its instance boots on the machine's console.
func TestUpEnrollBaremetalCLI(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	u := startLongUp(t, "deploys a machine", "--nodes", "2")
	api := u.inv.API
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+$`).MatchString(api) || u.inv.Timeline == "" {
		t.Fatalf("inventory api %q timeline %q", api, u.inv.Timeline)
	}
	if line := u.stdout.String(); !strings.Contains(line, "(enrolled)") || !strings.Contains(line, "API "+api) {
		t.Errorf("ready line %q", line)
	}

	for _, n := range u.inv.Nodes {
		node := showNode(t, api, n.Name)
		di, _ := node["driver_info"].(map[string]any)
		if node["provision_state"] != "enroll" || node["driver"] != "ipmi" || di["ipmi_address"] != n.BMC.Address ||
			fmt.Sprint(di["ipmi_port"]) != fmt.Sprint(n.BMC.Port) || node["deploy_interface"] != "iscsi" {
			t.Errorf("enrolled %s: %v", n.Name, node)
		}
		ports := baremetal(t, api, "port", "list", "--node", n.Name, "-f", "value", "-c", "Address")
		if strings.TrimSpace(ports) != n.MACs[0] {
			t.Errorf("%s ports %q, want %s", n.Name, ports, n.MACs[0])
		}
	}
	for _, n := range u.inv.Nodes {
		makeAvailable(t, api, n.Name)
	}

	img, err := disk.Build(t.Context(), disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(t.TempDir(), "part.img"), Hostname: "cli-deployed"})
	if err != nil {
		t.Fatal(err)
	}
	node := u.inv.Nodes[1]
	baremetal(t, api, "node", "set", node.Name,
		"--instance-info", "image_source="+img.Path,
		"--instance-info", "image_checksum="+img.MD5,
		"--instance-info", "root_gb=1",
		"--instance-info", `capabilities={"boot_option": "local"}`)
	baremetal(t, api, "node", "deploy", node.Name)
	shown := waitProvision(t, api, node.Name, "active", 10*time.Minute)
	if shown["power_state"] != "power on" {
		t.Errorf("active node power %v", shown["power_state"])
	}
	want := "metalbed-instance: booted cli-deployed root=PARTUUID=" // grub.cfg probes the root partition's PARTUUID
	deadline := time.Now().Add(time.Minute)
	for {
		con, _ := os.ReadFile(node.ConsoleLog)
		if strings.Contains(string(con), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console of %s lacks %q:\n%s", node.Name, want, con)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}

	// Its serial console, as a user reaches it: `baremetal node console
	// enable`, the tcp:// URL `console show` gives, keystrokes echoed back
	// over the BMC's SOL.
	baremetal(t, api, "node", "console", "enable", node.Name)
	var cons struct {
		Enabled bool           `json:"console_enabled"`
		Info    map[string]any `json:"console_info"`
	}
	if err := json.Unmarshal([]byte(baremetal(t, api, "node", "console", "show", node.Name, "-f", "json")), &cons); err != nil {
		t.Fatal(err)
	}
	curl, _ := cons.Info["url"].(string)
	if !cons.Enabled || !strings.HasPrefix(curl, "tcp://127.0.0.1:") {
		t.Fatalf("console show: %+v", cons)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(curl, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	var echo testenv.SyncBuffer
	go io.Copy(&echo, conn)
	testenv.Eventually(t, 30*time.Second, func() bool {
		if strings.Contains(echo.String(), "cli-ping") {
			return true
		}
		conn.Write([]byte("cli-ping\r"))
		return false
	}, "keystrokes echoed over the console URL")
	conn.Close()
	baremetal(t, api, "node", "console", "disable", node.Name)

	// Its timeline, as `metalbed timeline NODE --json` prints it, holds
	// the deploy's milestones from every source.
	var tout, terr testenv.SyncBuffer
	if err := Run(t.Context(), []string{"timeline", node.Name, "--json", "--state-dir", u.dir}, &tout, &terr); err != nil {
		t.Fatalf("timeline: %v %s", err, terr.String())
	}
	var doc testbed.TimelineDoc
	if err := json.Unmarshal([]byte(tout.String()), &doc); err != nil {
		t.Fatalf("timeline --json: %v\n%s", err, tout.String())
	}
	kinds := map[string]bool{}
	for _, e := range doc.Entries {
		kinds[string(e.Kind)] = true
	}
	for _, k := range []string{"bmc.chassis_control", "dhcp.ack", "tftp.file", "ramdisk.up", "iscsi.login",
		"conductor.image_written", "ramdisk.bootloader", "conductor.active", "instance.booted"} {
		if !kinds[k] {
			t.Errorf("timeline of %s lacks %s; kinds %v", node.Name, k, kinds)
		}
	}
	if doc.Node != node.Name {
		t.Errorf("timeline node %q", doc.Node)
	}
	// The other node was never deployed: it stayed available and off.
	if other := showNode(t, api, u.inv.Nodes[0].Name); other["provision_state"] != "available" {
		t.Errorf("%s: %v", u.inv.Nodes[0].Name, other["provision_state"])
	}
	uuid, _ := shown["uuid"].(string)
	u.stop(t)

	// With nothing running on the state dir, `metalbed timeline` reads
	// timeline.jsonl: the same entries, found by the node's UUID too.
	var offline, oerr testenv.SyncBuffer
	if err := Run(t.Context(), []string{"timeline", uuid, "--json", "--state-dir", u.dir}, &offline, &oerr); err != nil {
		t.Fatalf("timeline of a stopped testbed: %v %s", err, oerr.String())
	}
	var after testbed.TimelineDoc
	if err := json.Unmarshal([]byte(offline.String()), &after); err != nil {
		t.Fatalf("timeline --json of a stopped testbed: %v\n%s", err, offline.String())
	}
	if after.Node != node.Name || len(after.Entries) < len(doc.Entries) {
		t.Errorf("stopped testbed's timeline of %s: node %q, %d entries, want %s and at least %d", uuid, after.Node, len(after.Entries), node.Name, len(doc.Entries))
	}
}

// TestUpEnrollAgainKeepsNodes restarts `up --enroll` on the same state
// dir: the node keeps its UUID and state, and its driver_info follows the
// BMC to its new (free) port; the deploy images are reused.
func TestUpEnrollAgainKeepsNodes(t *testing.T) {
	dir := t.TempDir()
	u := startProvisionedUp(t, dir, "--nodes", "1")
	api := testbed.NewClient(u.inv.API)
	first, err := api.Node(t.Context(), "node-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Provision(t.Context(), first.UUID, "manage"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := api.WaitState(ctx, first.UUID, "manageable", nil); err != nil {
		t.Fatal(err)
	}
	ramdisk := filepath.Join(dir, "provisioner", "images", testbed.DeployRamdiskName)
	before, err := os.Stat(ramdisk)
	if err != nil {
		t.Fatal(err)
	}
	u.stop(t)

	u = startProvisionedUp(t, dir, "--nodes", "1")
	api = testbed.NewClient(u.inv.API)
	again, err := api.Node(t.Context(), "node-0")
	if err != nil {
		t.Fatal(err)
	}
	if again.UUID != first.UUID || again.ProvisionState != "manageable" {
		t.Errorf("after restart: %s in %q, was %s", again.UUID, again.ProvisionState, first.UUID)
	}
	if port := fmt.Sprint(again.DriverInfo["ipmi_port"]); port != fmt.Sprint(u.inv.Nodes[0].BMC.Port) {
		t.Errorf("driver_info ipmi_port %s, BMC now on %d", port, u.inv.Nodes[0].BMC.Port)
	}
	after, err := os.Stat(ramdisk)
	if err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("deploy ramdisk rebuilt: %v, %v", before.ModTime(), err)
	}
	u.stop(t)
}

// TestUpIPXENetboot deploys a netboot node enrolled with
// --boot-interface ipxe: iPXE scripts, kernels and ramdisks over HTTP.
func TestUpIPXENetboot(t *testing.T) {
	u := startLongUp(t, "deploys a machine", "--nodes", "1", "--boot-interface", "ipxe")
	api := testbed.NewClient(u.inv.API)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	for _, step := range [][2]string{{"manage", "manageable"}, {"provide", "available"}} {
		if err := api.Provision(ctx, "node-0", step[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := api.WaitState(ctx, "node-0", step[1], nil); err != nil {
			t.Fatal(err)
		}
	}
	img, err := disk.Build(ctx, disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(t.TempDir(), "part.img"), Hostname: "ipxe-netboot"})
	if err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(u.dir, "provisioner", "images", testbed.DeployKernelName) // any bzImage
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := os.WriteFile(initrd, []byte("instance initrd"), 0o644); err != nil {
		t.Fatal(err)
	}
	deploy := func(checksum string) error {
		var ops []map[string]any
		for k, v := range map[string]any{"image_source": img.Path, "image_checksum": checksum, "root_gb": 1, "kernel": kernel, "ramdisk": initrd} {
			ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
		}
		if err := api.Patch(ctx, "node-0", ops); err != nil {
			t.Fatal(err)
		}
		if err := api.Provision(ctx, "node-0", "active"); err != nil {
			t.Fatal(err)
		}
		_, err := api.WaitState(ctx, "node-0", "active", nil)
		return err
	}
	// A wrong checksum fails the deploy, and the failure is in the
	// node's timeline; a deploy failed node deploys again.
	if err := deploy(strings.Repeat("0", 32)); !errors.Is(err, testbed.ErrStateFailed) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("deploy with a wrong checksum: %v", err)
	}
	doc, err := fetchTimeline(ctx, u.inv.Timeline, "node-0")
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	for _, e := range doc.Entries {
		failed = failed || (e.Kind == "conductor.failed" && strings.Contains(e.Detail, "checksum"))
	}
	if !failed {
		t.Errorf("no conductor.failed entry in %+v", doc.Entries)
	}
	if err := deploy(img.MD5); err != nil {
		t.Fatal(err)
	}
	con := u.inv.Nodes[0].ConsoleLog
	want := "metalbed-instance: booted ipxe-netboot root=UUID=" + img.RootUUID
	for {
		b, _ := os.ReadFile(con)
		if strings.Contains(string(b), want) {
			if !strings.Contains(string(b), "/boot.ipxe...") {
				t.Errorf("not booted through the HTTP boot.ipxe:\n%s", b)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("console lacks %q:\n%s", want, b)
		case <-time.After(100 * time.Millisecond):
		}
	}
	u.stop(t)
}
