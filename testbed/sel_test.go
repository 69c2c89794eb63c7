package testbed

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestSELSharedByIPMIAndRedfish: a machine's IPMI BMC and the Redfish
// service keep one System Event Log. ipmitool lists the records of a
// Redfish reset (once each, though both protocols follow the machine), a
// Redfish ClearLog empties what ipmitool lists, and what ipmitool does
// shows up in Redfish's LogService until `ipmitool sel clear`.
func TestSELSharedByIPMIAndRedfish(t *testing.T) {
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	inv := tb.Inventory()
	rf := inv.Nodes[0].Redfish
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(tb.fleet.nodes[0].bmcAddr().Port)
	ipmitool := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		full := append([]string{"-I", "lanplus", "-H", "127.0.0.1", "-p", port, "-U", "admin", "-f", pw, "-R", "1", "-N", "1"}, args...)
		out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	redfish := func(method, path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, rf.Address+path, strings.NewReader(body))
		req.SetBasicAuth(rf.Username, rf.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %s", method, path, resp.Status)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	sel := rf.SystemID + "/LogServices/Sel"
	redfishMessages := func() string {
		var m []string
		for _, e := range redfish("GET", sel+"/Entries", "")["Members"].([]any) {
			m = append(m, e.(map[string]any)["Message"].(string))
		}
		return strings.Join(m, "\n")
	}

	// Into firmware setup, so the boot is one the SEL records.
	redfish("PATCH", rf.SystemID, `{"Boot": {"BootSourceOverrideTarget": "BiosSetup", "BootSourceOverrideEnabled": "Once"}}`)
	redfish("POST", rf.SystemID+"/Actions/ComputerSystem.Reset", `{"ResetType": "On"}`)
	var list string
	testenv.Eventually(t, 10*time.Second, func() bool {
		list = ipmitool("sel", "list")
		return strings.Contains(list, "System boot initiated")
	}, "ipmitool to list the boot of a Redfish reset")
	for _, want := range []string{"Power Unit #0x01 | Power off/down | Deasserted", "Button #0x04 | Power Button pressed", "System boot initiated"} {
		if n := strings.Count(list, want); n != 1 {
			t.Errorf("ipmitool sel list has %d × %q, want 1:\n%s", n, want, list)
		}
	}
	redfish("POST", rf.SystemID+"/Actions/ComputerSystem.Reset", `{"ResetType": "ForceOff"}`)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(ipmitool("sel", "list"), "Power off/down | Asserted")
	}, "ipmitool to list the power off")
	if m := redfishMessages(); !strings.Contains(m, "Power Unit: Power Off / Power Down\n") || strings.Count(m, "\n")+1 != strings.Count(ipmitool("sel", "list"), "\n") {
		t.Errorf("Redfish lists\n%s\nipmitool\n%s", m, ipmitool("sel", "list"))
	}

	redfish("POST", sel+"/Actions/LogService.ClearLog", `{}`)
	if out := ipmitool("sel", "info"); !strings.Contains(out, "Entries          : 0") {
		t.Errorf("after Redfish ClearLog, ipmitool sel info:\n%s", out)
	}

	ipmitool("power", "on")
	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(redfishMessages(), "Power Unit: Power Off / Power Down deasserted")
	}, "Redfish to list the power on of ipmitool")
	if m := redfishMessages(); !strings.Contains(m, "Button / Switch: Power Button pressed") {
		t.Errorf("Redfish after ipmitool power on:\n%s", m)
	}
	ipmitool("sel", "clear")
	if m := redfishMessages(); m != "" {
		t.Errorf("Redfish after ipmitool sel clear:\n%s", m)
	}
}
