package drivers

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
)

// fakeTool wires the "ipmi" hardware type to testdata/fake-ipmitool, a
// shell script that records its argv. It tests argument construction only;
// interop_test.go drives real BMCs.
type fakeTool struct {
	dir     string // state and records of the script
	tempDir string // where password files go
	hw      *HardwareType
}

func newFakeTool(t *testing.T, mutate func(*IPMIConfig)) *fakeTool {
	t.Helper()
	script, err := filepath.Abs("testdata/fake-ipmitool")
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTool{dir: t.TempDir(), tempDir: t.TempDir()}
	t.Setenv("FAKE_IPMITOOL_DIR", ft.dir)
	cfg := IPMIConfig{
		Client:              ClientIPMITool,
		IPMITool:            script,
		TempDir:             ft.tempDir,
		MinCommandInterval:  time.Millisecond,
		PollInterval:        time.Millisecond,
		CommandRetryTimeout: 5 * time.Second,
		PowerTimeout:        5 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ft.hw, err = NewIPMI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ft
}

func (ft *fakeTool) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ft.dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// argv returns the recorded command lines, "ipmitool " prefixed as in
// the reference capture, and forgets them.
func (ft *fakeTool) argv(t *testing.T) []string {
	t.Helper()
	p := filepath.Join(ft.dir, "argv")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		out = append(out, "ipmitool "+l)
	}
	return out
}

