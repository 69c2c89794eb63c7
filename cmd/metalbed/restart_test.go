package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/testbed"
)

// killPoint is one place of a deploy (or of the automated cleaning before
// it) where TestRestartAfterSIGKILL kills `metalbed up`.
type killPoint struct {
	name   string
	deploy string // deploy_interface: iscsi or direct
	option string // boot_option: netboot or local
	clean  bool   // killed during "provide"'s automated cleaning, not the deploy
	// inspect: killed during an agent inspection of the manageable node
	// instead.
	inspect bool
	// upArgs are more flags of `metalbed up` (the driver, the boot
	// interface).
	upArgs []string
	// delayPower, when set, makes the BMC answer the node's next chassis
	// control (the power on of the prepare) that late: a window in which
	// the conductor is mid-step.
	delayPower time.Duration
	// at says, from the node as the API shows it and the provision states
	// seen so far, that the point is reached.
	at func(n map[string]any, seen []string) bool
	// want is the state the node ends in after the restart; lastError a
	// part of its last_error ("" for none).
	want, lastError string
}

// provState is a node's provision_state.
func provState(n map[string]any) string { s, _ := n["provision_state"].(string); return s }

// internalInfo is a node's driver_internal_info.
func internalInfo(n map[string]any) map[string]any {
	m, _ := n["driver_internal_info"].(map[string]any)
	return m
}

// inState is a killPoint.at for "the node is in s".
func inState(s string) func(map[string]any, []string) bool {
	return func(n map[string]any, _ []string) bool { return provState(n) == s }
}

// afterWait is a killPoint.at for "the node is in s after it waited for
// its ramdisk once".
func afterWait(s string) func(map[string]any, []string) bool {
	return func(n map[string]any, seen []string) bool {
		i := slices.Index(seen, "wait call-back")
		return i >= 0 && provState(n) == s && slices.Contains(seen[i+1:], "deploying")
	}
}

// stuck is the last_error Ironic's conductor gives a node it finds in a
// state no conductor can resume (base_manager._fail_transient_state).
func stuck(state string) string {
	return fmt.Sprintf("The %s state can't be resumed by conductor ", state)
}

// TestRestartAfterSIGKILL is issue 15's "restarts lose nothing": `metalbed
// up --enroll` (the built binary) is killed with SIGKILL at twelve points
// of iSCSI and direct (agent) deploys, cleanings and an inspection,
// restarted on the same state directory, and each node must end as Ironic
// documents within a minute: a node waiting for its ramdisk (wait
// call-back, clean wait, inspect wait) carries on to active, available or
// manageable, an active netboot instance boots again, and a node the
// conductor was mid-step on (deploying, cleaning) fails with Ironic's
// "can't be resumed" message. The points run at once, each on a testbed
// of its own.
func TestRestartAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys twelve machines, each killed and restarted")
	}
	for _, f := range []struct{ path, pkg string }{
		{"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
		{"/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
		{disk.DefaultIsolinuxBin, "isolinux"}, // the virtual media ISO
	} {
		testenv.RequireFile(t, f.path, f.pkg)
	}
	bin := buildBinary(t)
	img := restartImage(t)
	images := deployImages(t, bin)
	points := []killPoint{
		{name: "iscsi/deploying-prepare", deploy: "iscsi", option: "netboot", delayPower: 5 * time.Second,
			at: inState("deploying"), want: "deploy failed", lastError: stuck("deploying")},
		{name: "iscsi/wait-call-back", deploy: "iscsi", option: "netboot", at: inState("wait call-back"), want: "active"},
		{name: "iscsi/wait-bootloader", deploy: "iscsi", option: "local", at: afterWait("wait call-back"), want: "active"},
		{name: "iscsi/active-netboot", deploy: "iscsi", option: "netboot", at: inState("active"), want: "active"},
		{name: "iscsi/clean-wait", deploy: "iscsi", option: "netboot", clean: true, at: inState("clean wait"), want: "available"},
		{name: "iscsi/cleaning", deploy: "iscsi", option: "netboot", clean: true, delayPower: 5 * time.Second,
			at: inState("cleaning"), want: "clean failed", lastError: stuck("cleaning")},
		{name: "direct/wait-call-back", deploy: "direct", option: "local", at: inState("wait call-back"), want: "active"},
		{name: "direct/heartbeat", deploy: "direct", option: "local", want: "active",
			at: func(n map[string]any, _ []string) bool {
				return provState(n) == "wait call-back" && internalInfo(n)["agent_url"] != nil
			}},
		{name: "direct/writing", deploy: "direct", option: "local", want: "active",
			at: func(n map[string]any, _ []string) bool {
				return provState(n) == "wait call-back" && internalInfo(n)["deployment_started"] == true
			}},
		{name: "direct/clean-wait", deploy: "direct", option: "local", clean: true, at: inState("clean wait"), want: "available"},
		{name: "direct/inspect-wait", deploy: "direct", option: "local", inspect: true, at: inState("inspect wait"), want: "manageable"},
		// Redfish virtual media: the ISO is built and inserted again; the
		// Redfish service moves to a new port on the restart, and the node
		// is re-pointed at it before the conductor carries it on.
		{name: "direct/vmedia-heartbeat", deploy: "direct", option: "local", want: "active",
			upArgs: []string{"--enroll-driver", "redfish", "--boot-interface", "redfish-virtual-media"},
			at: func(n map[string]any, _ []string) bool {
				return provState(n) == "wait call-back" && internalInfo(n)["agent_url"] != nil
			}},
	}
	for i, p := range points {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			runKillPoint(t, bin, images, img, p, fmt.Sprintf("127.77.%d.10-127.77.%d.200", i, i))
		})
	}
}

