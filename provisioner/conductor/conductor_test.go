package conductor

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
	"github.com/metalbed/metalbed/provisioner/store/sqlite"
)

// testPower is a power interface double: a BMC kept in memory.
type testPower struct {
	mu          sync.Mutex
	state       provisioner.PowerState
	validateErr error
	getErr      error
	setErr      error
	block       chan struct{} // GetPowerState waits on it when non-nil
	calls       []string
}

func (p *testPower) Validate(ctx context.Context, n *provisioner.Node) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := n.DriverInfo["address"]; !ok && p.validateErr == nil {
		return errors.New("Missing the following IPMI credentials in node's driver_info: ['address']")
	}
	return p.validateErr
}

func (p *testPower) GetPowerState(ctx context.Context, n *provisioner.Node) (provisioner.PowerState, error) {
	p.mu.Lock()
	block := p.block
	p.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "status")
	return p.state, p.getErr
}

func (p *testPower) SetPowerState(ctx context.Context, n *provisioner.Node, target provisioner.PowerState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, string(target))
	if p.setErr != nil {
		return p.setErr
	}
	if target == provisioner.SoftPowerOff {
		target = provisioner.PowerOff
	}
	p.state = target
	return nil
}

func (p *testPower) Reboot(ctx context.Context, n *provisioner.Node, soft bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "off", "on")
	p.state = provisioner.PowerOn
	return p.setErr
}

func (p *testPower) set(f func(p *testPower)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// testDeploy is a deploy interface double answering its result.
type testDeploy struct{ result drivers.Step }

func (d *testDeploy) Validate(ctx context.Context, t *drivers.Task) error {
	if _, ok := t.Node.InstanceInfo["image_source"]; !ok {
		return errors.New("Missing are: ['instance_info.image_source']")
	}
	return nil
}
func (d *testDeploy) Prepare(ctx context.Context, t *drivers.Task) error { return nil }
func (d *testDeploy) Deploy(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	return d.result, nil
}
func (d *testDeploy) TearDown(ctx context.Context, t *drivers.Task) error { return nil }
func (d *testDeploy) CleanUp(ctx context.Context, t *drivers.Task) error  { return nil }
func (d *testDeploy) TakeOver(ctx context.Context, t *drivers.Task) error { return nil }

func testTypes(t *testing.T, p *testPower, d drivers.DeployInterface) *drivers.Registry {
	t.Helper()
	enabled := map[drivers.Role][]string{}
	for _, r := range drivers.Roles() {
		enabled[r] = []string{"no-" + string(r)}
	}
	enabled[drivers.RolePower] = []string{"testpower"}
	enabled[drivers.RoleNetwork] = []string{"noop"}
	enabled[drivers.RoleStorage] = []string{"noop"}
	hw := &drivers.HardwareType{
		Name: "test", Enabled: enabled,
		Power: map[string]drivers.PowerInterface{"testpower": p},
	}
	if d != nil {
		// A deploy interface is handed the node's boot and management
		// interfaces: Ironic's fakes.
		fake := drivers.NewFakeHardware()
		enabled[drivers.RoleDeploy] = []string{"testdeploy"}
		enabled[drivers.RoleBoot] = []string{"fake"}
		enabled[drivers.RoleManagement] = []string{"fake"}
		hw.Deploy = map[string]drivers.DeployInterface{"testdeploy": d}
		hw.Boot, hw.Management = fake.Boot, fake.Management
	}
	reg, err := drivers.NewRegistry(hw)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

type harness struct {
	c     *Conductor
	st    store.Store
	stop  func()
	power *testPower
}

func start(t *testing.T, st store.Store, reg *drivers.Registry, mod func(*Config)) *harness {
	t.Helper()
	cfg := Config{Hostname: "test-conductor", Store: st, Drivers: reg, LockRetries: -1,
		PowerSyncInterval: -1, CheckProvisionInterval: -1}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "conductor running", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.runCtx != nil
	})
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return &harness{c: c, st: st, stop: stop}
}

func openStore(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, cond, "%s", what)
}

func waitState(t *testing.T, st store.Store, uuid string, want provisioner.ProvisionState) *provisioner.Node {
	t.Helper()
	var n *provisioner.Node
	waitFor(t, "state "+string(want), func() bool {
		var err error
		n, err = st.Node(context.Background(), uuid)
		return err == nil && n.ProvisionState == want && n.Reservation == ""
	})
	return n
}

