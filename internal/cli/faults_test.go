package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/testbed"
)

// runCLI runs one metalbed command and returns its stdout.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb testenv.SyncBuffer
	if err := Run(t.Context(), args, &out, &errb); err != nil {
		t.Fatalf("metalbed %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// ipmitoolResult runs the real ipmitool against n's BMC and returns its
// output and error (a fault makes it fail).
func ipmitoolResult(t *testing.T, n testbed.InventoryNode, args ...string) (string, error) {
	t.Helper()
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(n.BMC.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	full := append([]string{"-I", "lanplus", "-H", n.BMC.Address, "-p", strconv.Itoa(n.BMC.Port), "-U", n.BMC.Username,
		"-f", pw, "-R", "1", "-N", "1", "-L", "ADMINISTRATOR"}, args...)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	return string(out), err
}

// TestUpFaultIPMI injects IPMI faults into a running `metalbed up` with
// `metalbed fault add`, drives the BMC with the real ipmitool, and finds
// the failure, the rule's fired count and the timeline entry.
func TestUpFaultIPMI(t *testing.T) {
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	u := startLongUp(t, "builds the deploy images", "--nodes", "1")
	n := u.inv.Nodes[0]

	// Get Chassis Status (netfn 0x00, cmd 0x01) answered with 0xC3, once.
	out := runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "ipmi", "--op", "0x00/0x01",
		"--action", "cc", "--arg", "0xc3", "--count", "1")
	if !strings.HasPrefix(out, "fault f1 added") {
		t.Fatalf("fault add printed %q", out)
	}
	res, err := ipmitoolResult(t, n, "chassis", "power", "status")
	if err == nil || !strings.Contains(res, "failed: Timeout") {
		t.Fatalf("power status under cc 0xC3: err %v\n%s", err, res)
	}
	// The rule fired once and is spent: the next call succeeds.
	if res, err := ipmitoolResult(t, n, "chassis", "power", "status"); err != nil || !strings.Contains(res, "Chassis Power is") {
		t.Fatalf("power status after the fault: %v\n%s", err, res)
	}
	var doc testbed.FaultsDoc
	if err := json.Unmarshal([]byte(runCLI(t, "fault", "list", "--json", "--url", u.inv.Timeline)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Faults) != 1 || doc.Faults[0].Fired != 1 || doc.Faults[0].Node != n.Name {
		t.Fatalf("fault list: %+v", doc.Faults)
	}
	if table := runCLI(t, "fault", "list", "--state-dir", u.dir); !strings.Contains(table, "0x00/0x01") {
		t.Errorf("fault list table:\n%s", table)
	}
	// Cleared by its ID; a rule for a node this testbed does not have is
	// refused by the endpoint, as a usage error.
	if out := runCLI(t, "fault", "clear", "--state-dir", u.dir, "f1"); out != "fault f1 cleared\n" {
		t.Errorf("fault clear f1: %q", out)
	}
	if err := Run(t.Context(), []string{"fault", "add", "--state-dir", u.dir, "--node", "no-such-node", "--layer", "ipmi", "--action", "drop"}, io.Discard, io.Discard); ExitCode(err) != 2 ||
		!strings.Contains(fmt.Sprint(err), `fault node "no-such-node": no such machine or node here (machines: `+n.Name) {
		t.Errorf("fault for an unknown node: %v (exit %d)", err, ExitCode(err))
	}
	if err := json.Unmarshal([]byte(runCLI(t, "fault", "list", "--json", "--state-dir", u.dir)), &doc); err != nil || len(doc.Faults) != 0 {
		t.Fatalf("after clear f1: %v %+v", err, doc.Faults)
	}

	// No reply at all: ipmitool gives up.
	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "ipmi", "--op", "0x00/0x01", "--action", "drop")
	if res, err := ipmitoolResult(t, n, "chassis", "power", "status"); err == nil {
		t.Fatalf("power status with no reply succeeded:\n%s", res)
	}
	runCLI(t, "fault", "clear", "--state-dir", u.dir)
	if err := json.Unmarshal([]byte(runCLI(t, "fault", "list", "--json", "--state-dir", u.dir)), &doc); err != nil || len(doc.Faults) != 0 {
		t.Fatalf("after clear: %v %+v", err, doc.Faults)
	}
	if _, err := ipmitoolResult(t, n, "chassis", "power", "status"); err != nil {
		t.Fatalf("power status after clear: %v", err)
	}

	// Power on acknowledged, not carried out; boot flags acknowledged, not kept.
	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "ipmi", "--op", "power", "--action", "ignore", "--count", "1")
	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "ipmi", "--op", "boot-flags", "--action", "forget-bootflags", "--count", "1")
	if res, err := ipmitoolResult(t, n, "chassis", "power", "on"); err != nil {
		t.Fatalf("power on under ignore: %v\n%s", err, res)
	}
	if res, _ := ipmitoolResult(t, n, "chassis", "power", "status"); !strings.Contains(res, "Chassis Power is off") {
		t.Errorf("ignored power on: %s", res)
	}
	if res, err := ipmitoolResult(t, n, "chassis", "bootdev", "pxe"); err != nil {
		t.Fatalf("bootdev under forget-bootflags: %v\n%s", err, res)
	}
	if res, _ := ipmitoolResult(t, n, "chassis", "bootparam", "get", "5"); strings.Contains(res, "Force PXE") {
		t.Errorf("forgotten boot flags kept:\n%s", res)
	}
	runCLI(t, "fault", "clear", "--state-dir", u.dir)
	ipmitoolResult(t, n, "chassis", "bootdev", "pxe")
	if res, _ := ipmitoolResult(t, n, "chassis", "bootparam", "get", "5"); !strings.Contains(res, "Force PXE") {
		t.Errorf("boot flags without the fault not kept:\n%s", res)
	}

	// A bad rule is refused with a clear error.
	var eout, eerr testenv.SyncBuffer
	if err := Run(t.Context(), []string{"fault", "add", "--state-dir", u.dir, "--layer", "bogus", "--action", "x"}, &eout, &eerr); err == nil ||
		!strings.Contains(err.Error(), "bogus") {
		t.Errorf("bad layer: %v", err)
	}

	tl, err := fetchTimeline(t.Context(), u.inv.Timeline, n.Name)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range tl.Entries {
		if e.Kind.IsFault() {
			kinds[string(e.Kind)]++
		}
	}
	if kinds["fault.ipmi.cc"] != 1 || kinds["fault.ipmi.drop"] == 0 || kinds["fault.ipmi.ignore"] != 1 || kinds["fault.ipmi.forget-bootflags"] != 1 {
		t.Errorf("fault entries of %s: %v", n.Name, kinds)
	}
	u.stop(t)
}

