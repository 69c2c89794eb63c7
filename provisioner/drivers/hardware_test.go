package drivers

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/provisioner"
)

func TestDefaultRegistry(t *testing.T) {
	r, err := NewDefaultRegistry(IPMIConfig{}, RedfishConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Names(); !slices.Equal(got, []string{"fake-hardware", "ipmi", "redfish"}) {
		t.Errorf("names %v", got)
	}
	if _, err := r.Get("idrac"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("idrac: %v", err)
	}
	rf, err := r.Get("redfish")
	if err != nil {
		t.Fatal(err)
	}
	if got := rf.Defaults(); got.Power != "redfish" || got.Management != "redfish" || got.Boot != "pxe" || got.Deploy != "direct" || got.Vendor != "no-vendor" {
		t.Errorf("redfish defaults %+v", got)
	}

	ipmi, err := r.Get("ipmi")
	if err != nil {
		t.Fatal(err)
	}
	// What node-show-1.82.json shows for an ipmi node.
	want := provisioner.Interfaces{
		Bios: "no-bios", Boot: "pxe", Console: "no-console", Deploy: "direct", Inspect: "no-inspect",
		Management: "ipmitool", Network: "noop", Power: "ipmitool", Raid: "no-raid", Rescue: "no-rescue",
		Storage: "noop", Vendor: "ipmitool",
	}
	if got := ipmi.Defaults(); got != want {
		t.Errorf("ipmi defaults\n%+v\nwant\n%+v", got, want)
	}
	// The API lists driver properties from interfaces that have them.
	for role, impl := range map[Role]any{RolePower: ipmi.Power["ipmitool"], RoleManagement: ipmi.Management["ipmitool"],
		RoleVendor: ipmi.Vendor["ipmitool"]} {
		pl, ok := impl.(interface{ Properties() map[string]string })
		if !ok || pl.Properties()["ipmi_address"] != "IP address or hostname of the node. Required." {
			t.Errorf("%s interface does not document ipmi_address", role)
		}
	}
	// What node-create-fake-1.82.json shows for a fake-hardware node.
	fake, _ := r.Get("fake-hardware")
	wantFake := provisioner.Interfaces{
		Bios: "fake", Boot: "fake", Console: "fake", Deploy: "fake", Inspect: "fake",
		Management: "fake", Network: "noop", Power: "fake", Raid: "fake", Rescue: "fake",
		Storage: "noop", Vendor: "fake",
	}
	if got := fake.Defaults(); got != wantFake {
		t.Errorf("fake defaults\n%+v\nwant\n%+v", got, wantFake)
	}

	got, err := ipmi.Complete(provisioner.Interfaces{Vendor: "no-vendor"})
	if err != nil || got.Vendor != "no-vendor" || got.Power != "ipmitool" {
		t.Errorf("complete: %+v, %v", got, err)
	}
	_, err = ipmi.Complete(provisioner.Interfaces{Power: "redfish"})
	if !errors.Is(err, ErrUnsupported) ||
		err.Error() != "power interface implementation 'redfish' is not supported by hardware type ipmi." {
		t.Errorf("power redfish: %v", err)
	}
	// The conductor shows the unwrapped error's text; it is the same.
	if u := errors.Unwrap(err); u == nil || u.Error() != err.Error() {
		t.Errorf("unwrapped %v", u)
	}

	// Roles without an implementation say so as Ironic's validate does.
	node := &provisioner.Node{Driver: "ipmi"}
	if _, err := ipmi.BootFor(node); err == nil ||
		err.Error() != "Driver ipmi does not support boot (disabled or not implemented)." {
		t.Errorf("boot: %v", err)
	}
	if _, err := ipmi.PowerFor(node); err != nil {
		t.Error(err)
	}
	node.Interfaces.Vendor = "no-vendor"
	if _, err := ipmi.VendorFor(node); !errors.Is(err, ErrUnsupported) {
		t.Errorf("no-vendor: %v", err)
	}
}

func TestNewRegistryRefusesBadTypes(t *testing.T) {
	fake := NewFakeHardware()
	if _, err := NewRegistry(fake, NewFakeHardware()); err == nil {
		t.Error("duplicate accepted")
	}
	if _, err := NewRegistry(&HardwareType{}); err == nil {
		t.Error("nameless accepted")
	}
	if _, err := NewRegistry(&HardwareType{Name: "x", Enabled: map[Role][]string{RolePower: {"fake"}}}); err == nil {
		t.Error("type without every role accepted")
	}
}

func TestIPMIPluggedBootAndDeploy(t *testing.T) {
	hw, err := NewIPMI(IPMIConfig{
		Boot:   map[string]BootInterface{"pxe": FakeBoot{}, "ipxe": FakeBoot{}},
		Deploy: map[string]DeployInterface{"iscsi": FakeDeploy{}, "direct": FakeDeploy{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := hw.Enabled[RoleBoot]; !slices.Equal(got, []string{"pxe", "ipxe"}) {
		t.Errorf("boot %v", got)
	}
	if got := hw.Enabled[RoleDeploy]; !slices.Equal(got, []string{"direct", "iscsi"}) {
		t.Errorf("deploy %v", got)
	}
	if _, err := hw.DeployFor(&provisioner.Node{Interfaces: provisioner.Interfaces{Deploy: "iscsi"}}); err != nil {
		t.Error(err)
	}
}

func TestFakeHardwareTracksPowerPerNode(t *testing.T) {
	ctx := t.Context()
	hw := NewFakeHardware()
	a := &provisioner.Node{UUID: "a"}
	b := &provisioner.Node{UUID: "b", PowerState: provisioner.PowerOn}
	p, _ := hw.PowerFor(a)

	for node, want := range map[*provisioner.Node]provisioner.PowerState{a: provisioner.PowerOff, b: provisioner.PowerOn} {
		if got, _ := p.GetPowerState(ctx, node); got != want {
			t.Errorf("%s initially %q, want %q", node.UUID, got, want)
		}
	}
	steps := []struct {
		target, want provisioner.PowerState
	}{
		{provisioner.PowerOn, provisioner.PowerOn},
		{provisioner.SoftPowerOff, provisioner.PowerOff},
		{provisioner.SoftRebooting, provisioner.PowerOn},
		{provisioner.PowerOff, provisioner.PowerOff},
	}
	for _, s := range steps {
		if err := p.SetPowerState(ctx, a, s.target); err != nil {
			t.Fatal(err)
		}
		if got, _ := p.GetPowerState(ctx, a); got != s.want {
			t.Errorf("after %q: %q, want %q", s.target, got, s.want)
		}
		if got, _ := p.GetPowerState(ctx, b); got != provisioner.PowerOn {
			t.Errorf("node b changed to %q", got)
		}
	}
	if err := p.Reboot(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.GetPowerState(ctx, a); got != provisioner.PowerOn {
		t.Errorf("after reboot %q", got)
	}
	if err := p.SetPowerState(ctx, a, "power sideways"); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("bad target: %v", err)
	}

	// Concurrent use is safe (run with -race).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := &provisioner.Node{UUID: string(rune('c' + i))}
			p.SetPowerState(ctx, n, provisioner.PowerOn)
			p.GetPowerState(ctx, n)
		}()
	}
	wg.Wait()
}

func TestFakeManagementAndVendor(t *testing.T) {
	ctx := t.Context()
	hw := NewFakeHardware()
	n := &provisioner.Node{UUID: "a"}
	m, _ := hw.ManagementFor(n)
	if bd, _ := m.GetBootDevice(ctx, n); bd != (BootDevice{Device: "pxe"}) {
		t.Errorf("initial %+v", bd)
	}
	if err := m.SetBootDevice(ctx, n, BootDevice{Device: "pxe", Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if bd, _ := m.GetBootDevice(ctx, n); bd != (BootDevice{Device: "pxe", Persistent: true}) {
		t.Errorf("after set %+v", bd)
	}
	if err := m.SetBootDevice(ctx, n, BootDevice{Device: "disk"}); err == nil ||
		err.Error() != "Invalid boot device disk specified." {
		t.Errorf("disk: %v", err)
	}

	v, _ := hw.VendorFor(n)
	if got, err := v.Call(ctx, n, "second_method", "POST", map[string]any{"bar": "kazoo"}); err != nil || got != true {
		t.Errorf("second_method kazoo: %v, %v", got, err)
	}
	if got, err := v.Call(ctx, n, "third_method_sync", "POST", map[string]any{"bar": "woof"}); err != nil || got != false {
		t.Errorf("third_method_sync woof: %v, %v", got, err)
	}
	if _, err := v.Call(ctx, n, "second_method", "POST", nil); err == nil ||
		err.Error() != "Parameter 'bar' not passed to method 'second_method'." {
		t.Errorf("no bar: %v", err)
	}
	if _, err := v.Call(ctx, n, "nope", "POST", nil); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("unknown method: %v", err)
	}

	d, _ := hw.DeployFor(n)
	task, err := hw.NewTask(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := d.Deploy(ctx, task); err != nil || st != StepDone {
		t.Errorf("deploy: %v, %v", st, err)
	}
}

func TestIPMIVendorPassthru(t *testing.T) {
	ft := newFakeTool(t, nil)
	node := captureNode()
	v, err := ft.hw.VendorFor(node)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, m := range v.Methods() {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"bmc_reset", "send_raw"}) {
		t.Errorf("methods %v", names)
	}
	ctx := t.Context()
	if _, err := v.Call(ctx, node, "send_raw", "POST", map[string]any{"raw_bytes": "0x06 0x01"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Call(ctx, node, "bmc_reset", "POST", map[string]any{"warm": "true"}); err != nil {
		t.Fatal(err)
	}
	pre := "ipmitool -I lanplus -H 127.0.0.1 -L ADMINISTRATOR -p 9623 -U admin -C 3 -R 1 -N 1 -f <pwfile> "
	want := []string{pre + "raw 0x06 0x01", pre + "bmc reset warm"}
	if got := ft.argv(t); !slices.Equal(got, want) {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, args := range []map[string]any{nil, {"raw_bytes": ""}, {"raw_bytes": "0x06"}, {"raw_bytes": "0x06 0xzz"}} {
		if _, err := v.Call(ctx, node, "send_raw", "POST", args); !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("send_raw %v: %v", args, err)
		}
	}
	if got := ft.argv(t); len(got) != 0 {
		t.Errorf("bad arguments ran ipmitool: %v", got)
	}
}

// TestNativeSilentBMC: a BMC that never answers costs the native client
// an error after CommandRetryTimeout, and no socket stays open.
func TestNativeSilentBMC(t *testing.T) {
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	hw, err := NewIPMI(IPMIConfig{Client: ClientNative, MinCommandInterval: 50 * time.Millisecond,
		CommandRetryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	node := &provisioner.Node{UUID: "s", DriverInfo: map[string]any{
		"ipmi_address": "127.0.0.1", "ipmi_port": float64(silent.LocalAddr().(*net.UDPAddr).Port),
		"ipmi_username": "admin", "ipmi_password": "password",
	}}
	p, _ := hw.PowerFor(node)
	before := openFDs(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := p.GetPowerState(ctx, node); err == nil || ctx.Err() != nil {
		t.Fatalf("silent BMC: %v (context %v)", err, ctx.Err())
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d file descriptors before, %d after", before, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}