func newNode(t *testing.T, h *harness, state provisioner.ProvisionState) *provisioner.Node {
	t.Helper()
	n := &provisioner.Node{Driver: "test", ProvisionState: state, DriverInfo: map[string]any{"address": "127.0.0.1"}}
	if err := h.c.CreateNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestManageVerifiesThroughPowerInterface(t *testing.T) {
	p := &testPower{state: provisioner.PowerOff}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, "")
	if n.ProvisionState != provisioner.StateEnroll || n.Interfaces.Power != "testpower" || n.Interfaces.Network != "noop" {
		t.Fatalf("created node: %+v", n)
	}
	if err := h.c.Provision(t.Context(), n.UUID, "manage", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, h.st, n.UUID, provisioner.StateManageable)
	if got.PowerState != provisioner.PowerOff || got.TargetProvisionState != "" || got.LastError != "" {
		t.Fatalf("after manage: %+v", got)
	}
	if got.DriverInternalInfo["last_power_state_change"] == nil {
		t.Error("last_power_state_change not recorded")
	}
	if len(p.calls) == 0 || p.calls[0] != "status" {
		t.Errorf("verify did not read the power state: %v", p.calls)
	}
}

func TestManageFailsBackToEnroll(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, "")
	n, _ = h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error {
		n.DriverInfo = map[string]any{}
		return nil
	})
	if err := h.c.Provision(t.Context(), n.UUID, "manage", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, h.st, n.UUID, provisioner.StateEnroll)
	want := "Failed to validate power driver interface for node " + n.UUID + ". Error: Missing the following IPMI credentials in node's driver_info: ['address']"
	if got.LastError != want {
		t.Fatalf("last_error %q, want %q", got.LastError, want)
	}
	hist, _ := h.st.History(t.Context(), n.UUID)
	if len(hist) == 0 || hist[len(hist)-1].Severity != "ERROR" || hist[len(hist)-1].Event != want {
		t.Fatalf("history: %+v", hist)
	}

	p.set(func(p *testPower) { p.getErr = errors.New("BMC timeout") })
	h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error {
		n.DriverInfo = map[string]any{"address": "x"}
		return nil
	})
	h.c.Provision(t.Context(), n.UUID, "manage", ProvisionOptions{})
	got = waitState(t, h.st, n.UUID, provisioner.StateEnroll)
	if !strings.HasPrefix(got.LastError, "Failed to get power state for node "+n.UUID+". Error: BMC timeout") {
		t.Fatalf("last_error %q", got.LastError)
	}
}

// TestEveryRefusal asks every verb in every state; those the table has no
// edge for must be refused with Ironic's text and leave the node alone.
func TestEveryRefusal(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, &testDeploy{}), nil)
	for _, state := range allStates {
		for _, verb := range Verbs() {
			if _, ok := want[state][verbEvents[verb]]; ok && !slices.Contains(busy, state) {
				continue
			}
			n := newNode(t, h, state)
			err := h.c.Provision(t.Context(), n.UUID, verb, ProvisionOptions{})
			wantMsg := `The requested action "` + verb + `" can not be performed on node "` + n.UUID + `" while it is in state "` + string(state) + `".`
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindInvalid || e.Msg != wantMsg {
				t.Errorf("%s in %q: got %v, want %q", verb, state, err, wantMsg)
			}
			if got, _ := h.st.Node(t.Context(), n.UUID); got.ProvisionState != state || got.Reservation != "" {
				t.Errorf("%s in %q changed the node: %+v", verb, state, got)
			}
		}
	}
}

func TestNodeLocked(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, "")
	if _, err := h.st.ReserveNode(t.Context(), n.UUID, "other-host"); err != nil {
		t.Fatal(err)
	}
	want := "Node " + n.UUID + " is locked by host other-host, please retry after the current operation is completed."
	for name, call := range map[string]func() error{
		"manage": func() error { return h.c.Provision(t.Context(), n.UUID, "manage", ProvisionOptions{}) },
		"power":  func() error { return h.c.SetPowerState(t.Context(), n.UUID, provisioner.PowerOn, 0) },
		"delete": func() error { return h.c.DeleteNode(t.Context(), n.UUID) },
		"patch": func() error {
			_, err := h.c.UpdateNode(t.Context(), n.UUID, func(*provisioner.Node) error { return nil })
			return err
		},
	} {
		err := call()
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindLocked || e.Msg != want {
			t.Errorf("%s: got %v, want NodeLocked %q", name, err, want)
		}
	}
}

