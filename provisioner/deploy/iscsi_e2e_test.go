package deploy_test

// What only the "iscsi" deploy interface does end to end: the ramdisk's
// errors and callbacks, the real baremetal CLI, concurrent deploys, iPXE.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner/deploy/iscsi"
	"github.com/metalbed/metalbed/provisioner/internal/deploytest"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

func iscsiBed(t testing.TB) *deploytest.Bed {
	return deploytest.NewBed(t, deploytest.Options{Variant: iscsiVariant()})
}

func TestISCSIRamdiskError(t *testing.T) {
	part, _ := images.Get(t)
	b := iscsiBed(t)
	uuid, m := b.Enroll("err0", "boot_mode:bios", false)
	m.SetFaults(deploytest.Faults{NoDisk: true})
	b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1,
		"kernel": b.File("kernel"), "ramdisk": b.File("ramdisk")})
	b.Provision(uuid, "active")
	n := b.WaitState(uuid, "deploy failed")
	if le := n.Error(); !strings.HasPrefix(le, "Error returned from deploy ramdisk: ") || !strings.Contains(le, "disk") {
		t.Errorf("last_error %q", le)
	}
	if n.Power() != "power off" {
		t.Errorf("power state %q after a failed deploy, want power off", n.Power())
	}
}

func TestISCSIPassDeployInfoWrongKey(t *testing.T) {
	part, _ := images.Get(t)
	b := iscsiBed(t)
	uuid, m := b.Enroll("key0", "boot_mode:bios", false)
	m.SetFaults(deploytest.Faults{Silent: true})
	b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1,
		"kernel": b.File("kernel"), "ramdisk": b.File("ramdisk")})
	b.Provision(uuid, "active")
	before := b.WaitState(uuid, "wait call-back")
	err := b.Call(t.Context(), "POST", "/v1/nodes/"+uuid+"/vendor_passthru/pass_deploy_info",
		map[string]any{"address": m.IP().String(), "key": "WRONGKEY", "iqn": iscsi.IQNPrefix + uuid, "error": ""}, nil)
	if he, ok := deploytest.IsHTTPError(err, 400); !ok || !strings.Contains(he.Body, "Deploy key WRONGKEY does not match") {
		t.Fatalf("wrong key answered %v", err)
	}
	after := b.Node(uuid)
	if after.ProvisionState != "wait call-back" || after.Error() != before.Error() {
		t.Errorf("node changed by a refused callback: %+v", after)
	}
	// Missing address: 400 before anything happens. The real key, as the
	// ramdisk reads it from its kernel command line.
	cfg, err := os.ReadFile(filepath.Join(b.TFTPRoot, uuid, "config"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, cmdline := deploytest.DefaultLabel(string(cfg))
	p, err := ramdisk.ParseCmdline(cmdline)
	if err != nil || p.DeploymentKey == "" {
		t.Fatalf("deploy label %q: %v", cmdline, err)
	}
	err = b.Call(t.Context(), "POST", "/v1/nodes/"+uuid+"/vendor_passthru/pass_deploy_info",
		map[string]any{"key": p.DeploymentKey, "iqn": iscsi.IQNPrefix + uuid}, nil)
	if he, ok := deploytest.IsHTTPError(err, 400); !ok || !strings.Contains(he.Body, "Parameters ['address'] were not passed to ironic for deploy.") {
		t.Fatalf("missing address answered %v", err)
	}
	if n := b.Node(uuid); n.ProvisionState != "wait call-back" {
		t.Errorf("state %q after a refused callback", n.ProvisionState)
	}
}

func TestISCSIBootloaderFailed(t *testing.T) {
	part, _ := images.Get(t)
	b := iscsiBed(t)
	uuid, m := b.Enroll("blf0", "boot_mode:uefi,boot_option:local", false)
	m.SetFaults(deploytest.Faults{BootloaderErr: errors.New("grub-install: no ESP found")})
	b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1})
	b.Provision(uuid, "active")
	n := b.WaitState(uuid, "deploy failed")
	want := fmt.Sprintf("Failed to install bootloader on node %s. Error: grub-install: no ESP found.", uuid)
	if le := n.Error(); le != want {
		t.Errorf("last_error %q, want %q", le, want)
	}
}