func (ft *fakeTool) power(t *testing.T) PowerInterface {
	p, err := ft.hw.PowerFor(&provisioner.Node{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (ft *fakeTool) mgmt(t *testing.T) ManagementInterface {
	m, err := ft.hw.ManagementFor(&provisioner.Node{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// captureNode has the driver_info of the node the reference capture was
// taken with (ironic-ipmitool-commands.txt).
func captureNode() *provisioner.Node {
	return &provisioner.Node{
		UUID:   "603c03f7-93d4-4e40-99ff-26d6c463d0d3",
		Driver: "ipmi",
		DriverInfo: map[string]any{
			"ipmi_address":      "127.0.0.1",
			"ipmi_port":         float64(9623),
			"ipmi_username":     "admin",
			"ipmi_password":     "password",
			"ipmi_cipher_suite": float64(3),
		},
	}
}

func readCapture(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("testdata/ironic-ipmitool-commands.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines[sc.Text()] = true
	}
	return lines
}

// TestIPMIToolCommandLinesMatchIronic runs each operation and compares the
// exact ipmitool command lines with what real Ironic 21.4 executed.
func TestIPMIToolCommandLinesMatchIronic(t *testing.T) {
	ctx := t.Context()
	capture := readCapture(t)
	ft := newFakeTool(t, nil)
	node := captureNode()
	pre := "ipmitool -I lanplus -H 127.0.0.1 -L ADMINISTRATOR -p 9623 -U admin -C 3 -R 1 -N 1 -f <pwfile> "

	steps := []struct {
		name string
		run  func() error
		want []string
	}{
		{"power status", func() error {
			st, err := ft.power(t).GetPowerState(ctx, node)
			if err == nil && st != provisioner.PowerOff {
				t.Errorf("power state %q, want power off", st)
			}
			return err
		}, []string{"power status"}},
		{"power on", func() error { return ft.power(t).SetPowerState(ctx, node, provisioner.PowerOn) },
			[]string{"power on", "power status"}},
		{"power off", func() error { return ft.power(t).SetPowerState(ctx, node, provisioner.PowerOff) },
			[]string{"power off", "power status"}},
		{"reboot from off", func() error { return ft.power(t).Reboot(ctx, node, false) },
			[]string{"power status", "power on", "power status"}},
		{"reboot from on", func() error { return ft.power(t).Reboot(ctx, node, false) },
			[]string{"power status", "power off", "power status", "power on", "power status"}},
		{"uefi pxe one-time", func() error { return ft.mgmt(t).SetBootDevice(ctx, node, BootDevice{Device: "pxe"}) },
			[]string{"raw 0x00 0x08 0x03 0x08", "raw 0x00 0x08 0x05 0xa0 0x04 0x00 0x00 0x00"}},
		{"uefi pxe persistent", func() error {
			return ft.mgmt(t).SetBootDevice(ctx, node, BootDevice{Device: "pxe", Persistent: true})
		}, []string{"raw 0x00 0x08 0x03 0x08", "raw 0x00 0x08 0x05 0xe0 0x04 0x00 0x00 0x00"}},
		{"uefi disk persistent", func() error {
			return ft.mgmt(t).SetBootDevice(ctx, node, BootDevice{Device: "disk", Persistent: true})
		}, []string{"raw 0x00 0x08 0x03 0x08", "raw 0x00 0x08 0x05 0xe0 0x08 0x00 0x00 0x00"}},
		{"get boot device", func() error {
			_, err := ft.mgmt(t).GetBootDevice(ctx, node)
			return err
		}, []string{"chassis bootparam get 5"}},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var want []string
		for _, w := range s.want {
			want = append(want, pre+w)
		}
		got := ft.argv(t)
		if !slices.Equal(got, want) {
			t.Errorf("%s: ran\n%s\nwant\n%s", s.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, g := range got {
			if !capture[g] {
				t.Errorf("%s: %q is not a line real Ironic ran", s.name, g)
			}
		}
	}

	modes, err := os.ReadFile(filepath.Join(ft.dir, "pwmode"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range strings.Fields(string(modes)) {
		if m != "600" {
			t.Errorf("password file mode %s, want 600", m)
		}
	}
	content, _ := os.ReadFile(filepath.Join(ft.dir, "pwcontent"))
	for _, c := range strings.Split(strings.TrimRight(string(content), "\n"), "\n") {
		if c != "password" {
			t.Errorf("password file held %q", c)
		}
	}
	if left, _ := os.ReadDir(ft.tempDir); len(left) != 0 {
		t.Errorf("password files left behind: %v", left)
	}
}

func TestIPMIToolBIOSAndOptionalArguments(t *testing.T) {
	ctx := t.Context()
	ft := newFakeTool(t, nil)
	node := &provisioner.Node{
		UUID:       "n1",
		DriverInfo: map[string]any{"ipmi_address": "127.0.0.2", "ipmi_priv_level": "OPERATOR", "ipmi_hex_kg_key": "0a0b"},
		Properties: map[string]any{"capabilities": "boot_mode:bios,foo:bar"},
	}
	m := ft.mgmt(t)
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "pxe"}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "disk", Persistent: true}); err != nil {
		t.Fatal(err)
	}
	node.DriverInfo["ipmi_disable_boot_timeout"] = "false"
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "cdrom"}); err != nil {
		t.Fatal(err)
	}
	pre := "ipmitool -I lanplus -H 127.0.0.2 -L OPERATOR -y 0a0b -R 1 -N 1 -f <pwfile> "
	want := []string{
		pre + "raw 0x00 0x08 0x03 0x08", pre + "chassis bootdev pxe",
		pre + "raw 0x00 0x08 0x03 0x08", pre + "chassis bootdev disk options=persistent",
		pre + "chassis bootdev cdrom",
	}
	if got := ft.argv(t); !slices.Equal(got, want) {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// No password: Ironic writes a NUL so ipmitool does not prompt.
	content, _ := os.ReadFile(filepath.Join(ft.dir, "pwcontent"))
	if want := strings.Repeat("\x00\n", 5); string(content) != want {
		t.Errorf("password files held %q, want %q", content, want)
	}
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "floppy"}); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("floppy: %v, want invalid parameter", err)
	}
	if got := ft.argv(t); len(got) != 0 {
		t.Errorf("an invalid device ran ipmitool: %v", got)
	}
}

func TestIPMIToolGetBootDeviceParsesOutput(t *testing.T) {
	ft := newFakeTool(t, nil)
	for file, want := range map[string]BootDevice{
		"testdata/bootparam-ipmisim-disk.txt":       {Device: "disk"},
		"testdata/bootparam-efi-pxe-persistent.txt": {Device: "pxe", Persistent: true},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		ft.write(t, "bootparam", string(b))
		got, err := ft.mgmt(t).GetBootDevice(t.Context(), captureNode())
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: %+v, want %+v", file, got, want)
		}
	}
}

func TestIPMIToolErrorsCarryStderrAndRetry(t *testing.T) {
	ft := newFakeTool(t, func(c *IPMIConfig) {
		c.MinCommandInterval = 100 * time.Millisecond
		c.CommandRetryTimeout = 10 * time.Second // => at most 100 tries …
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ft.write(t, "fail", "Error: Unable to establish IPMI v2 / RMCP+ session\n")
	// … but stop it after a few by making the failure go away: Ironic
	// retries every error, so the command then succeeds.
	done := make(chan error, 1)
	go func() {
		_, err := ft.power(t).GetPowerState(ctx, captureNode())
		done <- err
	}()
	testenv.Eventually(t, 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(ft.dir, "argv"))
		return strings.Count(string(b), "\n") >= 3
	}, "three ipmitool calls")
	os.Remove(filepath.Join(ft.dir, "fail"))
	if err := <-done; err != nil {
		t.Fatalf("after the BMC recovered: %v", err)
	}

	// A failure that lasts: the error names the command and carries stderr.
	ft2 := newFakeTool(t, func(c *IPMIConfig) {
		c.MinCommandInterval = time.Second
		c.CommandRetryTimeout = 2 * time.Second // two tries
	})
	ft2.write(t, "fail", "Error: Unable to establish IPMI v2 / RMCP+ session\n")
	_, err := ft2.power(t).GetPowerState(t.Context(), captureNode())
	if err == nil || !strings.Contains(err.Error(), "Unable to establish IPMI v2 / RMCP+ session") ||
		!strings.Contains(err.Error(), "power status") {
		t.Errorf("error %v, want ipmitool's stderr and the command", err)
	}
}

func TestIPMIToolCipherSuiteFallback(t *testing.T) {
	ft := newFakeTool(t, func(c *IPMIConfig) {
		c.CipherSuiteVersions = []int{3, 17}
		c.MinCommandInterval = 500 * time.Millisecond
		c.CommandRetryTimeout = 2 * time.Second
	})
	ft.write(t, "refuse-suite", "none\n17\n")
	node := captureNode()
	delete(node.DriverInfo, "ipmi_cipher_suite")
	st, err := ft.power(t).GetPowerState(t.Context(), node)
	if err != nil || st != provisioner.PowerOff {
		t.Fatalf("power status: %q, %v", st, err)
	}
	pre := "ipmitool -I lanplus -H 127.0.0.1 -L ADMINISTRATOR -p 9623 -U admin"
	want := []string{
		pre + " -R 1 -N 1 -f <pwfile> power status",
		pre + " -C 17 -R 1 -N 1 -f <pwfile> power status",
		pre + " -C 3 -R 1 -N 1 -f <pwfile> power status",
	}
	if got := ft.argv(t); !slices.Equal(got, want) {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A node that names its suite is never moved off it.
	node.DriverInfo["ipmi_cipher_suite"] = "17"
	if _, err := ft.power(t).GetPowerState(t.Context(), node); err == nil {
		t.Error("a refused ipmi_cipher_suite succeeded")
	}
	for _, l := range ft.argv(t) {
		if !strings.Contains(l, " -C 17 ") {
			t.Errorf("ran %q with another suite", l)
		}
	}
}

func TestIPMIToolMissingBinary(t *testing.T) {
	// Defaults: 5 s between tries for 60 s. Were a missing binary retried,
	// the 20 s context would end first and the error would be the
	// context's, not the permanent one.
	hw, err := NewIPMI(IPMIConfig{IPMITool: filepath.Join(t.TempDir(), "no-ipmitool")})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := hw.PowerFor(&provisioner.Node{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = p.GetPowerState(ctx, captureNode())
	if err == nil || !errors.Is(err, errPermanent) {
		t.Fatalf("err %v, want a permanent error", err)
	}
}
