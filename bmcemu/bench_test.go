package bmcemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ipmiclient "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// benchTarget is one BMC implementation measured side by side.
type benchTarget struct {
	name string
	port int
}

// benchTargets starts, for one benchmark run: bmcemu with its default reply
// pacing, bmcemu without pacing, and OpenIPMI's ipmi_sim when installed.
func benchTargets(b *testing.B) []benchTarget {
	b.Helper()
	_, p1 := startBMC(b, newTestMachine(), nil)
	_, p2 := startBMC(b, newTestMachine(), func(c *Config) { c.ReplyDelay, c.ResendAfter = -1, -1 })
	ts := []benchTarget{{"metalbed", p1}, {"metalbed-nodelay", p2}}
	if p, ok := startIPMISim(b); ok {
		ts = append(ts, benchTarget{"ipmi_sim", p})
	}
	return ts
}

// startIPMISim runs OpenIPMI's ipmi_sim on 127.0.0.1 with user
// admin/password, configured in a temporary directory.
func startIPMISim(b *testing.B) (int, bool) {
	b.Helper()
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		if os.Getenv("METALBED_INTEROP") == "required" {
			b.Fatal("ipmi_sim not found: install Debian package openipmi")
		}
		b.Log("ipmi_sim not found (Debian package openipmi): measuring bmcemu alone")
		return 0, false
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	dir := b.TempDir()
	lan := fmt.Sprintf(`name "bench"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  user 2 true "admin" "password" admin 10 none md2 md5 straight
`, port)
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
	if err := os.WriteFile(filepath.Join(dir, "lan.conf"), []byte(lan), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.emu"), []byte(emu), 0o600); err != nil {
		b.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bench.emu"), "-s", state, "-n")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Ready when it answers a status call.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := nativeStatus(context.Background(), port, types.CipherSuiteID3); err == nil {
			return port, true
		}
		if time.Now().After(deadline) {
			b.Fatal("ipmi_sim did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// latencies collects per-target samples taken in interleaved rounds, so
// load from other processes weighs on every target alike.
type latencies map[string][]time.Duration

func (l latencies) report(b *testing.B, targets []benchTarget) {
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	for _, tg := range targets {
		d := slices.Clone(l[tg.name])
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		b.ReportMetric(ms(sum/time.Duration(len(d))), tg.name+"-mean-ms")
		b.ReportMetric(ms(d[len(d)/2]), tg.name+"-p50-ms")
		b.ReportMetric(ms(d[(len(d)*95)/100]), tg.name+"-p95-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIpmitoolPowerStatus: latency of one Ironic-style
// `ipmitool -I lanplus -C 3 power status` (a whole process and session),
// one call per target per round.
func BenchmarkIpmitoolPowerStatus(b *testing.B) {
	bin, err := exec.LookPath("ipmitool")
	if err != nil {
		b.Skip("ipmitool not found (Debian package ipmitool)")
	}
	pw := filepath.Join(b.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("password\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	targets := benchTargets(b)
	lat := latencies{}
	for b.Loop() {
		for _, tg := range targets {
			start := time.Now()
			out, err := exec.Command(bin, "-I", "lanplus", "-H", "127.0.0.1", "-L", "ADMINISTRATOR",
				"-p", strconv.Itoa(tg.port), "-U", "admin", "-C", "3", "-R", "1", "-N", "1", "-f", pw,
				"power", "status").CombinedOutput()
			lat[tg.name] = append(lat[tg.name], time.Since(start))
			if err != nil || !strings.Contains(string(out), "Chassis Power is") {
				b.Fatalf("%s: %v: %s", tg.name, err, out)
			}
		}
	}
	lat.report(b, targets)
}

// BenchmarkNativeStatus: Get Chassis Status calls per second over one
// RMCP+ session (suite 3) of go-ipmi's client per target, interleaved.
func BenchmarkNativeStatus(b *testing.B) {
	targets := benchTargets(b)
	ctx := context.Background()
	clients := make([]*ipmiclient.Client, len(targets))
	for i, tg := range targets {
		c, err := ipmiclient.NewClient("127.0.0.1", tg.port, "admin", "password")
		if err != nil {
			b.Fatal(err)
		}
		c.WithInterface(ipmiclient.InterfaceLanplus).WithCipherSuiteID(types.CipherSuiteID3).WithTimeout(5 * time.Second)
		if err := c.Connect(ctx); err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
		clients[i] = c
	}
	spent := make([]time.Duration, len(targets))
	for b.Loop() {
		for i, c := range clients {
			start := time.Now()
			if _, err := c.GetChassisStatus(ctx); err != nil {
				b.Fatal(err)
			}
			spent[i] += time.Since(start)
		}
	}
	for i, tg := range targets {
		b.ReportMetric(float64(b.N)/spent[i].Seconds(), tg.name+"-calls/s")
	}
	b.ReportMetric(0, "ns/op")
}

const pyghmiBenchScript = `
import json, sys, time
from pyghmi.ipmi import command
port, n = int(sys.argv[1]), int(sys.argv[2])
t = time.monotonic()
c = command.Command(bmc="127.0.0.1", userid="admin", password="password", port=port)
login = time.monotonic() - t
calls = []
for i in range(n):
    t = time.monotonic()
    c.get_power()
    calls.append(time.monotonic() - t)
c.ipmi_session.logout()
print(json.dumps({"login": login, "calls": calls}))
`

// BenchmarkPyghmiGetPower: pyghmi get_power latency (20 calls per process
// and round) and how many calls, logins included, took over 100 ms: the
// reply/waiter race an instant BMC triggers in pyghmi.
func BenchmarkPyghmiGetPower(b *testing.B) {
	py := requirePyghmi(b)
	targets := benchTargets(b)
	lat := latencies{}
	slow := map[string]int{}
	for b.Loop() {
		for _, tg := range targets {
			out, err := exec.Command(py, "-c", pyghmiBenchScript, strconv.Itoa(tg.port), "20").Output()
			if err != nil {
				b.Fatalf("pyghmi against %s: %v", tg.name, err)
			}
			var res struct {
				Login float64   `json:"login"`
				Calls []float64 `json:"calls"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				b.Fatalf("pyghmi output %q: %v", out, err)
			}
			if res.Login > 0.1 {
				slow[tg.name]++
			}
			for _, sec := range res.Calls {
				d := time.Duration(sec * float64(time.Second))
				lat[tg.name] = append(lat[tg.name], d)
				if d > 100*time.Millisecond {
					slow[tg.name]++
				}
			}
		}
	}
	for _, tg := range targets {
		b.ReportMetric(float64(slow[tg.name]), tg.name+"-slow-calls")
	}
	b.ReportMetric(float64(21*b.N), "calls-per-target")
	lat.report(b, targets)
}

func rssKB(b *testing.B) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb
		}
	}
	b.Fatal("VmRSS not found")
	return 0
}

// BenchmarkFleetRSS: resident memory of this process serving N BMCs, each
// on its own UDP socket, after every one has answered a status call.
func BenchmarkFleetRSS(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				runtime.GC()
				debug.FreeOSMemory()
				before := rssKB(b)
				f := startFleet(b, n)
				// Touch every BMC once so sessions, SOL stores and buffers are live.
				for i := 0; i < n; i += max(1, n/200) {
					if _, err := nativeStatus(context.Background(), f.ports[i], types.CipherSuiteID17); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				after := rssKB(b)
				b.ReportMetric(float64(after)/1024, "process-MB")
				b.ReportMetric(float64(after-before)/float64(n), "KB/BMC")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}
