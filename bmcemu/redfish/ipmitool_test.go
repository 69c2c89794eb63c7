package redfish

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/testenv"
)

// ipmitool runs the real ipmitool against an IPMI BMC serving the same
// machine (and SEL) as the Redfish service.
type ipmitool struct {
	t      *testing.T
	bin    string
	port   int
	pwfile string
}

// startIPMI serves an IPMI BMC for m on 127.0.0.1:0 with sel as its SEL
// until the test ends.
func startIPMI(t *testing.T, m bmcemu.Machine, sel *bmcemu.SEL) *ipmitool {
	t.Helper()
	bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
	srv, err := bmcemu.New(bmcemu.Config{Machine: m, Username: testUser, Password: testPass, SEL: sel})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("IPMI Serve: %v", err)
		}
		conn.Close()
	})
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &ipmitool{t: t, bin: bin, port: conn.LocalAddr().(*net.UDPAddr).Port, pwfile: pw}
}

// must runs ipmitool over lanplus as Ironic does and returns its output.
func (r *ipmitool) must(args ...string) string {
	r.t.Helper()
	full := append([]string{"-I", "lanplus", "-C", "17", "-H", "127.0.0.1", "-p", strconv.Itoa(r.port),
		"-U", testUser, "-f", r.pwfile, "-L", "ADMINISTRATOR", "-R", "1", "-N", "1"}, args...)
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.bin, full...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
