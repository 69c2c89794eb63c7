package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/metalbed/metalbed/features"
	"github.com/metalbed/metalbed/scenarios"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// runScenarioRun is `metalbed scenario run`: the Gherkin suite of
// scenarios/ (the steps `go test ./scenarios` runs) against this very
// binary, as a CI gate. It exits 0 only if every selected scenario
// passed; each failure is explained as it ends (node states, last_error,
// timelines, faults and their seeds, console tails) with the one command
// line that reruns it.
func runScenarioRun(ctx context.Context, s Streams, args []string) error {
	flags := newFlags("scenario run", s)
	tags := flags.String("tags", "", "godog tag expression choosing scenarios (default \""+scenarios.DefaultTags+"\")")
	junit := flags.String("junit", "", "also write the results to this file as JUnit XML")
	backend := flags.String("backend", "sim", "machines the scenarios run on: sim (simulated) or libvirt (real VMs: root, libvirtd, a metalbed built with -tags libvirt_dlopen; default tags then \""+scenarios.LibvirtTags+"\")")
	ramdiskDir := flags.String("ramdisk-dir", "", "with --backend libvirt: `DIR` holding the deploy kernel and ramdisk the VMs boot, from metalbed ramdisk build --out DIR (required)")
	concurrency := flags.Int("concurrency", 6, "scenarios run at once, each with its own testbed")
	seed := flags.Int64("seed", 0, "run the scenarios in an order shuffled with this seed (0: file order); each rerun line repeats it")
	format := flags.String("format", "", "godog formatter: pretty, progress, cucumber, … (default pretty with --concurrency 1, else progress)")
	keep := flags.Bool("keep", false, "keep the scenarios' state directories (removed after the run by default, failed or not)")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "usage: metalbed scenario run [PATHS...] [flags]\n\n"+
			"PATHS are feature files or folders read from disk, FILE:LINE selecting one scenario\n"+
			"or one Examples row; without PATHS, the features built into this binary run.\n"+
			"features/NAME.feature not found on disk is read from the built-in features.\n\nflags:\n")
		flags.PrintDefaults()
	}
	paths, err := parseArgsAndFlags(flags, args)
	if err != nil {
		return err
	}
	switch *backend {
	case "sim":
	case "libvirt":
		if *ramdiskDir == "" {
			return usageError("--backend libvirt needs --ramdisk-dir DIR: the VMs boot the ramdisk `metalbed ramdisk build --out DIR` makes")
		}
		if err := libvirt.Built(); err != nil {
			return fmt.Errorf("scenario run --backend libvirt: %w", err)
		}
	default:
		return usageError("--backend %q: want sim or libvirt", *backend)
	}
	if *concurrency < 1 {
		return usageError("--concurrency %d: want 1 or more", *concurrency)
	}
	// What godog would panic on, or only mention on its output before
	// running nothing, is refused here, before anything starts or any
	// file is written.
	if err := scenarios.ValidateTags(*tags); err != nil {
		return usageError("--tags: %v", err)
	}
	var fsys fs.FS = diskOrShipped{}
	if len(paths) == 0 {
		fsys, paths = shippedFeatures{}, []string{"features"}
	}
	if err := scenarios.CheckPaths(fsys, paths); err != nil {
		return usageError("%v", err)
	}
	if *junit != "" {
		// The XML is written once the scenarios have run; its folder
		// must be there.
		if fi, err := os.Stat(filepath.Dir(*junit)); err != nil || !fi.IsDir() {
			return usageError("--junit %s: no folder %s to write it in", *junit, filepath.Dir(*junit))
		}
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("scenario run: the binary under test: %w", err)
	}
	tools, err := scenarios.FindTools()
	if err != nil {
		return fmt.Errorf("scenario run: %w", err)
	}
	work, err := os.MkdirTemp("", "metalbed-scenarios-")
	if err != nil {
		return fmt.Errorf("scenario run: %w", err)
	}
	noColors := true
	if f, ok := s.Out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			noColors = false
		}
	}
	rerunFlags := ""
	if *seed != 0 {
		rerunFlags += " --seed " + strconv.FormatInt(*seed, 10)
	}
	if *tags != "" {
		rerunFlags += " --tags " + shellQuote(*tags)
	}
	if *backend == "libvirt" {
		rerunFlags += " --backend libvirt --ramdisk-dir " + shellQuote(*ramdiskDir)
	}
	res, err := scenarios.RunSuite(ctx, scenarios.Options{
		Bin:         bin,
		Paths:       paths,
		FS:          fsys,
		Tags:        *tags,
		Format:      *format,
		JUnit:       *junit,
		Concurrency: *concurrency,
		Seed:        *seed,
		Tools:       tools,
		Work:        work,
		Out:         s.Out,
		NoColors:    noColors,
		Backend:     *backend,
		RamdiskDir:  *ramdiskDir,
		Rerun: func(ref string) string {
			return "metalbed scenario run " + shellQuote(ref) + rerunFlags
		},
	})
	if *keep {
		fmt.Fprintf(s.Out, "state directories kept in %s\n", work)
	} else {
		os.RemoveAll(work)
	}
	if err != nil {
		return fmt.Errorf("scenario run: %w", err)
	}
	if len(res.Failures) > 0 {
		fmt.Fprintf(s.Out, "\nscenarios that did not pass:\n")
		for _, f := range res.Failures {
			fmt.Fprintf(s.Out, "  %-9s %s  %s\n            rerun: %s\n", f.Status, f.Ref, f.Name, f.Rerun)
		}
	}
	if !res.OK() && !*keep {
		fmt.Fprintf(s.Out, "state directories removed (--keep keeps them)\n")
	}
	if *junit != "" {
		fmt.Fprintf(s.Out, "JUnit XML written to %s\n", *junit)
	}
	fmt.Fprintln(s.Out, res.Summary())
	if !res.OK() {
		return fmt.Errorf("scenario run: %d of %d scenarios did not pass", res.Total()-res.Passed-res.Skipped, res.Total())
	}
	return nil
}

// parseArgsAndFlags parses flags placed before, between and after the
// positional arguments (a rerun line puts --seed after the path) and
// returns the positional ones; flags not given come from METALBED_<FLAG>.
func parseArgsAndFlags(flags *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := flags.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError("%v", err)
		}
		if flags.NArg() == 0 {
			break
		}
		rest := flags.Args()
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, parseFlags(flags, []string{})
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shippedFeatures serves the features built into the binary under the
// folder name "features".
type shippedFeatures struct{}

func (shippedFeatures) Open(name string) (fs.File, error) {
	switch {
	case name == "features":
		return features.Files.Open(".")
	case strings.HasPrefix(name, "features/"):
		return features.Files.Open(strings.TrimPrefix(name, "features/"))
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// diskOrShipped reads names from disk (relative to the working directory)
// and falls back to the built-in features for features/… names, so a
// rerun line works from any directory.
type diskOrShipped struct{}

func (diskOrShipped) Open(name string) (fs.File, error) {
	f, err := os.Open(name)
	if err == nil {
		return f, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if sf, serr := (shippedFeatures{}).Open(name); serr == nil {
			return sf, nil
		}
	}
	return nil, err
}
