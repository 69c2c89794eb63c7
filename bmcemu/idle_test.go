package bmcemu

import (
	"runtime"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestIdleBMCParksOneGoroutine: a BMC no client has spoken to costs one
// parked goroutine (Serve, waiting for a datagram) on a 2 KiB stack, and
// the first datagram it gets is answered: go-ipmi's loop starts under it.
// A per-BMC ticker or worker added later shows up here as a second
// goroutine per BMC.
func TestIdleBMCParksOneGoroutine(t *testing.T) {
	const n = 100
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	stackBefore := ms.StackInuse
	before := runtime.NumGoroutine()
	f := startFleet(t, n)
	// The designed cost: Serve's goroutine, nothing else; a few to spare
	// for the runtime's and the test's own.
	const perBMC, spare = 1, 10
	testenv.Eventually(t, 10*time.Second, func() bool {
		return runtime.NumGoroutine()-before <= n*perBMC+spare
	}, "at most %d goroutines per idle BMC (have %d for %d BMCs)", perBMC, runtime.NumGoroutine()-before, n)

	// And each parked goroutine keeps the runtime's smallest stack, 2 KiB
	// (Serve sets up elsewhere): something deep run on it before it parks
	// doubles it for good.
	runtime.ReadMemStats(&ms)
	stack := (ms.StackInuse - stackBefore) / n
	t.Logf("stack in use per idle BMC: %d B", stack)
	if !raceEnabled && stack > 3<<10 {
		t.Errorf("stack in use per idle BMC %d B, want the smallest stack (2 KiB)", stack)
	}

	// The first datagram to an idle BMC (Get Channel Authentication
	// Capabilities, then the RMCP+ handshake) is answered.
	on, err := nativeStatus(t.Context(), f.ports[n/2], types.CipherSuiteID17)
	if err != nil {
		t.Fatalf("first session with an idle BMC: %v", err)
	}
	if on {
		t.Errorf("power on = %v, want off", on)
	}
}

// TestEvictionClock: go-ipmi's per-BMC session eviction ticker never fires
// (the one sessionSweep does its work); every other ticker and timer
// (the SOL pump's) is real.
func TestEvictionClock(t *testing.T) {
	var c evictionClock
	if ch := c.NewTicker(bmc.DefaultSessionEvictInterval).C(); ch != nil {
		t.Error("the session eviction ticker has a channel: a ticker per BMC again")
	}
	tk := c.NewTicker(time.Millisecond)
	defer tk.Stop()
	select {
	case <-tk.C():
	case <-time.After(5 * time.Second):
		t.Error("a 1 ms ticker did not tick in 5 s")
	}
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Errorf("Now is %v off the wall clock", d)
	}
}