func TestPowerActions(t *testing.T) {
	p := &testPower{state: provisioner.PowerOff}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, provisioner.StateManageable)
	for _, tc := range []struct {
		target provisioner.PowerState
		want   provisioner.PowerState
	}{
		{provisioner.PowerOn, provisioner.PowerOn},
		{provisioner.PowerOn, provisioner.PowerOn}, // already on: skipped
		{provisioner.PowerOff, provisioner.PowerOff},
		{provisioner.Rebooting, provisioner.PowerOn},
		{provisioner.SoftPowerOff, provisioner.PowerOff},
	} {
		if err := h.c.SetPowerState(t.Context(), n.UUID, tc.target, 0); err != nil {
			t.Fatal(err)
		}
		var got *provisioner.Node
		waitFor(t, "power "+string(tc.target), func() bool {
			got, _ = h.st.Node(t.Context(), n.UUID)
			return got.Reservation == "" && got.TargetPowerState == ""
		})
		if got.PowerState != tc.want || got.LastError != "" {
			t.Fatalf("%s: node %+v", tc.target, got)
		}
	}
	if err := h.c.SetPowerState(t.Context(), n.UUID, "sideways", 0); KindOf(err) != KindInvalid {
		t.Fatalf("bad target: %v", err)
	}
	p.set(func(p *testPower) { p.setErr = errors.New("BMC said no") })
	h.c.SetPowerState(t.Context(), n.UUID, provisioner.PowerOn, 0)
	var got *provisioner.Node
	waitFor(t, "power failure recorded", func() bool {
		got, _ = h.st.Node(t.Context(), n.UUID)
		return got.Reservation == "" && got.LastError != ""
	})
	if got.LastError != "Failed to change power state to 'power on' by 'power on'. Error: BMC said no" || got.PowerState != provisioner.PowerOff {
		t.Fatalf("after failed power on: %+v", got)
	}
}

func TestProvideAndClean(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, provisioner.StateManageable)
	if err := h.c.Provision(t.Context(), n.UUID, "provide", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, h.st, n.UUID, provisioner.StateAvailable)
	if err := h.c.Provision(t.Context(), n.UUID, "manage", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, h.st, n.UUID, provisioner.StateManageable)

	on := true
	h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error { n.AutomatedClean = &on; return nil })
	h.c.Provision(t.Context(), n.UUID, "provide", ProvisionOptions{})
	got := waitState(t, h.st, n.UUID, provisioner.StateCleanFailed)
	if !strings.Contains(got.LastError, "automated cleaning") || got.TargetProvisionState != provisioner.StateAvailable {
		t.Fatalf("clean failed node: %+v", got)
	}
	if err := h.c.Provision(t.Context(), n.UUID, "clean", ProvisionOptions{}); KindOf(err) != KindInvalid {
		t.Fatalf("clean without steps: %v", err)
	}
	h.c.Provision(t.Context(), n.UUID, "manage", ProvisionOptions{})
	waitState(t, h.st, n.UUID, provisioner.StateManageable)
	// A deploy interface that runs no ramdisk offers no clean steps: a
	// manual cleaning is refused before anything starts, as Ironic's.
	err := h.c.Provision(t.Context(), n.UUID, "clean", ProvisionOptions{CleanSteps: []map[string]any{{"interface": "deploy", "step": "erase_devices"}}})
	if KindOf(err) != KindInvalid || !strings.Contains(err.Error(), "node does not support this clean step: {'interface': 'deploy', 'step': 'erase_devices'}") {
		t.Fatalf("manual clean on a deploy interface without steps: %v", err)
	}
	if got, _ := h.st.Node(t.Context(), n.UUID); got.ProvisionState != provisioner.StateManageable {
		t.Fatalf("after a refused manual clean: %s", got.ProvisionState)
	}
}

