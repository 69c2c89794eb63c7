package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/testbed"
)

// runArgs runs one command line and returns its stdout, stderr, the
// exit code and the one line main would print for the error.
func runArgs(t *testing.T, args ...string) (stdout, stderr string, code int, line string) {
	t.Helper()
	var out, errb, report bytes.Buffer
	err := Run(t.Context(), args, &out, &errb)
	code = Exit(err, &report)
	return out.String(), errb.String(), code, report.String()
}

// TestExitFormat: one exit code and one error format for every command —
// a usage error exits 2 as the one line "metalbed: usage: …", a runtime
// error exits 1 as "metalbed: …", -h exits 0 without a line.
func TestExitFormat(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
		line string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{usageError("--nodes %d", -1), 2, "metalbed: usage: --nodes -1\n"},
		{usageError("usage: metalbed timeline NODE"), 2, "metalbed: usage: metalbed timeline NODE\n"},
		{errors.Join(usageError("a"), usageError("b")), 2, "metalbed: usage: a; usage: b\n"},
		{fmt.Errorf("%w: no machines", testbed.ErrConfig), 2, "metalbed: usage: testbed config: no machines\n"},
		{errors.New("metalbed: disk on fire"), 1, "metalbed: disk on fire\n"},
		{errors.New("listen tcp: address in use"), 1, "metalbed: listen tcp: address in use\n"},
	} {
		var b bytes.Buffer
		if code := Exit(c.err, &b); code != c.code || b.String() != c.line {
			t.Errorf("Exit(%v) = %d %q, want %d %q", c.err, code, b.String(), c.code, c.line)
		}
	}
	// Through Run: the messages commands give read well in that format.
	for _, c := range []struct {
		args []string
		code int
		line string
	}{
		{[]string{"frobnicate", "--x"}, 2, "metalbed: usage: unknown command \"frobnicate\"\n"},
		{[]string{}, 2, "metalbed: usage: no command given\n"},
		{[]string{"fault", "add", "--url", "http://127.0.0.1:1"}, 2, "metalbed: usage: fault add: --layer and --action are required\n"},
		{[]string{"timeline"}, 2, "metalbed: usage: metalbed timeline NODE [--json] (NODE: name, UUID or MAC)\n"},
		{[]string{"version", "extra"}, 2, "metalbed: usage: unexpected argument \"extra\"\n"},
	} {
		if _, _, code, line := runArgs(t, c.args...); code != c.code || line != c.line {
			t.Errorf("metalbed %v: exit %d %q, want %d %q", c.args, code, line, c.code, c.line)
		}
	}
}

