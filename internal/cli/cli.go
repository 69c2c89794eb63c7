// Package cli is the metalbed command line: one binary, one table of
// commands, every flag also readable from METALBED_<FLAG>.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/metalbed/metalbed/testbed"
)

// Streams are where a command writes.
type Streams struct {
	Out io.Writer
	Err io.Writer
}

// command is one entry of the command table. name may have two words
// ("target serve").
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, s Streams, args []string) error
}

// commands is the whole command table, built once; Run never mutates it.
func commands() []command {
	return []command{
		{"image build", "build a test instance image (partition or whole-disk)", runImageBuild},
		{"netboot serve", "run the DHCP, TFTP and HTTP boot servers", runNetbootServe},
		{"ramdisk build", "write the deploy kernel and initramfs real machines boot (--out DIR [--kernel PATH --src DIR]; needs the Go toolchain)", runRamdiskBuild},
		{"ramdisk init", "run as the deploy ramdisk's /init (only as PID 1; metalbed does this by itself when it is PID 1)", runRamdiskInit},
		{"provisioner serve", "run the Ironic-compatible provisioner (API and conductor)", runProvisionerServe},
		{"up", "run simulated machines and their BMCs until interrupted", runUp},
		{"demo", "bring up 3 machines and drive their BMCs as Ironic would", runDemo},
		{"timeline", "print a node's timeline from a running `metalbed up` (NODE [--json])", runTimeline},
		{"fault add", "inject a fault into a running `metalbed up` (--layer --action [--node --op --arg --count --skip --probability --delay --seed])", runFaultAdd},
		{"fault list", "list the faults of a running `metalbed up` and how often each fired", runFaultList},
		{"fault clear", "remove faults from a running `metalbed up` (all, --node NAME, or IDs)", runFaultClear},
		{"scenario run", "run the Gherkin scenarios against this binary as a CI gate ([PATHS] [--tags --junit --backend --concurrency --seed])", runScenarioRun},
		{"target serve", "serve a disk file as LUN 1 of an iSCSI target", runTargetServe},
		{"web", "serve the web dashboard over a recorded timeline (--replay timeline.jsonl [--speed N --web-addr HOST:PORT])", runWeb},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks a command-line mistake; the process exits 2.
var errUsage = errors.New("usage")

// usageError wraps a message so ExitCode maps it to 2.
func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// ExitCode maps an error returned by Run to a process exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp), errors.Is(err, testbed.ErrConfig):
		return 2
	default:
		return 1
	}
}

// Run executes the command named by args.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := Streams{Out: stdout, Err: stderr}
	table := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(stdout, table)
		if len(args) == 0 {
			return usageError("no command given")
		}
		return nil
	}
	for _, words := range []int{2, 1} {
		if len(args) < words {
			continue
		}
		name := strings.Join(args[:words], " ")
		for _, c := range table {
			if c.name == name {
				return c.run(ctx, s, args[words:])
			}
		}
	}
	printHelp(stderr, table)
	return usageError("unknown command %q", strings.Join(args, " "))
}

func printHelp(w io.Writer, table []command) {
	fmt.Fprintln(w, "usage: metalbed <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	sorted := append([]command(nil), table...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as METALBED_<FLAG> (dashes become underscores).")
}

// newFlags returns a flag set for a command whose errors go to s.Err.
func newFlags(name string, s Streams) *flag.FlagSet {
	fs := flag.NewFlagSet("metalbed "+name, flag.ContinueOnError)
	fs.SetOutput(s.Err)
	return fs
}

// parseFlags parses args, then fills every flag not given on the command
// line from METALBED_<FLAG> (precedence: flag > env > file > default).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("%v", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		key := envName(f.Name)
		if v, ok := os.LookupEnv(key); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, usageError("%s=%q: %v", key, v, err))
			}
		}
	})
	if fs.NArg() > 0 {
		errs = append(errs, usageError("unexpected argument %q", fs.Arg(0)))
	}
	return errors.Join(errs...)
}

// envName is the environment variable that backs a flag.
func envName(flagName string) string {
	return "METALBED_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

func runVersion(_ context.Context, s Streams, args []string) error {
	fs := newFlags("version", s)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "metalbed %s\n", Version)
	return nil
}
