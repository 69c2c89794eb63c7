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
	"runtime/debug"
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
		{"demo", fmt.Sprintf("bring up %d machines (simulated, or VMs with --backend libvirt), deploy each a different way through the API and undeploy them", len(testbed.DemoNodes(false))), runDemo},
		{"timeline", "print a node's timeline from a running `metalbed up` (NODE [--json])", runTimeline},
		{"fault add", "inject a fault into a running `metalbed up` (--layer --action [--node --op --arg --count --skip --probability --delay --seed])", runFaultAdd},
		{"fault list", "list the faults of a running `metalbed up` and how often each fired", runFaultList},
		{"fault clear", "remove faults from a running `metalbed up` (all, --node NAME, or IDs)", runFaultClear},
		{"scenario run", "run the Gherkin scenarios against this binary as a CI gate ([PATHS] [--tags --junit --backend --concurrency --seed])", runScenarioRun},
		{"target serve", "serve a disk file as LUN 1 of an iSCSI target", runTargetServe},
		{"web", "serve the web dashboard over a recorded timeline (--replay timeline.jsonl [--speed N --web-addr HOST:PORT])", runWeb},
		{"status", "say whether a metalbed up runs on a state dir, its pid and addresses ([--state-dir DIR --json]; exit 3 when none)", runStatus},
		{"down", "stop the metalbed up running on a state dir ([--state-dir DIR --timeout D])", runDown},
		{"version", "print the module version and the VCS revision it was built from (also --version)", runVersion},
	}
}

// errUsage marks a command-line mistake; the process exits 2.
var errUsage = errors.New("usage")

// usageError wraps a message so ExitCode maps it to 2.
func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// ExitCode maps an error returned by Run to a process exit code: 0 for
// none (and for -h, whose usage is the asked-for output), 2 for a
// command-line mistake, 3 for `status` when nothing runs, 1 for anything
// that went wrong while running.
func ExitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case isUsage(err):
		return 2
	case errors.Is(err, errNotRunning):
		return 3
	default:
		return 1
	}
}

func isUsage(err error) bool {
	return errors.Is(err, errUsage) || errors.Is(err, testbed.ErrConfig)
}

// Exit reports err on stderr in metalbed's one error format and returns
// the exit code for it (ExitCode): a usage error as the single line
// "metalbed: usage: …", any other as "metalbed: …"; nothing for nil or
// -h (the usage is already printed).
func Exit(err error, stderr io.Writer) int {
	code := ExitCode(err)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return code
	}
	msg := err.Error()
	if code == 2 {
		for trimmed := ""; trimmed != msg; {
			trimmed = msg
			msg = strings.TrimPrefix(strings.TrimPrefix(msg, "usage: "), "metalbed: ")
		}
		fmt.Fprintf(stderr, "metalbed: usage: %s\n", strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " "))
		return code
	}
	if code == 3 {
		return code // status said so on stdout
	}
	fmt.Fprintf(stderr, "metalbed: %s\n", strings.TrimPrefix(msg, "metalbed: "))
	return code
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// Run executes the command named by args.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := Streams{Out: stdout, Err: stderr}
	table := commands()
	if len(args) == 0 {
		printHelp(stderr, table)
		return usageError("no command given")
	}
	switch {
	case args[0] == "-version" || args[0] == "--version":
		return runVersion(ctx, s, args[1:])
	case isHelp(args[0]) && (len(args) == 1 || isHelp(args[1])):
		printHelp(stdout, table)
		return nil
	case isHelp(args[0]):
		// `metalbed help fault add` is `metalbed fault add -h`.
		return Run(ctx, append(append([]string(nil), args[1:]...), "-h"), stdout, stderr)
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
	// A group of commands (`metalbed fault`, `metalbed fault -h`): its
	// commands.
	if group := groupOf(table, args[0]); len(group) > 0 {
		if len(args) > 1 && isHelp(args[1]) {
			printHelp(stdout, group)
			return nil
		}
		printHelp(stderr, group)
		if len(args) == 1 {
			return usageError("%s needs a command: %s", args[0], strings.Join(subcommands(group), ", "))
		}
		return usageError("unknown command %q: %s has %s", strings.Join(args[:2], " "), args[0], strings.Join(subcommands(group), ", "))
	}
	printHelp(stderr, table)
	return usageError("unknown command %q", args[0])
}

// groupOf returns the commands whose name has two words, the first word.
func groupOf(table []command, word string) []command {
	var out []command
	for _, c := range table {
		if first, _, two := strings.Cut(c.name, " "); two && first == word {
			out = append(out, c)
		}
	}
	return out
}

// subcommands returns the second words of a group's names.
func subcommands(group []command) []string {
	out := make([]string, len(group))
	for i, c := range group {
		_, out[i], _ = strings.Cut(c.name, " ")
	}
	sort.Strings(out)
	return out
}

func printHelp(w io.Writer, table []command) {
	fmt.Fprintln(w, "usage: metalbed <command> [flags]   (metalbed <command> -h: its flags)")
	fmt.Fprintln(w, "\ncommands:")
	sorted := append([]command(nil), table...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	width := 0
	for _, c := range sorted {
		width = max(width, len(c.name))
	}
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
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

// Version, when set at build time (-ldflags "-X
// github.com/metalbed/metalbed/internal/cli.Version=v1.2.3"), is the
// version metalbed reports instead of its module version.
var Version = ""

// version is the version metalbed reports: Version, else the module
// version of this build, with the VCS revision it was built from.
func version() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(Version, bi)
}

// formatVersion is "VERSION (REVISION[+dirty], TIME)" from the build
// information the Go toolchain records; "devel" stands for a build of a
// working tree ("(devel)"), and a build without VCS information
// (-buildvcs=false, no git) says so instead of a revision.
func formatVersion(override string, bi *debug.BuildInfo) string {
	v := override
	if v == "" && bi != nil {
		v = bi.Main.Version
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, at string
	dirty := false
	if bi != nil {
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.time":
				at = kv.Value
			case "vcs.modified":
				dirty = kv.Value == "true"
			}
		}
	}
	if rev == "" {
		return v + " (no VCS revision: built without VCS stamping)"
	}
	if dirty {
		rev += "+dirty"
	}
	if at != "" {
		return fmt.Sprintf("%s (%s, %s)", v, rev, at)
	}
	return fmt.Sprintf("%s (%s)", v, rev)
}

func runVersion(_ context.Context, s Streams, args []string) error {
	fs := newFlags("version", s)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "metalbed %s\n", version())
	return nil
}
