package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds cmd/metalbed into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "metalbed")
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestUpStopsCleanlyOnSignal runs the real binary, waits for its ready
// line, sends a signal and expects exit 0 with the state saved.
func TestUpStopsCleanlyOnSignal(t *testing.T) {
	bin := buildBinary(t)
	free := "127.0.0.1:0"
	for _, c := range []struct {
		name  string
		sig   syscall.Signal
		args  []string
		ready string
	}{
		{"SIGINT", syscall.SIGINT, []string{"--no-provisioner"}, "metalbed: 3 machines up, BMCs on 127.0.0.1:"},
		{"SIGTERM", syscall.SIGTERM, []string{"--no-provisioner"}, "metalbed: 3 machines up, BMCs on 127.0.0.1:"},
		// With the provisioner: API, conductor, DHCP/TFTP/HTTP servers and
		// the timeline endpoint stop too, after enrolling over the API.
		{"provisioner-SIGINT", syscall.SIGINT, []string{"--enroll", "--api-addr", free, "--dhcp-addr", free,
			"--tftp-addr", free, "--http-addr", free, "--timeline-addr", free}, "metalbed: 3 machines up (enrolled), BMCs on 127.0.0.1:"},
	} {
		sig := c.sig
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin, append([]string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--nodes", "3", "--state-dir", dir, "--bmc-base-port", "0"}, c.args...)...)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					cmd.Wait()
				}
			})
			lines := make(chan string, 4)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			select {
			case l := <-lines:
				if !strings.HasPrefix(l, c.ready) {
					t.Fatalf("ready line %q", l)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("no ready line within 60s; stderr:\n%s", stderr.String())
			}
			b, err := os.ReadFile(filepath.Join(dir, "inventory.json"))
			if err != nil || !json.Valid(b) {
				t.Fatalf("inventory after the ready line: %v", err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit after %s: %v\nstderr:\n%s", sig, err, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("still running 30s after %s", sig)
			}
			if extra, ok := <-lines; ok {
				t.Errorf("more than one line on stdout: %q", extra)
			}
			if !strings.Contains(stderr.String(), "stopped; state saved") {
				t.Errorf("stderr:\n%s", stderr.String())
			}
			for _, n := range []string{"node-0", "node-1", "node-2"} {
				if _, err := os.Stat(filepath.Join(dir, n, "state.json")); err != nil {
					t.Errorf("%s: %v", n, err)
				}
			}
		})
	}
}

// TestExitCodes: usage errors exit 2 with the last line of stderr
// "metalbed: usage: …", runtime errors exit 1 with "metalbed: …", -h and
// --version exit 0.
func TestExitCodes(t *testing.T) {
	bin := buildBinary(t)
	for _, c := range []struct {
		args []string
		code int
		last string // prefix of the last line of stderr
	}{
		{nil, 2, "metalbed: usage: no command given"},
		{[]string{"frobnicate"}, 2, `metalbed: usage: unknown command "frobnicate"`},
		{[]string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--nodes", "1", "--enroll", "--no-provisioner", "--state-dir", t.TempDir()}, 2, "metalbed: usage: --enroll needs the provisioner"},
		{[]string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--nodes", "x"}, 2, `metalbed: usage: invalid value "x" for flag -nodes`},
		{[]string{"fault", "add", "--url", "http://127.0.0.1:1", "--layer", "ipmi", "--action", "cc", "--arg", "zz"}, 2, `metalbed: usage: fault add: fault ipmi cc: arg "zz"`},
		{[]string{"fault", "list", "--url", "http://127.0.0.1:1"}, 1, "metalbed: faults: Get "},
		{[]string{"version"}, 0, ""},
		{[]string{"--version"}, 0, ""},
		{[]string{"fault", "-h"}, 0, ""},
		{[]string{"fault", "add", "-h"}, 0, ""},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, c.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if last := lines[len(lines)-1]; code != c.code || !strings.HasPrefix(last, c.last) {
			t.Errorf("metalbed %v: exit %d, last line %q; want %d, %q", c.args, code, last, c.code, c.last)
		}
	}
}

// TestVersionFromBuildInfo: a binary built with VCS stamping prints the
// module version and the commit recorded in it (+dirty when the tree had
// changes), for `version` and `--version`; one built without (as from a
// git worktree, whose .git file the go command does not take for a
// repository) says it has no revision rather than "dev".
func TestVersionFromBuildInfo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "metalbed")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=auto: %v\n%s", err, out)
	}
	info, err := exec.CommandContext(t.Context(), "go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	setting := func(key string) string {
		m := regexp.MustCompile(`(?m)^\s+build\s+` + regexp.QuoteMeta(key) + `=(\S+)$`).FindSubmatch(info)
		if m == nil {
			return ""
		}
		return string(m[1])
	}
	// The go command records the module version (a pseudo-version from
	// the commit since Go 1.24, else "(devel)") beside the revision.
	mod := regexp.MustCompile(`(?m)^\s+mod\s+\S+\s+(\S+)`).FindSubmatch(info)
	if mod == nil {
		t.Fatalf("no module line in\n%s", info)
	}
	version := strings.Replace(string(mod[1]), "(devel)", "devel", 1)
	want := "metalbed " + version + " (no VCS revision"
	if rev := setting("vcs.revision"); rev != "" {
		if setting("vcs.modified") == "true" {
			rev += "+dirty"
		}
		want = "metalbed " + version + " (" + rev + ", " + setting("vcs.time") + ")"
	} else {
		t.Logf("built without VCS information; checking the output says so")
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("metalbed %s: %v %q, want %q…", arg, err, out, want)
		}
	}
}

