package scenarios

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cucumber/godog"
)

// Steps of features/agent.feature and features/conductor.feature: deploys
// through metalbed's IPA-compatible agent (the direct deploy interface)
// and the agent and conductor faults of `metalbed up` (layers agent and
// conductor, testbed/faults.go).

// restartTimeout bounds a conductor restart after a kill fault.
const restartTimeout = 60 * time.Second

func (w *world) registerAgentSteps(sc *godog.ScenarioContext) {
	sc.Given(`^an agent testbed with (\d+) (bios|uefi) machines?(?: and a deploy callback timeout of (\d+) seconds)?$`,
		func(ctx context.Context, n int, mode string, timeout string) error {
			var extra []string
			if timeout != "" {
				extra = append(extra, "--deploy-callback-timeout", timeout+"s")
			}
			return w.startAgentTestbed(ctx, n, mode, extra)
		})
	sc.Step(`^the agent of machine "([^"]*)" answers its lookup with 404(?: (\d+) times)?$`, func(ctx context.Context, m, times string) error {
		// One lookup round asks the modern and then the legacy endpoint.
		return w.injectAgentFault(ctx, faultRule{Node: m, Layer: "agent", Op: "lookup", Action: "lookup-404", Count: 2 * atoiOr(times, 0)})
	})
	sc.Step(`^the agent of machine "([^"]*)" stops heartbeating$`, func(ctx context.Context, m string) error {
		return w.injectAgentFault(ctx, faultRule{Node: m, Layer: "agent", Op: "heartbeat", Action: "heartbeat-stop"})
	})
	sc.Step(`^the agent of machine "([^"]*)" fails the command "([^"]*)" with "([^"]*)"$`, func(ctx context.Context, m, cmd, msg string) error {
		return w.injectAgentFault(ctx, faultRule{Node: m, Layer: "agent", Op: cmd, Action: "command-failed", Arg: msg})
	})
	sc.Step(`^the agent of machine "([^"]*)" answers the command "([^"]*)" with 409 busy once$`, func(ctx context.Context, m, cmd string) error {
		return w.injectAgentFault(ctx, faultRule{Node: m, Layer: "agent", Op: cmd, Action: "busy", Count: 1})
	})
	sc.Step(`^the conductor is to be killed at the "([^"]*)" step of node "([^"]*)"$`, func(ctx context.Context, step, m string) error {
		return w.injectAgentFault(ctx, faultRule{Node: m, Layer: "conductor", Op: step, Action: "kill", Count: 1})
	})
	sc.Step(`^the conductor is killed and restarted$`, func(ctx context.Context) error {
		if err := w.injectAgentFault(ctx, faultRule{Layer: "conductor", Op: "now", Action: "kill", Count: 1}); err != nil {
			return err
		}
		return w.conductorRestarted(ctx)
	})
	sc.Step(`^the conductor restarts$`, w.conductorRestarted)
	sc.Step(`^node "([^"]*)" has instance_info "([^"]*)" set to "([^"]*)"$`, func(ctx context.Context, name, key, value string) error {
		return w.patchInstanceInfo(ctx, name, map[string]any{key: value})
	})
}

func atoiOr(s string, def int) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return def
	}
	return n
}

// startAgentTestbed starts a deploy testbed with extra `metalbed up` flags
// and switches every node to the direct deploy interface.
func (w *world) startAgentTestbed(ctx context.Context, n int, mode string, extra []string) error {
	if err := w.startTestbed(ctx, envSpec{Machines: n, BootMode: mode, Flags: extra}); err != nil {
		return err
	}
	for name, uuid := range w.nodes {
		if _, err := w.must(ctx, http.StatusOK, "PATCH", "/v1/nodes/"+uuid,
			[]map[string]any{{"op": "replace", "path": "/deploy_interface", "value": "direct"}}); err != nil {
			return fmt.Errorf("node %s: deploy_interface direct: %w", name, err)
		}
	}
	return nil
}

// injectAgentFault posts a rule to the testbed's fault endpoint.
func (w *world) injectAgentFault(ctx context.Context, r faultRule) error {
	r.Seed = cmp.Or(r.Seed, 1)
	_, err := w.addFault(ctx, r)
	return err
}

// conductorRestarted waits until a killed conductor is back: every node's
// timeline shows conductor.restart and the API answers again.
func (w *world) conductorRestarted(ctx context.Context) error {
	if err := w.needEnv(); err != nil {
		return err
	}
	for name := range w.nodes {
		err := poll(ctx, restartTimeout, fmt.Sprintf("the timeline of %s to show the conductor's restart", name), func() (bool, string, error) {
			tl, err := w.timeline(ctx, name)
			if err != nil {
				return false, "", err
			}
			for _, e := range tl {
				if e.Kind == "conductor.restart" {
					return true, "", nil
				}
			}
			return false, fmt.Sprintf("%d entries", len(tl)), nil
		})
		if err != nil {
			return err
		}
	}
	return poll(ctx, restartTimeout, "the API to answer after the conductor's restart", func() (bool, string, error) {
		r, err := w.call(ctx, "GET", "/v1/nodes", apiVersion, nil)
		if err != nil {
			return false, err.Error(), nil
		}
		return r.status == http.StatusOK, fmt.Sprintf("HTTP %d", r.status), nil
	})
}