// TestCleanStepsValidated: clean_steps are checked as Ironic's schema
// checks them, each refusal a 400 with jsonschema's first line.
func TestCleanStepsValidated(t *testing.T) {
	p := &testPower{state: provisioner.PowerOff}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, provisioner.StateManageable)
	for _, tc := range []struct {
		step map[string]any
		want string
	}{
		{map[string]any{"step": "erase_devices"}, "Invalid clean_steps: 'interface' is a required property"},
		{map[string]any{"interface": "deploy"}, "Invalid clean_steps: 'step' is a required property"},
		{map[string]any{"interface": "disk", "step": "x"}, "Invalid clean_steps: 'disk' is not one of ['power', 'management', 'deploy', 'bios', 'raid']"},
		{map[string]any{"interface": "deploy", "step": "x", "priority": 10.0}, "Invalid clean_steps: Additional properties are not allowed ('priority' was unexpected)"},
		{map[string]any{"interface": "deploy", "step": ""}, "Invalid clean_steps: '' is too short"},
		{map[string]any{"interface": "deploy", "step": 3.0}, "Invalid clean_steps: 3 is not of type 'string'"},
		{map[string]any{"interface": "deploy", "step": "x", "args": "no"}, "Invalid clean_steps: 'no' is not of type 'object'"},
	} {
		err := h.c.Provision(t.Context(), n.UUID, "clean", ProvisionOptions{CleanSteps: []map[string]any{tc.step}})
		if KindOf(err) != KindInvalid || err.Error() != tc.want {
			t.Errorf("%v: got %v, want %q", tc.step, err, tc.want)
		}
	}
}

func TestDeployWithoutDeployInterfaceIsRefused(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, provisioner.StateAvailable)
	err := h.c.Provision(t.Context(), n.UUID, "active", ProvisionOptions{})
	want := "Failed to validate deploy or power info for node " + n.UUID + ". Error: Driver test does not support deploy (disabled or not implemented)."
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindInvalid || e.Msg != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if got, _ := h.st.Node(t.Context(), n.UUID); got.ProvisionState != provisioner.StateAvailable || got.Reservation != "" {
		t.Fatalf("node changed: %+v", got)
	}
	if err := h.c.Provision(t.Context(), n.UUID, "inspect", ProvisionOptions{}); err == nil {
		t.Fatal("inspect from available accepted")
	}
}

func TestDeployWaitsThenTimesOut(t *testing.T) {
	p := &testPower{}
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, &testDeploy{result: drivers.StepWait}),
		func(c *Config) { c.DeployCallbackTimeout, c.Now = time.Minute, clock.Now })
	n := newNode(t, h, provisioner.StateAvailable)
	if err := h.c.Provision(t.Context(), n.UUID, "active", ProvisionOptions{}); KindOf(err) != KindInvalid {
		t.Fatalf("deploy without image_source: %v", err)
	}
	h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error {
		n.InstanceInfo = map[string]any{"image_source": "http://127.0.0.1/img"}
		return nil
	})
	if err := h.c.Provision(t.Context(), n.UUID, "active", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, h.st, n.UUID, provisioner.StateWaitCallback)
	if got.TargetProvisionState != provisioner.StateActive {
		t.Fatalf("wait call-back target: %+v", got)
	}
	clock.Advance(time.Minute - time.Second)
	h.c.CheckTimeouts(t.Context())
	if got, _ := h.st.Node(t.Context(), n.UUID); got.ProvisionState != provisioner.StateWaitCallback {
		t.Fatalf("failed before the callback timeout: %s %q", got.ProvisionState, got.LastError)
	}
	clock.Advance(time.Second)
	h.c.CheckTimeouts(t.Context())
	got = waitState(t, h.st, n.UUID, provisioner.StateDeployFailed)
	if got.LastError != "Timeout reached while waiting for callback for node "+n.UUID {
		t.Fatalf("last_error %q", got.LastError)
	}
	// deploy failed -deleted-> deleting -> cleaning -> available.
	if err := h.c.Provision(t.Context(), n.UUID, "deleted", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	got = waitState(t, h.st, n.UUID, provisioner.StateAvailable)
	if len(got.InstanceInfo) != 0 {
		t.Fatalf("instance_info kept after undeploy: %v", got.InstanceInfo)
	}
}

