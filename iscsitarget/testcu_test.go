package iscsitarget

// TestInteropIscsiTestCu runs libiscsi's target test suite, iscsi-test-cu,
// against this target and against Debian's tgtd in the same run, and fails
// if this target fails any test tgtd passes. ci/iscsi-test-cu.sh runs it
// and records the counts (METALBED_TESTCU_REPORT=file writes them).

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// cuResult is one test of an iscsi-test-cu run: suite ordinal and name,
// test name.
type cuKey struct {
	ord   int
	suite string
	test  string
}

type cuRun struct {
	order   []cuKey
	passed  map[cuKey]bool
	skipped int // "[SKIPPED]" lines in the log (tests passed by skipping)
	crashed string
}

var (
	cuToken = regexp.MustCompile(`<SUITE_NAME>\s*(\S+)\s*</SUITE_NAME>|<CUNIT_RUN_TEST_(SUCCESS|FAILURE)>\s*<TEST_NAME>\s*(\S+)\s*</TEST_NAME>`)
)

// parseCU reads CUnit's automated XML; it tolerates a truncated file (the
// suite crashed) and reports what ran.
func parseCU(xml string) *cuRun {
	r := &cuRun{passed: map[cuKey]bool{}}
	ord, suite := -1, ""
	for _, m := range cuToken.FindAllStringSubmatch(xml, -1) {
		if m[1] != "" {
			ord++
			suite = m[1]
			continue
		}
		k := cuKey{ord, suite, m[3]}
		ok, seen := r.passed[k]
		if !seen {
			r.order = append(r.order, k)
			ok = true
		}
		r.passed[k] = ok && m[2] == "SUCCESS"
	}
	return r
}

