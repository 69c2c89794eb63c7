package scenarios

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	gherkin "github.com/cucumber/gherkin/go/v26"
	messages "github.com/cucumber/messages/go/v21"
)

const outlineFeature = `Feature: rows

  Scenario: plain
    Given a step

  Scenario Outline: outline <n>
    Given step <n>

    Examples:
      | n |
      | 1 |
      | 2 |

    Examples: more
      | n |
      | 3 |
`

// TestSelectRows checks that FILE:LINE of an Examples row runs that row
// alone, with every line keeping its number, and that other lines pass
// through or are refused.
func TestSelectRows(t *testing.T) {
	fsys := fstest.MapFS{"f.feature": {Data: []byte(outlineFeature)}}
	paths, got, err := selectRows(fsys, []string{"f.feature:12", "f.feature:3"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(paths, " ") != "f.feature:6 f.feature:3" {
		t.Errorf("paths %v, want the outline's line then the scenario's", paths)
	}
	b, err := fs.ReadFile(got, "f.feature")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != strings.Count(outlineFeature, "\n") {
		t.Errorf("the rewritten feature has %d lines, want %d", n, strings.Count(outlineFeature, "\n"))
	}
	var ids messages.Incrementing
	doc, err := gherkin.ParseGherkinDocument(strings.NewReader(string(b)), ids.NewId)
	if err != nil {
		t.Fatalf("the rewritten feature does not parse: %v\n%s", err, b)
	}
	var names []string
	for _, p := range gherkin.Pickles(*doc, "f.feature", ids.NewId) {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "plain,outline 2" {
		t.Errorf("scenarios left %q, want plain and outline 2 only", names)
	}

	if paths, same, err := selectRows(fsys, []string{"f.feature", "dir"}); err != nil || strings.Join(paths, " ") != "f.feature dir" || same == nil {
		t.Errorf("paths without lines: %v %v", paths, err)
	}
	if _, _, err := selectRows(fsys, []string{"f.feature:4"}); err == nil || !strings.Contains(err.Error(), "no Scenario, Scenario Outline or Examples row on line 4") {
		t.Errorf("a step's line: %v, want it refused", err)
	}
	if _, _, err := selectRows(fsys, []string{"f.feature:11", "f.feature:12"}); err == nil {
		t.Error("two rows of one file: want an error")
	}
}

// TestPickleLine checks that a failed scenario is named by the line of its
// Scenario keyword, or of its Examples row for an outline.
func TestPickleLine(t *testing.T) {
	fsys := fstest.MapFS{"f.feature": {Data: []byte(outlineFeature)}}
	var ids messages.Incrementing
	doc, err := gherkin.ParseGherkinDocument(strings.NewReader(outlineFeature), ids.NewId)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"plain": 3, "outline 1": 11, "outline 2": 12, "outline 3": 16}
	for _, p := range gherkin.Pickles(*doc, "f.feature", ids.NewId) {
		line, err := pickleLine(fsys, "f.feature", p)
		if err != nil || line != want[p.Name] {
			t.Errorf("%s: line %d (%v), want %d", p.Name, line, err, want[p.Name])
		}
	}
	if file, line := splitLine("a/b.feature:16"); file != "a/b.feature" || line != 16 {
		t.Errorf("splitLine: %s %d", file, line)
	}
	if file, line := splitLine("a/b.feature"); file != "a/b.feature" || line != -1 {
		t.Errorf("splitLine without a line: %s %d", file, line)
	}
}