// baremetal runs the real `baremetal` CLI (python3-ironicclient) against
// the bed's API.
func baremetal(t *testing.T, b *deploytest.Bed, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "baremetal", args...)
	cmd.Env = append(os.Environ(), "OS_AUTH_TYPE=none", "OS_ENDPOINT="+b.URL, "OS_CLOUD=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("baremetal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func baremetalJSON(t *testing.T, b *deploytest.Bed, args ...string) map[string]any {
	t.Helper()
	out := baremetal(t, b, append(args, "-f", "json")...)
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("baremetal %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// TestISCSIBaremetalCLIDeploy deploys a node with the real baremetal CLI:
// enroll, set instance_info, `node deploy --wait`, and read it back active.
func TestISCSIBaremetalCLIDeploy(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	part, _ := images.Get(t)
	b := iscsiBed(t)
	n := baremetalJSON(t, b, "node", "create", "--driver", deploytest.Driver, "--name", "cli0",
		"--boot-interface", "pxe", "--deploy-interface", "iscsi",
		"--driver-info", "deploy_kernel="+b.File("deploy_kernel"),
		"--driver-info", "deploy_ramdisk="+b.File("deploy_ramdisk"),
		"--property", "capabilities=boot_mode:bios")
	uuid, _ := n["uuid"].(string)
	m := b.Attach(uuid)
	baremetal(t, b, "port", "create", m.MAC(), "--node", uuid)
	baremetal(t, b, "node", "manage", "cli0", "--wait", "60")
	baremetal(t, b, "node", "provide", "cli0", "--wait", "60")
	baremetal(t, b, "node", "set", "cli0",
		"--instance-info", "image_source="+part.Path,
		"--instance-info", "image_checksum="+part.MD5,
		"--instance-info", "root_gb=1",
		"--instance-info", `capabilities={"boot_option": "local"}`)
	var rows []map[string]any
	if err := json.Unmarshal(baremetal(t, b, "node", "validate", "cli0", "-f", "json"), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if (r["Interface"] == "deploy" || r["Interface"] == "boot") && r["Result"] != true {
			t.Fatalf("validate %v: %v", r["Interface"], r["Reason"])
		}
	}
	start := time.Now()
	baremetal(t, b, "node", "deploy", "cli0", "--wait", "120")
	t.Logf("baremetal node deploy --wait: %.2fs", time.Since(start).Seconds())
	shown := baremetalJSON(t, b, "node", "show", "cli0")
	if shown["provision_state"] != "active" {
		t.Fatalf("provision_state %v, last_error %v", shown["provision_state"], shown["last_error"])
	}
	dii, _ := shown["driver_internal_info"].(map[string]any)
	if dii["root_uuid_or_disk_id"] != part.RootUUID {
		t.Errorf("root_uuid_or_disk_id %v, want %s", dii["root_uuid_or_disk_id"], part.RootUUID)
	}
	if in := m.Inspect(t); in.BootLoader != "metalbed" {
		t.Errorf("boot loader on disk %q after a bios local boot deploy", in.BootLoader)
	}
	baremetal(t, b, "node", "undeploy", "cli0", "--wait", "60")
	if n := b.Node(uuid); n.ProvisionState != "available" {
		t.Errorf("after undeploy: %q", n.ProvisionState)
	}
}

// TestISCSIConcurrentDeploys runs the demo's three deploys at once on one
// conductor: netboot, local boot bios, local boot uefi; then undeploys all
// three with cleaning.
func TestISCSIConcurrentDeploys(t *testing.T) {
	part, _ := images.Get(t)
	b := iscsiBed(t)
	type job struct {
		caps, label string
		uuid        string
		m           *deploytest.Machine
	}
	jobs := []*job{{caps: "boot_mode:bios,boot_option:netboot", label: "msdos"},
		{caps: "boot_mode:bios,boot_option:local", label: "msdos"}, {caps: "boot_mode:uefi,boot_option:local", label: "gpt"}}
	for i, j := range jobs {
		j.uuid, j.m = b.Enroll(fmt.Sprintf("node-%d", i), j.caps, true)
		b.SetInstanceInfo(j.uuid, map[string]any{"image_source": part.Path, "image_checksum": part.MD5, "root_gb": 1,
			"kernel": b.File("kernel"), "ramdisk": b.File("ramdisk")})
	}
	start := time.Now()
	for _, j := range jobs {
		b.Provision(j.uuid, "active")
	}
	for _, j := range jobs {
		n := b.WaitState(j.uuid, "active")
		if n.DriverInternalInfo["root_uuid_or_disk_id"] != part.RootUUID {
			t.Errorf("%s: root %v", j.caps, n.DriverInternalInfo["root_uuid_or_disk_id"])
		}
	}
	t.Logf("three concurrent deploys of a %d MiB partition image: %.2fs", part.Size>>20, time.Since(start).Seconds())
	for _, j := range jobs {
		if in := j.m.Inspect(t); in.Layout.Label != j.label {
			t.Errorf("%s: label %q, want %q", j.caps, in.Layout.Label, j.label)
		}
	}
	for _, j := range jobs {
		b.Provision(j.uuid, "deleted")
	}
	for _, j := range jobs {
		b.WaitState(j.uuid, "available")
		if in := j.m.Inspect(t); in.Layout.Label != "" {
			t.Errorf("%s: partition table left: %q", j.caps, in.Layout.Label)
		}
	}
}

// TestISCSIDeployIPXE deploys netboot through the ipxe boot interface: the
// machine follows Ironic's iPXE script instead of a pxelinux config.
func TestISCSIDeployIPXE(t *testing.T) {
	part, _ := images.Get(t)
	b := deploytest.NewBed(t, deploytest.Options{Variant: iscsiVariant(), IPXE: true})
	uuid, m := b.Enroll("ipxe0", "boot_mode:uefi,boot_option:netboot", false)
	b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1,
		"kernel": b.File("kernel"), "ramdisk": b.File("ramdisk")})
	b.Provision(uuid, "active")
	b.WaitState(uuid, "active")
	lastBootIsInstanceLabel(t, m, part.RootUUID)
	if in := m.Inspect(t); in.Layout.Label != "gpt" || in.ESP != 0 {
		t.Errorf("uefi netboot layout: label %q ESP %d (netboot has no ESP)", in.Layout.Label, in.ESP)
	}
}