func TestDeleteNode(t *testing.T) {
	p := &testPower{}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, provisioner.StateActive)
	err := h.c.DeleteNode(t.Context(), n.UUID)
	if KindOf(err) != KindConflict || !strings.Contains(err.Error(), `while it is in provision state "active"`) {
		t.Fatalf("delete active: %v", err)
	}
	if got, _ := h.st.Node(t.Context(), n.UUID); got.Reservation != "" {
		t.Fatal("refused delete kept the lock")
	}
	h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error { n.Protected = true; return nil })
	for _, verb := range []string{"deleted", "rebuild"} {
		if err := h.c.Provision(t.Context(), n.UUID, verb, ProvisionOptions{}); KindOf(err) != KindForbidden {
			t.Errorf("%s on a protected node: %v", verb, err)
		}
	}
	if err := h.c.DeleteNode(t.Context(), n.UUID); KindOf(err) != KindForbidden {
		t.Errorf("delete of a protected node: %v", err)
	}
	h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error { n.Protected = false; return nil })
	if _, err := h.c.SetMaintenance(t.Context(), n.UUID, true, "broken"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.DeleteNode(t.Context(), n.UUID); err != nil {
		t.Fatalf("delete in maintenance: %v", err)
	}
	if _, err := h.c.Node(t.Context(), n.UUID); KindOf(err) != KindNotFound {
		t.Fatalf("deleted node: %v", err)
	}
}

func TestPowerSyncRecordsChangesAndFailures(t *testing.T) {
	p := &testPower{state: provisioner.PowerOff}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	n := newNode(t, h, provisioner.StateManageable)
	h.c.SyncPowerStates(t.Context())
	got, _ := h.st.Node(t.Context(), n.UUID)
	if got.PowerState != provisioner.PowerOff {
		t.Fatalf("first sync: %q", got.PowerState)
	}
	p.set(func(p *testPower) { p.state = provisioner.PowerOn }) // changed out of band
	h.c.SyncPowerStates(t.Context())
	got, _ = h.st.Node(t.Context(), n.UUID)
	if got.PowerState != provisioner.PowerOn || got.Reservation != "" {
		t.Fatalf("second sync: %+v", got)
	}
	hist, _ := h.st.History(t.Context(), n.UUID)
	if len(hist) != 1 || hist[0].EventType != "power" {
		t.Fatalf("history: %+v", hist)
	}
	p.set(func(p *testPower) { p.getErr = errors.New("no answer") })
	for range 3 {
		h.c.SyncPowerStates(t.Context())
	}
	got, _ = h.st.Node(t.Context(), n.UUID)
	if !got.Maintenance || got.Fault != "power failure" || got.PowerState != provisioner.PowerError {
		t.Fatalf("after 3 failures: %+v", got)
	}
}

// TestRestartRecovers stops the conductor while a verify task is blocked on
// the BMC (the node stays "verifying", reserved), reopens the store with a
// new conductor and sees Ironic's recovery.
func TestRestartRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st := openStore(t, path)
	p := &testPower{block: make(chan struct{})}
	h := start(t, st, testTypes(t, p, nil), nil)
	n := newNode(t, h, "")
	deploying := newNode(t, h, provisioner.StateDeploying)
	if err := h.c.Provision(t.Context(), n.UUID, "manage", ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	h.stop()
	got, _ := st.Node(t.Context(), n.UUID)
	if got.ProvisionState != provisioner.StateVerifying || got.Reservation != "test-conductor" {
		t.Fatalf("after stop: %+v", got)
	}
	st.Close()

	st2 := openStore(t, path)
	p2 := &testPower{}
	h2 := start(t, st2, testTypes(t, p2, nil), nil)
	got = waitState(t, st2, n.UUID, provisioner.StateEnroll)
	if got.LastError != "The verifying state can't be resumed by conductor test-conductor. Moving to fail state." {
		t.Fatalf("verifying after restart: %+v", got)
	}
	got = waitState(t, st2, deploying.UUID, provisioner.StateDeployFailed)
	if !strings.Contains(got.LastError, "deploying state can't be resumed") {
		t.Fatalf("deploying after restart: %q", got.LastError)
	}
	recs, _ := st2.Conductors(t.Context())
	if len(recs) != 1 || !h2.c.Alive(recs[0]) {
		t.Fatalf("conductor record: %+v", recs)
	}
	h2.stop()
	recs, _ = st2.Conductors(t.Context())
	if h2.c.Alive(recs[0]) {
		t.Fatal("stopped conductor still alive")
	}
}