func runTestCU(t *testing.T, url string) *cuRun {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "iscsi-test-cu", "-x", "-d", url)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	os.WriteFile(filepath.Join(dir, "log.txt"), out, 0o644)
	xml, rerr := os.ReadFile(filepath.Join(dir, "CUnitAutomated-Results.xml"))
	if rerr != nil {
		t.Fatalf("iscsi-test-cu %s: %v (%v)\n%s", url, rerr, err, lastLines(string(out), 20))
	}
	r := parseCU(string(xml))
	r.skipped = strings.Count(string(out), "[SKIPPED]")
	// iscsi-test-cu exits 1 whenever a test fails; a run that ended
	// abnormally (a signal, a timeout) leaves the XML without its summary.
	if !strings.Contains(string(xml), "</CUNIT_TEST_RUN_REPORT>") {
		r.crashed = fmt.Sprintf("%v: %s", err, lastLines(string(out), 3))
	}
	return r
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startTgtd starts Debian's tgtd on 127.0.0.1 only, exporting a fresh file
// of size bytes as LUN 1 of iqn, and stops it (by PID) when the test ends.
func startTgtd(t *testing.T, iqn string, size int64) string {
	t.Helper()
	testenv.RequireTool(t, "tgtd", "tgt")
	testenv.RequireTool(t, "tgtadm", "tgt")
	if os.Geteuid() != 0 {
		if os.Getenv("METALBED_INTEROP") == "required" {
			t.Fatal("tgtd needs root")
		}
		t.Skip("tgtd needs root")
	}
	// tgtd's -C is a control socket number (/var/run/tgtd/socket.N), not a
	// TCP port; pick one unlikely to be in use by anyone else.
	ctl := strconv.Itoa(100 + os.Getpid()%800)
	if v := os.Getenv("METALBED_TGTD_CONTROL"); v != "" {
		ctl = v
	}
	port := freePort(t)
	img := filepath.Join(t.TempDir(), "tgt.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	cmd := exec.Command("tgtd", "-f", "--iscsi", fmt.Sprintf("portal=127.0.0.1:%d", port), "-C", ctl)
	var log testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	adm := func(args ...string) error {
		out, err := exec.CommandContext(t.Context(), "tgtadm", append([]string{"-C", ctl, "--lld", "iscsi"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tgtadm %v: %v: %s", args, err, out)
		}
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for adm("--op", "show", "--mode", "sys") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("tgtd did not come up:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, a := range [][]string{
		{"--op", "new", "--mode", "target", "--tid", "1", "-T", iqn},
		{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", img},
		{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"},
	} {
		if err := adm(a...); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// knownExceptions are tests tgtd passes that this target is allowed to
// fail, each with its reason. Empty: there are none.
var knownExceptions = map[string]string{}

func TestInteropIscsiTestCu(t *testing.T) {
	if testing.Short() {
		t.Skip("runs libiscsi's whole test suite twice; skipped with -short")
	}
	testenv.RequireTool(t, "iscsi-test-cu", "libiscsi-bin")
	const size = 256 << 20
	tgtAddr := startTgtd(t, "iqn.2026-11.org.metalbed.test:tgtd", size)
	tgt := runTestCU(t, fmt.Sprintf("iscsi://%s/iqn.2026-11.org.metalbed.test:tgtd/1", tgtAddr))
	_, url, _ := fileTarget(t, size, Config{})
	ours := runTestCU(t, url)

	if len(tgt.order) == 0 || len(ours.order) == 0 {
		t.Fatalf("no results: tgtd %d tests, ours %d", len(tgt.order), len(ours.order))
	}
	var regressions []string
	for _, k := range tgt.order {
		if !tgt.passed[k] {
			continue
		}
		if ok, ran := ours.passed[k]; ran && ok {
			continue
		}
		name := k.suite + "." + k.test
		if why, ok := knownExceptions[name]; ok {
			t.Logf("known exception %s: %s", name, why)
			continue
		}
		regressions = append(regressions, fmt.Sprintf("%s (suite #%d)", name, k.ord))
	}
	report := cuReport(tgt, ours, regressions)
	t.Log("\n" + report)
	if path := os.Getenv("METALBED_TESTCU_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
	if ours.crashed != "" {
		t.Errorf("iscsi-test-cu against our target ended abnormally: %s", ours.crashed)
	}
	if len(regressions) > 0 {
		t.Errorf("our target fails %d tests that tgtd passes:\n%s", len(regressions), strings.Join(regressions, "\n"))
	}
}

func cuCount(r *cuRun) (run, passed int) {
	for _, k := range r.order {
		run++
		if r.passed[k] {
			passed++
		}
	}
	return run, passed
}

// cuReport is a markdown summary: totals, per suite (summed over the
// families that repeat it), and the tests where the two differ.
func cuReport(tgt, ours *cuRun, regressions []string) string {
	var b strings.Builder
	tr, tp := cuCount(tgt)
	or, op := cuCount(ours)
	fmt.Fprintf(&b, "| target | tests run | passed | failed | [SKIPPED] notes in log | ended |\n|---|---|---|---|---|---|\n")
	end := func(r *cuRun) string {
		if r.crashed != "" {
			return "abnormally: " + strings.ReplaceAll(r.crashed, "\n", " ")
		}
		return "normally"
	}
	fmt.Fprintf(&b, "| tgtd | %d | %d | %d | %d | %s |\n", tr, tp, tr-tp, tgt.skipped, end(tgt))
	fmt.Fprintf(&b, "| metalbed | %d | %d | %d | %d | %s |\n\n", or, op, or-op, ours.skipped, end(ours))

	type counts struct{ run, tgt, ours int }
	suites := map[string]*counts{}
	for _, k := range tgt.order {
		c := suites[k.suite]
		if c == nil {
			c = &counts{}
			suites[k.suite] = c
		}
		c.run++
		if tgt.passed[k] {
			c.tgt++
		}
		if ours.passed[k] {
			c.ours++
		}
	}
	names := make([]string, 0, len(suites))
	for n := range suites {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "| suite (all families) | tests | tgtd passed | metalbed passed |\n|---|---|---|---|\n")
	for _, n := range names {
		c := suites[n]
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", n, c.run, c.tgt, c.ours)
	}
	var better []string
	for _, k := range tgt.order {
		if !tgt.passed[k] && ours.passed[k] {
			better = append(better, k.suite+"."+k.test)
		}
	}
	fmt.Fprintf(&b, "\nFailed by tgtd, passed by metalbed: %s\n", listOrNone(better))
	fmt.Fprintf(&b, "\nPassed by tgtd, failed by metalbed: %s\n", listOrNone(regressions))
	return b.String()
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
