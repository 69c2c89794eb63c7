package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/bmcemu/redfish"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
)

// biosStep is a bios.apply_configuration step setting LogicalProc.
const biosStep = `[{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"name": "LogicalProc", "value": "Disabled"}]}, "priority": 150}]`

// biosStepDict is biosStep as Ironic prints it.
const biosStepDict = `{'interface': 'bios', 'step': 'apply_configuration', 'args': {'settings': [{'name': 'LogicalProc', 'value': 'Disabled'}]}, 'priority': 150}`

// TestBaremetalCLIDeployStepsRefused deploys a fake-hardware node (deploy
// steps: deploy.deploy only; its bios interface has none) with deploy
// templates and deploy_steps Ironic 21.4 refuses, through the real
// baremetal CLI, and checks Ironic's 400 and that the node did not move.
func TestBaremetalCLIDeployStepsRefused(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	s := newStack(t, stackOpts{})
	id := s.availableNode(t, "fake0", "baremetal", "CUSTOM_BIOS", "CUSTOM_CORE")
	s.baremetal(t, "deploy", "template", "create", "CUSTOM_BIOS", "--steps", biosStep)
	s.must(t, 201, "POST", "/v1/deploy_templates", "1.82", map[string]any{"name": "CUSTOM_CORE", "steps": []any{
		map[string]any{"interface": "deploy", "step": "deploy", "args": map[string]any{"force": true}, "priority": 150}}})
	instanceTraits := func(traits ...any) {
		s.must(t, 200, "PATCH", "/v1/nodes/"+id, "1.82", []map[string]any{{"op": "add", "path": "/instance_info/traits", "value": traits}})
	}
	prefix := "Failed to validate deploy or power info for node " + id + ": "

	instanceTraits("CUSTOM_BIOS")
	s.wantCLIError(t, prefix+"Validation of deploy steps from deploy templates matching this node's instance traits failed. "+
		"Matching deploy templates: CUSTOM_BIOS. Errors: node does not support this deploy step: "+biosStepDict+" (HTTP 400)",
		"node", "deploy", "fake0")
	for _, row := range s.baremetalJSON(t, "node", "validate", "fake0").([]any) {
		if field(row, "Interface") == "deploy" && (field(row, "Result") != false || field(row, "Reason") != "Validation of deploy steps from deploy templates "+
			"matching this node's instance traits failed. Matching deploy templates: CUSTOM_BIOS. Errors: node does not support this deploy step: "+biosStepDict) {
			t.Errorf("validate: %v", row)
		}
	}

	instanceTraits("CUSTOM_CORE", "CUSTOM_BIOS")
	s.wantCLIError(t, prefix+"Validation of deploy steps from deploy templates matching this node's instance traits failed. "+
		"Matching deploy templates: CUSTOM_BIOS,CUSTOM_CORE. Errors: node does not support this deploy step: "+biosStepDict+
		"; deploy step {'interface': 'deploy', 'step': 'deploy', 'args': {'force': True}, 'priority': 150} has these unexpected arguments: force"+
		"; deploy step deploy on interface deploy is a core step and cannot be overridden by user steps. It may be disabled by setting the priority to 0 (HTTP 400)",
		"node", "deploy", "fake0")

	instanceTraits("CUSTOM_NOT_ON_NODE")
	s.wantCLIError(t, prefix+"Cannot specify instance traits that are not also set on the node. Node "+id+" is missing traits CUSTOM_NOT_ON_NODE (HTTP 400)",
		"node", "deploy", "fake0")

	s.must(t, 200, "PATCH", "/v1/nodes/"+id, "1.82", []map[string]any{{"op": "remove", "path": "/instance_info/traits"}})
	twice := `[{"interface": "deploy", "step": "deploy", "args": {}, "priority": 100}, {"interface": "deploy", "step": "deploy", "args": {}, "priority": 100}]`
	s.wantCLIError(t, prefix+`Validation of deploy steps from "deploy steps" argument failed.deploy step deploy on interface deploy is a core step and cannot be overridden by user steps. It may be disabled by setting the priority to 0`+
		"; deploy step deploy on interface deploy is a core step and cannot be overridden by user steps. It may be disabled by setting the priority to 0"+
		"; deploy steps from all deploy templates matching this node's instance traits cannot have the same interface and step. Duplicate deploy steps for deploy.deploy (HTTP 400)",
		"node", "deploy", "fake0", "--deploy-steps", twice)

	n, err := s.st.Node(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if n.ProvisionState != provisioner.StateAvailable || n.LastError != "" || len(n.DeployStep) > 0 || n.DriverInternalInfo["deploy_steps"] != nil {
		t.Errorf("refused deploys changed the node: %s, last_error %q, deploy_step %v, driver_internal_info %v",
			n.ProvisionState, n.LastError, n.DeployStep, n.DriverInternalInfo)
	}

	// The API's own checks of deploy_steps (check_allow_deploy_steps, _DEPLOY_STEPS_SCHEMA).
	step := map[string]any{"interface": "deploy", "step": "deploy", "args": map[string]any{}, "priority": 0}
	for _, tc := range []struct {
		version, target string
		steps           []any
		status          int
		want            string
	}{
		{"1.68", "active", []any{step}, 406, ""},
		{"1.82", "deploy", []any{step}, 400, `"deploy_steps" is only valid when setting target provision state to active or rebuild`},
		{"1.82", "active", []any{map[string]any{"interface": "deploy", "step": "deploy", "args": map[string]any{}}}, 400, "Invalid deploy_steps: 'priority' is a required property"},
		{"1.82", "active", []any{"x"}, 400, "Invalid deploy_steps: 'x' is not of type 'object'"},
	} {
		got := s.do(t, "PUT", "/v1/nodes/"+id+"/states/provision", tc.version, map[string]any{"target": tc.target, "deploy_steps": tc.steps})
		if got.status != tc.status || (tc.want != "" && faultstring(t, got) != tc.want) {
			t.Errorf("%s %s %v: %d %s, want %d %q", tc.version, tc.target, tc.steps, got.status, got.body, tc.status, tc.want)
		}
	}
}

// orderRecorder keeps the kinds and details of the events it is told,
// in order.
type orderRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *orderRecorder) Record(e events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(e.Kind)+" "+e.Detail)
}

