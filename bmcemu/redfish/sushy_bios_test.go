package redfish

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// TestSushyBios drives Bios, the attribute registry and SecureBoot with
// sushy as Ironic's redfish bios and management interfaces do, against a
// UEFI machine: settings staged, applied by the script's reboot, ResetBios,
// Secure Boot enabled and its keys reset.
func TestSushyBios(t *testing.T) {
	requireSushy(t)
	b := startBed(t, bedOptions{uefi: true})
	sys := b.sysPath(0)
	defaults := b.attrs(t, sys+"/Bios")
	if out := b.runSushy(t, "sushy_bios.py", nil); !strings.Contains(out, "ALL OK") {
		t.Fatalf("sushy script did not finish:\n%s", out)
	}

	// What the script left, seen from here: the defaults back, nothing
	// staged, Secure Boot off for the next boot, and the timeline.
	if got := b.attrs(t, sys+"/Bios"); !reflect.DeepEqual(got, defaults) {
		t.Errorf("Bios after the script: %v, want the defaults %v", got, defaults)
	}
	if got := b.attrs(t, sys+"/Bios/Settings"); len(got) != 0 {
		t.Errorf("Settings after the script: %v", got)
	}
	if _, _, sb := b.do(t, "GET", sys+"/SecureBoot", "basic", nil); sb["SecureBootEnable"] != false || sb["SecureBootMode"] != "UserMode" {
		t.Errorf("SecureBoot after the script: %v", sb)
	}
	bios := b.details(events.BMCRedfishBios)
	var applied int
	for _, d := range bios {
		if strings.HasPrefix(d, "applied ") {
			applied++
		}
	}
	if applied != 2 {
		t.Errorf("%d applications recorded, want 2 (settings, ResetBios): %q", applied, bios)
	}
	if len(b.details(events.BMCRedfishSecureBoot)) == 0 {
		t.Error("no secure boot event recorded")
	}
}

// TestRedfishtoolBios reads the Bios with the DMTF's redfishtool (which
// has no Bios command: raw GET) and stages a setting with a raw PATCH.
func TestRedfishtoolBios(t *testing.T) {
	tool := testenv.RequireTool(t, "redfishtool", "redfishtool")
	b := startBed(t, bedOptions{})
	sys := b.sysPath(0)
	run := func(args ...string) string {
		t.Helper()
		full := append([]string{"-r", strings.TrimPrefix(b.url, "https://"), "-u", testUser, "-p", testPass, "-S", "Always", "-A", "Session", "-T", "10"}, args...)
		cmd := exec.CommandContext(t.Context(), tool, full...)
		cmd.Env = cleanEnv()
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redfishtool %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("raw", "GET", sys+"/Bios"); !strings.Contains(out, `"BootMode": "Bios"`) || !strings.Contains(out, biosRegistryID) {
		t.Errorf("raw GET Bios:\n%s", out)
	}
	run("raw", "-d", `{"Attributes":{"ProcTurboMode":"Disabled"}}`, "PATCH", sys+"/Bios/Settings")
	if got := b.attrs(t, sys+"/Bios/Settings"); !reflect.DeepEqual(got, map[string]any{"ProcTurboMode": "Disabled"}) {
		t.Errorf("Settings after redfishtool's PATCH: %v", got)
	}
}
