package redfish

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// runSushyUpdate runs testdata/sushy_update.py with args against b. The
// service's clock ticks while it runs (100 ms every 10 ms), so that a BMC
// reboot, measured on that clock, ends.
func runSushyUpdate(t *testing.T, b *bed, args ...string) string {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				b.clock.Advance(100 * time.Millisecond)
			}
		}
	}()
	out := b.runSushy(t, "sushy_update.py", nil, args...)
	if !strings.Contains(out, "ALL OK") {
		t.Fatalf("sushy script %v did not finish:\n%s", args, out)
	}
	return out
}

// TestSushyFirmwareUpdate: sushy's simple_update, as Ironic's redfish
// firmware update calls it, with an image a Go HTTP server serves: the
// task monitor is followed to completion and the Manager shows the version
// of the image; an image answered 404 ends the task in Exception.
func TestSushyFirmwareUpdate(t *testing.T) {
	requireSushy(t)
	img := imageServer(t, map[string]string{"/images/bmc-firmware-2.31.bin": "metalbed BMC image\n"})
	b := startBed(t, bedOptions{firmwareReboot: 2 * time.Second})
	runSushyUpdate(t, b, "update", img.URL+"/images/bmc-firmware-2.31.bin", "2.31")
	runSushyUpdate(t, b, "fail", img.URL+"/images/missing-2.40.bin", "404")
	if bmc, _ := b.versions(t, 0); bmc != "2.31" {
		t.Errorf("BMC version after the failed update: %q", bmc)
	}
}

// TestSushyPowerOnConflict: under layer redfish's power-on-conflict, sushy's
// reset_system(On) right after ForceOff raises its HTTPError with status
// 409.
func TestSushyPowerOnConflict(t *testing.T) {
	requireSushy(t)
	in, rec := ruleInjector(t, fault.Rule{Layer: fault.Redfish, Action: "power-on-conflict", Arg: "3600"})
	b := startBed(t, bedOptions{faults: in})
	runSushyUpdate(t, b, "conflict")
	if n := count(rec.kinds(), "fault.redfish.power-on-conflict"); n != 1 {
		t.Errorf("power-on-conflict recorded %d times, want once (one ForceOff)", n)
	}
}

// TestSushySessionExpire: under layer redfish's session-expire, sushy's
// request with the expired session gets 401, and sushy (as Ironic runs it)
// logs in again and repeats it.
func TestSushySessionExpire(t *testing.T) {
	requireSushy(t)
	in, rec := ruleInjector(t, fault.Rule{Layer: fault.Redfish, Action: "session-expire", Count: 1})
	b := startBed(t, bedOptions{faults: in})
	runSushyUpdate(t, b, "session")
	if n := count(rec.kinds(), "fault.redfish.session-expire"); n != 1 {
		t.Errorf("session-expire recorded %d times, want once", n)
	}
	logins := 0
	b.mu.Lock()
	for _, e := range b.events {
		if e.Kind == events.BMCRedfishSessions && strings.HasPrefix(e.Detail, "login ") {
			logins++
		}
	}
	b.mu.Unlock()
	if logins != 2 {
		t.Errorf("%d session logins, want 2 (the first, and sushy's after the 401)", logins)
	}
}
