// Package scenarios holds the godog step definitions of metalbed's Gherkin
// features (features/*.feature); `go test ./scenarios` runs them.
//
// Steps drive metalbed only as a user does: the metalbed binary (built once
// per run), its REST API, the wire protocols (IPMI through ipmitool, the
// baremetal CLI) and the files it writes in its state directory (inventory,
// console logs). Nothing here imports bmcemu, vms or provisioner.
//
// Each scenario gets its own environment (machines, BMCs, provisioner) in
// its own directory, started by startEnv and stopped by SIGINT when the
// scenario ends, so scenarios run concurrently without seeing each other's
// power states, boot flags or nodes. Concurrency is what keeps the suite
// fast: the provisioner keeps Ironic's 5 s between two commands to one BMC,
// so a scenario mostly waits, and waiting scenarios overlap.
//
// Options (flag after -args, else environment variable):
//
//	-godog.paths        METALBED_SCENARIO_PATHS        ../features (comma-separated)
//	-godog.tags         METALBED_SCENARIO_TAGS         ~@pending && ~@libvirt
//	-godog.format       METALBED_SCENARIO_FORMAT       progress (pretty when concurrency is 1), junit:FILE, cucumber…
//	-godog.concurrency  METALBED_SCENARIO_CONCURRENCY  6
//	-metalbed.bin       METALBED_SCENARIO_BIN          "" (build ./cmd/metalbed)
//
// Two kinds of environment, both started by startEnv: "a metalbed
// environment" runs `metalbed up --no-provisioner` and `metalbed provisioner
// serve` side by side (what main has); "a metalbed testbed" runs one
// `metalbed up --enroll` with the boot servers and the timeline, for the
// deploy scenarios. Instance images come from `metalbed image build`, served
// over HTTP by the suite as the web server Ironic downloads from.
//
// Scenarios tagged @pending wait for a piece main does not have yet; their
// steps return godog.ErrPending naming it (run them with -godog.tags=@pending).
// A failing scenario prints every node's state and last_error, each
// machine's console tail and the metalbed process logs.
//
// ipmitool (Debian ipmitool) and baremetal (python3-ironicclient) are
// required; without them the test skips, or fails when METALBED_INTEROP=required.
package scenarios

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cucumber/godog"
)

// suite is what every scenario of one run shares: read-only after start
// but for the counters and the result.
type suite struct {
	bin        string              // the metalbed binary under test
	work       string              // scratch directory of the run
	tools      map[string]string   // interop tools by name: ipmitool, baremetal
	out        io.Writer           // godog's output, safe for concurrent writes
	canDeploy  bool                // `metalbed up` has --enroll (provisioner, netboot, deploy)
	images     *imageStore         // instance images served over HTTP
	fsys       fs.FS               // where the features are read
	rerun      func(string) string // the command line rerunning one scenario; nil = none
	backend    string              // sim or libvirt (Options.Backend)
	ramdiskDir string              // the real VMs' deploy ramdisk (Options.RamdiskDir)

	mu     sync.Mutex
	result *Result // outcomes so far
}

