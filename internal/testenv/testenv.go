// Package testenv is what metalbed's tests share about their environment:
// finding the real peers they drive (ipmitool, tgtd, dnsmasq, Ironic …), the
// METALBED_INTEROP=required switch that turns a missing peer from a skip
// into a failure (CI sets it), a goroutine-safe buffer for the output of
// peers run as subprocesses, StartTied for peers that must die with the
// test process, and Eventually, the one poll-with-a-deadline helper. Only
// tests (and the scenarios package they drive) import it.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// PollInterval is how often Eventually checks its condition.
const PollInterval = 10 * time.Millisecond

// Eventually checks cond every PollInterval until it holds, and fails the
// test when timeout passes first or the test's context ends, saying what
// it waited for: format and args, formatted then (a fmt.Stringer argument
// renders the state at the failure).
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			if cond() {
				return
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, fmt.Sprintf(format, args...))
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", fmt.Sprintf(format, args...))
		case <-tick.C:
		}
	}
}

// InteropRequired reports whether METALBED_INTEROP=required: interop tests
// then fail instead of skipping when a peer is missing.
func InteropRequired() bool { return os.Getenv("METALBED_INTEROP") == "required" }

// Unavailable skips the test saying why, or fails it under
// METALBED_INTEROP=required.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if InteropRequired() {
		t.Fatalf("%s (METALBED_INTEROP=required)", why)
	}
	t.Skip(why)
}

// RequireTool returns the path of the real tool name — on PATH, or in
// /usr/sbin or /sbin, which a non-root PATH may lack — or skips the test
// naming the Debian package pkg that provides it (fails under
// METALBED_INTEROP=required).
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	Unavailable(t, fmt.Sprintf("%s not found: install the Debian package %s", name, pkg))
	return ""
}

// RequireFile skips the test, naming the Debian package pkg that provides
// it, when the file at path is missing (fails under METALBED_INTEROP=required).
func RequireFile(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Unavailable(t, fmt.Sprintf("%s not found: install the Debian package %s", path, pkg))
	}
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// SyncBuffer is a bytes.Buffer safe for a subprocess's output goroutines
// and the test reading it at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Clock is a settable clock for the Now hooks of components' Configs:
// tests move it forward instead of waiting for timeouts to pass. It is
// safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// RequireLibvirt skips a test that needs real VMs (or, under
// METALBED_LIBVIRT=required, as ci/libvirt/test.sh runs, fails it) unless
// this process is root and libvirtd runs (ci/libvirt/start.sh).
func RequireLibvirt(t testing.TB) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("METALBED_LIBVIRT") == "required" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("real VMs need root (network namespaces, bridges, qemu:///system)")
	}
	if _, err := os.Stat("/var/run/libvirt/libvirt-sock"); err != nil {
		fail("libvirtd is not running (ci/libvirt/start.sh): %v", err)
	}
}
