package scenarios

import (
	"context"
	"fmt"
	"strings"

	"github.com/cucumber/godog"
)

// registerFaultIPMISteps adds the steps of the IPMI faults a deploy does
// not show by itself: a late reply as ipmitool sees it, and boot flags
// the BMC acknowledges but does not keep (seen on a rebuild).
func (w *world) registerFaultIPMISteps(sc *godog.ScenarioContext) {
	// ipmitool -N 1 -R 5: a 1 s timeout per try, up to 5 tries; -vvv
	// prints every request it sends.
	sc.When(`^I ask the power status of machine "([^"]*)" with a (\d+) s timeout and (\d+) retries$`,
		func(ctx context.Context, machine string, timeout, retries int) error {
			res, err := w.ipmitool(ctx, machine, "-N", fmt.Sprint(timeout), "-R", fmt.Sprint(retries), "-vvv", "chassis", "power", "status")
			w.lastCmd = res
			return err
		})
	sc.Then(`^ipmitool sent Get Chassis Status at least (\d+) times and printed the power state$`, func(n int) error {
		r := w.lastCmd
		if r == nil {
			return fmt.Errorf("no ipmitool run in this scenario")
		}
		if r.err != nil || !strings.Contains(r.out, "Chassis Power is") {
			return fmt.Errorf("%s: %v, want the power state:\n%s", r.line, r.err, lastLines(r.out, 20))
		}
		if got := countChassisStatusSends(r.out); got < n {
			return fmt.Errorf("ipmitool sent Get Chassis Status %d times, want at least %d (a retry before the late reply):\n%s", got, n, lastLines(r.out, 40))
		}
		return nil
	})
	sc.When(`^I rebuild node "([^"]*)"$`, func(ctx context.Context, name string) error {
		return w.provisionRequest(ctx, name, "rebuild")
	})
}

// countChassisStatusSends counts the requests ipmitool -vvv reports as
// sent with netfn 0x00 (chassis) and command 0x01 (Get Chassis Status).
func countChassisStatusSends(out string) int {
	lines := strings.Split(out, "\n")
	n := 0
	for i, l := range lines {
		if !strings.Contains(l, "Sending IPMI command payload") || i+2 >= len(lines) {
			continue
		}
		if strings.Contains(lines[i+1], "netfn   : 0x00") && strings.Contains(lines[i+2], "command : 0x01") {
			n++
		}
	}
	return n
}
