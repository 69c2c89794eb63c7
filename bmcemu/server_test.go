package bmcemu

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
)

func TestNewValidates(t *testing.T) {
	m := newTestMachine()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no machine", Config{Password: "p"}, "Machine is required"},
		{"no password", Config{Machine: m}, "Password is required"},
		{"long user", Config{Machine: m, Password: "p", Username: strings.Repeat("u", 17)}, "longer than 16"},
		{"long password", Config{Machine: m, Password: strings.Repeat("p", 21)}, "longer than 20"},
		{"suite 0 without allow", Config{Machine: m, Password: "p", CipherSuites: []uint8{0}}, "AllowCipherZero"},
		{"unknown suite", Config{Machine: m, Password: "p", CipherSuites: []uint8{1}}, "not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want error containing %q", err, c.want)
			}
		})
	}
	if _, err := New(Config{Machine: m, Password: "password"}); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
}

func TestServeReturnsNilOnCancelAndLeavesConnOpen(t *testing.T) {
	srv, err := New(Config{Machine: newTestMachine(), Password: "password"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	// The conn is still the caller's and usable.
	if _, err := conn.WriteTo([]byte{1}, conn.LocalAddr()); err != nil {
		t.Fatalf("conn closed by Serve: %v", err)
	}
}

// TestOneTimePXEConsumed: a one-time override set over IPMI is consumed by
// the next power-on; a persistent one survives boots.
func TestOneTimePXEConsumed(t *testing.T) {
	m := newTestMachine()
	_, port := startBMC(t, m, nil)
	ipmi := newIpmitool(t, port, ipmitoolModes[0], "password")

	ipmi.must("raw", "0x00", "0x08", "0x03", "0x08")
	ipmi.must("raw", "0x00", "0x08", "0x05", "0xa0", "0x04", "0x00", "0x00", "0x00")
	mustContain(t, ipmi.must("chassis", "bootparam", "get", "5"),
		"Boot Flag Valid", "Options apply to only next boot", "BIOS EFI boot", "Boot Device Selector : Force PXE")
	ipmi.must("power", "on")
	if b := m.bootLog(); len(b) != 1 || b[0] != "pxe" {
		t.Fatalf("machine booted %v, want [pxe]", b)
	}
	out := ipmi.must("chassis", "bootparam", "get", "5")
	mustContain(t, out, "Boot Flag Invalid")
	if strings.Contains(out, "Force PXE") {
		t.Errorf("one-time PXE still set after a boot:\n%s", out)
	}

	ipmi.must("raw", "0x00", "0x08", "0x05", "0xe0", "0x04", "0x00", "0x00", "0x00")
	ipmi.must("power", "cycle")
	ipmi.must("power", "reset")
	mustContain(t, ipmi.must("chassis", "bootparam", "get", "5"),
		"Options apply to all future boots", "Boot Device Selector : Force PXE")
	boots := m.bootLog()
	if strings.Join(boots, ",") != "pxe,pxe,pxe" {
		t.Errorf("boots %v, want pxe three times", boots)
	}
}

// TestFaultsIpmitool: the faults of the command table as the real
// ipmitool sees them: 0xC0 is "Node busy", a dropped reply fails the
// command, a late one does not; a dropped pre-session command keeps
// everyone out.
func TestFaultsIpmitool(t *testing.T) {
	in := faulttest.New(t,
		fault.Rule{Layer: fault.IPMI, Op: "0x00/0x01", Action: "delay", Delay: 20 * time.Millisecond, Count: 1},
		fault.Rule{Layer: fault.IPMI, Op: "0x00/0x01", Action: "cc", Arg: "0xc0", Count: 1},
		fault.Rule{Layer: fault.IPMI, Op: "0x00/0x01", Action: "drop", Count: 1},
	)
	m := newTestMachine()
	_, port := startBMC(t, m, func(c *Config) { c.Faults = in })
	ipmi := newIpmitool(t, port, ipmitoolModes[0], "password")
	mustContain(t, ipmi.must("power", "status"), "Chassis Power is off")

	out, err := ipmi.run("power", "status")
	if err == nil {
		t.Fatalf("power status with node busy succeeded: %s", out)
	}
	mustContain(t, out, "Node busy")

	out, err = ipmi.run("power", "status")
	if err == nil || strings.Contains(out, "Chassis Power is") {
		t.Fatalf("power status with its reply dropped succeeded: %s", out)
	}
	mustContain(t, ipmi.must("power", "status"), "Chassis Power is off")

	_, port2 := startBMC(t, newTestMachine(), func(c *Config) {
		c.Faults = faulttest.New(t, fault.Rule{Layer: fault.IPMI, Op: "0x06/0x38", Action: "drop"})
	})
	out, err = newIpmitool(t, port2, ipmitoolModes[0], "password").run("power", "status")
	if err == nil {
		t.Fatalf("login succeeded with auth capabilities dropped: %s", out)
	}
	if n := len(in.Hits()); n != 3 {
		t.Errorf("%d hits, want 3", n)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newTestMachine()
	_, port := startBMC(t, m, func(c *Config) { c.Registerer = reg })
	// A second BMC on the same registry shares the counters.
	_, port2 := startBMC(t, newTestMachine(), func(c *Config) { c.Registerer = reg; c.Name = "second" })
	newIpmitool(t, port, ipmitoolModes[0], "password").must("power", "on")
	newIpmitool(t, port2, ipmitoolModes[0], "password").must("power", "on")
	if got := testutil.ToFloat64(mustCounter(t, reg, "metalbed_bmc_power_actions_total")); got != 2 {
		t.Errorf("power actions = %v, want 2", got)
	}
	conn, err := net.Dial("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x00}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(mustCounter(t, reg, "metalbed_bmc_packets_malformed_total")) >= 1
	}, "malformed packet counted")
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 9 {
		t.Errorf("gathered %d series, err %v", n, err)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}
