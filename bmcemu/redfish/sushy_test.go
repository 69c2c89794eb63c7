package redfish

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// debianPython is Debian's interpreter, which sees python3-sushy (a
// python3 first on PATH may be another one without it).
const debianPython = "/usr/bin/python3"

// requireSushy skips (or fails under METALBED_INTEROP=required) without
// Debian's python3-sushy.
func requireSushy(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		testenv.Unavailable(t, debianPython+" not found: install the Debian package python3-sushy")
	}
	if out, err := exec.Command(debianPython, "-c", "import sushy").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "sushy not importable by "+debianPython+": install the Debian package python3-sushy: "+strings.TrimSpace(string(out)))
	}
}

// TestSushy drives every resource and action with sushy as Ironic's
// redfish hardware type does, over HTTPS verified with the generated CA.
func TestSushy(t *testing.T) {
	requireSushy(t)
	b := startBed(t, bedOptions{})
	m := b.machines[0]
	out := b.runSushy(t, "sushy_drive.py", []string{"RF_MACS=" + m.hw.MACs[0].String(), "RF_DISK=" + strconv.FormatInt(m.hw.DiskBytes, 10)})
	if !strings.Contains(out, "ALL OK") {
		t.Fatalf("sushy script did not finish:\n%s", out)
	}
	seen := map[events.Kind]bool{}
	for _, k := range b.kinds() {
		seen[k] = true
	}
	for _, k := range []events.Kind{events.BMCRedfishReset, events.BMCRedfishBoot, events.BMCRedfishMedia, events.BMCRedfishSessions} {
		if !seen[k] {
			t.Errorf("no %s event recorded", k)
		}
	}
}

// cleanEnv is the environment without the CA bundle variables: requests
// lets REQUESTS_CA_BUNDLE (and CURL_CA_BUNDLE) override a session's own
// verify= (psf/requests#3829), and the clients must verify with the CA the
// service generated.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") || strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// TestSushyLogsAndSensors: sushy reads the same sensors as ipmitool and the
// SEL records IPMI wrote, and its ClearLog empties what ipmitool lists.
func TestSushyLogsAndSensors(t *testing.T) {
	requireSushy(t)
	sel := bmcemu.NewSEL(0)
	b := startBed(t, bedOptions{sel: sel})
	ipmi := startIPMI(t, b.machines[0], sel)
	ipmi.must("power", "on")
	rec := filepath.Join(t.TempDir(), "sel.txt")
	// Fan1 below its lower critical threshold (trigger reading 5, threshold 6).
	if err := os.WriteFile(rec, []byte("0x04 0x04 0x03 0x01 0x52 0x05 0x06\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ipmi.must("sel", "add", rec)
	sensors := parseIpmitoolSensor(t, ipmi.must("sensor"))
	ipmiCount := strings.Count(ipmi.must("sel", "list"), "\n")

	out := b.runSushy(t, "sushy_logs.py", nil)
	var res struct {
		Temperatures map[string]struct {
			Reading, Unc, Ucr, Unr float64
			Number                 int
			Health                 string
		}
		Fans map[string]struct {
			Reading, Lnc, Lcr, Lnr float64
			Units, Health          string
		}
		Supplies []float64
		Entries  []struct {
			ID                                        string `json:"Id"`
			EntryType, Message, SensorType, EntryCode string
			Severity                                  string
			SensorNumber                              int
		}
		AfterClear int `json:"after_clear"`
	}
	_, line, ok := strings.Cut(out, "RESULT ")
	if !ok || !strings.Contains(out, "ALL OK") {
		t.Fatalf("sushy script did not finish:\n%s", out)
	}
	line, _, _ = strings.Cut(line, "\n")
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("RESULT: %v: %s", err, line)
	}
	for name, tm := range res.Temperatures {
		ip := sensors[name]
		if tm.Reading != ip.value || tm.Unc != ip.thresholds["unc"] || tm.Ucr != ip.thresholds["ucr"] || tm.Unr != ip.thresholds["unr"] || tm.Health != "OK" {
			t.Errorf("sushy %s %+v, ipmitool %+v", name, tm, ip)
		}
	}
	for name, f := range res.Fans {
		ip := sensors[name]
		if f.Reading != ip.value || f.Units != "RPM" || f.Lnc != ip.thresholds["lnc"] || f.Lcr != ip.thresholds["lcr"] || f.Lnr != ip.thresholds["lnr"] {
			t.Errorf("sushy %s %+v, ipmitool %+v", name, f, ip)
		}
	}
	if len(res.Temperatures)+len(res.Fans) != len(sensors)-1 || len(res.Supplies) != 1 || res.Supplies[0] != sensors["Pwr Consumption"].value {
		t.Errorf("sushy parsed %d temperatures, %d fans, supplies %v; ipmitool %d sensors", len(res.Temperatures), len(res.Fans), res.Supplies, len(sensors))
	}
	if len(res.Entries) != ipmiCount {
		t.Errorf("sushy read %d SEL entries, ipmitool listed %d", len(res.Entries), ipmiCount)
	}
	var fanLow bool
	for _, e := range res.Entries {
		if e.EntryType != "SEL" || e.SensorType == "" || e.EntryCode == "" {
			t.Errorf("entry %+v", e)
		}
		fanLow = fanLow || (e.Message == "Fan: Lower Critical going low" && e.SensorType == "Fan" && e.SensorNumber == 3 &&
			e.EntryCode == "Lower Critical - going low" && e.Severity == "Critical")
	}
	if !fanLow {
		t.Errorf("sushy did not read the record ipmitool added: %+v", res.Entries)
	}
	if res.AfterClear != 0 {
		t.Errorf("%d entries after sushy's ClearLog", res.AfterClear)
	}
	if out := ipmi.must("sel", "info"); !strings.Contains(out, "Entries          : 0") {
		t.Errorf("after sushy's ClearLog, ipmitool sel info:\n%s", out)
	}
}

// runSushy runs testdata/script with Debian's python3 (and its sushy)
// against b, with args: RF_URL, RF_CA, RF_USER, RF_PASS, RF_SYSTEM (the
// first machine's) and RF_MANAGER in its environment, plus env. It fails
// the test unless the script exits 0, and returns its output.
func (b *bed) runSushy(t *testing.T, script string, env []string, args ...string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), script)
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), debianPython, append([]string{path}, args...)...)
	cmd.Env = append(cleanEnv(),
		"RF_URL="+b.url, "RF_CA="+b.cert.CAFile, "RF_USER="+testUser, "RF_PASS="+testPass,
		"RF_SYSTEM="+b.sysPath(0), "RF_MANAGER=/redfish/v1/Managers/"+b.machines[0].hw.UUID)
	cmd.Env = append(cmd.Env, env...)
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("sushy %s %v: %v\n%s", script, args, err, out.String())
	}
	t.Logf("sushy %s %v:\n%s", script, args, out.String())
	return out.String()
}