// TestHelp: `metalbed fault -h`, `metalbed fault add -h` and `metalbed
// help fault add` answer with the usage (exit 0); `metalbed fault` alone
// names its commands (exit 2); the --layer help lists every layer of the
// catalog; the demo's help line has the demo's machine count.
func TestHelp(t *testing.T) {
	out, _, code, _ := runArgs(t, "fault", "-h")
	if code != 0 || !strings.Contains(out, "fault add") || !strings.Contains(out, "fault clear") || !strings.Contains(out, "fault list") || strings.Contains(out, "netboot serve") {
		t.Errorf("fault -h: exit %d\n%s", code, out)
	}
	_, errOut, code, line := runArgs(t, "fault")
	if code != 2 || line != "metalbed: usage: fault needs a command: add, clear, list\n" || !strings.Contains(errOut, "fault add") {
		t.Errorf("fault: exit %d %q\n%s", code, line, errOut)
	}
	if _, _, code, line := runArgs(t, "fault", "frob"); code != 2 || !strings.Contains(line, `unknown command "fault frob": fault has add, clear, list`) {
		t.Errorf("fault frob: exit %d %q", code, line)
	}
	for _, args := range [][]string{{"fault", "add", "-h"}, {"fault", "add", "--help"}, {"help", "fault", "add"}} {
		_, help, code, line := runArgs(t, args...)
		if code != 0 || line != "" {
			t.Errorf("%v: exit %d %q", args, code, line)
		}
		layerLine := regexp.MustCompile(`(?m)^  -layer string\n\s+(.*)$`).FindStringSubmatch(help)
		if layerLine == nil {
			t.Fatalf("%v: no -layer in\n%s", args, help)
		}
		for _, s := range fault.Catalog() {
			if !strings.Contains(layerLine[1], string(s.Layer)) {
				t.Errorf("%v: --layer help %q lacks layer %s", args, layerLine[1], s.Layer)
			}
			if !strings.Contains(help, s.Action) {
				t.Errorf("%v: help lacks %s %s", args, s.Layer, s.Action)
			}
		}
	}
	for _, args := range [][]string{{"-h", "-h"}, {"help", "help"}, {"help", "--help", "x"}} {
		if out, _, code, _ := runArgs(t, args...); code != 0 || !strings.Contains(out, "fault add") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	out, _, _, _ = runArgs(t, "-h")
	want := fmt.Sprintf("bring up %d machines", len(testbed.DemoNodes(false)))
	if !strings.Contains(out, want) {
		t.Errorf("help does not say %q:\n%s", want, out)
	}
}

// TestFlagUsages: no flag's usage makes Go's flag package print a word of
// it as the value name (a back-quoted `metalbed up` printed "-remove-vms
// up"): every value name is a type or an upper-case placeholder.
func TestFlagUsages(t *testing.T) {
	valueName := regexp.MustCompile(`^(string|int|uint|int64|uint64|float|duration|value|[A-Z][A-Z0-9_:]*)$`)
	for _, c := range commands() {
		args := append(strings.Fields(c.name), "-h")
		_, help, code, _ := runArgs(t, args...)
		if code != 0 {
			t.Errorf("%s -h: exit %d", c.name, code)
		}
		n := 0
		for _, l := range strings.Split(help, "\n") {
			if !strings.HasPrefix(l, "  -") {
				continue
			}
			n++
			head, _, _ := strings.Cut(l, "\t")
			if _, name, ok := strings.Cut(strings.TrimSpace(head), " "); ok && !valueName.MatchString(name) {
				t.Errorf("%s: %q: value name %q comes from a back-quoted word of the usage", c.name, strings.TrimSpace(l), name)
			}
		}
		if n == 0 && c.name != "version" && c.name != "ramdisk init" {
			t.Errorf("%s -h lists no flags:\n%s", c.name, help)
		}
	}
}

// TestVersion: `metalbed version` and `metalbed --version` print the
// module version and the VCS revision the build info records, +dirty for
// a modified tree.
func TestVersion(t *testing.T) {
	for _, c := range []struct {
		override string
		bi       *debug.BuildInfo
		want     string
	}{
		{"", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.1"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			"v0.3.1 (0123456789abcdef0123456789abcdef01234567, 2026-12-01T10:00:00Z)"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}},
			"devel (abc+dirty)"},
		{"v1.0.0", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}},
			"v1.0.0 (abc)"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel (no VCS revision: built without VCS stamping)"},
		{"", nil, "devel (no VCS revision: built without VCS stamping)"},
	} {
		if got := formatVersion(c.override, c.bi); got != c.want {
			t.Errorf("formatVersion(%q, %+v) = %q, want %q", c.override, c.bi, got, c.want)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out, _, code, _ := runArgs(t, args...)
		if code != 0 || out != "metalbed "+version()+"\n" || strings.Contains(out, "metalbed dev\n") {
			t.Errorf("%v: exit %d %q", args, code, out)
		}
	}
}

// fakeFaultEndpoint serves DELETE /v1/faults[/{id}] and POST /v1/faults
// over a real fault.Set as testbed's endpoint does, and keeps the requests.
type fakeFaultEndpoint struct {
	set *fault.Set
	mu  sync.Mutex
	got []string
}

func newFakeFaultEndpoint(t *testing.T) (*fakeFaultEndpoint, string) {
	f := &fakeFaultEndpoint{set: fault.NewSet()}
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /v1/faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.keep(r)
		if err := f.set.Remove(r.PathValue("id")); err != nil {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		f.keep(r)
		f.set.Clear(r.URL.Query().Get("node"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		f.keep(r)
		var rule fault.Rule
		json.NewDecoder(r.Body).Decode(&rule)
		if rule.Node == "node-9" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": `fault node "node-9": no such machine or node here (machines: node-0)`})
			return
		}
		added, _ := f.set.Add(rule)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(added)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeFaultEndpoint) keep(r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, r.Method+" "+r.URL.RequestURI())
}

func (f *fakeFaultEndpoint) requests() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := strings.Join(f.got, ", ")
	f.got = nil
	return s
}

// TestFaultClearByID: `metalbed fault clear ID...` removes those rules
// (flags before or after the IDs); an unknown ID is an error naming it
// after the others are removed; IDs with --node is a usage error.
func TestFaultClearByID(t *testing.T) {
	f, u := newFakeFaultEndpoint(t)
	for i := 0; i < 4; i++ {
		if _, err := f.set.Add(fault.Rule{Node: "node-" + strconv.Itoa(i), Layer: fault.IPMI, Action: "drop"}); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code, line := runArgs(t, "fault", "clear", "--url", u, "f1", "f3")
	if code != 0 || out != "fault f1 cleared\nfault f3 cleared\n" {
		t.Fatalf("fault clear f1 f3: exit %d %q %q\n%s", code, out, line, errOut)
	}
	if got := f.requests(); got != "DELETE /v1/faults/f1, DELETE /v1/faults/f3" {
		t.Errorf("requests: %s", got)
	}
	if _, _, code, line := runArgs(t, "fault", "clear", "f9", "f2", "--url", u); code != 1 || !strings.Contains(line, `fault f9: no such fault rule: "f9"`) {
		t.Errorf("fault clear f9 f2: exit %d %q", code, line)
	}
	if got := f.requests(); got != "DELETE /v1/faults/f9, DELETE /v1/faults/f2" {
		t.Errorf("requests: %s", got)
	}
	if rules := f.set.List(); len(rules) != 1 || rules[0].ID != "f4" {
		t.Errorf("rules left: %+v", rules)
	}
	if _, _, code, line := runArgs(t, "fault", "clear", "--url", u, "--node", "node-3", "f4"); code != 2 || !strings.Contains(line, "IDs or --node") {
		t.Errorf("IDs and --node: exit %d %q", code, line)
	}
	if out, _, code, _ := runArgs(t, "fault", "clear", "--url", u, "--node", "node-3"); code != 0 || out != "faults of node-3 cleared\n" || len(f.set.List()) != 0 {
		t.Errorf("clear --node: exit %d %q %+v", code, out, f.set.List())
	}
	if got := f.requests(); got != "DELETE /v1/faults?node=node-3" {
		t.Errorf("requests: %s", got)
	}
}

// TestFaultAddRefused: a malformed --arg is refused before any request
// (the endpoint would refuse it too: fault.CheckArg); a node the testbed
// does not have is refused by the endpoint (400), which the CLI reports
// as the usage error it is.
func TestFaultAddRefused(t *testing.T) {
	f, u := newFakeFaultEndpoint(t)
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"--layer", "ipmi", "--action", "cc", "--arg", "zz"}, `metalbed: usage: fault add: fault ipmi cc: arg "zz": want a completion code from 0x1 to 0xff (arg: completion code, e.g. 0xc0, 0xc3, 0xd2)` + "\n"},
		{[]string{"--layer", "redfish", "--action", "status", "--arg", "abc"}, `metalbed: usage: fault add: fault redfish status: arg "abc": want an HTTP error status from 400 to 599 (arg: HTTP status (default 500))` + "\n"},
		{[]string{"--layer", "ipmi", "--action", "drop", "--arg", "1"}, `metalbed: usage: fault add: fault ipmi drop takes no arg (got "1")` + "\n"},
		{[]string{"--layer", "ipmi", "--action", "explode"}, `metalbed: usage: fault add: layer ipmi has no action "explode": want one of drop, delay, cc, ignore, forget-bootflags` + "\n"},
		{[]string{"--layer", "ipmi", "--action", "drop", "--node", "node-9"}, `metalbed: usage: fault node "node-9": no such machine or node here (machines: node-0)` + "\n"},
	} {
		if _, _, code, line := runArgs(t, append([]string{"fault", "add", "--url", u}, c.args...)...); code != 2 || line != c.line {
			t.Errorf("fault add %v: exit %d\n%q, want\n%q", c.args, code, line, c.line)
		}
	}
	if got := f.requests(); got != "POST /v1/faults" {
		t.Errorf("requests: %s (only the unknown node's should reach the endpoint)", got)
	}
	if out, _, code, _ := runArgs(t, "fault", "add", "--url", u, "--layer", "ipmi", "--action", "cc", "--arg", "0xc3", "--node", "node-0"); code != 0 || out != "fault f1 added\n" {
		t.Errorf("a good rule: exit %d %q", code, out)
	}
}

