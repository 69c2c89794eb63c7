package bmcemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// ipmitoolMode is one way ipmitool reaches a BMC.
type ipmitoolMode struct {
	name string
	args []string
}

var ipmitoolModes = []ipmitoolMode{
	{"lanplus-C3", []string{"-I", "lanplus", "-C", "3"}},
	{"lanplus-C17", []string{"-I", "lanplus", "-C", "17"}},
	{"lanplus-noC", []string{"-I", "lanplus"}},
	{"lan", []string{"-I", "lan"}},
}

type ipmitoolRunner struct {
	t      *testing.T
	bin    string
	port   int
	pwfile string
	mode   ipmitoolMode
}

func newIpmitool(t *testing.T, port int, mode ipmitoolMode, password string) *ipmitoolRunner {
	t.Helper()
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &ipmitoolRunner{t: t, bin: bin, port: port, pwfile: pw, mode: mode}
}

// run executes ipmitool the way Ironic does and returns combined output.
func (r *ipmitoolRunner) run(args ...string) (string, error) {
	full := append([]string{}, r.mode.args...)
	full = append(full, "-H", "127.0.0.1", "-L", "ADMINISTRATOR", "-p", strconv.Itoa(r.port),
		"-U", "admin", "-R", "1", "-N", "1", "-f", r.pwfile)
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, r.bin, full...).CombinedOutput()
	r.t.Logf("ipmitool %s %s (%v): %s", r.mode.name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), out)
	return string(out), err
}

