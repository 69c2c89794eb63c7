package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// interopRequired reports whether CI asked for interop peers to be present
// (METALBED_INTEROP=required): a missing peer then fails instead of skipping.

// requireInteropTool returns the path of an interop peer, or skips the test naming
// the Debian package that provides it (fails instead when
// METALBED_INTEROP=required, as in CI).
func requireInteropTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if testenv.InteropRequired() {
		t.Fatalf("%s not found (Debian package %s) and METALBED_INTEROP=required", name, pkg)
	}
	t.Skipf("%s not found: install the Debian package %s", name, pkg)
	return ""
}

// repoRoot is the module root: the parent of this package's directory (go
// test runs in the package directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	root := filepath.Dir(wd)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	return root
}

// buildMetalbed builds cmd/metalbed into a temporary directory and returns
// the binary's path: scenarios drive metalbed as a user does, over its CLI
// and the wire.
func buildMetalbed(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "metalbed")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/metalbed")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/metalbed: %v\n%s", err, out)
	}
	return bin
}

// pollUntil calls cond every interval until it returns true or timeout passes;
// it returns how long that took, or an error naming what was awaited
// (with cond's last note).
func pollUntil(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	note := ""
	for {
		var ok bool
		if ok, note = cond(); ok {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%s: not reached after %s (last: %s)", what, timeout, note)
		case <-tick.C:
		}
	}
}

// Fleet is one running `metalbed up --no-provisioner`.
type Fleet struct {
	Dir       string
	Inventory inventory
	Stdout    *testenv.SyncBuffer
	Stderr    *testenv.SyncBuffer
}

// startFleet runs `metalbed up --nodes n --no-provisioner` with ephemeral
// BMC ports plus extra flags, waits for its ready line and reads the
// inventory. Cleanup interrupts it (SIGINT) and waits for it to exit.
func startFleet(t testing.TB, bin string, n int, extra ...string) *Fleet {
	t.Helper()
	f := &Fleet{Dir: t.TempDir(), Stdout: &testenv.SyncBuffer{}, Stderr: &testenv.SyncBuffer{}}
	args := append([]string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--nodes", fmt.Sprint(n), "--no-provisioner",
		"--state-dir", f.Dir, "--bmc-base-port", "0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f.Stdout, f.Stderr
	// A test killed by -timeout runs no cleanup: the child then gets SIGTERM.
	if err := testenv.StartTied(cmd, syscall.SIGTERM); err != nil {
		t.Fatalf("metalbed up: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("metalbed up exited: %v\n%s", err, f.Stderr)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("metalbed up did not stop within 30 s of SIGINT")
		}
	})
	_, err := pollUntil(t.Context(), 60*time.Second, 50*time.Millisecond, "metalbed up ready line", func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Sprintf("exited: %v: %s", err, f.Stderr)
		default:
		}
		return strings.Contains(f.Stdout.String(), " up, BMCs on "), f.Stderr.String()
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(f.Dir, "inventory.json"))
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	if err := json.Unmarshal(raw, &f.Inventory); err != nil {
		t.Fatalf("inventory: %v", err)
	}
	if len(f.Inventory.Nodes) != n {
		t.Fatalf("inventory lists %d machines, want %d", len(f.Inventory.Nodes), n)
	}
	return f
}

// ipmitool runs the real ipmitool over lanplus against a machine's BMC
// (cipher suite "" = ipmitool's own choice) and returns its output.
func ipmitool(ctx context.Context, n inventoryNode, suite string, args ...string) (string, error) {
	full := []string{"-I", "lanplus", "-H", n.BMC.Address, "-p", fmt.Sprint(n.BMC.Port),
		"-U", n.BMC.Username, "-E"}
	if suite != "" {
		full = append(full, "-C", suite)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "ipmitool", full...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+n.BMC.Password)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ipmitool %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// bootParam5 reads the BMC's boot flags (parameter 5) with ipmitool and
// returns the data bytes as ipmitool prints them, e.g. "c004000000".
func bootParam5(ctx context.Context, n inventoryNode, suite string) (string, error) {
	out, err := ipmitool(ctx, n, suite, "chassis", "bootparam", "get", "5")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Boot parameter data:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("ipmitool chassis bootparam get 5: no data line in:\n" + out)
}
