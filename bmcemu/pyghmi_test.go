package bmcemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// pyghmiScript drives one BMC through pyghmi's Command API the way
// VirtualBMC-era tooling does, timing each call. It prints one JSON object.
const pyghmiScript = `
import json, sys, time
from pyghmi.ipmi import command
port = int(sys.argv[1])
out = {"calls": []}
def timed(name, fn):
    t = time.monotonic()
    r = fn()
    out["calls"].append({"name": name, "seconds": time.monotonic() - t, "result": r if isinstance(r, dict) else None})
    return r
c = timed("login", lambda: command.Command(bmc="127.0.0.1", userid="admin", password="password", port=port))
timed("get_power", lambda: c.get_power())
timed("set_power_on", lambda: c.set_power("on"))
timed("get_power", lambda: c.get_power())
timed("set_bootdev_network_persistent", lambda: c.set_bootdev("network", persist=True))
timed("get_bootdev", lambda: c.get_bootdev())
timed("set_bootdev_hd_once", lambda: c.set_bootdev("hd", persist=False))
timed("get_bootdev", lambda: c.get_bootdev())
timed("set_bootdev_network_uefi_persistent", lambda: c.set_bootdev("network", persist=True, uefiboot=True))
timed("get_bootdev", lambda: c.get_bootdev())
timed("set_power_off", lambda: c.set_power("off"))
timed("get_power", lambda: c.get_power())
timed("logout", lambda: c.ipmi_session.logout())
print(json.dumps(out))
`

type pyghmiCall struct {
	Name    string          `json:"name"`
	Seconds float64         `json:"seconds"`
	Result  json.RawMessage `json:"result"`
}

func requirePyghmi(t testing.TB) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		testenv.RequireTool(t, "python3-with-pyghmi", "python3-pyghmi")
	}
	if err := exec.Command(py, "-c", "import pyghmi.ipmi.command").Run(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("pyghmi not importable by %s: install Debian package python3-pyghmi: %v", py, err))
	}
	return py
}

func runPyghmi(t testing.TB, py string, port int) []pyghmiCall {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", pyghmiScript, strconv.Itoa(port)).CombinedOutput()
	if err != nil {
		t.Fatalf("pyghmi: %v\n%s", err, out)
	}
	var res struct {
		Calls []pyghmiCall `json:"calls"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("pyghmi output: %v\n%s", err, out)
	}
	return res.Calls
}

func TestPyghmi(t *testing.T) {
	py := requirePyghmi(t)
	m := newTestMachine()
	_, port := startBMC(t, m, nil)
	calls := runPyghmi(t, py, port)
	for _, c := range calls {
		t.Logf("pyghmi %-36s %7.1f ms  %s", c.Name, c.Seconds*1000, c.Result)
	}
	want := []struct{ name, result string }{
		{"get_power", `{"powerstate": "off"}`},
		{"set_power_on", `{"pendingpowerstate": "on"}`},
		{"get_power", `{"powerstate": "on"}`},
		{"set_bootdev_network_persistent", `{"bootdev": "network"}`},
		{"get_bootdev", `{"bootdev": "network", "persistent": true, "uefimode": false}`},
		{"set_bootdev_hd_once", `{"bootdev": "hd"}`},
		{"get_bootdev", `{"bootdev": "hd", "persistent": false, "uefimode": false}`},
		{"set_bootdev_network_uefi_persistent", `{"bootdev": "network"}`},
		{"get_bootdev", `{"bootdev": "network", "persistent": true, "uefimode": true}`},
		{"set_power_off", `{"pendingpowerstate": "off"}`},
		{"get_power", `{"powerstate": "off"}`},
	}
	got := calls[1 : len(calls)-1] // without login and logout
	if len(got) != len(want) {
		t.Fatalf("got %d calls, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Name != w.name || string(got[i].Result) != w.result {
			t.Errorf("call %d: %s = %s, want %s = %s", i, got[i].Name, got[i].Result, w.name, w.result)
		}
	}
	if f, _ := m.BootFlags(t.Context()); f[0] != 0xe0 || f[1] != 0x04 {
		t.Errorf("machine holds boot flags % x, want e0 04 …", f)
	}
}
