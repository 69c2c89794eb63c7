package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms/timing"
)

// TestUpTiming: `up --timing server --speed 20 --timing-seed 3` gives each
// machine its own seeded figures: powered on with ipmitool, node-0's
// firmware waits the POST its figures say (printed on its console) before
// it picks a boot device, node-1 a different one; bad values are refused.
func TestUpTiming(t *testing.T) {
	u := startUp(t, t.TempDir(), "--nodes", "2", "--timing", "server", "--speed", "20", "--timing-seed", "3")
	for _, name := range []string{"node-0", "node-1"} {
		n := u.node(t, name)
		want := timing.Profiles["server"].Machine(name, 3, 20)
		ipmitool(t, n, "lanplus", "3", "power", "on")
		waitConsole(t, n.ConsoleLog, "(POST "+want.POST.Round(time.Millisecond).String()+")...", "Boot device:")
	}
	if a, b := timing.Profiles["server"].Machine("node-0", 3, 20), timing.Profiles["server"].Machine("node-1", 3, 20); a.POST == b.POST {
		t.Errorf("node-0 and node-1 POST alike (%v)", a.POST)
	}
	for _, bad := range [][]string{{"--timing", "mainframe"}, {"--speed", "0"}, {"--speed", "-2"}} {
		var out, errb strings.Builder
		args := append([]string{"up", "--no-provisioner", "--state-dir", t.TempDir(), "--bmc-base-port", "0", "--redfish-addr", "", "--web-addr", ""}, bad...)
		if err := Run(t.Context(), args, &out, &errb); ExitCode(err) != 2 {
			t.Errorf("up %v: %v (want a usage error, exit 2)", bad, err)
		} else if !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("up %v: %q does not name %s", bad, err, bad[0])
		}
	}
}
