package scenarios

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// TestValidateTags: what godog panics on ("@power &&") or silently
// matches nothing with (Cucumber's "or", "not", "||") is an error of one
// line naming the expression; godog's own syntax passes.
func TestValidateTags(t *testing.T) {
	for _, ok := range []string{"", DefaultTags, LibvirtTags, "@power", "~@pending", "@a,@b && ~@c", "wip", "@issue-16_x.y"} {
		if err := ValidateTags(ok); err != nil {
			t.Errorf("ValidateTags(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"@power &&", "&& @power", "@a,,@b", "@", "~", "~@", "@a || @b", "not @a", "@a and @b", "(@a)", "@a,"} {
		err := ValidateTags(bad)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ValidateTags(%q) = %v, want one line naming it", bad, err)
		}
	}
}

// TestCheckPaths: a missing feature file or folder, and a FILE:LINE on
// which no scenario starts, are refused before a run starts.
func TestCheckPaths(t *testing.T) {
	fsys := fstest.MapFS{"f/rows.feature": {Data: []byte(outlineFeature)}}
	for _, ok := range [][]string{{"f"}, {"f/rows.feature"}, {"f/rows.feature:3"}, {"f/rows.feature:16"}} {
		if err := CheckPaths(fsys, ok); err != nil {
			t.Errorf("CheckPaths(%v): %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"nope.feature":      "feature path nope.feature: no such file or folder",
		"f/nope.feature:3":  "feature path f/nope.feature: no such file or folder",
		"f/rows.feature:2":  "no Scenario, Scenario Outline or Examples row on line 2",
		"features/x.feture": "feature path features/x.feture: no such file or folder",
	} {
		if err := CheckPaths(fsys, []string{bad}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPaths(%s) = %v, want %q", bad, err, want)
		}
	}
}

// TestWriteJUnit: one testsuite per feature, named as the feature; a
// testcase per scenario with a classname, outline rows numbered; a
// failure with the step and error as its message and the failure report
// as its body; no partial file left beside it.
func TestWriteJUnit(t *testing.T) {
	fsys := fstest.MapFS{
		"features/rows.feature":  {Data: []byte(outlineFeature)},
		"features/power.feature": {Data: []byte("Feature: Power\n\n  Scenario: on\n    Given a step\n")},
	}
	res := &Result{Elapsed: 3 * time.Second, Scenarios: []Case{
		{Name: "outline 3", Ref: "features/rows.feature:16", Status: "failed", Step: "step 3", Err: `node node-0 is "enroll", want "active"`,
			Output: "=== scenario \"outline 3\" failed\ntimeline (last 2 of 2 entries):\n\x00 a NUL from a console\n", Elapsed: 2 * time.Second},
		{Name: "outline 1", Ref: "features/rows.feature:11", Status: "passed", Elapsed: time.Second},
		{Name: "on", Ref: "features/power.feature:3", Status: "skipped"},
		{Name: "plain", Ref: "features/rows.feature:3", Status: "undefined", Step: "a step", Err: "step is undefined"},
	}}
	dir := t.TempDir()
	path := filepath.Join(dir, "out.xml")
	if err := WriteJUnit(path, fsys, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Tests int    `xml:"tests,attr"`
			Cases []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Status    string `xml:"status,attr"`
				Time      string `xml:"time,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Type    string `xml:"type,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if doc.Tests != 4 || doc.Failures != 2 || doc.Skipped != 1 || len(doc.Suites) != 2 ||
		doc.Suites[0].Name != "Power" || doc.Suites[1].Name != "rows" || doc.Suites[1].Tests != 3 {
		t.Fatalf("JUnit:\n%s", b)
	}
	var names []string
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			names = append(names, c.Classname+"/"+c.Name+"/"+c.Status)
		}
	}
	if got := strings.Join(names, " | "); got != "features.power/on/skipped | features.rows/plain/undefined | features.rows/outline 1/passed | features.rows/outline 3/failed" {
		t.Errorf("test cases: %s", got)
	}
	f := doc.Suites[1].Cases[2].Failure
	if f == nil || f.Message != `Step step 3: node node-0 is "enroll", want "active"` || f.Type != "failed" ||
		!strings.Contains(f.Body, "timeline (last 2 of 2 entries)") || doc.Suites[1].Cases[2].Time != "2.000" {
		t.Errorf("failure %+v\n%s", f, b)
	}
	if doc.Suites[0].Cases[0].Skipped == nil {
		t.Errorf("skipped scenario without <skipped/>:\n%s", b)
	}
	if !strings.Contains(string(b), "failed\ntimeline (last 2 of 2 entries):\n\uFFFD a NUL") {
		t.Errorf("failure body not kept line by line, or its NUL kept:\n%s", b)
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("files beside the JUnit file: %v", es)
	}
}
