package scenarios

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cucumber/godog"

	"github.com/metalbed/metalbed/internal/testenv"
)

// Suite options: each flag (go test ./scenarios -args -godog.tags=@power)
// falls back to an environment variable, then to its default.
var (
	optPaths       = flag.String("godog.paths", envOr("METALBED_SCENARIO_PATHS", "../features"), "feature files or folders, comma-separated (env METALBED_SCENARIO_PATHS)")
	optTags        = flag.String("godog.tags", envOr("METALBED_SCENARIO_TAGS", defaultTags), "tag expression choosing scenarios (env METALBED_SCENARIO_TAGS)")
	optFormat      = flag.String("godog.format", envOr("METALBED_SCENARIO_FORMAT", ""), "godog formatter: pretty, progress, cucumber, junit:FILE, … (env METALBED_SCENARIO_FORMAT); default pretty with -godog.concurrency=1, else progress (pretty mixes concurrent outlines)")
	optBin         = flag.String("metalbed.bin", os.Getenv("METALBED_SCENARIO_BIN"), "a metalbed binary to test instead of building ./cmd/metalbed (env METALBED_SCENARIO_BIN)")
	optConcurrency = flag.Int("godog.concurrency", envInt("METALBED_SCENARIO_CONCURRENCY", 6), "scenarios run at once; each has its own environment (env METALBED_SCENARIO_CONCURRENCY)")
)

// defaultTags leaves out scenarios waiting for a missing piece (@pending,
// each says which) and those needing real VMs (@libvirt).
const defaultTags = "~@pending && ~@libvirt"

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
// once here and driven as a user drives it.
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
	} else if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	images, err := serveImages(t.Context(), bin, filepath.Join(work, "images"))
	if err != nil {
		t.Fatal(err)
	}
	// `metalbed up --help` lists --enroll once up runs the provisioner,
	// the boot servers and the deploy.
	help, _ := exec.CommandContext(t.Context(), bin, "up", "--help").CombinedOutput()
	s := &suite{bin: bin, work: work, tools: tools, out: &lockedWriter{w: os.Stdout},
		canDeploy: strings.Contains(string(help), "-enroll"), images: images}
	concurrency := max(*optConcurrency, 1)
	format := *optFormat
	if format == "" {
		format = "progress"
		if concurrency == 1 {
			format = "pretty"
		}
	}
	// Colours only on a terminal: CI logs stay readable.
	noColors := true
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		noColors = false
	}
	status := godog.TestSuite{
		Name:                "metalbed",
		ScenarioInitializer: s.initScenario,
		Options: &godog.Options{
			Format:         format,
			NoColors:       noColors,
			Paths:          strings.Split(*optPaths, ","),
			Tags:           *optTags,
			Strict:         true,
			Concurrency:    concurrency,
			DefaultContext: t.Context(),
			Output:         s.out,
		},
	}.Run()
	if status != 0 {
		t.Fatalf("godog: scenarios failed (status %d); the failing scenarios' node states, last_error and console tails are printed above", status)
	}
}
