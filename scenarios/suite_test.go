package scenarios

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// Suite options: each flag (go test ./scenarios -args -godog.tags=@power)
// falls back to an environment variable, then to its default.
var (
	optPaths       = flag.String("godog.paths", envOr("METALBED_SCENARIO_PATHS", "../features"), "feature files or folders, comma-separated (env METALBED_SCENARIO_PATHS)")
	optTags        = flag.String("godog.tags", envOr("METALBED_SCENARIO_TAGS", DefaultTags), "tag expression choosing scenarios (env METALBED_SCENARIO_TAGS)")
	optFormat      = flag.String("godog.format", envOr("METALBED_SCENARIO_FORMAT", ""), "godog formatter: pretty, progress, cucumber, junit:FILE, … (env METALBED_SCENARIO_FORMAT); default pretty with -godog.concurrency=1, else progress (pretty mixes concurrent outlines)")
	optBin         = flag.String("metalbed.bin", os.Getenv("METALBED_SCENARIO_BIN"), "a metalbed binary to test instead of building ./cmd/metalbed (env METALBED_SCENARIO_BIN)")
	optConcurrency = flag.Int("godog.concurrency", envInt("METALBED_SCENARIO_CONCURRENCY", 6), "scenarios run at once; each has its own environment (env METALBED_SCENARIO_CONCURRENCY)")
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestFeatures runs the Gherkin features against the metalbed binary, built
// once here and driven as a user drives it (RunSuite, as `metalbed
// scenario run` does).
func TestFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("scenarios start real metalbed processes; skipped with -short")
	}
	tools := map[string]string{
		"ipmitool":  testenv.RequireTool(t, "ipmitool", "ipmitool"),
		"baremetal": testenv.RequireTool(t, "baremetal", "python3-ironicclient"),
	}
	work := t.TempDir()
	bin := *optBin
	if bin == "" {
		bin = filepath.Join(work, "metalbed")
		build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/metalbed/metalbed/cmd/metalbed")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build metalbed: %v\n%s", err, out)
		}
	}
	// Colours only on a terminal: CI logs stay readable.
	noColors := true
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		noColors = false
	}
	res, err := RunSuite(t.Context(), Options{
		Bin:         bin,
		Paths:       strings.Split(*optPaths, ","),
		Tags:        *optTags,
		Format:      *optFormat,
		Concurrency: *optConcurrency,
		Tools:       tools,
		Work:        work,
		Out:         os.Stdout,
		NoColors:    noColors,
		Rerun: func(ref string) string {
			return "go test -count=1 ./scenarios -run TestFeatures -args -godog.paths=" + ref
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary())
	if res.Status != 0 {
		var b strings.Builder
		for _, f := range res.Failures {
			fmt.Fprintf(&b, "\n  %s %s %q\n    rerun: %s", f.Status, f.Ref, f.Name, f.Rerun)
		}
		t.Fatalf("godog: scenarios failed (status %d); the failing scenarios' node states, last_error, timelines, faults and console tails are printed above:%s", res.Status, b.String())
	}
}
