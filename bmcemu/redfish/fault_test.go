package redfish

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
)

// TestFaults: layer redfish, op the HTTP method (a rule of op "POST" hits
// an action's "POST <action>"): "status" answers a
// machine's request with that status and a Redfish error body, as often as
// the rule says; "delay" answers late; requests outside a machine's
// resources are not asked about.
func TestFaults(t *testing.T) {
	in := faulttest.New(t,
		fault.Rule{Layer: fault.Redfish, Op: "PATCH", Action: "status", Arg: "503", Count: 1},
		fault.Rule{Layer: fault.Redfish, Op: "POST", Action: "delay", Delay: 300 * time.Millisecond, Count: 1})
	b := startBed(t, bedOptions{plain: true, faults: in})
	boot := map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
	status, _, body := b.do(t, "PATCH", b.sysPath(0), "basic", boot)
	checkError(t, "faulted PATCH", status, http.StatusServiceUnavailable, body)
	if status, _, _ := b.do(t, "PATCH", b.sysPath(0), "basic", boot); status != http.StatusOK && status != http.StatusNoContent {
		t.Errorf("PATCH after the rule's one hit: %d", status)
	}
	if status, _, _ := b.do(t, "GET", b.sysPath(0), "basic", nil); status != http.StatusOK {
		t.Errorf("GET (no rule for it): %d", status)
	}
	start := time.Now()
	reset := map[string]any{"ResetType": "On"}
	if status, _, _ := b.do(t, "POST", b.sysPath(0)+"/Actions/ComputerSystem.Reset", "basic", reset); status != http.StatusNoContent && status != http.StatusOK {
		t.Errorf("delayed reset: %d", status)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("delayed reset answered after %v, want at least 300ms", d)
	}
	if status, _, _ := b.do(t, "GET", "/redfish/v1/Systems", "basic", nil); status != http.StatusOK {
		t.Errorf("collection: %d", status)
	}
	var asked []string
	for _, a := range in.Asked() {
		if a.Who.Machine != b.machines[0].hw.Name {
			t.Errorf("asked for %+v, want machine %s", a.Who, b.machines[0].hw.Name)
		}
		asked = append(asked, a.Op)
	}
	// The kept PATCH is asked about its boot override too (the fixed op
	// of drop-boot-override); an action's POST by its name as well.
	if got := strings.Join(asked, ", "); got != "PATCH, PATCH, boot-override, GET, POST ComputerSystem.Reset" {
		t.Errorf("asked %s, want PATCH, PATCH, boot-override, GET, POST ComputerSystem.Reset (not the collection)", got)
	}
}
