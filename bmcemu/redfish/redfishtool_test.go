package redfish

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/testenv"
)

// TestRedfishtool drives the service with the DMTF's redfishtool over
// HTTPS, with basic auth and with a session.
func TestRedfishtool(t *testing.T) {
	tool := testenv.RequireTool(t, "redfishtool", "redfishtool")
	b := startBed(t, bedOptions{})
	m := b.machines[0]
	host := strings.TrimPrefix(b.url, "https://")
	run := func(auth string, pass string, args ...string) (string, error) {
		t.Helper()
		full := append([]string{"-r", host, "-u", testUser, "-p", pass, "-S", "Always", "-A", auth, "-T", "10"}, args...)
		cmd := exec.CommandContext(t.Context(), tool, full...)
		cmd.Env = cleanEnv()
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, auth := range []string{"Basic", "Session"} {
		out, err := run(auth, testPass, "Systems")
		if err != nil {
			t.Fatalf("%s: Systems: %v\n%s", auth, err, out)
		}
		var coll struct {
			Members []struct {
				ID string `json:"@odata.id"`
			}
		}
		if err := json.Unmarshal([]byte(out), &coll); err != nil || len(coll.Members) != 1 || coll.Members[0].ID != b.sysPath(0) {
			t.Errorf("%s: Systems answered %q (%v)", auth, out, err)
		}
		if out, err := run(auth, "wrong", "Systems"); err == nil {
			t.Errorf("%s: a wrong password was accepted:\n%s", auth, out)
		}
	}

	out, err := run("Session", testPass, "Systems", "-I", m.hw.UUID, "reset", "On")
	if err != nil {
		t.Fatalf("reset On: %v\n%s", err, out)
	}
	if a, _ := m.lastAction(); a != bmcemu.PowerUp {
		t.Errorf("reset On: machine got %v", a)
	}
	out, err = run("Basic", testPass, "Systems", "-I", m.hw.UUID, "reset", "ForceOff")
	if err != nil {
		t.Fatalf("reset ForceOff: %v\n%s", err, out)
	}
	if on, _ := m.PowerState(t.Context()); on {
		t.Error("reset ForceOff left the machine on")
	}
	out, err = run("Session", testPass, "Systems", "-I", m.hw.UUID, "setBootOverride", "Continuous", "Pxe")
	if err != nil {
		t.Fatalf("setBootOverride: %v\n%s", err, out)
	}
	if f, _ := m.BootFlags(t.Context()); f[0]&0xc0 != 0xc0 || f[1] != 0x04 {
		t.Errorf("setBootOverride Continuous Pxe: flags % x", f)
	}
	out, err = run("Basic", testPass, "Systems", "-I", m.hw.UUID, "EthernetInterfaces", "-a")
	if err != nil || !strings.Contains(out, m.hw.MACs[0].String()) {
		t.Errorf("EthernetInterfaces: %v\n%s", err, out)
	}
	out, err = run("Basic", testPass, "Managers", "-I", m.hw.UUID)
	if err != nil || !strings.Contains(out, `"FirmwareVersion"`) {
		t.Errorf("Managers: %v\n%s", err, out)
	}
	out, err = run("Basic", testPass, "Chassis", "-I", m.hw.UUID, "Power")
	if err != nil || !strings.Contains(out, "PowerControl") {
		t.Errorf("Chassis Power: %v\n%s", err, out)
	}
}

// TestRedfishtoolLogs reads the SEL with redfishtool's Logs subcommands
// (System and Manager) after an ipmitool power on, clears it with a raw
// POST of ClearLog (redfishtool's clearLog is not implemented), and
// ipmitool sees it empty.
func TestRedfishtoolLogs(t *testing.T) {
	tool := testenv.RequireTool(t, "redfishtool", "redfishtool")
	sel := bmcemu.NewSEL(0)
	b := startBed(t, bedOptions{sel: sel})
	ipmi := startIPMI(t, b.machines[0], sel)
	id := b.machines[0].hw.UUID
	host := strings.TrimPrefix(b.url, "https://")
	run := func(args ...string) string {
		t.Helper()
		full := append([]string{"-r", host, "-u", testUser, "-p", testPass, "-S", "Always", "-A", "Session", "-T", "10"}, args...)
		cmd := exec.CommandContext(t.Context(), tool, full...)
		cmd.Env = cleanEnv()
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redfishtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ipmi.must("power", "on")

	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		}
	}
	if out := run("Systems", "-I", id, "Logs"); json.Unmarshal([]byte(out), &coll) != nil || len(coll.Members) != 1 ||
		coll.Members[0].ID != b.sysPath(0)+"/LogServices/Sel" {
		t.Errorf("Systems Logs: %s", out)
	}
	var entries struct {
		Members []struct {
			Message, SensorType, EntryCode string
		}
		Count int `json:"Members@odata.count"`
	}
	for _, top := range []string{"Systems", "Managers"} {
		out := run(top, "-I", id, "Logs", "-i", "Sel", "--Entries")
		if err := json.Unmarshal([]byte(out), &entries); err != nil || entries.Count != 3 || len(entries.Members) != 3 {
			t.Fatalf("%s Logs -i Sel --Entries (%v): %s", top, err, out)
		}
		if e := entries.Members[0]; e.Message != "Power Unit: Power Off / Power Down deasserted" || e.SensorType != "PowerUnit" || e.EntryCode != "Deassert" {
			t.Errorf("%s: first entry %+v", top, e)
		}
	}
	run("raw", "-d", "{}", "POST", b.sysPath(0)+"/LogServices/Sel/Actions/LogService.ClearLog")
	if out := ipmi.must("sel", "list"); !strings.Contains(out, "SEL has no entries") {
		t.Errorf("after ClearLog, ipmitool sel list:\n%s", out)
	}
	out := run("Managers", "-I", id, "Logs", "-i", "Sel", "--Entries")
	if err := json.Unmarshal([]byte(out), &entries); err != nil || entries.Count != 0 {
		t.Errorf("after ClearLog (%v): %s", err, out)
	}
	out = run("Chassis", "-I", id, "Thermal")
	if !strings.Contains(out, `"ReadingCelsius": 46`) || !strings.Contains(out, `"Reading": 5400`) {
		t.Errorf("Chassis Thermal powered on:\n%s", out)
	}
}
