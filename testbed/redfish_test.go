package testbed

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"github.com/metalbed/metalbed/internal/fault"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
)

// TestRedfishOverSimulatedMachines serves simulated machines over Redfish
// (HTTPS, one listener) beside their IPMI BMCs: inventory.json names each
// node's system, and a Once override set through Redfish is consumed by the
// machine's next real boot while a Continuous one survives boots — in the
// very flags IPMI reads.
func TestRedfishOverSimulatedMachines(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms := machines(2)
	ms[1].Username, ms[1].Password = "root", "calvin"
	tb, err := New(Config{StateDir: dir, Machines: ms, Redfish: &Redfish{Listener: ln}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)

	raw, err := os.ReadFile(filepath.Join(dir, InventoryFile))
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Nodes []struct {
			Name    string
			UUID    string
			Redfish map[string]any
		}
	}
	if err := json.Unmarshal(raw, &inv); err != nil {
		t.Fatal(err)
	}
	want := "https://" + ln.Addr().String()
	for i, n := range inv.Nodes {
		r := n.Redfish
		if len(r) != 5 || r["address"] != want || r["system_id"] != "/redfish/v1/Systems/"+n.UUID ||
			r["username"] != ms[i].Username || r["password"] != ms[i].Password || r["verify_ca"] != filepath.Join(dir, "redfish-ca.pem") {
			t.Errorf("inventory redfish of %s: %v", n.Name, r)
		}
	}
	if tb.RedfishURL() != want {
		t.Errorf("RedfishURL %q, want %q", tb.RedfishURL(), want)
	}
	pem, err := os.ReadFile(inv.Nodes[0].Redfish["verify_ca"].(string))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	sys := want + inv.Nodes[0].Redfish["system_id"].(string)
	do := func(method, url string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, url, rd)
		req.SetBasicAuth("admin", "password")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	// node-1 has other credentials: admin/password does not manage it.
	if st, _ := do("GET", want+inv.Nodes[1].Redfish["system_id"].(string), nil); st != 403 {
		t.Errorf("node-1 with node-0's credentials: %d", st)
	}
	m := tb.fleet.nodes[0].machine
	flags := func() vms.BootFlags {
		f, err := m.BootFlags(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	boot := func() map[string]any {
		_, s := do("GET", sys, nil)
		b, _ := s["Boot"].(map[string]any)
		return b
	}
	reset := func(rt string) {
		t.Helper()
		if st, b := do("POST", sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": rt}); st != 204 {
			t.Fatalf("reset %s: %d %v", rt, st, b)
		}
	}
	if st, b := do("PATCH", sys, map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}); st != 200 {
		t.Fatalf("PATCH Once Pxe: %d %v", st, b)
	}
	if f := flags(); !f.Valid() || f.Persistent() || f.Device() != vms.BootPXE {
		t.Errorf("Once Pxe as IPMI reads it: % x", f)
	}
	reset("On")
	testenv.Eventually(t, 10*time.Second, func() bool { return flags() == vms.BootFlags{} }, "the boot to consume the Once override")
	if b := boot(); b["BootSourceOverrideEnabled"] != "Disabled" {
		t.Errorf("after the boot: %v", b)
	}
	if st, b := do("PATCH", sys, map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "UEFI"}}); st != 200 {
		t.Fatalf("PATCH Continuous Hdd: %d %v", st, b)
	}
	reset("ForceRestart")
	reset("ForceOff")
	reset("On")
	if f := flags(); !f.Valid() || !f.Persistent() || !f.EFI() || f.Device() != vms.BootDisk {
		t.Errorf("Continuous Hdd UEFI after boots, as IPMI reads it: % x", f)
	}
	if b := boot(); b["BootSourceOverrideEnabled"] != "Continuous" || b["BootSourceOverrideTarget"] != "Hdd" || b["BootSourceOverrideMode"] != "UEFI" {
		t.Errorf("Continuous after boots: %v", b)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, s := do("GET", sys, nil)
		bp, _ := s["BootProgress"].(map[string]any)
		return s["PowerState"] == "On" && bp != nil && bp["LastState"] != "None"
	}, "BootProgress after a boot")
	// What IPMI writes, Redfish reads.
	if err := m.SetBootFlags(t.Context(), vms.NewBootFlags(vms.BootCDROM, false, false)); err != nil {
		t.Fatal(err)
	}
	if b := boot(); b["BootSourceOverrideEnabled"] != "Once" || b["BootSourceOverrideTarget"] != "Cd" || b["BootSourceOverrideMode"] != "Legacy" {
		t.Errorf("flags set as IPMI does read as %v", b)
	}
}

// TestRedfishTimeline: with the provisioner, Redfish actions are in the
// node's timeline, keyed by the machine's name.
func TestRedfishTimeline(t *testing.T) {
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: free(), Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	inv := tb.Inventory()
	r := inv.Nodes[0].Redfish
	if r == nil || r.VerifyCA != false {
		t.Fatalf("inventory redfish %+v", r)
	}
	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", r.Address+path, strings.NewReader(body))
		req.SetBasicAuth(r.Username, r.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	post("/redfish/v1/SessionService/Sessions", `{"UserName": "admin", "Password": "password"}`)
	post(r.SystemID+"/Actions/ComputerSystem.Reset", `{"ResetType": "On"}`)
	post("/redfish/v1/Managers/node-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", `{"Image": "http://127.0.0.1/x.iso"}`)
	for _, k := range []events.Kind{events.BMCRedfishSessions, events.BMCRedfishReset, events.BMCRedfishMedia} {
		testenv.Eventually(t, 10*time.Second, func() bool { return hasKind(tb, "node-0", k) }, "%s in node-0's timeline", k)
	}

	// A fault at layer redfish, added through the fault endpoint as
	// `metalbed fault add` does: node-0's next reset answers 503, in its
	// timeline as fault.redfish.status.
	rule, _ := json.Marshal(fault.Rule{Node: "node-0", Layer: fault.Redfish, Op: "POST", Action: "status", Arg: "503", Count: 1})
	res, err := http.Post(tb.TimelineURL()+"/v1/faults", "application/json", bytes.NewReader(rule))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/faults: %s", res.Status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", r.Address+r.SystemID+"/Actions/ComputerSystem.Reset", strings.NewReader(`{"ResetType": "ForceOff"}`))
	req.SetBasicAuth(r.Username, r.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("reset with a redfish fault: %d, want 503", resp.StatusCode)
	}
	if !hasKind(tb, "node-0", "fault.redfish.status") {
		t.Errorf("no fault.redfish.status in node-0's timeline")
	}
	post(r.SystemID+"/Actions/ComputerSystem.Reset", `{"ResetType": "ForceOff"}`) // the rule fired its one time
}