// TestUpNoProvisionerFaults: `metalbed up --no-provisioner` serves the
// fault endpoint on a free port named in inventory.json; `metalbed fault
// add` breaks its BMCs: an IPMI command for the real ipmitool and a
// Redfish GET for curl, each recorded in the machine's timeline.
func TestUpNoProvisionerFaults(t *testing.T) {
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	curl := testenv.RequireTool(t, "curl", "curl")
	u := startUp(t, t.TempDir(), "--nodes", "1")
	n := u.inv.Nodes[0]
	if u.inv.Timeline == "" {
		t.Fatalf("inventory names no timeline and fault endpoint: %+v", u.inv)
	}

	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "ipmi", "--op", "0x00/0x01",
		"--action", "cc", "--arg", "0xc3", "--count", "1")
	if res, err := ipmitoolResult(t, n, "chassis", "power", "status"); err == nil {
		t.Fatalf("power status under cc 0xC3 succeeded:\n%s", res)
	}
	if res, err := ipmitoolResult(t, n, "chassis", "power", "status"); err != nil || !strings.Contains(res, "Chassis Power is") {
		t.Fatalf("power status after the fault: %v\n%s", err, res)
	}

	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "redfish", "--op", "GET",
		"--action", "status", "--arg", "503", "--count", "1")
	rf := n.Redfish
	get := func() string {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", fmt.Sprint(rf.VerifyCA),
			"-u", rf.Username+":"+rf.Password, rf.Address+rf.SystemID).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		return string(out)
	}
	if code := get(); code != "503" {
		t.Errorf("Redfish GET under status 503: %s", code)
	}
	if code := get(); code != "200" {
		t.Errorf("Redfish GET after the fault: %s", code)
	}

	tl, err := fetchTimeline(t.Context(), u.inv.Timeline, n.Name)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range tl.Entries {
		kinds[string(e.Kind)]++
	}
	if kinds["fault.ipmi.cc"] != 1 || kinds["fault.redfish.status"] != 1 {
		t.Errorf("fault entries of %s: %v", n.Name, kinds)
	}
	u.stop(t)
}