// lockedWriter serialises writes from concurrent scenarios.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// world is one scenario's state; a fresh one per scenario.
type world struct {
	s    *suite
	name string
	dir  string
	env  *env

	began      time.Time // when the scenario started
	failedStep string    // the text of the step that did not pass

	nodes map[string]string // node name in the scenario -> API UUID

	last    *apiResponse // the last API response
	lastCmd *cmdResult   // the last ipmitool or baremetal run
	sol     *solSession  // an attached serial console, if any
	image   *builtImage  // the image given to a node's instance_info
	// faultRuns are the outcomes of repeated calls under a fault, one
	// string a run ("." passed, "x" failed), to compare seeds.
	faultRuns []string
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// initScenario registers every step on a fresh world.
func (s *suite) initScenario(sc *godog.ScenarioContext) {
	w := &world{s: s, nodes: map[string]string{}}
	sc.Before(func(ctx context.Context, p *godog.Scenario) (context.Context, error) {
		w.name, w.began = p.Name, time.Now()
		dir, err := os.MkdirTemp(s.work, unsafeName.ReplaceAllString(p.Name, "-")+"-")
		if err != nil {
			return ctx, err
		}
		w.dir = dir
		return ctx, nil
	})
	sc.StepContext().After(func(ctx context.Context, st *godog.Step, status godog.StepResultStatus, err error) (context.Context, error) {
		if status != godog.StepPassed && status != godog.StepSkipped && w.failedStep == "" {
			w.failedStep = st.Text
		}
		return ctx, nil
	})
	sc.After(func(ctx context.Context, p *godog.Scenario, err error) (context.Context, error) {
		f := Failure{Name: p.Name, Ref: s.scenarioRef(p)}
		if s.rerun != nil {
			f.Rerun = s.rerun(f.Ref)
		}
		c := Case{Step: w.failedStep}
		if err != nil {
			c.Output = w.explain(ctx, f, err)
		}
		c.Elapsed = time.Since(w.began)
		s.record(f, err, c)
		if w.sol != nil {
			w.sol.close()
		}
		if w.env != nil {
			if serr := w.env.stop(); serr != nil && err == nil {
				return ctx, fmt.Errorf("stopping the environment: %w", serr)
			}
		}
		return ctx, nil
	})
	w.registerEnvSteps(sc)
	w.registerAPISteps(sc)
	w.registerIPMISteps(sc)
	w.registerDeploySteps(sc)
	w.registerGophercloudSteps(sc)
	w.registerFaultSteps(sc)
	w.registerAgentSteps(sc)
	w.registerRedfishSteps(sc)
	w.registerRedfishDriverSteps(sc)
	w.registerVirtualMediaSteps(sc)
	w.registerPendingSteps(sc)
}

// explain prints what an operator needs to understand a failed scenario,
// read before the environment is torn down: every node's state,
// last_error and timeline, the faults in force with their seeds, each
// machine's console tail, the tail of every metalbed process log, and the
// command line that reruns the scenario alone. It returns what it printed.
func (w *world) explain(ctx context.Context, f Failure, err error) (report string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n=== scenario %q (%s) failed: %v\n", w.name, f.Ref, err)
	defer func() {
		if f.Rerun != "" {
			fmt.Fprintf(&b, "rerun: %s\n", f.Rerun)
		}
		report = b.String()
		io.WriteString(w.s.out, report)
	}()
	if w.env == nil {
		fmt.Fprintf(&b, "(no environment was started)\n")
		return
	}
	fmt.Fprintf(&b, "state directory: %s\n", w.env.dir)
	if w.env.timelineURL != "" {
		fmt.Fprintf(&b, "replay the timeline in a browser: metalbed web --replay %s\n",
			filepath.Join(w.env.dir, "machines", "provisioner", "timeline.jsonl"))
	}
	names := make([]string, 0, len(w.nodes))
	for n := range w.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var node apiNode
		if _, err := w.getNode(ctx, n, &node); err != nil {
			fmt.Fprintf(&b, "node %s: cannot read it from the API: %v\n", n, err)
			continue
		}
		fmt.Fprintf(&b, "node %s (%s): provision_state=%q target_provision_state=%v power_state=%v target_power_state=%v\n  last_error: %v\n",
			n, node.UUID, node.ProvisionState, node.TargetProvisionState, node.PowerState, node.TargetPowerState, node.LastError)
		if w.env.timelineURL != "" {
			tl, err := w.timeline(ctx, n)
			if err != nil {
				fmt.Fprintf(&b, "  timeline: %v\n", err)
				continue
			}
			fmt.Fprintf(&b, "  timeline (last %d of %d entries):\n", min(len(tl), timelineShown), len(tl))
			for _, e := range tl[max(len(tl)-timelineShown, 0):] {
				fmt.Fprintf(&b, "    %s %-8s %-32s %s\n", e.Time.Format("15:04:05.000"), e.Source, e.Kind, e.Detail)
			}
		}
	}
	b.WriteString(w.faultsInForce(ctx))
	machines := make([]string, 0, len(w.env.machine))
	for m := range w.env.machine {
		machines = append(machines, m)
	}
	sort.Strings(machines)
	for _, m := range machines {
		fmt.Fprintf(&b, "--- console of %s (%s), last 20 lines\n%s\n", m,
			filepath.Base(filepath.Dir(w.env.machine[m].ConsoleLog))+"/console.log", w.env.consoleTail(m, 20))
	}
	b.WriteString(w.env.logs(30))
	return "" // the deferred function sets report
}

// timelineShown is how many of a node's last timeline entries a failure
// report prints: a whole deploy with its faults fits.
const timelineShown = 150

// Environment steps.
func (w *world) registerEnvSteps(sc *godog.ScenarioContext) {
	sc.Given(`^a metalbed environment with (\d+) machines?$`, func(ctx context.Context, n int) error {
		return w.start(ctx, envSpec{Machines: n})
	})
	sc.Given(`^a metalbed environment with (\d+) (bios|uefi) machines?$`, func(ctx context.Context, n int, mode string) error {
		return w.start(ctx, envSpec{Machines: n, BootMode: mode})
	})
	sc.Given(`^a metalbed environment with (\d+) machines? and a power sync every (\d+) seconds?$`, func(ctx context.Context, n, secs int) error {
		return w.start(ctx, envSpec{Machines: n, PowerSync: time.Duration(secs) * time.Second})
	})
	sc.Given(`^a metalbed environment from the topology:$`, func(ctx context.Context, doc *godog.DocString) error {
		return w.start(ctx, envSpec{Topology: doc.Content})
	})
	sc.Given(`^the provisioner is running$`, func(ctx context.Context) error {
		return w.start(ctx, envSpec{})
	})
}

func (w *world) start(ctx context.Context, spec envSpec) error {
	if w.env != nil {
		return fmt.Errorf("an environment is already running in this scenario")
	}
	e, err := startEnv(ctx, w.s.bin, w.dir, spec)
	if err != nil {
		return err
	}
	w.env = e
	return nil
}

// needEnv fails a step that comes before any environment step.
func (w *world) needEnv() error {
	if w.env == nil {
		return fmt.Errorf("no environment: start with \"Given a metalbed environment with N machines\"")
	}
	return nil
}
