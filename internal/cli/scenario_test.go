package cli

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// junitDoc is the part of the JUnit XML the test reads.
type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Status    string `xml:"status,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

const passingFeature = `Feature: A tiny passing feature

  Scenario Outline: The API answers
    Given the provisioner is running
    When I send "GET" "<path>"
    Then the response status is 200

    Examples:
      | path      |
      | /v1/nodes |
      | /v1/ports |
`

const failingFeature = `Feature: A tiny failing feature

  Scenario: An enrolled node is not active
    Given a metalbed testbed with 1 bios machine
    And the fault "never calls back" is injected at layer "ramdisk" for node "node-0" with seed 42
    Then node "node-0" has provision state "active"
`

// TestScenarioRun runs the built binary's `scenario run` as a CI job does:
// on a passing feature (one Examples row selected by its line) and on a
// failing one, checking the exit code, the JUnit XML, the failure report
// (timeline, fault seed) and the rerun line, which is then run itself.
func TestScenarioRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real metalbed processes; skipped with -short")
	}
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	dir := t.TempDir()
	bin := buildMetalbed(t, dir)
	for name, text := range map[string]string{"pass.feature": passingFeature, "fail.feature": failingFeature} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(t *testing.T, args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"scenario", "run"}, args...)...)
		cmd.Dir = dir
		// The run's state directories go under $TMPDIR, and go away
		// with the run.
		tmp := t.TempDir()
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		out, err := cmd.CombinedOutput()
		if left, _ := filepath.Glob(filepath.Join(tmp, "metalbed-scenarios-*")); len(left) > 0 {
			t.Errorf("metalbed scenario run %v left %v behind", args, left)
		}
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee) && ee.Exited():
			return string(out), ee.ExitCode()
		}
		t.Fatalf("metalbed scenario run %v: %v\n%s", args, err, out)
		return "", 0
	}
	readJUnit := func(t *testing.T, path string) junitDoc {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("JUnit file: %v", err)
		}
		var doc junitDoc
		if err := xml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("JUnit XML: %v\n%s", err, b)
		}
		return doc
	}

	t.Run("pass", func(t *testing.T) {
		t.Parallel()
		junit := filepath.Join(t.TempDir(), "pass.xml")
		// Line 11 is the second Examples row: only it runs.
		out, code := run(t, "pass.feature:11", "--junit", junit)
		if code != 0 {
			t.Fatalf("exit %d, want 0\n%s", code, out)
		}
		if !strings.Contains(out, "PASS: 1 scenario: 1 passed, 0 failed") {
			t.Errorf("no one-line summary of one passed scenario:\n%s", out)
		}
		doc := readJUnit(t, junit)
		if doc.Tests != 1 || doc.Failures != 0 || len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 1 || doc.Suites[0].Cases[0].Status != "passed" ||
			doc.Suites[0].Cases[0].Classname != "pass" || doc.Suites[0].Name != "A tiny passing feature" {
			t.Errorf("JUnit: %+v, want one passed test case of class pass", doc)
		}
	})

	t.Run("fail", func(t *testing.T) {
		t.Parallel()
		junit := filepath.Join(t.TempDir(), "fail.xml")
		out, code := run(t, "fail.feature", "--junit", junit, "--seed", "5")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
		for _, want := range []string{
			`=== scenario "An enrolled node is not active" (fail.feature:3) failed: node node-0 is "enroll", want "active"`,
			"timeline (last ",
			"machine.up",
			"action=no-callback seed=42 fired=0",
			"FAIL: 1 scenario: 0 passed, 1 failed",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		doc := readJUnit(t, junit)
		if doc.Tests != 1 || doc.Failures != 1 || len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 1 {
			t.Fatalf("JUnit: %+v, want one failed test case", doc)
		}
		c := doc.Suites[0].Cases[0]
		if c.Name != "An enrolled node is not active" || c.Classname != "fail" || c.Status != "failed" || c.Failure == nil ||
			!strings.HasPrefix(c.Failure.Message, `Step node "node-0" has provision state "active": node node-0 is "enroll", want "active"`) {
			t.Errorf("JUnit test case %+v, want the failure with the step and its message", c)
		}
		// The failure's body is the report printed during the run.
		for _, want := range []string{"timeline (last ", "action=no-callback seed=42", "rerun: metalbed scenario run fail.feature:3 --seed 5"} {
			if c.Failure == nil || !strings.Contains(c.Failure.Body, want) {
				t.Errorf("JUnit failure body lacks %q", want)
			}
		}
		m := regexp.MustCompile(`(?m)^rerun: metalbed scenario run (\S+) --seed 5$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no rerun line with the seed:\n%s", out)
		}
		if m[1] != "fail.feature:3" {
			t.Errorf("rerun line names %s, want fail.feature:3", m[1])
		}
		out, code = run(t, m[1], "--seed", "5")
		if code != 1 || !strings.Contains(out, "FAIL: 1 scenario: 0 passed, 1 failed") {
			t.Errorf("the rerun line: exit %d, want 1 and the same failure\n%s", code, out)
		}
	})

	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		if out, code := run(t, "--backend", "qemu"); code != 2 {
			t.Errorf("--backend qemu: exit %d, want 2\n%s", code, out)
		}
		out, code := run(t, "--backend", "libvirt")
		if code != 2 || !strings.Contains(out, "--ramdisk-dir") {
			t.Errorf("--backend libvirt without --ramdisk-dir: exit %d, want 2 and the flag named\n%s", code, out)
		}
		// The binary under test is built without the libvirt_dlopen tag.
		out, code = run(t, "--backend", "libvirt", "--ramdisk-dir", t.TempDir())
		if code != 1 || !strings.Contains(out, "without libvirt support") {
			t.Errorf("--backend libvirt in a build without libvirt: exit %d, want 1 and why\n%s", code, out)
		}
		if out, code := run(t, "pass.feature:2"); code != 2 || !strings.Contains(out, "no Scenario, Scenario Outline or Examples row on line 2") {
			t.Errorf("a line holding no scenario: exit %d, want 2 and why\n%s", code, out)
		}
		// Refused before anything runs, in one line, no panic, no
		// JUnit file.
		junit := filepath.Join(t.TempDir(), "refused.xml")
		for _, args := range [][]string{{"--tags", "@power &&"}, {"nope.feature"}} {
			out, code := run(t, append(args, "--junit", junit)...)
			if code != 2 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "metalbed: usage: ") || strings.Contains(out, "panic") {
				t.Errorf("%v: exit %d, want 2 and one line\n%s", args, code, out)
			}
			if _, err := os.Stat(junit); err == nil {
				t.Errorf("%v left a JUnit file", args)
			}
		}
	})
}