// TestUpFaultDeploy breaks iSCSI deploys of a running `metalbed up` at the
// ramdisk and at its iSCSI target, and finds each failure in the node's
// state, last_error and timeline.
func TestUpFaultDeploy(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	u := startLongUp(t, "deploys a machine", "--nodes", "1", "--deploy-callback-timeout", "2m")
	api, n := u.inv.API, u.inv.Nodes[0]
	makeAvailable(t, api, n.Name)
	img, err := disk.Build(t.Context(), disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(t.TempDir(), "part.img"), Hostname: "faulty"})
	if err != nil {
		t.Fatal(err)
	}
	baremetal(t, api, "node", "set", n.Name,
		"--instance-info", "image_source="+img.Path,
		"--instance-info", "image_checksum="+img.MD5,
		"--instance-info", "root_gb=1",
		"--instance-info", `capabilities={"boot_option": "local"}`)

	faultKinds := func() map[string]int {
		tl, err := fetchTimeline(t.Context(), u.inv.Timeline, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]int{}
		for _, e := range tl.Entries {
			if e.Kind.IsFault() {
				kinds[string(e.Kind)]++
			}
		}
		return kinds
	}

	// The ramdisk reports an error in pass_deploy_info.
	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "ramdisk", "--op", "pass_deploy_info",
		"--action", "error", "--arg", "disk on fire", "--count", "1")
	baremetal(t, api, "node", "deploy", n.Name)
	shown := waitDeployFailed(t, api, n.Name, 5*time.Minute)
	if le, _ := shown["last_error"].(string); !strings.Contains(le, "Error returned from deploy ramdisk: disk on fire") {
		t.Errorf("last_error %q", le)
	}
	if k := faultKinds(); k["fault.ramdisk.error"] != 1 {
		t.Errorf("fault entries %v", k)
	}

	// The ramdisk's iSCSI target refuses the conductor's login.
	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "iscsi", "--op", "login", "--action", "refuse-login")
	baremetal(t, api, "node", "deploy", n.Name)
	shown = waitDeployFailed(t, api, n.Name, 5*time.Minute)
	le, _ := shown["last_error"].(string)
	if !strings.Contains(le, "iSCSI login") || !strings.Contains(le, "authorization failure") {
		t.Errorf("last_error %q", le)
	}
	if k := faultKinds(); k["fault.iscsi.refuse-login"] == 0 {
		t.Errorf("fault entries %v", k)
	}
	t.Logf("refused login: last_error %q", le)
	u.stop(t)
}

// waitDeployFailed waits for node to reach "deploy failed" (whose target
// stays "active", so waitProvision does not fit).
func waitDeployFailed(t *testing.T, api, node string, within time.Duration) map[string]any {
	t.Helper()
	return waitNode(t, api, node, "deploy failed", within, func(n map[string]any) bool {
		if n["provision_state"] == "active" {
			t.Fatalf("%s deployed despite the fault", node)
		}
		return n["provision_state"] == "deploy failed"
	})
}