// TestStatusAndDown: `metalbed status` names the running up's PID and
// addresses (exit 0) and says nothing runs (exit 3) before and after;
// `metalbed down` stops it with SIGTERM (it exits 0, state saved) and is
// a no-op when nothing runs.
func TestStatusAndDown(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	run := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run("status", "--state-dir", dir); code != 3 || !strings.HasPrefix(out, "nothing runs on ") {
		t.Fatalf("status before up: exit %d %q", code, out)
	}
	free := "127.0.0.1:0"
	cmd := exec.Command(bin, "up", "--nodes", "2", "--state-dir", dir, "--bmc-base-port", "0", "--redfish-addr", free, "--web-addr", free,
		"--api-addr", free, "--dhcp-addr", free, "--tftp-addr", free, "--http-addr", free, "--timeline-addr", free)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case ready <- sc.Text():
			default:
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case <-ready:
	case <-time.After(90 * time.Second):
		t.Fatalf("no ready line; stderr:\n%s", stderr.String())
	}
	out, code := run("status", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "metalbed up is running on "+dir+" (pid "+strconv.Itoa(cmd.Process.Pid)+")") ||
		!strings.Contains(out, "machines:  2") || !strings.Contains(out, "api:") {
		t.Fatalf("status while up runs: exit %d\n%s", code, out)
	}
	var doc struct {
		Running   bool `json:"running"`
		PID       int  `json:"pid"`
		Inventory struct {
			API   string `json:"api"`
			Nodes []any  `json:"nodes"`
		} `json:"inventory"`
	}
	if out, code = run("status", "--state-dir", dir, "--json"); code != 0 || json.Unmarshal([]byte(out), &doc) != nil ||
		!doc.Running || doc.PID != cmd.Process.Pid || doc.Inventory.API == "" || len(doc.Inventory.Nodes) != 2 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	if out, code = run("down", "--state-dir", dir); code != 0 || !strings.HasPrefix(out, "stopped metalbed up on "+dir) {
		t.Fatalf("down: exit %d %q; stderr of up:\n%s", code, out, stderr.String())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("up after down: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("up still running after down returned")
	}
	if !strings.Contains(stderr.String(), "stopped; state saved") {
		t.Errorf("up's stderr:\n%s", stderr.String())
	}
	if out, code = run("status", "--state-dir", dir); code != 3 || !strings.HasPrefix(out, "nothing runs on ") {
		t.Errorf("status after down: exit %d %q", code, out)
	}
	if out, code = run("down", "--state-dir", dir); code != 0 || !strings.HasPrefix(out, "nothing runs on ") {
		t.Errorf("down with nothing running: exit %d %q", code, out)
	}
}
