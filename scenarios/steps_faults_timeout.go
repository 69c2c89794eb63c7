package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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

// startTestbed starts a deploy testbed (Deploy set, a DHCP range of its
// own, reserved by startTestbed) and records the node --enroll created for each machine.
func (w *world) startTestbed(ctx context.Context, spec envSpec) error {
	if !w.s.canDeploy {
		return pending(missingDeploy)
	}
	spec.Deploy = true
	if err := w.start(ctx, spec); err != nil {
		return err
	}
	for name := range w.env.machine {
		r, err := w.must(ctx, http.StatusOK, "GET", "/v1/nodes/"+name, nil)
		if err != nil {
			return fmt.Errorf("node enrolled for %s: %w", name, err)
		}
		var node apiNode
		if err := json.Unmarshal(r.body, &node); err != nil {
			return err
		}
		w.nodes[name] = node.UUID
	}
	return nil
}
