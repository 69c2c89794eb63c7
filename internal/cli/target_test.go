package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

func TestTargetServeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"target", "serve"},
		{"target", "serve", "--disk", "x.img"},
		{"target", "serve", "--disk", "x.img", "--iqn", "iqn.x", "--chap-user", "u"},
		{"target", "serve", "--bogus"},
	} {
		err := Run(t.Context(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if ExitCode(err) != 2 {
			t.Errorf("%v: err = %v (exit %d), want a usage error", args, err, ExitCode(err))
		}
	}
	err := Run(t.Context(), []string{"target", "serve", "--disk", filepath.Join(t.TempDir(), "missing.img"), "--iqn", "iqn.x"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || ExitCode(err) != 1 {
		t.Errorf("missing disk: %v", err)
	}
}

func TestTargetServeBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	disk := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(disk, make([]byte, 1<<20), 0o644)
	err = Run(t.Context(), []string{"target", "serve", "--disk", disk, "--iqn", "iqn.2026-11.x:y", "--addr", ln.Addr().String()}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("taken port: %v", err)
	}
}

// TestTargetServe serves a file, prints one ready line, answers libiscsi
// (when installed) and returns nil when interrupted.
func TestTargetServe(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("METALBED_CHAP_SECRET", "from-the-env-1")
	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"target", "serve", "--disk", disk, "--iqn", "iqn.2026-11.org.metalbed.test:cli",
			"--addr", "127.0.0.1:0", "--chap-user", "cli"}, &out, &errOut)
	}()
	ready := regexp.MustCompile(`serving .* \(8388608 bytes\) as LUN 1 on (127\.0\.0\.1:\d+)\n`)
	deadline := time.Now().Add(10 * time.Second)
	var addr string
	for addr == "" {
		if m := ready.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("target serve ended: %v\n%s", err, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready line: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("%d lines printed, want one ready line", n)
	}
	// The README's libiscsi line.
	tool := testenv.RequireTool(t, "iscsi-readcapacity16", "libiscsi-bin")
	url := "iscsi://cli%from-the-env-1@" + addr + "/iqn.2026-11.org.metalbed.test:cli/1"
	if got, err := exec.CommandContext(t.Context(), tool, "-s", url).CombinedOutput(); err != nil || strings.TrimSpace(string(got)) != "8388608" {
		t.Errorf("iscsi-readcapacity16: %v %q", err, got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("target serve after interrupt: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("target serve did not stop")
	}
}
