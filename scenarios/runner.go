package scenarios

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	gherkin "github.com/cucumber/gherkin/go/v26"
	"github.com/cucumber/godog"
	messages "github.com/cucumber/messages/go/v21"
)

// DefaultTags leaves out scenarios waiting for a missing piece (@pending,
// each says which) and those needing real VMs (@libvirt).
const DefaultTags = "~@pending && ~@libvirt"

// Options are the inputs of one run of the scenario suite (RunSuite). Both
// `go test ./scenarios` and `metalbed scenario run` fill them.
type Options struct {
	// Bin is the metalbed binary under test; required.
	Bin string
	// Paths are feature files or folders. FILE:LINE selects the scenario
	// whose Scenario or Scenario Outline keyword is on LINE, or the one
	// Examples row on LINE.
	Paths []string
	// FS is where Paths are read; nil = the file system (relative paths
	// from the working directory).
	FS fs.FS
	// Tags is a godog tag expression; "" = DefaultTags.
	Tags string
	// Format is godog's formatter; "" = pretty with Concurrency 1, else
	// progress.
	Format string
	// JUnit, if set, is a file to write the results to as JUnit XML as
	// well (WriteJUnit), once the scenarios have run; a run refused
	// before it starts writes none.
	JUnit string
	// Concurrency is how many scenarios run at once; 0 = 1.
	Concurrency int
	// Seed, if not 0, runs the scenarios in an order shuffled with it
	// (godog's --random); 0 runs them in file order.
	Seed int64
	// Tools are the interop tools the steps run, by name: ipmitool and
	// baremetal (FindTools).
	Tools map[string]string
	// Work is a scratch directory for the run's state directories and
	// images; it must exist.
	Work string
	// Out receives godog's output and the failure reports; nil = os.Stdout.
	Out io.Writer
	// NoColors strips colours from the output.
	NoColors bool
	// Rerun returns the command line that reruns only the scenario at
	// ref ("path/x.feature:LINE"); nil = none printed.
	Rerun func(ref string) string
	// Backend is what the testbeds' machines are: "sim" (default,
	// simulated) or "libvirt" (real VMs; Bin must be built with the
	// libvirt_dlopen tag, and the run needs root and libvirtd). With
	// libvirt the default tags select the @libvirt scenarios.
	Backend string
	// RamdiskDir holds vmlinuz and initramfs from `metalbed ramdisk
	// build`, the deploy ramdisk real VMs boot; required with libvirt.
	RamdiskDir string
}

// LibvirtTags is the default tag expression with the libvirt backend.
const LibvirtTags = "@libvirt && ~@pending"

// Result is what a run did, scenario by scenario.
type Result struct {
	// Status is godog's exit status: 0 when every scenario passed.
	Status    int
	Passed    int
	Failed    int
	Pending   int
	Undefined int
	Skipped   int
	// Failures are the scenarios that did not pass, in the order they ended.
	Failures []Failure
	// Scenarios are every scenario that ran, in the order they ended.
	Scenarios []Case
	Elapsed   time.Duration
}

// Case is one scenario that ran, as a JUnit test case.
type Case struct {
	Name    string
	Ref     string // path/x.feature:LINE
	Status  string // passed, failed, pending, undefined, skipped
	Step    string // the step that did not pass ("" when passed)
	Err     string
	Output  string // the failure report (node states, timelines, faults, consoles, logs, rerun line)
	Elapsed time.Duration
}

// Failure is one scenario that did not pass.
type Failure struct {
	Name   string
	Ref    string // path/x.feature:LINE
	Err    string
	Status string // failed, pending, undefined
	Rerun  string // the command line that reruns it; "" without Options.Rerun
}

// Total is how many scenarios ran.
func (r *Result) Total() int { return r.Passed + r.Failed + r.Pending + r.Undefined + r.Skipped }

// OK reports whether every selected scenario ran and passed.
func (r *Result) OK() bool {
	return r.Status == 0 && r.Failed+r.Pending+r.Undefined == 0 && r.Total() > 0
}

// Summary is one line a person reads at a glance.
func (r *Result) Summary() string {
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	noun := "scenarios"
	if r.Total() == 1 {
		noun = "scenario"
	}
	s := fmt.Sprintf("%s: %d %s: %d passed, %d failed, %d pending, %d undefined", verdict, r.Total(), noun, r.Passed, r.Failed, r.Pending, r.Undefined)
	if r.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped", r.Skipped)
	}
	if r.Total() == 0 {
		s += " (none ran: no scenario matched the paths and tags, or godog refused its options; see above)"
	}
	return s + fmt.Sprintf(" in %s", r.Elapsed.Round(time.Second))
}

