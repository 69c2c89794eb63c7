package initiator

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// tgtd is one Debian tgtd started by a test on loopback.
type tgtd struct {
	pid    int
	addr   string
	ctl    string
	iqn    string
	file   string
	tgtadm string
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startTGTD runs tgtd on a free loopback port exporting a fresh size-byte file as LUN 1
// of target iqn, and stops it (by PID) when the test ends.
func startTGTD(t testing.TB, size int64) *tgtd {
	t.Helper()
	bin := testenv.RequireTool(t, "tgtd", "tgt")
	adm := testenv.RequireTool(t, "tgtadm", "tgt")
	file := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
	var d *tgtd
	for attempt := 0; attempt < 5 && d == nil; attempt++ {
		port := freePort(t)
		// Control ports 10-29 are for people running tgtd by hand.
		ctl := strconv.Itoa(1000 + port%30000)
		cmd := exec.Command(bin, "-f", "--iscsi", fmt.Sprintf("portal=127.0.0.1:%d", port), "-C", ctl)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if waitTGTD(adm, ctl, addr, exited) {
			t.Cleanup(stop)
			d = &tgtd{pid: cmd.Process.Pid, addr: addr, ctl: ctl, file: file, tgtadm: adm,
				iqn: fmt.Sprintf("iqn.2024-01.io.metalbed.test:%s", strings.ToLower(sanitize(t.Name())))}
			break
		}
		stop()
		t.Logf("tgtd on %s did not start: %s", addr, out.String())
	}
	if d == nil {
		t.Fatal("tgtd did not start")
	}
	d.adm(t, "--op", "new", "--mode", "target", "--tid", "1", "-T", d.iqn)
	d.adm(t, "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", file)
	d.adm(t, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
	return d
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

// waitTGTD polls until tgtd answers tgtadm and accepts TCP, or it exits.
func waitTGTD(adm, ctl, addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if exec.Command(adm, "-C", ctl, "--op", "show", "--mode", "sys").Run() == nil {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return true
			}
		}
		select {
		case <-exited:
			return false
		case <-tick.C:
		}
	}
	return false
}

func (d *tgtd) adm(t testing.TB, args ...string) string {
	t.Helper()
	all := append([]string{"-C", d.ctl, "--lld", "iscsi"}, args...)
	out, err := exec.Command(d.tgtadm, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("tgtadm %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sessions returns the I_T nexus lines tgtadm lists for target 1.
func (d *tgtd) sessions(t testing.TB) []string {
	out := d.adm(t, "--op", "show", "--mode", "target")
	var nexus []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "I_T nexus:") {
			nexus = append(nexus, strings.TrimSpace(line))
		}
	}
	return nexus
}

// eventually polls cond every 20ms until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		<-tick.C
	}
}

// checkNoLeak records the goroutine count and, at cleanup, waits for it to come back.
func checkNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d at start, %d now:\n%s", base, runtime.NumGoroutine(), buf[:n])
				return
			}
			<-tick.C
		}
	})
}

func dialT(t *testing.T, cfg Config) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