// restartImg is the instance the kill points deploy.
type restartImg struct {
	built           *disk.Built
	kernel, ramdisk string // for netboot
}

// restartImage builds a partition image with an instance kernel and an
// empty initramfs (the simulated kernel reads the root file system
// itself).
func restartImage(t *testing.T) restartImg {
	t.Helper()
	dir := t.TempDir()
	built, err := disk.Build(t.Context(), disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(dir, "instance.img"), Hostname: "restarted"})
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := disk.DefaultKernel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var rd bytes.Buffer
	if err := cpio.WriteTrailer(cpio.Newc.Writer(&rd)); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "instance-initrd")
	if err := os.WriteFile(initrd, rd.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return restartImg{built: built, kernel: kernel, ramdisk: initrd}
}

// deployImages has bin build its deploy kernel and ramdisk once, by
// running `up` until it is ready (they are stamped with the executable
// that built them, so testbed.DeployImages in this test binary would not
// do), and returns their directory, which each kill point copies into its
// state directory: `up` reuses them there instead of building its own.
func deployImages(t *testing.T, bin string) string {
	t.Helper()
	state := t.TempDir()
	dir := filepath.Join(state, "provisioner", "images")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	u := startUp(t, ctx, bin, state, "127.77.255.10-127.77.255.200")
	u.kill(t)
	return dir
}

// upProc is a running `metalbed up`.
type upProc struct {
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	inv    testbed.Inventory
	api    *testbed.Client
}

// startUp starts `metalbed up --enroll` with one node on state and waits
// for its ready line. Every port is free, the BMC's too: a restart
// re-points the node at it before the conductor carries the node on. The
// machine leases from dhcpRange: the ramdisk binds fixed ports on its
// address, so testbeds running at once need ranges of their own.
func startUp(t *testing.T, ctx context.Context, bin, state, dhcpRange string, extra ...string) *upProc {
	t.Helper()
	free := "127.0.0.1:0"
	cmd := exec.CommandContext(ctx, bin, "up", "--redfish-addr", free, "--web-addr", free, "--enroll", "--nodes", "1",
		"--state-dir", state, "--bmc-base-port", "0", "--api-addr", free, "--dhcp-addr", free, "--tftp-addr", free,
		"--http-addr", free, "--timeline-addr", free, "--notify-delay", "100ms", "--log-level", "warn", "--dhcp-range", dhcpRange)
	cmd.Args = append(cmd.Args, extra...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	u := &upProc{cmd: cmd, stderr: &testenv.SyncBuffer{}}
	cmd.Stderr = u.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.kill(t) })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ready <- sc.Scan()
		for sc.Scan() {
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("metalbed up ended before its ready line; stderr:\n%s", u.stderr)
		}
	case <-ctx.Done():
		t.Fatalf("metalbed up not ready: %v; stderr:\n%s", ctx.Err(), u.stderr)
	}
	b, err := os.ReadFile(filepath.Join(state, testbed.InventoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &u.inv); err != nil {
		t.Fatalf("inventory: %v", err)
	}
	u.api = testbed.NewClient(u.inv.API)
	return u
}

// report is what the testbed says of node-0 (provision state, last_error
// and its timeline), read only when a failure message is formatted.
func (u *upProc) report(bin string) fmt.Stringer {
	return lazyText(func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n, err := u.node(ctx)
		out, terr := exec.CommandContext(ctx, bin, "timeline", "node-0", "--url", u.inv.Timeline).CombinedOutput()
		return fmt.Sprintf("node-0 now: %s, last_error %v (%v)\ntimeline (%v):\n%s", provState(n), n["last_error"], err, terr, out)
	})
}

// lazyText formats as what its function returns when called.
type lazyText func() string

func (l lazyText) String() string { return l() }

// kill ends the process with SIGKILL, as a crash or the OOM killer would.
func (u *upProc) kill(t *testing.T) {
	if u.cmd.ProcessState != nil {
		return
	}
	u.cmd.Process.Kill()
	u.cmd.Wait()
}

// node reads node-0 as the API shows it.
func (u *upProc) node(ctx context.Context) (map[string]any, error) {
	var n map[string]any
	err := u.api.Do(ctx, http.MethodGet, "/v1/nodes/node-0", nil, &n)
	return n, err
}