// FindTools looks up the interop tools the steps need: ipmitool (Debian
// ipmitool) and baremetal (python3-ironicclient).
func FindTools() (map[string]string, error) {
	tools := map[string]string{}
	var errs []error
	for _, t := range []struct{ name, pkg string }{{"ipmitool", "ipmitool"}, {"baremetal", "python3-ironicclient"}} {
		p, err := exec.LookPath(t.name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s not found (Debian package %s): the scenarios drive the BMCs and the API with it", t.name, t.pkg))
			continue
		}
		tools[t.name] = p
	}
	return tools, errors.Join(errs...)
}

// RunSuite runs the features against the metalbed binary o.Bin. Failed
// scenarios are explained on o.Out as they end (node states, last_error,
// timelines, faults in force, console tails, process logs, the rerun
// line); the returned error is only for a run that could not start.
func RunSuite(ctx context.Context, o Options) (*Result, error) {
	if o.Bin == "" {
		return nil, fmt.Errorf("scenarios: no metalbed binary given")
	}
	if o.Work == "" {
		return nil, fmt.Errorf("scenarios: no scratch directory given")
	}
	bin, err := filepath.Abs(o.Bin)
	if err != nil {
		return nil, err
	}
	switch o.Backend {
	case "", "sim":
		o.Backend = "sim"
	case "libvirt":
		if o.RamdiskDir == "" {
			return nil, fmt.Errorf("scenarios: the libvirt backend needs the deploy ramdisk real VMs boot (`metalbed ramdisk build --out DIR`, then give DIR)")
		}
		if o.RamdiskDir, err = filepath.Abs(o.RamdiskDir); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("scenarios: backend %q: want sim or libvirt", o.Backend)
	}
	out := o.Out
	if out == nil {
		out = os.Stdout
	}
	fsys := o.FS
	if fsys == nil {
		fsys = osFS{}
	}
	if err := ValidateTags(o.Tags); err != nil {
		return nil, err
	}
	if err := CheckPaths(fsys, o.Paths); err != nil {
		return nil, err
	}
	paths, fsys, err := selectRows(fsys, o.Paths)
	if err != nil {
		return nil, err
	}
	images, err := serveImages(ctx, bin, filepath.Join(o.Work, "images"))
	if err != nil {
		return nil, err
	}
	// `metalbed up --help` lists --enroll once up runs the provisioner,
	// the boot servers and the deploy.
	help, _ := exec.CommandContext(ctx, bin, "up", "--help").CombinedOutput()
	res := &Result{}
	s := &suite{bin: bin, work: o.Work, tools: o.Tools, out: &lockedWriter{w: out},
		canDeploy: strings.Contains(string(help), "-enroll"), images: images,
		backend: o.Backend, ramdiskDir: o.RamdiskDir,
		fsys: fsys, rerun: o.Rerun, result: res}
	concurrency := max(o.Concurrency, 1)
	format := o.Format
	if format == "" {
		format = "progress"
		if concurrency == 1 {
			format = "pretty"
		}
	}
	tags := o.Tags
	if tags == "" {
		tags = DefaultTags
		if o.Backend == "libvirt" {
			tags = LibvirtTags
		}
	}
	start := time.Now()
	res.Status = godog.TestSuite{
		Name:                "metalbed",
		ScenarioInitializer: s.initScenario,
		Options: &godog.Options{
			Format:         format,
			NoColors:       o.NoColors,
			Paths:          paths,
			FS:             fsys,
			Tags:           tags,
			Strict:         true,
			Concurrency:    concurrency,
			Randomize:      o.Seed,
			DefaultContext: ctx,
			Output:         s.out,
		},
	}.Run()
	res.Elapsed = time.Since(start)
	if o.JUnit != "" {
		if err := WriteJUnit(o.JUnit, fsys, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// record counts a scenario's outcome and keeps it (c) and, when it did
// not pass, its failure.
func (s *suite) record(f Failure, err error, c Case) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.result
	if r == nil {
		return
	}
	c.Name, c.Ref = f.Name, f.Ref
	switch {
	case err == nil:
		r.Passed++
		c.Status, c.Step = "passed", ""
		r.Scenarios = append(r.Scenarios, c)
		return
	case errors.Is(err, godog.ErrSkip):
		r.Skipped++
		c.Status = "skipped"
		r.Scenarios = append(r.Scenarios, c)
		return
	case errors.Is(err, godog.ErrPending):
		r.Pending++
		f.Status = "pending"
	case errors.Is(err, godog.ErrUndefined):
		r.Undefined++
		f.Status = "undefined"
	default:
		r.Failed++
		f.Status = "failed"
	}
	f.Err = err.Error()
	r.Failures = append(r.Failures, f)
	c.Status, c.Err = f.Status, f.Err
	r.Scenarios = append(r.Scenarios, c)
}

// ValidateTags checks a godog tag expression before godog reads it (godog
// panics on an empty term, as in "@power &&", and silently matches
// nothing for Cucumber's "or"/"not"/"||" syntax, which it does not
// have). "" is the default expression. Godog's syntax: terms joined by
// "&&" (and), each a list of tags joined by "," (or), a tag @name or
// ~@name (not).
func ValidateTags(expr string) error {
	if expr == "" {
		return nil
	}
	const syntax = `tags are @tag or ~@tag (not), joined by "," (or) and "&&" (and)`
	for _, and := range strings.Split(expr, "&&") {
		for _, term := range strings.Split(and, ",") {
			term = strings.TrimSpace(term)
			name := strings.TrimPrefix(strings.TrimPrefix(term, "~"), "@")
			switch {
			case term == "":
				return fmt.Errorf("tag expression %q has an empty term: %s", expr, syntax)
			case !validTag.MatchString(name):
				return fmt.Errorf("tag expression %q: %q is not a tag: %s", expr, term, syntax)
			}
		}
	}
	return nil
}

// validTag is a tag name without its @: no blanks and none of godog's
// operators.
var validTag = regexp.MustCompile(`^[^\s@~,&|()!]+$`)

// CheckPaths checks that every path names a feature file or folder in
// fsys (nil: the file system) and every FILE:LINE a scenario or an
// Examples row, before anything is started: godog only reports a missing
// path on its output and runs nothing.
func CheckPaths(fsys fs.FS, paths []string) error {
	if fsys == nil {
		fsys = osFS{}
	}
	for _, p := range paths {
		file, _ := splitLine(p)
		f, err := fsys.Open(file)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("feature path %s: no such file or folder", file)
		}
		if err != nil {
			return fmt.Errorf("feature path %s: %w", file, unwrapPathError(err))
		}
		f.Close()
	}
	_, _, err := selectRows(fsys, paths)
	return err
}

// unwrapPathError drops the *fs.PathError's repetition of the path.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// scenarioRef is "path/x.feature:LINE" for a scenario: the line of its
// Examples row for an outline's scenario, else of its Scenario keyword.
// It parses the feature again: godog's pickles carry no line.
func (s *suite) scenarioRef(p *godog.Scenario) string {
	uri, _ := splitLine(p.Uri)
	line, err := pickleLine(s.fsys, uri, p)
	if err != nil {
		return uri
	}
	return uri + ":" + strconv.Itoa(line)
}

func pickleLine(fsys fs.FS, uri string, p *godog.Scenario) (int, error) {
	doc, err := parseFeature(fsys, uri)
	if err != nil {
		return 0, err
	}
	lines := map[string]int64{}
	for _, sc := range scenariosOf(doc) {
		lines[sc.Id] = sc.Location.Line
		for _, ex := range sc.Examples {
			for _, row := range ex.TableBody {
				lines[row.Id] = row.Location.Line
			}
		}
	}
	var ids messages.Incrementing
	for _, q := range gherkin.Pickles(*doc, uri, ids.NewId) {
		if q.Name != p.Name || len(q.Steps) != len(p.Steps) {
			continue
		}
		same := true
		for i := range q.Steps {
			if q.Steps[i].Text != p.Steps[i].Text {
				same = false
				break
			}
		}
		if same {
			return int(lines[q.AstNodeIds[len(q.AstNodeIds)-1]]), nil
		}
	}
	return 0, fmt.Errorf("scenario %q not found in %s", p.Name, uri)
}

func parseFeature(fsys fs.FS, uri string) (*messages.GherkinDocument, error) {
	b, err := fs.ReadFile(fsys, uri)
	if err != nil {
		return nil, err
	}
	var ids messages.Incrementing
	doc, err := gherkin.ParseGherkinDocument(bytes.NewReader(b), ids.NewId)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", uri, err)
	}
	return doc, nil
}