// TestScenarioRunRefusesBadInput: a tag expression godog would panic on
// and a feature path that is not there are usage errors of one line,
// before anything runs, and leave no JUnit file behind.
func TestScenarioRunRefusesBadInput(t *testing.T) {
	junit := filepath.Join(t.TempDir(), "out.xml")
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"--tags", "@power &&"}, `metalbed: usage: --tags: tag expression "@power &&" has an empty term: tags are @tag or ~@tag (not), joined by "," (or) and "&&" (and)` + "\n"},
		{[]string{"--tags", "@power || @boot"}, `metalbed: usage: --tags: tag expression "@power || @boot": "@power || @boot" is not a tag: tags are @tag or ~@tag (not), joined by "," (or) and "&&" (and)` + "\n"},
		{[]string{"no/such.feature"}, "metalbed: usage: feature path no/such.feature: no such file or folder\n"},
		{[]string{"features/nope.feature:3"}, "metalbed: usage: feature path features/nope.feature: no such file or folder\n"},
		{[]string{"features/power.feature", "--junit", filepath.Join(t.TempDir(), "no", "dir.xml")}, "metalbed: usage: --junit "},
	} {
		// The case's own --junit comes last and wins. Each case must fail
		// before the run: in a test, the binary under test would be this
		// test binary.
		_, _, code, line := runArgs(t, append([]string{"scenario", "run", "--junit", junit}, c.args...)...)
		if code != 2 || !strings.HasPrefix(line, c.line) || strings.Count(line, "\n") != 1 {
			t.Errorf("scenario run %v: exit %d\n%q, want 2 and\n%q", c.args, code, line, c.line)
		}
		if _, err := os.Stat(junit); err == nil {
			t.Fatalf("scenario run %v left a JUnit file", c.args)
		}
	}
}
