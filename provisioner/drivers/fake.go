package drivers

import (
	"context"
	"sync"

	"github.com/metalbed/metalbed/provisioner"
)

// NewFakeHardware builds "fake-hardware" as Ironic's: every role "fake"
// (network and storage "noop"). Its interfaces touch no machine; power
// state and boot device are kept in memory per node UUID so a conductor
// sees the transitions it asked for, and nothing else.
func NewFakeHardware() *HardwareType {
	state := &fakeState{power: map[string]provisioner.PowerState{}, boot: map[string]BootDevice{}}
	return &HardwareType{
		Name: "fake-hardware",
		Enabled: map[Role][]string{
			RoleBios:       {"fake", "no-bios"},
			RoleBoot:       {"fake"},
			RoleConsole:    {"fake", "no-console"},
			RoleDeploy:     {"fake"},
			RoleInspect:    {"fake", "no-inspect"},
			RoleManagement: {"fake"},
			RoleNetwork:    {"noop"},
			RolePower:      {"fake"},
			RoleRaid:       {"fake", "no-raid"},
			RoleRescue:     {"fake", "no-rescue"},
			RoleStorage:    {"noop"},
			RoleVendor:     {"fake", "no-vendor"},
		},
		Power:      map[string]PowerInterface{"fake": &FakePower{state: state}},
		Management: map[string]ManagementInterface{"fake": &FakeManagement{state: state}},
		Boot:       map[string]BootInterface{"fake": FakeBoot{}},
		Deploy:     map[string]DeployInterface{"fake": FakeDeploy{}},
		Vendor:     map[string]VendorInterface{"fake": FakeVendor{}},
	}
}

type fakeState struct {
	mu    sync.Mutex
	power map[string]provisioner.PowerState
	boot  map[string]BootDevice
}

// FakePower records the power state per node.
type FakePower struct{ state *fakeState }

// Validate accepts any node.
func (*FakePower) Validate(context.Context, *provisioner.Node) error { return nil }

// GetPowerState returns the last state set for node; a node never set
// reports the power state the conductor stored (Ironic's fake returns
// node.power_state), or power off when that is unknown.
func (p *FakePower) GetPowerState(_ context.Context, node *provisioner.Node) (provisioner.PowerState, error) {
	p.state.mu.Lock()
	defer p.state.mu.Unlock()
	if st, ok := p.state.power[node.UUID]; ok {
		return st, nil
	}
	if node.PowerState == provisioner.PowerOn || node.PowerState == provisioner.PowerOff {
		return node.PowerState, nil
	}
	return provisioner.PowerOff, nil
}

// SetPowerState records target (soft power off ends off, reboots end on).
func (p *FakePower) SetPowerState(_ context.Context, node *provisioner.Node, target provisioner.PowerState) error {
	var st provisioner.PowerState
	switch target {
	case provisioner.PowerOn, provisioner.Rebooting, provisioner.SoftRebooting:
		st = provisioner.PowerOn
	case provisioner.PowerOff, provisioner.SoftPowerOff:
		st = provisioner.PowerOff
	default:
		return invalidf("set_power_state called with an invalid power state: %s.", target)
	}
	p.state.mu.Lock()
	p.state.power[node.UUID] = st
	p.state.mu.Unlock()
	return nil
}

// Reboot leaves the node powered on.
func (p *FakePower) Reboot(ctx context.Context, node *provisioner.Node, _ bool) error {
	return p.SetPowerState(ctx, node, provisioner.PowerOn)
}

// FakeManagement records the boot device per node; like Ironic's fake it
// supports pxe only.
type FakeManagement struct{ state *fakeState }

// Validate accepts any node.
func (*FakeManagement) Validate(context.Context, *provisioner.Node) error { return nil }

// SupportedBootDevices is [pxe], as Ironic's fake management.
func (*FakeManagement) SupportedBootDevices(context.Context, *provisioner.Node) ([]string, error) {
	return []string{"pxe"}, nil
}