// scenariosOf lists a feature's scenarios, those inside rules too.
func scenariosOf(doc *messages.GherkinDocument) []*messages.Scenario {
	var out []*messages.Scenario
	if doc.Feature == nil {
		return nil
	}
	for _, c := range doc.Feature.Children {
		if c.Scenario != nil {
			out = append(out, c.Scenario)
		}
		if c.Rule != nil {
			for _, rc := range c.Rule.Children {
				if rc.Scenario != nil {
					out = append(out, rc.Scenario)
				}
			}
		}
	}
	return out
}

// splitLine splits "x.feature:12" into "x.feature" and 12 (-1: no line).
func splitLine(p string) (string, int) {
	i := strings.LastIndex(p, ":")
	if i < 0 {
		return p, -1
	}
	n, err := strconv.Atoi(p[i+1:])
	if err != nil || n < 1 {
		return p, -1
	}
	return p[:i], n
}

// selectRows turns every FILE:LINE naming an Examples row into
// FILE:OUTLINE-LINE read from a copy of FILE in which the outline's other
// rows are comments (so every line keeps its number): godog selects by
// the Scenario line only, which runs every row of an outline.
func selectRows(fsys fs.FS, paths []string) ([]string, fs.FS, error) {
	over := overlayFS{base: fsys, files: map[string][]byte{}}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		file, line := splitLine(p)
		if line < 0 || !strings.HasSuffix(file, ".feature") {
			out = append(out, p)
			continue
		}
		doc, err := parseFeature(fsys, file)
		if err != nil {
			return nil, nil, fmt.Errorf("feature %s: %w", p, err)
		}
		found := false
		for _, sc := range scenariosOf(doc) {
			if sc.Location.Line == int64(line) {
				found = true
				out = append(out, p)
				break
			}
			var keep *messages.TableRow
			for _, ex := range sc.Examples {
				for _, row := range ex.TableBody {
					if row.Location.Line == int64(line) {
						keep = row
					}
				}
			}
			if keep == nil {
				continue
			}
			if _, dup := over.files[file]; dup {
				return nil, nil, fmt.Errorf("%s: one Examples row of a file at a time (give the outline's line to run all its rows)", p)
			}
			b, err := fs.ReadFile(fsys, file)
			if err != nil {
				return nil, nil, err
			}
			lines := strings.SplitAfter(string(b), "\n")
			for _, ex := range sc.Examples {
				for _, row := range ex.TableBody {
					if row != keep {
						i := int(row.Location.Line) - 1
						lines[i] = "#" + lines[i]
					}
				}
			}
			over.files[file] = []byte(strings.Join(lines, ""))
			out = append(out, file+":"+strconv.FormatInt(sc.Location.Line, 10))
			found = true
			break
		}
		if !found {
			return nil, nil, fmt.Errorf("%s: no Scenario, Scenario Outline or Examples row on line %d", file, line)
		}
	}
	if len(over.files) == 0 {
		return out, fsys, nil
	}
	return out, over, nil
}