func (r *ipmitoolRunner) must(args ...string) string {
	r.t.Helper()
	out, err := r.run(args...)
	if err != nil {
		r.t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestIpmitoolCommands(t *testing.T) {
	for _, mode := range ipmitoolModes {
		t.Run(mode.name, func(t *testing.T) {
			m := newTestMachine()
			_, port := startBMC(t, m, nil)
			ipmi := newIpmitool(t, port, mode, "password")

			mustContain(t, ipmi.must("power", "status"), "Chassis Power is off")
			mustContain(t, ipmi.must("power", "on"), "Chassis Power Control: Up/On")
			mustContain(t, ipmi.must("power", "status"), "Chassis Power is on")
			mustContain(t, ipmi.must("power", "off"), "Chassis Power Control: Down/Off")
			mustContain(t, ipmi.must("power", "status"), "Chassis Power is off")
			mustContain(t, ipmi.must("power", "cycle"), "Chassis Power Control: Cycle")
			mustContain(t, ipmi.must("power", "reset"), "Chassis Power Control: Reset")
			mustContain(t, ipmi.must("power", "diag"), "Chassis Power Control: Diag")
			mustContain(t, ipmi.must("power", "soft"), "Chassis Power Control: Soft")
			m.mu.Lock()
			got := append([]PowerAction(nil), m.actions...)
			m.mu.Unlock()
			want := []PowerAction{PowerUp, PowerDown, PowerCycle, HardReset, DiagnosticInterrupt, SoftShutdown}
			if len(got) != len(want) {
				t.Fatalf("machine saw actions %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("machine saw actions %v, want %v", got, want)
				}
			}
			mustContain(t, ipmi.must("chassis", "status"), "System Power         : off", "Power Restore Policy : previous")

			mustContain(t, ipmi.must("mc", "info"),
				"Manufacturer Name         : OpenBMC Project", "Firmware Revision         : 2.10",
				"IPMI Version              : 2.0", "Manufacturer ID           : 49871")
			mustContain(t, ipmi.must("mc", "guid"), "System GUID")
			mustContain(t, ipmi.must("mc", "selftest"), "Selftest: passed")
			mustContain(t, ipmi.must("bmc", "reset", "warm"), "Sent warm reset command to MC")
			mustContain(t, ipmi.must("bmc", "reset", "cold"), "Sent cold reset command to MC")
			ipmi.must("raw", "0x06", "0x37") // Get System GUID

			// Boot device, BIOS style (ipmitool writes parameters 0, 4, 5).
			ipmi.must("chassis", "bootdev", "pxe")
			mustContain(t, ipmi.must("chassis", "bootparam", "get", "5"),
				"Boot Device Selector : Force PXE", "Options apply to only next boot")
			ipmi.must("chassis", "bootdev", "disk", "options=persistent")
			mustContain(t, ipmi.must("chassis", "bootparam", "get", "5"),
				"Boot Device Selector : Force Boot from default Hard-Drive", "Options apply to all future boots")
			ipmi.must("chassis", "bootdev", "cdrom", "options=persistent,efiboot")
			out := ipmi.must("chassis", "bootparam", "get", "5")
			mustContain(t, out, "Force Boot from CD/DVD", "Options apply to all future boots", "BIOS EFI boot")
			ipmi.must("chassis", "bootdev", "bios")
			mustContain(t, ipmi.must("chassis", "bootparam", "get", "5"), "Force Boot into BIOS Setup")
			ipmi.must("chassis", "bootdev", "safe")
			mustContain(t, ipmi.must("chassis", "bootparam", "get", "5"), "Force Boot from default Hard-Drive, request Safe-Mode")
			if f, _ := m.BootFlags(t.Context()); f != [5]byte{0x80, 0x0c, 0, 0, 0} {
				t.Errorf("machine stored % x for bootdev safe", f)
			}
			mustContain(t, ipmi.must("chassis", "bootparam", "get", "0"), "Set In Progress : set complete")
			mustContain(t, ipmi.must("chassis", "bootparam", "get", "4"), "Boot Info Acknowledge", "Boot parameter data: 0101")
			mustContain(t, ipmi.must("chassis", "bootparam", "get", "3"), "BMC boot flag valid bit clearing")

			// Sensors and SDR.
			ipmi.must("power", "on")
			out = ipmi.must("sdr")
			mustContain(t, out, "Inlet Temp", "24 degrees C", "CPU Temp", "46 degrees C", "Fan1", "5400 RPM", "Pwr Consumption", "174 Watts")
			out = ipmi.must("sdr", "-v")
			mustContain(t, out, "Sensor ID              : CPU Temp", "Upper critical        : 95.000", "Sensor Type (Threshold)  : Fan")
			out = ipmi.must("sensor")
			mustContain(t, out, "CPU Temp", "46.000", "degrees C", "ok", "95.000")
			out = ipmi.must("sdr", "type", "Temperature")
			mustContain(t, out, "Inlet Temp", "CPU Temp")

			// SEL.
			out = ipmi.must("sel", "info")
			mustContain(t, out, "Version          : 1.5")
			out = ipmi.must("sel", "list")
			mustContain(t, out, "Power Unit #0x01 | Power off/down | Asserted", "Power Unit #0x01 | Power off/down | Deasserted",
				"Button #0x04 | Power Button pressed", "Button #0x04 | Reset Button pressed", "Power cycle",
				"System Firmwares #0x03 | System boot initiated", "Initiated by hard reset", "NMI/Diag Interrupt")
			ipmi.must("sel", "time", "get")
			mustContain(t, ipmi.must("sel", "clear"), "Clearing SEL")
			mustContain(t, ipmi.must("sel", "info"), "Entries          : 0")

			// Unknown command: 0xC1.
			out, err := ipmi.run("raw", "0x30", "0x99")
			if err == nil {
				t.Errorf("raw 0x30 0x99 succeeded: %s", out)
			}
			mustContain(t, out, "Invalid command")
		})
	}
}

// TestIronicCommandLines replays every command line of a real Ironic 21.4
// run, verbatim apart from the port, and checks what Ironic parses.
func TestIronicCommandLines(t *testing.T) {
	// Captured from a real Ironic 21.4 conductor (ipmitool driver).
	f, err := os.Open(filepath.Join("testdata", "ironic-ipmitool-commands.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 0 {
			lines = append(lines, fields)
		}
	}
	if len(lines) == 0 {
		t.Fatal("no command lines in the capture")
	}
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	m := newTestMachine()
	_, port := startBMC(t, m, nil)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, fields := range lines {
		args := make([]string, 0, len(fields))
		for i, a := range fields[1:] {
			switch {
			case a == "<pwfile>":
				a = pw
			case i > 0 && fields[i] == "-p":
				a = strconv.Itoa(port)
			}
			args = append(args, a)
		}
		out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		tail := strings.Join(fields[len(fields)-2:], " ")
		on, _ := m.PowerState(t.Context())
		switch {
		case tail == "power status":
			want := "Chassis Power is off"
			if on {
				want = "Chassis Power is on"
			}
			mustContain(t, string(out), want)
		case tail == "info":
			mustContain(t, string(out), "Manufacturer Name")
		case strings.HasSuffix(strings.Join(fields, " "), "bootparam get 5"):
			flags, _ := m.BootFlags(t.Context())
			if flags[0]&0x80 != 0 && flags[1] == 0x04 {
				mustContain(t, string(out), "Boot Device Selector : Force PXE")
			}
			if flags[0]&0x40 != 0 {
				mustContain(t, string(out), "Options apply to all future boots")
			}
		}
	}
	// The capture ends with a one-time PXE override set while powered off.
	if f, _ := m.BootFlags(t.Context()); f != [5]byte{0xa0, 0x04, 0, 0, 0} {
		t.Errorf("final boot flags % x, want a0 04 00 00 00", f)
	}
}

func TestWrongPasswordAndCipherZeroRefused(t *testing.T) {
	m := newTestMachine()
	_, port := startBMC(t, m, nil)
	for _, mode := range ipmitoolModes {
		ipmi := newIpmitool(t, port, mode, "wrong-password")
		out, err := ipmi.run("power", "status")
		if err == nil || strings.Contains(out, "Chassis Power is") {
			t.Errorf("%s with a wrong password succeeded: %s", mode.name, out)
		}
	}
	// Neither the null user nor anonymous login is offered.
	for _, intf := range []string{"lanplus", "lan"} {
		out, err := exec.CommandContext(t.Context(), testenv.RequireTool(t, "ipmitool", "ipmitool"), "-I", intf, "-H", "127.0.0.1",
			"-p", strconv.Itoa(port), "-U", "", "-P", "", "-R", "1", "-N", "1", "power", "status").CombinedOutput()
		if err == nil || strings.Contains(string(out), "Chassis Power is") {
			t.Errorf("-I %s null user accepted: %s", intf, out)
		}
	}
	authcap := newIpmitool(t, port, ipmitoolModes[0], "password").must("channel", "authcap", "1", "4")
	mustContain(t, authcap, "Null user names exist      : no", "Anonymous login enabled    : no", "Channel supports IPMI v2.0 : yes")
	ciphers := newIpmitool(t, port, ipmitoolModes[0], "password").must("channel", "getciphers", "ipmi", "1")
	mustContain(t, ciphers, "hmac_sha1       hmac_sha1_96    aes_cbc_128", "hmac_sha256     sha256_128      aes_cbc_128")
	if strings.Contains(ciphers, "\n0 ") {
		t.Errorf("cipher suite 0 advertised:\n%s", ciphers)
	}

	ipmi := newIpmitool(t, port, ipmitoolMode{"lanplus-C0", []string{"-I", "lanplus", "-C", "0"}}, "password")
	out, err := ipmi.run("power", "status")
	if err == nil || strings.Contains(out, "Chassis Power is") {
		t.Errorf("cipher suite 0 accepted: %s", out)
	}
	// With AllowCipherZero the same command works.
	_, port0 := startBMC(t, newTestMachine(), func(c *Config) { c.AllowCipherZero = true })
	ipmi = newIpmitool(t, port0, ipmitoolMode{"lanplus-C0", []string{"-I", "lanplus", "-C", "0"}}, "password")
	mustContain(t, ipmi.must("power", "status"), "Chassis Power is off")
}

// TestIPMI15ConcurrentSessions: several `ipmitool -I lan` calls for the same
// user at once all get a session (a real BMC does not cap sessions per user
// at one, as go-ipmi's reference handler does).
func TestIPMI15ConcurrentSessions(t *testing.T) {
	m := newTestMachine()
	_, port := startBMC(t, m, nil)
	ipmi := newIpmitool(t, port, ipmitoolModes[3], "password")
	const n = 3
	errs := make(chan error, n)
	for range n {
		go func() {
			out, err := ipmi.run("sdr")
			if err == nil && !strings.Contains(out, "CPU Temp") {
				err = fmt.Errorf("unexpected output: %s", out)
			}
			if err != nil {
				err = fmt.Errorf("%w: %s", err, out)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestRAKPStatusCodes: a RAKP 1 naming a user the BMC does not have is
// answered with RAKP 2 status 0x0D, unauthorized name (IPMI v2.0 table
// 13-15), which ipmitool reports as such; the right user still logs in.
func TestRAKPStatusCodes(t *testing.T) {
	_, port := startBMC(t, newTestMachine(), nil)
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	out, err := exec.CommandContext(t.Context(), bin, "-v", "-I", "lanplus", "-H", "127.0.0.1", "-p", strconv.Itoa(port),
		"-U", "nobody", "-P", "password", "-R", "1", "-N", "1", "power", "status").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "RAKP 2 message indicates an error : unauthorized name") {
		t.Errorf("unknown user: %v\n%s", err, out)
	}
	mustContain(t, newIpmitool(t, port, ipmitoolModes[0], "password").must("power", "status"), "Chassis Power is off")
}