// GetBootDevice returns what was set, pxe one-time before anything was.
func (m *FakeManagement) GetBootDevice(_ context.Context, node *provisioner.Node) (BootDevice, error) {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	if bd, ok := m.state.boot[node.UUID]; ok {
		return bd, nil
	}
	return BootDevice{Device: "pxe"}, nil
}

// SetBootDevice records dev.
func (m *FakeManagement) SetBootDevice(_ context.Context, node *provisioner.Node, dev BootDevice) error {
	if dev.Device != "pxe" {
		return invalidf("Invalid boot device %s specified.", dev.Device)
	}
	m.state.mu.Lock()
	m.state.boot[node.UUID] = dev
	m.state.mu.Unlock()
	return nil
}

// FakeBoot succeeds at every step without touching anything.
type FakeBoot struct{}

// Validate accepts any node.
func (FakeBoot) Validate(context.Context, *Task) error { return nil }

// PrepareRamdisk does nothing.
func (FakeBoot) PrepareRamdisk(context.Context, *Task, map[string]string) error {
	return nil
}

// CleanUpRamdisk does nothing.
func (FakeBoot) CleanUpRamdisk(context.Context, *Task) error { return nil }

// PrepareInstance does nothing.
func (FakeBoot) PrepareInstance(context.Context, *Task) error { return nil }

// CleanUpInstance does nothing.
func (FakeBoot) CleanUpInstance(context.Context, *Task) error { return nil }

// FakeDeploy deploys synchronously: Deploy returns StepDone at once.
type FakeDeploy struct{}

// Validate accepts any node.
func (FakeDeploy) Validate(context.Context, *Task) error { return nil }

// Prepare does nothing.
func (FakeDeploy) Prepare(context.Context, *Task) error { return nil }

// Deploy completes immediately.
func (FakeDeploy) Deploy(context.Context, *Task) (Step, error) {
	return StepDone, nil
}

// TearDown does nothing.
func (FakeDeploy) TearDown(context.Context, *Task) error { return nil }

// CleanUp does nothing.
func (FakeDeploy) CleanUp(context.Context, *Task) error { return nil }

// TakeOver does nothing.
func (FakeDeploy) TakeOver(context.Context, *Task) error { return nil }

// FakeVendor has Ironic's FakeVendorB methods: each tests its "bar"
// argument against a fixed word and returns the boolean.
type FakeVendor struct{}

var fakeVendorWords = map[string]string{
	"second_method":             "kazoo",
	"third_method_sync":         "meow",
	"fourth_method_shared_lock": "woof",
}

// Methods lists the fake passthru methods.
func (FakeVendor) Methods() []VendorMethod {
	return []VendorMethod{
		{Name: "fourth_method_shared_lock", HTTPMethods: []string{"POST"}, Async: true, Description: "Test if the value of bar is woof"},
		{Name: "log_passthrough", HTTPMethods: []string{"POST"}, Async: true, RequireExclusiveLock: true, Description: "Test pass-through to wait."},
		{Name: "second_method", HTTPMethods: []string{"POST"}, Async: true, RequireExclusiveLock: true, Description: "Test if the value of bar is kazoo"},
		{Name: "third_method_sync", HTTPMethods: []string{"POST"}, RequireExclusiveLock: true, Description: "Test if the value of bar is meow"},
	}
}

// Validate requires "bar" for the word methods.
func (FakeVendor) Validate(_ context.Context, _ *provisioner.Node, method string, args map[string]any) error {
	if _, ok := fakeVendorWords[method]; ok {
		if bar, _ := args["bar"].(string); bar == "" {
			return invalidf("Parameter 'bar' not passed to method '%s'.", method)
		}
		return nil
	}
	if method == "" || method == "log_passthrough" {
		return nil
	}
	return invalidf("Unsupported method (%s) passed through to vendor extension.", method)
}

// Call answers the word methods with bar == word; log_passthrough returns nil.
func (v FakeVendor) Call(ctx context.Context, node *provisioner.Node, method, _ string, args map[string]any) (any, error) {
	if err := v.Validate(ctx, node, method, args); err != nil {
		return nil, err
	}
	if word, ok := fakeVendorWords[method]; ok {
		return args["bar"] == word, nil
	}
	return nil, nil
}
