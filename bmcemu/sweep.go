package bmcemu

import (
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
)

// Idle sessions (a client gone without Close Session) are evicted after
// go-ipmi's inactivity timeout. go-ipmi's Server.Serve checks for them on
// a ticker of its own, one per BMC: at 10 000 BMCs that is 3 300 wake-ups
// a second of a process with nothing to do, and a timer each. Instead
// every BMC's clock (evictionClock) hands that loop a ticker that never
// fires, and one sweep checks the sessions of every serving BMC at the
// same interval.

// evictionClock is the real clock, except for the ticker of go-ipmi's
// session eviction loop (the one ticker of bmc.DefaultSessionEvictInterval
// go-ipmi asks for): it never fires, as sessionSweep does that work.
type evictionClock struct{}

func (evictionClock) Now() time.Time { return time.Now() }

func (evictionClock) NewTimer(d time.Duration) clock.Timer { return clock.Real.NewTimer(d) }

func (evictionClock) NewTicker(d time.Duration) clock.Ticker {
	if d == bmc.DefaultSessionEvictInterval {
		return silentTicker{}
	}
	return clock.Real.NewTicker(d) // the SOL character pump's
}

// silentTicker never ticks: its channel is nil.
type silentTicker struct{}

func (silentTicker) C() <-chan time.Time { return nil }
func (silentTicker) Stop()               {}

// sessionSweep evicts the idle sessions of every serving BMC (the serving
// map) every bmc.DefaultSessionEvictInterval. It runs while at least one
// BMC serves.
var sessionSweep sweeper

type sweeper struct {
	mu    sync.Mutex
	users int
	stop  chan struct{}
}

// join counts one more serving BMC, starting the sweep for the first;
// the leave it returns (call it once) stops the sweep with the last.
func (w *sweeper) join() (leave func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.users == 0 {
		w.stop = make(chan struct{})
		go w.run(w.stop)
	}
	w.users++
	return w.leave
}

// leave is join's undo; call it once per join.
func (w *sweeper) leave() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.users--
	if w.users == 0 {
		close(w.stop)
	}
}

func (w *sweeper) run(stop <-chan struct{}) {
	t := time.NewTicker(bmc.DefaultSessionEvictInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			serving.Range(func(k, _ any) bool {
				b := k.(*bmc.BMC)
				b.Sessions.EvictExpired()
				b.V15Sessions.EvictExpired()
				return true
			})
		}
	}
}
