package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// buildMetalbed builds cmd/metalbed into dir and returns its path.
func buildMetalbed(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "metalbed")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/metalbed/metalbed/cmd/metalbed").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// emfileLimit is the descriptor limit the target runs under: a handful
// for the Go runtime, the listener and the disk, the rest for
// connections.
const emfileLimit = 24

// TestTargetServeSurvivesEMFILE runs the real `metalbed target serve`
// under `prlimit --nofile`, exhausts its descriptors with idle TCP
// connections (its accept fails with EMFILE, which it logs and backs off
// from), closes them, and then a real initiator logs in and reads: libiscsi's
// iscsi-readcapacity16 the size, qemu-img the whole disk, byte for byte.
func TestTargetServeSurvivesEMFILE(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the metalbed binary; skipped with -short")
	}
	prlimit := testenv.RequireTool(t, "prlimit", "util-linux")
	readcap := testenv.RequireTool(t, "iscsi-readcapacity16", "libiscsi-bin")
	qemuImg := testenv.RequireTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	bin := buildMetalbed(t, dir)
	disk := filepath.Join(dir, "disk.img")
	content := bytes.Repeat([]byte("metalbed EMFILE "), (4<<20)/16)
	if err := os.WriteFile(disk, content, 0o644); err != nil {
		t.Fatal(err)
	}

	const iqn = "iqn.2026-11.org.metalbed.test:emfile"
	limit := strconv.Itoa(emfileLimit)
	cmd := exec.CommandContext(t.Context(), prlimit, "--nofile="+limit+":"+limit, "--",
		bin, "target", "serve", "--disk", disk, "--iqn", iqn, "--addr", "127.0.0.1:0", "-v")
	var out, errOut testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the target has ended, with waitErr its exit.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	running := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}

	// prlimit execs the target: the PID is the target's.
	ready := regexp.MustCompile(`as LUN 1 on (127\.0\.0\.1:\d+)\n`)
	testenv.Eventually(t, 20*time.Second, func() bool { return ready.MatchString(out.String()) || !running() },
		"the ready line of target serve; stdout %q", &out)
	m := ready.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("target serve ended: %v\n%s", waitErr, errOut.String())
	}
	addr := m[1]
	fds := func() int {
		ents, _ := os.ReadDir("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/fd")
		return len(ents)
	}
	idle := fds()
	if idle == 0 || idle >= emfileLimit {
		t.Fatalf("target holds %d descriptors at start (limit %d): is /proc readable, is the limit too low?", idle, emfileLimit)
	}

	// Twice the limit: more than the target can accept, the rest wait
	// in the listen backlog.
	var conns []net.Conn
	for range 2 * emfileLimit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return strings.Contains(errOut.String(), "too many open files") },
		"target serve to run out of descriptors; stderr:\n%s", &errOut)
	for _, c := range conns {
		c.Close()
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return fds() <= idle },
		"the target to close the idle connections (%d descriptors at start)", idle)
	if !running() {
		t.Fatalf("target serve ended after EMFILE: %v\n%s", waitErr, errOut.String())
	}

	url := "iscsi://" + addr + "/" + iqn + "/1"
	if got, err := exec.CommandContext(t.Context(), readcap, "-s", url).CombinedOutput(); err != nil || strings.TrimSpace(string(got)) != strconv.Itoa(len(content)) {
		t.Errorf("iscsi-readcapacity16 after EMFILE: %v %q", err, got)
	}
	back := filepath.Join(dir, "back.img")
	if got, err := exec.CommandContext(t.Context(), qemuImg, "convert", "-f", "raw", "-O", "raw", url, back).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img read after EMFILE: %v\n%s", err, got)
	}
	if b, err := os.ReadFile(back); err != nil || !bytes.Equal(b, content) {
		t.Errorf("qemu-img read %d bytes (%v), not the disk's %d", len(b), err, len(content))
	}
	if s := errOut.String(); !strings.Contains(s, "iscsi accept failed; retrying") {
		t.Errorf("stderr does not say the target backed off:\n%s", s)
	}
	t.Logf("the target's stderr on EMFILE: %s", firstLine(errOut.String(), "too many open files"))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("target serve after SIGTERM: %v\n%s", waitErr, errOut.String())
		}
	case <-ctx.Done():
		t.Fatal("target serve did not stop on SIGTERM")
	}
}

// firstLine is the first line of s containing sub, "" if none.
func firstLine(s, sub string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