// TestUpFaultNetboot breaks a machine's PXE boot at DHCP and at TFTP and
// finds each fault in its timeline.
func TestUpFaultNetboot(t *testing.T) {
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	u := startLongUp(t, "builds the deploy images", "--nodes", "1")
	n := u.inv.Nodes[0]
	waitKinds := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			tl, err := fetchTimeline(t.Context(), u.inv.Timeline, n.Name)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]bool{}
			for _, e := range tl.Entries {
				kinds[string(e.Kind)] = true
			}
			missing := ""
			for _, k := range want {
				if !kinds[k] {
					missing = k
				}
			}
			if missing == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timeline of %s lacks %s: %v", n.Name, missing, kinds)
			}
			select {
			case <-t.Context().Done():
				t.Fatal(t.Context().Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	power := func(args ...string) {
		t.Helper()
		if out, err := ipmitoolResult(t, n, args...); err != nil {
			t.Fatalf("ipmitool %v: %v\n%s", args, err, out)
		}
	}

	// The DHCP server answers a node only while the conductor boots it:
	// start a deploy, whose PXE boot finds no offer.
	api := u.inv.API
	makeAvailable(t, api, n.Name)
	img, err := disk.Build(t.Context(), disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(t.TempDir(), "part.img"), Hostname: "netboot"})
	if err != nil {
		t.Fatal(err)
	}
	baremetal(t, api, "node", "set", n.Name, "--instance-info", "image_source="+img.Path, "--instance-info", "image_checksum="+img.MD5,
		"--instance-info", "root_gb=1", "--instance-info", `capabilities={"boot_option": "local"}`)
	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "dhcp", "--action", "no-offer")
	baremetal(t, api, "node", "deploy", n.Name)
	waitKinds("fault.dhcp.no-offer", "machine.boot-failed")
	power("chassis", "power", "off")
	runCLI(t, "fault", "clear", "--state-dir", u.dir)

	runCLI(t, "fault", "add", "--state-dir", u.dir, "--node", n.Name, "--layer", "tftp", "--action", "missing")
	power("chassis", "bootdev", "pxe")
	power("chassis", "power", "on")
	waitKinds("dhcp.ack", "fault.tftp.missing", "tftp.error")
	power("chassis", "power", "off")
	u.stop(t)
}

// TestFaultAddHelp: `metalbed fault add -h` lists every fault of the
// catalog, and an unknown action is a usage error naming the layer's
// actions before any request is sent.
func TestFaultAddHelp(t *testing.T) {
	var out, errb bytes.Buffer
	_ = runFaultAdd(context.Background(), Streams{Out: &out, Err: &errb}, []string{"-h"})
	for _, k := range fault.Catalog() {
		if !strings.Contains(errb.String(), k.Action) {
			t.Errorf("help does not list %s/%s:\n%s", k.Layer, k.Action, errb.String())
		}
	}
	err := runFaultAdd(context.Background(), Streams{Out: &out, Err: &errb},
		[]string{"--url", "http://127.0.0.1:1", "--layer", "http", "--action", "nope"})
	if err == nil || !strings.Contains(err.Error(), "status, truncate, corrupt") {
		t.Errorf("unknown action: %v", err)
	}
}

// TestUpNoProvisionerFaultsNeedTheKey: with --htpasswd, the machines'
// timeline and fault endpoint of `up --no-provisioner` answers 401 to a
// caller without a user of the file, and `metalbed fault` with one in its
// --url works.
func TestUpNoProvisionerFaultsNeedTheKey(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte("ops:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := startUp(t, t.TempDir(), "--nodes", "1", "--htpasswd", file)
	if code, _ := get(t, u.inv.Timeline+"/v1/faults"); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/faults without credentials: %d, want 401", code)
	}
	withUser := strings.Replace(u.inv.Timeline, "http://", "http://ops:s3cret@", 1)
	runCLI(t, "fault", "add", "--url", withUser, "--node", u.inv.Nodes[0].Name, "--layer", "ipmi", "--op", "0x00/0x01",
		"--action", "cc", "--arg", "0xc3", "--count", "1")
	if out := runCLI(t, "fault", "list", "--url", withUser); !strings.Contains(out, "0x00/0x01") {
		t.Errorf("fault list with the user: %q", out)
	}
}
