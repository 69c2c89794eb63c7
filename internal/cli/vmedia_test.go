package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// TestUpEnrollRedfishVirtualMedia is the README's virtual media
// walk-through: `metalbed up --nodes 1 --boot-mode uefi --enroll
// --enroll-driver redfish --boot-interface redfish-virtual-media`; the
// real baremetal CLI sees the node with driver redfish, boot interface
// redfish-virtual-media, deploy interface direct, and the redfish driver
// offering that boot interface; it deploys a whole-disk image (the agent
// boots from the virtual CD), the instance boots from disk, and undeploy
// brings the node back to available.
func TestUpEnrollRedfishVirtualMedia(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	if _, err := disk.DefaultISOLoaders(t.Context(), false, true); err != nil {
		testenv.Unavailable(t, "boot ISOs need grub-efi-amd64-bin: "+err.Error())
	}
	u := startLongUp(t, "deploys a machine through virtual media", "--nodes", "1", "--boot-mode", "uefi",
		"--enroll-driver", "redfish", "--boot-interface", "redfish-virtual-media")
	api := u.inv.API
	n := u.inv.Nodes[0]
	node := showNode(t, api, n.Name)
	props, _ := node["properties"].(map[string]any)
	if node["driver"] != "redfish" || node["boot_interface"] != "redfish-virtual-media" || node["deploy_interface"] != "direct" ||
		!strings.Contains(fmt.Sprint(props["capabilities"]), "boot_option:local") {
		t.Errorf("enrolled %s: %v", n.Name, node)
	}
	var drv struct {
		Boot string `json:"enabled_boot_interfaces"` // "ipxe, pxe, …"
	}
	if out := baremetal(t, api, "--os-baremetal-api-version", "latest", "driver", "show", "redfish", "-f", "json"); json.Unmarshal([]byte(out), &drv) != nil ||
		!slices.Contains(strings.Split(drv.Boot, ", "), "redfish-virtual-media") {
		t.Errorf("driver redfish boot interfaces %q in %s", drv.Boot, out)
	}
	// A deploy template for the flavor's trait, as Nova passes it: its
	// bios.apply_configuration runs before deploy.deploy on the machine's
	// Redfish BIOS.
	baremetal(t, api, "node", "set", n.Name, "--bios-interface", "redfish")
	makeAvailable(t, api, n.Name)
	baremetal(t, api, "deploy", "template", "create", "CUSTOM_HT_OFF", "--steps",
		`[{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"name": "LogicalProc", "value": "Disabled"}]}, "priority": 150}]`)
	baremetal(t, api, "node", "add", "trait", n.Name, "CUSTOM_HT_OFF")

	img, err := disk.Build(t.Context(), disk.BuildConfig{Kind: disk.KindWholeDisk, BootMode: "uefi", Out: filepath.Join(t.TempDir(), "disk.img"), Hostname: "vmedia-deployed"})
	if err != nil {
		t.Fatal(err)
	}
	baremetal(t, api, "node", "set", n.Name, "--instance-info", "image_source="+img.Path, "--instance-info", "image_checksum="+img.MD5,
		"--instance-info", `traits=["CUSTOM_HT_OFF"]`)
	baremetal(t, api, "node", "deploy", n.Name)
	waitProvision(t, api, n.Name, "active", 5*time.Minute)
	testenv.Eventually(t, time.Minute, func() bool {
		con, _ := os.ReadFile(n.ConsoleLog)
		return strings.Contains(string(con), "metalbed-instance: booted vmedia-deployed")
	}, "the instance of %s to boot (console: %s)", n.Name, consoleOf(n.ConsoleLog))
	con, _ := os.ReadFile(n.ConsoleLog)
	for _, want := range []string{"Booting from virtual CD (UEFI)...", "boot_method=vmedia", "Booting from hard disk (UEFI)..."} {
		if !bytes.Contains(con, []byte(want)) {
			t.Errorf("console of %s lacks %q", n.Name, want)
		}
	}

	tl, err := fetchTimeline(t.Context(), u.inv.Timeline, n.Name)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range tl.Entries {
		if e.Kind == events.ConductorDeployStep || e.Kind == events.BMCRedfishBios {
			steps = append(steps, string(e.Kind)+" "+e.Detail)
		}
	}
	wantSteps := "conductor.deploy_step bios.apply_configuration (priority 150)\n" +
		"bmc.redfish.bios staged LogicalProc=Disabled for the next reset\n" +
		"bmc.redfish.bios applied LogicalProc=Disabled at power-on\n" +
		"conductor.deploy_step deploy.deploy (priority 100)"
	if got := strings.Join(steps, "\n"); got != wantSteps {
		t.Errorf("deploy steps in the timeline of %s:\n%s\nwant\n%s", n.Name, got, wantSteps)
	}

	baremetal(t, api, "node", "undeploy", n.Name)
	waitProvision(t, api, n.Name, "available", 5*time.Minute)
	// The ISO was published at <state dir>/provisioner/http/redfish and
	// is gone again.
	isos, err := filepath.Glob(filepath.Join(u.dir, "provisioner", "http", "redfish", "*.iso"))
	if err != nil || len(isos) != 0 {
		t.Errorf("ISOs still published after undeploy: %v %v", isos, err)
	}
	if _, err := os.Stat(filepath.Join(u.dir, "provisioner", "http", "redfish")); err != nil {
		t.Errorf("no ISO directory: %v", err)
	}
}

// TestUpBootInterfaceFlag: --boot-interface takes pxe, ipxe,
// redfish-virtual-media or redfish-https, the latter two only with
// --enroll-driver redfish, redfish-https only for UEFI machines.
func TestUpBootInterfaceFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--boot-interface", "redfish-virtual-media"}, "needs --enroll-driver redfish"},
		{[]string{"--boot-interface", "redfish-https"}, "--boot-interface redfish-https needs --enroll-driver redfish"},
		{[]string{"--boot-interface", "http"}, "want pxe, ipxe, redfish-virtual-media or redfish-https"},
		{[]string{"--enroll-driver", "redfish", "--boot-interface", "redfish-https", "--nodes", "1"},
			"boot interface redfish-https boots UEFI machines only (legacy BIOS has no HTTP boot): machine node-0 boots bios (--boot-mode uefi)"},
	} {
		var out, errb bytes.Buffer
		err := Run(t.Context(), append([]string{"up", "--enroll", "--state-dir", t.TempDir()}, c.args...), &out, &errb)
		if ExitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), c.want) {
			t.Errorf("%v: %v (exit %d), want a usage error naming %q", c.args, err, ExitCode(err), c.want)
		}
	}
}

// consoleOf prints a console log when formatted.
type consoleOf string

func (c consoleOf) String() string {
	b, _ := os.ReadFile(string(c))
	return string(b)
}