// TestEveryAcceptedVerb runs every verb the table accepts from a state a
// request can find a node in, to the state the whole flow ends in (or
// Ironic's refusal where validation stops it).
func TestEveryAcceptedVerb(t *testing.T) {
	p := &testPower{state: provisioner.PowerOff}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, &testDeploy{result: drivers.StepDone}), nil)
	steps := []map[string]any{{"interface": "deploy", "step": "erase_devices"}}
	for _, tc := range []struct {
		from    provisioner.ProvisionState
		verb    string
		opts    ProvisionOptions
		want    provisioner.ProvisionState // "" = refused
		refusal string
	}{
		{"enroll", "manage", ProvisionOptions{}, "manageable", ""},
		{"available", "manage", ProvisionOptions{}, "manageable", ""},
		{"clean failed", "manage", ProvisionOptions{}, "manageable", ""},
		{"inspect failed", "manage", ProvisionOptions{}, "manageable", ""},
		{"manageable", "provide", ProvisionOptions{}, "available", ""},
		{"manageable", "clean", ProvisionOptions{CleanSteps: steps}, "", "node does not support this clean step"},
		{"manageable", "clean", ProvisionOptions{}, "", `"clean_steps" is required`},
		{"manageable", "inspect", ProvisionOptions{}, "", "Driver test does not support inspect"},
		{"inspect failed", "inspect", ProvisionOptions{}, "", "Driver test does not support inspect"},
		{"available", "active", ProvisionOptions{}, "active", ""},
		{"available", "deploy", ProvisionOptions{ConfigDrive: "H4sI"}, "active", ""},
		{"deploy failed", "active", ProvisionOptions{}, "active", ""},
		{"deploy failed", "rebuild", ProvisionOptions{}, "active", ""},
		{"active", "rebuild", ProvisionOptions{}, "active", ""},
		{"error", "rebuild", ProvisionOptions{}, "active", ""},
		{"active", "deleted", ProvisionOptions{}, "available", ""},
		{"deploy failed", "undeploy", ProvisionOptions{}, "available", ""},
		{"error", "deleted", ProvisionOptions{}, "available", ""},
		{"wait call-back", "abort", ProvisionOptions{}, "deploy failed", ""},
		{"clean wait", "abort", ProvisionOptions{}, "clean failed", ""},
		{"inspect wait", "abort", ProvisionOptions{}, "inspect failed", ""},
	} {
		n := newNode(t, h, tc.from)
		h.c.UpdateNode(t.Context(), n.UUID, func(n *provisioner.Node) error {
			n.InstanceInfo = map[string]any{"image_source": "http://127.0.0.1/img"}
			return nil
		})
		err := h.c.Provision(t.Context(), n.UUID, tc.verb, tc.opts)
		if tc.want == "" {
			if KindOf(err) != KindInvalid || !strings.Contains(err.Error(), tc.refusal) {
				t.Errorf("%s from %q: got %v, want refusal %q", tc.verb, tc.from, err, tc.refusal)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s from %q: %v", tc.verb, tc.from, err)
			continue
		}
		got := waitState(t, h.st, n.UUID, tc.want)
		if tc.verb == "deploy" && got.InstanceInfo["configdrive"] != "H4sI" {
			t.Errorf("configdrive not kept: %v", got.InstanceInfo)
		}
		if strings.HasSuffix(string(tc.want), "failed") && got.LastError == "" {
			t.Errorf("%s from %q: %q without last_error", tc.verb, tc.from, tc.want)
		}
	}
}

// TestRunStoppedWhileStarting: a stop that arrives while the conductor
// registers or recovers is a stop, not an error (`provisioner serve` once
// exited 1 with "recover nodes: list nodes: context canceled").
func TestRunStoppedWhileStarting(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	c, err := New(Config{Hostname: "test-conductor", Store: st, Drivers: testTypes(t, &testPower{}, nil),
		LockRetries: -1, PowerSyncInterval: -1, CheckProvisionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run with its context already over: %v, want nil", err)
	}
}
