package scenarios

import (
	"context"
	"time"

	"github.com/cucumber/godog"
)

// registerFaultTimeoutSteps adds the testbed of the faults that end in
// Ironic's call-back timeout: the ramdisk never calls back because the
// machine never netboots it (no DHCP offer, a wrong next-server, a TFTP
// file missing or stalled) or because it is told not to. Such a testbed
// runs `metalbed up` with a short --deploy-callback-timeout, so the
// timeout is reached in seconds, not in Ironic's 30 minutes.
func (w *world) registerFaultTimeoutSteps(sc *godog.ScenarioContext) {
	sc.Given(`^a metalbed testbed with (\d+) (bios|uefi) machines? and a deploy call-back timeout of (\d+) seconds$`,
		func(ctx context.Context, n int, mode string, secs int) error {
			return w.startTestbed(ctx, envSpec{Machines: n, BootMode: mode, CallbackTimeout: time.Duration(secs) * time.Second})
		})
}
