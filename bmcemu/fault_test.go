package bmcemu

import (
	"context"
	"testing"
	"time"

	ipmiclient "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
)

// goClient is a connected go-ipmi lanplus client of the BMC on port.
func goClient(t *testing.T, port int, timeout time.Duration) (*ipmiclient.Client, error) {
	t.Helper()
	c, err := ipmiclient.NewClient("127.0.0.1", port, "admin", "password")
	if err != nil {
		t.Fatal(err)
	}
	c.WithInterface(ipmiclient.InterfaceLanplus).WithCipherSuiteID(types.CipherSuiteID3).WithTimeout(timeout).WithRetry(0)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, nil
}

// ccOf is the completion code of a failed command; 0 when err is not one.
func ccOf(err error) uint8 {
	if re, ok := types.IsResponseError(err); ok {
		return uint8(re.CompletionCode())
	}
	return 0
}

// TestFaultCommands carries out layer ipmi's per-command actions (op
// "netfn/cmd"): "cc" answers with Arg's completion code (0xff without
// one), "drop" sends no reply, "delay" answers late but answers; each
// while its rule fires, asked with the BMC's machine name.
func TestFaultCommands(t *testing.T) {
	in := faulttest.New(t,
		fault.Rule{Layer: fault.IPMI, Op: "0x00/0x01", Action: "cc", Arg: "0xc0", Count: 1},
		fault.Rule{Layer: fault.IPMI, Op: "0x00/0x01", Action: "cc", Count: 1},
		fault.Rule{Layer: fault.IPMI, Op: "0x00/0x01", Action: "drop", Count: 1},
		fault.Rule{Layer: fault.IPMI, Op: "0x00/0x01", Action: "delay", Delay: 50 * time.Millisecond, Count: 1},
	)
	_, port := startBMC(t, newTestMachine(), func(c *Config) { c.Faults = in; c.Name = "node-7" })
	c, err := goClient(t, port, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := c.GetChassisStatus(ctx); ccOf(err) != 0xc0 {
		t.Errorf("cc 0xc0: %v", err)
	}
	if _, err := c.GetChassisStatus(ctx); ccOf(err) != 0xff {
		t.Errorf("cc without arg: %v", err)
	}
	if _, err := c.GetChassisStatus(ctx); err == nil || ccOf(err) != 0 {
		t.Errorf("dropped reply: %v, want a timeout", err)
	}
	if _, err := c.GetChassisStatus(ctx); err != nil {
		t.Errorf("late reply: %v", err)
	}
	if _, err := c.GetChassisStatus(ctx); err != nil {
		t.Errorf("after the faults: %v", err)
	}
	hits := in.Hits()
	if len(hits) != 4 {
		t.Fatalf("hits %+v", hits)
	}
	for _, h := range hits {
		if h.Who.Machine != "node-7" || h.Op != "0x00/0x01" {
			t.Errorf("asked %+v", h)
		}
	}
}

// TestFaultPreSession: pre-session commands go through the same table:
// dropping Get Channel Authentication Capabilities keeps everyone out.
func TestFaultPreSession(t *testing.T) {
	in := faulttest.New(t, fault.Rule{Layer: fault.IPMI, Op: "0x06/0x38", Action: "drop"})
	_, port := startBMC(t, newTestMachine(), func(c *Config) { c.Faults = in })
	if _, err := goClient(t, port, 500*time.Millisecond); err == nil {
		t.Fatal("login succeeded with auth capabilities dropped")
	}
	if len(in.Hits()) == 0 {
		t.Error("no hit")
	}
}

// TestFaultIgnoreAndForget: "ignore" (op "power") acknowledges a power
// command without carrying it out; "forget-bootflags" (op "boot-flags")
// acknowledges boot flags without keeping them. Once spent, both work.
func TestFaultIgnoreAndForget(t *testing.T) {
	m := newTestMachine()
	in := faulttest.New(t,
		fault.Rule{Layer: fault.IPMI, Op: "power", Action: "ignore", Count: 1},
		fault.Rule{Layer: fault.IPMI, Op: "boot-flags", Action: "forget-bootflags", Count: 1},
	)
	_, port := startBMC(t, m, func(c *Config) { c.Faults = in })
	c, err := goClient(t, port, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	pxe := func() error {
		return c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false)
	}
	if err := pxe(); err != nil {
		t.Fatalf("set boot device: %v", err)
	}
	if f, _ := m.BootFlags(ctx); f != ([5]byte{}) {
		t.Errorf("forgotten boot flags kept: % x", f)
	}
	if err := pxe(); err != nil {
		t.Fatalf("set boot device: %v", err)
	}
	if f, _ := m.BootFlags(ctx); f[0]&0x80 == 0 {
		t.Errorf("boot flags not kept once the fault is spent: % x", f)
	}
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlPowerUp); err != nil {
		t.Fatalf("power on: %v", err)
	}
	if on, _ := m.PowerState(ctx); on {
		t.Error("ignored power on carried out")
	}
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlPowerUp); err != nil {
		t.Fatalf("power on: %v", err)
	}
	if on, _ := m.PowerState(ctx); !on {
		t.Error("power on not carried out once the fault is spent")
	}
}