// fault runs `metalbed fault add` against the testbed on node-0.
func (u *upProc) fault(t *testing.T, bin string, args ...string) {
	t.Helper()
	all := append([]string{"fault", "add", "--url", u.inv.Timeline, "--node", "node-0"}, args...)
	if out, err := exec.CommandContext(t.Context(), bin, all...).CombinedOutput(); err != nil {
		t.Fatalf("metalbed %s: %v\n%s", strings.Join(all, " "), err, out)
	}
}

// provision asks for target and, when want is set, waits for node-0 to
// rest there.
func (u *upProc) provision(t *testing.T, target, want string) {
	t.Helper()
	if err := u.api.Provision(t.Context(), "node-0", target); err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	if want == "" {
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := u.api.WaitState(ctx, "node-0", want, nil); err != nil {
		t.Fatalf("%s: %v; stderr:\n%s", target, err, u.stderr)
	}
}

// runKillPoint deploys (or cleans) node-0 of a new testbed, kills `up`
// at p, restarts it and checks where the node ends.
func runKillPoint(t *testing.T, bin, images string, img restartImg, p killPoint, dhcpRange string) {
	state := t.TempDir()
	if err := os.CopyFS(filepath.Join(state, "provisioner", "images"), os.DirFS(images)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	u := startUp(t, ctx, bin, state, dhcpRange, p.upArgs...)
	ii := map[string]any{
		"image_source": img.built.Path, "image_checksum": img.built.MD5, "root_gb": "1",
		"image_type": "partition", "capabilities": map[string]any{"boot_option": p.option},
	}
	if p.option == "netboot" {
		ii["kernel"], ii["ramdisk"] = img.kernel, img.ramdisk
	}
	ops := []map[string]any{
		{"op": "replace", "path": "/deploy_interface", "value": p.deploy},
		{"op": "replace", "path": "/automated_clean", "value": p.clean},
	}
	for k, v := range ii {
		ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	if err := u.api.Patch(ctx, "node-0", ops); err != nil {
		t.Fatal(err)
	}
	u.provision(t, "manage", "manageable")
	if p.delayPower > 0 {
		u.fault(t, bin, "--layer", "ipmi", "--op", "0x00/0x02", "--action", "delay", "--delay", p.delayPower.String(), "--count", "1")
	}
	switch {
	case p.inspect:
		if err := u.api.Patch(ctx, "node-0", []map[string]any{{"op": "replace", "path": "/inspect_interface", "value": "agent"}}); err != nil {
			t.Fatal(err)
		}
		u.provision(t, "inspect", "")
	case p.clean:
		u.provision(t, "provide", "")
	default:
		u.provision(t, "provide", "available")
		u.provision(t, "active", "")
	}
	seen := waitPoint(t, ctx, u, p)
	u.kill(t)
	booted := countBooted(t, u)
	t0 := time.Now()
	u = startUp(t, ctx, bin, state, dhcpRange, p.upArgs...)
	var end map[string]any
	testenv.Eventually(t, time.Minute, func() bool {
		n, err := u.node(ctx)
		// A failed node keeps its target, as Ironic's does.
		if err != nil || provState(n) != p.want || n["target_provision_state"] != nil && !strings.HasSuffix(p.want, " failed") {
			return false
		}
		if p.option == "netboot" && p.want == "active" && countBooted(t, u) <= booted {
			return false // the instance has not netbooted again yet
		}
		end = n
		return true
	}, "%s: node-0 did not reach %q within a minute of the restart (states before the kill %v); stderr:\n%s\n%s", p.name, p.want, seen, u.stderr, u.report(bin))
	t.Logf("%s: killed in %q (states seen %v): %s %.1fs after the restart", p.name, seen[len(seen)-1], seen, provState(end), time.Since(t0).Seconds())
	le, _ := end["last_error"].(string)
	if p.lastError == "" && le != "" || !strings.Contains(le, p.lastError) {
		t.Errorf("last_error %q, want %q", le, p.lastError)
	}
}

// waitPoint polls node-0 until p.at says the point is reached and returns
// the provision states seen on the way, the last the node's at the point.
func waitPoint(t *testing.T, ctx context.Context, u *upProc, p killPoint) []string {
	t.Helper()
	seen := &stateLog{}
	testenv.Eventually(t, 2*time.Minute, func() bool {
		n, err := u.node(ctx)
		if err != nil {
			return false
		}
		if s := provState(n); len(seen.states) == 0 || seen.states[len(seen.states)-1] != s {
			seen.states = append(seen.states, s)
		}
		return p.at(n, seen.states)
	}, "%s: point not reached (states seen %v); stderr:\n%s", p.name, seen, u.stderr)
	return seen.states
}

// stateLog is the provision states a node went through, rendered when a
// wait fails.
type stateLog struct{ states []string }

func (l *stateLog) String() string { return fmt.Sprint(l.states) }

// countBooted counts the instance boots on node-0's console.
func countBooted(t *testing.T, u *upProc) int {
	t.Helper()
	b, err := os.ReadFile(u.inv.Nodes[0].ConsoleLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("metalbed-instance: booted"))
}
