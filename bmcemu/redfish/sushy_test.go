package redfish

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	script, err := os.ReadFile(filepath.Join("testdata", "sushy_drive.py"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sushy_drive.py")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cmd := exec.CommandContext(ctx, debianPython, path)
	cmd.Env = append(cleanEnv(),
		"RF_URL="+b.url, "RF_CA="+b.cert.CAFile, "RF_USER="+testUser, "RF_PASS="+testPass,
		"RF_SYSTEM="+b.sysPath(0), "RF_MACS="+m.hw.MACs[0].String(), "RF_DISK="+strconv.FormatInt(m.hw.DiskBytes, 10))
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("sushy: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "ALL OK") {
		t.Fatalf("sushy script did not finish:\n%s", out.String())
	}
	t.Logf("sushy:\n%s", out.String())
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
