package scenarios

// JUnit XML of a run, written from the Result: one <testsuite> per
// feature, one <testcase> per scenario with a classname (the feature
// file's path, dotted, as JUnit readers group classes), and for a
// scenario that did not pass a <failure> whose message is the step and
// its error and whose body is the failure report printed during the run.

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	File     string      `xml:"file,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr"`
	Status    string        `xml:"status,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *struct{}     `xml:"skipped,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",innerxml"` // escaped by escapeBody
}

// escapeBody escapes text as XML character data, keeping its line breaks
// and tabs as they are (encoding/xml writes them as &#xA; and &#x9;,
// which a person reading the file cannot); characters XML cannot hold
// (a NUL from a console) become U+FFFD.
func escapeBody(text string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(text))
	return strings.NewReplacer("&#xA;", "\n", "&#x9;", "\t").Replace(b.String())
}

// WriteJUnit writes res as JUnit XML to path: to a temporary file in the
// same folder, then renamed, so path is never a partial file. fsys is
// where the features were read (for their names).
func WriteJUnit(path string, fsys fs.FS, res *Result) error {
	b, err := junitXML(fsys, res)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("JUnit file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("JUnit file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("JUnit file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("JUnit file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("JUnit file: %w", err)
	}
	return nil
}

func junitXML(fsys fs.FS, res *Result) ([]byte, error) {
	cases := slices.Clone(res.Scenarios)
	// Concurrent scenarios end in any order: file, then line.
	slices.SortStableFunc(cases, func(a, b Case) int {
		fa, la := splitLine(a.Ref)
		fb, lb := splitLine(b.Ref)
		return cmp.Or(strings.Compare(fa, fb), cmp.Compare(la, lb))
	})
	doc := junitSuites{Name: "metalbed", Time: seconds(res.Elapsed)}
	var suite *junitSuite
	var elapsed time.Duration
	seen := map[string]int{}
	for _, c := range cases {
		file, _ := splitLine(c.Ref)
		if suite == nil || suite.File != file {
			if suite != nil {
				suite.Time = seconds(elapsed)
			}
			doc.Suites = append(doc.Suites, junitSuite{Name: featureName(fsys, file), File: file})
			suite, elapsed, seen = &doc.Suites[len(doc.Suites)-1], 0, map[string]int{}
		}
		name := c.Name
		// An outline's rows share its name: number them as godog does.
		seen[c.Name]++
		if countName(cases, file, c.Name) > 1 {
			name += " #" + strconv.Itoa(seen[c.Name])
		}
		tc := junitCase{Name: name, Classname: classname(file), File: c.Ref, Status: c.Status, Time: seconds(c.Elapsed)}
		suite.Tests++
		doc.Tests++
		elapsed += c.Elapsed
		switch c.Status {
		case "passed":
		case "skipped":
			tc.Skipped = &struct{}{}
			suite.Skipped++
			doc.Skipped++
		default:
			msg := c.Err
			if c.Step != "" {
				msg = "Step " + c.Step + ": " + c.Err
			}
			tc.Failure = &junitFailure{Message: msg, Type: c.Status, Body: escapeBody(msg + "\n" + c.Output)}
			suite.Failures++
			doc.Failures++
		}
		suite.Cases = append(suite.Cases, tc)
	}
	if suite != nil {
		suite.Time = seconds(elapsed)
	}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("JUnit XML: %w", err)
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

func countName(cases []Case, file, name string) int {
	n := 0
	for _, c := range cases {
		if f, _ := splitLine(c.Ref); f == file && c.Name == name {
			n++
		}
	}
	return n
}

// classname is a feature file's path as a JUnit class name:
// "features/power.feature" is "features.power".
func classname(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.ToSlash(file), ".feature"), "/", ".")
}

// featureName is the name of file's Feature, else the file's.
func featureName(fsys fs.FS, file string) string {
	if doc, err := parseFeature(fsys, file); err == nil && doc.Feature != nil && doc.Feature.Name != "" {
		return doc.Feature.Name
	}
	return file
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}