func (r *orderRecorder) matching(prefixes ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, g := range r.got {
		for _, p := range prefixes {
			if strings.HasPrefix(g, p) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// biosMachine is the machine behind bmcemu's Redfish service: its power
// and the power-on and reset events its firmware (the service's BIOS)
// acts on; onReset is called as a reset happens.
type biosMachine struct {
	mu      sync.Mutex
	on      bool
	flags   [5]byte
	subs    []func(bmcemu.MachineEvent)
	onReset func()
}

func (m *biosMachine) PowerState(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *biosMachine) Control(_ context.Context, a bmcemu.PowerAction) error {
	m.mu.Lock()
	var ev bmcemu.MachineEventKind
	switch {
	case a == bmcemu.PowerUp && !m.on:
		ev = bmcemu.EventPowerOn
	case a == bmcemu.PowerCycle || a == bmcemu.HardReset:
		ev = bmcemu.EventReset
	case (a == bmcemu.PowerDown || a == bmcemu.SoftShutdown) && m.on:
		ev = bmcemu.EventPowerOff
	}
	m.on = m.on && ev != bmcemu.EventPowerOff || ev == bmcemu.EventPowerOn || ev == bmcemu.EventReset
	subs, onReset := m.subs, m.onReset
	m.mu.Unlock()
	if ev == "" {
		return nil
	}
	if onReset != nil && ev != bmcemu.EventPowerOff {
		onReset()
	}
	for _, fn := range subs {
		fn(bmcemu.MachineEvent{Kind: ev})
	}
	return nil
}

func (m *biosMachine) BootFlags(context.Context) ([5]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flags, nil
}

func (m *biosMachine) SetBootFlags(_ context.Context, f [5]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flags = f
	return nil
}

func (m *biosMachine) AttachConsole(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.New("no console")
}

func (m *biosMachine) Subscribe(fn func(bmcemu.MachineEvent)) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = append(m.subs, fn)
	return func() {}
}

func (m *biosMachine) Hardware() bmcemu.Hardware {
	return bmcemu.Hardware{Name: "rf0", UUID: "8c7e2f5c-1b6d-4b8e-9a51-3f0a2d4c6e71", UEFI: true}
}

// startBiosRedfish serves m on bmcemu's Redfish service (plain HTTP on
// 127.0.0.1:0) and returns its address.
func startBiosRedfish(t *testing.T, m *biosMachine, rec events.Recorder) string {
	t.Helper()
	srv, err := redfish.New(redfish.Config{PlainHTTP: true, Recorder: rec,
		Systems: []redfish.System{{Machine: m, Username: "admin", Password: "secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

// TestBaremetalCLIDeployStepBios deploys a redfish node whose bios
// interface is "redfish", with the real baremetal CLI as Nova sets a
// flavor's traits (node traits, instance_info traits) and a deploy
// template CUSTOM_HT_OFF: bios.apply_configuration runs first (priority
// 150, shown in deploy_step while it runs), stages LogicalProc on the
// system's Bios/Settings, reboots it, and the setting is in effect on
// metalbed's Redfish Bios when deploy.deploy (100) starts and the node is
// active. A setting the BIOS refuses fails the deploy with Ironic's
// last_error.
func TestBaremetalCLIDeployStepBios(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	rec := &orderRecorder{}
	s := newStack(t, stackOpts{redfish: true, recorder: rec})
	m := &biosMachine{}
	addr := startBiosRedfish(t, m, rec)
	id := s.provideNode(t, map[string]any{"driver": "redfish", "name": "rf0", "bios_interface": "redfish",
		"deploy_interface": "fake", "boot_interface": "fake", "driver_info": map[string]any{
			"redfish_address": addr, "redfish_username": "admin", "redfish_password": "secret"}}, "CUSTOM_HT_OFF")
	s.must(t, 202, "PUT", "/v1/nodes/"+id+"/states/power", "1.82", map[string]any{"target": "power on"})
	s.waitNode(t, id, "power on", func(n *provisioner.Node) bool { return n.PowerState == provisioner.PowerOn && n.Reservation == "" })
	if v := s.must(t, 200, "GET", "/v1/nodes/"+id+"/validate", "1.82", nil).obj(t)["bios"].(map[string]any); v["result"] != true {
		t.Errorf("validate bios: %v", v)
	}
	s.baremetal(t, "deploy", "template", "create", "CUSTOM_HT_OFF", "--steps", biosStep)
	s.baremetal(t, "node", "set", "rf0", "--instance-info", `traits=["CUSTOM_HT_OFF"]`)
	var during []string
	m.mu.Lock()
	m.onReset = func() {
		if n, err := s.st.Node(context.Background(), id); err == nil {
			during = append(during, fmt.Sprintf("%v.%v", n.DeployStep["interface"], n.DeployStep["step"]))
		}
	}
	m.mu.Unlock()
	s.baremetal(t, "node", "deploy", "rf0", "--wait", "60")

	shown := s.baremetalJSON(t, "node", "show", "rf0")
	if field(shown, "provision_state") != "active" || len(field(shown, "deploy_step").(map[string]any)) != 0 {
		t.Fatalf("after deploy: %v, deploy_step %v, last_error %v", field(shown, "provision_state"), field(shown, "deploy_step"), field(shown, "last_error"))
	}
	m.mu.Lock()
	if strings.Join(during, " ") != "bios.apply_configuration" {
		t.Errorf("deploy_step at the machine's reset: %v", during)
	}
	m.mu.Unlock()
	want := []string{
		"conductor.deploy_step bios.apply_configuration (priority 150)",
		"bmc.redfish.bios staged LogicalProc=Disabled for the next reset",
		"bmc.redfish.bios applied LogicalProc=Disabled at reset",
		"conductor.deploy_step_done bios.apply_configuration",
		"conductor.deploy_step deploy.deploy (priority 100)",
		"conductor.active ",
	}
	if got := rec.matching("conductor.deploy_step", "bmc.redfish.bios", "conductor.active"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	bios := redfishGet(t, addr+"/redfish/v1/Systems/"+m.Hardware().UUID+"/Bios")
	if a := bios["Attributes"].(map[string]any); a["LogicalProc"] != "Disabled" {
		t.Errorf("Bios attributes after the deploy: %v", a)
	}

	// A value the BIOS refuses, in deploy_steps (overriding the
	// template's step): the PATCH fails, the deploy fails.
	s.must(t, 202, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", map[string]any{"target": "rebuild"})
	s.waitNode(t, id, "rebuilt", func(n *provisioner.Node) bool {
		return n.ProvisionState == provisioner.StateActive && n.Reservation == ""
	})
	bad := `[{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"name": "LogicalProc", "value": "Sometimes"}]}, "priority": 150}]`
	s.baremetal(t, "node", "rebuild", "rf0", "--deploy-steps", bad)
	failed := s.waitNode(t, id, "deploy failed", func(n *provisioner.Node) bool {
		return n.ProvisionState == provisioner.StateDeployFailed && n.Reservation == ""
	})
	if !strings.HasPrefix(failed.LastError, "Deploy step bios.apply_configuration failed: Redfish exception occurred. Error: Redfish BIOS apply configuration failed for node "+id+". Error: ") ||
		!strings.Contains(failed.LastError, "Sometimes") || len(failed.DeployStep) > 0 {
		t.Errorf("last_error %q, deploy_step %v", failed.LastError, failed.DeployStep)
	}
}

// redfishGet GETs a resource of the test's Redfish service as admin.
func redfishGet(t *testing.T, url string) map[string]any {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return out
}
