package agent

import (
	"context"
	"errors"
	"github.com/metalbed/metalbed/internal/events"
	"math/rand/v2"
	"time"
)

// Heartbeat jitter, as IPA's IronicPythonAgentHeartbeater: after a success
// the next heartbeat is due in U(0.3, 0.6) × heartbeat_timeout, after a
// failure in U(1, 2) × the error interval; a forced heartbeat (after an
// asynchronous command) goes out once the last is 5 s old.
const (
	minJitter      = 0.3
	maxJitter      = 0.6
	minErrorJitter = 1.0
	maxErrorJitter = 2.0
	forcedMinAge   = 5 * time.Second
)

func jitter(base time.Duration, lo, hi float64) time.Duration {
	return time.Duration(float64(base) * (lo + rand.Float64()*(hi-lo)))
}

// heartbeat runs until ctx ends; the first heartbeat goes out at once.
func (a *Agent) heartbeat(ctx context.Context, lk lookupResult, callback string) {
	var prev time.Time
	var interval time.Duration
	forced := false
	first := true
	for {
		age := time.Since(prev)
		due := interval - age
		if forced && !prev.IsZero() {
			due = min(due, forcedMinAge-age)
		}
		if prev.IsZero() || due <= 0 {
			a.mu.Lock()
			token := a.token
			timeout := time.Duration(a.hbTimeout) * time.Second
			a.mu.Unlock()
			var err error
			if action, _ := a.fault("heartbeat"); action == "heartbeat-stop" {
				// An injected fault: this heartbeat is never sent; the
				// agent carries on as if it had been.
				a.cfg.Logger.Debug("heartbeat suppressed by an injected fault", "node", lk.UUID)
			} else {
				err = a.ironic.heartbeat(ctx, lk, callback, token)
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				var he *heartbeatError
				if errors.As(err, &he) && he.conflict {
					a.cfg.Logger.Warn("conflict error sending heartbeat", "node", lk.UUID, "err", err)
				} else {
					a.cfg.Logger.Warn("error sending heartbeat", "node", lk.UUID, "err", err)
				}
				a.say("error sending heartbeat to %s: %v", a.cfg.APIURL, err)
				interval = jitter(a.cfg.HeartbeatErrorInterval, minErrorJitter, maxErrorJitter)
			} else {
				forced = false
				interval = jitter(timeout, minJitter, maxJitter)
				if first {
					a.milestone(events.AgentHeartbeat, callback)
					first = false
				}
				a.cfg.Logger.Debug("heartbeat successful", "node", lk.UUID)
			}
			prev = time.Now()
			continue
		}
		t := time.NewTimer(due)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.forceHB:
			forced = true
		case <-t.C:
		}
		t.Stop()
	}
}
