package testbed

import (
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// TestIdleFleetGoroutines is the guard for issue 18's idle fleet (10 000
// machines with IPMI and Redfish in one process): as `metalbed up
// --no-provisioner` runs them, with the Redfish service and the machines'
// timeline, an idle machine costs at most one goroutine, its BMC's Serve
// waiting for a datagram. A ticker, watcher or worker added per machine
// or per BMC doubles the count and fails here.
func TestIdleFleetGoroutines(t *testing.T) {
	const n = 200
	ms := make([]Machine, n)
	for i := range ms {
		name := "idle-" + strconv.Itoa(i)
		ms[i] = Machine{Name: name, MACs: []net.HardwareAddr{sim.MAC(name, 0, 0)}, DiskBytes: 64 << 20, BootMode: vms.BIOS,
			BMCAddress: "127.0.0.1", Username: "admin", Password: "password"}
	}
	before := runtime.NumGoroutine()
	tb, err := New(Config{StateDir: t.TempDir(), Machines: ms, TimelineAddr: "127.0.0.1:0",
		Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	// The designed cost per machine, and what the testbed runs once
	// (listeners, the errgroups, the timeline) with room to spare.
	const perMachine, once = 1, 40
	testenv.Eventually(t, 10*time.Second, func() bool {
		return runtime.NumGoroutine()-before <= n*perMachine+once
	}, "at most %d goroutine per idle machine (have %d for %d machines)", perMachine, runtime.NumGoroutine()-before, n)
	t.Logf("%d goroutines for %d idle machines", runtime.NumGoroutine()-before, n)
}