// osFS reads names as the operating system does, relative to the working
// directory, as godog does without an FS.
type osFS struct{}

func (osFS) Open(name string) (fs.File, error) { return os.Open(name) }

// overlayFS serves some files from memory, the rest from base.
type overlayFS struct {
	base  fs.FS
	files map[string][]byte
}

func (o overlayFS) Open(name string) (fs.File, error) {
	if b, ok := o.files[name]; ok {
		return &memFile{Reader: bytes.NewReader(b), name: name, size: int64(len(b))}, nil
	}
	return o.base.Open(name)
}

// memFile is one in-memory feature file.
type memFile struct {
	*bytes.Reader
	name string
	size int64
}

func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{f}, nil }
func (f *memFile) Close() error               { return nil }

type memInfo struct{ f *memFile }

func (i memInfo) Name() string       { return filepath.Base(i.f.name) }
func (i memInfo) Size() int64        { return i.f.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// faultsInForce lists the testbed's fault rules with their seeds, one line
// each, for a failure report.
func (w *world) faultsInForce(ctx context.Context) string {
	if w.env == nil || w.env.timelineURL == "" {
		return ""
	}
	var doc struct {
		Faults []faultRule `json:"faults"`
	}
	if err := w.faultCall(ctx, "GET", "/v1/faults", nil, &doc); err != nil {
		return fmt.Sprintf("faults in force: cannot list them: %v\n", err)
	}
	if len(doc.Faults) == 0 {
		return "faults in force: none\n"
	}
	sort.Slice(doc.Faults, func(i, j int) bool { return doc.Faults[i].ID < doc.Faults[j].ID })
	var b strings.Builder
	fmt.Fprintf(&b, "faults in force (%d):\n", len(doc.Faults))
	for _, f := range doc.Faults {
		fmt.Fprintf(&b, "  %s node=%s layer=%s op=%s action=%s", f.ID, cmp.Or(f.Node, "*"), f.Layer, cmp.Or(f.Op, "*"), f.Action)
		if f.Arg != "" {
			fmt.Fprintf(&b, " arg=%q", f.Arg)
		}
		if f.Count > 0 {
			fmt.Fprintf(&b, " count=%d", f.Count)
		}
		if f.Probability > 0 {
			fmt.Fprintf(&b, " probability=%g", f.Probability)
		}
		fmt.Fprintf(&b, " seed=%d fired=%d\n", f.Seed, f.Fired)
	}
	return b.String()
}
