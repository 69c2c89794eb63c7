package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/cucumber/godog"
)

// faultRule is the body of POST /v1/faults on the testbed's timeline
// endpoint (internal/fault.Rule on the wire).
type faultRule struct {
	ID          string  `json:"id,omitempty"`
	Node        string  `json:"node,omitempty"`
	Layer       string  `json:"layer"`
	Op          string  `json:"op,omitempty"`
	Action      string  `json:"action"`
	Arg         string  `json:"arg,omitempty"`
	Count       int     `json:"count,omitempty"`
	Probability float64 `json:"probability,omitempty"`
	// Delay holds the action back (JSON nanoseconds, as time.Duration).
	Delay time.Duration `json:"delay,omitempty"`
	Seed  uint64        `json:"seed"`
	Fired int           `json:"fired,omitempty"`
}

// namedFaults are the faults the features name in words, as rules of
// `metalbed up`'s fault layers (README "Injecting faults").
var namedFaults = map[string]faultRule{
	"ipmi/power not carried out":                        {Op: "power", Action: "ignore"},
	"ipmi/no reply":                                     {Op: "0x00/0x02", Action: "drop"},
	"ipmi/completion code 0xC0":                         {Op: "0x00/0x02", Action: "cc", Arg: "0xc0"},
	"ipmi/completion code 0xC3":                         {Op: "0x00/0x02", Action: "cc", Arg: "0xc3"},
	"ipmi/completion code 0xD2":                         {Op: "0x00/0x02", Action: "cc", Arg: "0xd2"},
	"iscsi/login refused":                               {Op: "login", Action: "refuse-login"},
	"iscsi/connection reset after 1 MiB":                {Op: "connect", Action: "reset-after", Arg: "1048576"},
	"iscsi/medium error":                                {Op: "write", Action: "medium-error"},
	"disk/write errors":                                 {Op: "write", Action: "write-error"},
	"ramdisk/pass_deploy_info error":                    {Op: "pass_deploy_info", Action: "error", Arg: "disk on fire"},
	"ramdisk/bootloader install FAILED":                 {Op: "bootloader", Action: "bootloader-failed", Arg: "grub-install: error: disk not found"},
	"ramdisk/never calls back":                          {Op: "pass_deploy_info", Action: "no-callback"},
	"dhcp/no offer":                                     {Op: "lookup", Action: "no-offer"},
	"dhcp/wrong next-server":                            {Op: "lookup", Action: "wrong-next-server", Arg: "127.0.0.254"},
	"tftp/file missing":                                 {Action: "missing"},
	"tftp/stall after 64 KiB":                           {Action: "stall", Arg: "65536"},
	"tftp/slow":                                         {Action: "slow", Arg: "200us"},
	"ipmi/late reply":                                   {Op: "0x00/0x01", Action: "delay", Delay: 3 * time.Second, Count: 1},
	"ipmi/boot flags not kept":                          {Op: "boot-flags", Action: "forget-bootflags"},
	"http/not found":                                    {Op: "{node}/{image}", Action: "status", Arg: "404"},
	"http/truncated body":                               {Op: "{node}/{image}", Action: "truncate"},
	"http/wrong checksum":                               {Op: "{node}/{image}", Action: "corrupt", Arg: "4096"},
	"disk/too small":                                    {Op: "size", Action: "too-small", Arg: "536870912"},
	"redfish/503 on the next action":                    {Op: "POST", Action: "status", Arg: "503", Count: 1},
	"redfish/late answers":                              {Op: "GET", Action: "delay", Delay: 2 * time.Second, Count: 1},
	"redfish/409 on power-on for 3 s after a power-off": {Op: "power-off", Action: "power-on-conflict", Arg: "3", Count: 1},
	"redfish/session expires early":                     {Op: "session", Action: "session-expire", Count: 1},
}

// addFault posts r to the testbed's fault endpoint.
func (w *world) addFault(ctx context.Context, r faultRule) (faultRule, error) {
	if err := w.needEnv(); err != nil {
		return r, err
	}
	if w.env.timelineURL == "" {
		return r, fmt.Errorf("this testbed runs without the provisioner: no fault endpoint")
	}
	body, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	var out faultRule
	return out, w.faultCall(ctx, http.MethodPost, "/v1/faults", body, &out)
}

func (w *world) faultCall(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(w.env.timelineURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (w *world) registerFaultSteps(sc *godog.ScenarioContext) {
	w.registerFaultTimeoutSteps(sc)
	w.registerFaultIPMISteps(sc)
	w.registerFaultHTTPSteps(sc)
	sc.Step(`^the fault "([^"]*)" is injected at layer "([^"]*)" for node "([^"]*)"(?: with seed (\d+))?$`,
		func(ctx context.Context, name, layer, node, seed string) error {
			r, ok := namedFaults[layer+"/"+name]
			if !ok {
				return pending(fmt.Sprintf("fault %q at layer %q is not wired into `metalbed up` yet", name, layer))
			}
			r.Layer, r.Node = layer, node
			// The HTTP faults break the node's image on the HTTP boot server.
			r.Op = strings.ReplaceAll(r.Op, "{node}", node)
			if strings.Contains(r.Op, "{image}") {
				if w.image == nil {
					return fmt.Errorf("fault %q needs node %s's image chosen first", name, node)
				}
				r.Op = strings.ReplaceAll(r.Op, "{image}", filepath.Base(w.image.path))
			}
			fmt.Sscan(seed, &r.Seed)
			_, err := w.addFault(ctx, r)
			return err
		})
	// A probabilistic IPMI fault: each Get Chassis Status fails with 0xC3
	// with the given probability, drawn from the rule's seeded source.
	sc.Step(`^node "([^"]*)" answers Get Chassis Status with 0xC3 with probability ([0-9.]+) and seed (\d+)$`,
		func(ctx context.Context, node string, p float64, seed uint64) error {
			_, err := w.addFault(ctx, faultRule{Node: node, Layer: "ipmi", Op: "0x00/0x01", Action: "cc", Arg: "0xc3", Probability: p, Seed: seed})
			return err
		})
	sc.Step(`^every fault is cleared$`, func(ctx context.Context) error {
		if err := w.needEnv(); err != nil {
			return err
		}
		return w.faultCall(ctx, http.MethodDelete, "/v1/faults", nil, nil)
	})
	sc.Step(`^I ask the power status of machine "([^"]*)" (\d+) times$`, func(ctx context.Context, machine string, n int) error {
		pattern, err := w.powerStatusPattern(ctx, machine, n)
		w.faultRuns = append(w.faultRuns, pattern)
		return err
	})
	sc.Step(`^some of those calls failed and some succeeded$`, func() error {
		if len(w.faultRuns) == 0 {
			return fmt.Errorf("no calls made")
		}
		last := w.faultRuns[len(w.faultRuns)-1]
		if !strings.Contains(last, "x") || !strings.Contains(last, ".") {
			return fmt.Errorf("want a mix of failed (x) and passed (.) calls, got %s", last)
		}
		return nil
	})
	sc.Step(`^the same calls failed both times$`, func() error {
		if len(w.faultRuns) < 2 {
			return fmt.Errorf("want two runs of calls, have %d", len(w.faultRuns))
		}
		a, b := w.faultRuns[len(w.faultRuns)-2], w.faultRuns[len(w.faultRuns)-1]
		if a != b {
			return fmt.Errorf("same seed, different failures: %s then %s (x = failed)", a, b)
		}
		return nil
	})
}

// powerStatusPattern runs `ipmitool chassis power status` n times and
// returns one character a call: "." passed, "x" failed with the injected
// completion code 0xC3 ("Timeout").
func (w *world) powerStatusPattern(ctx context.Context, machine string, n int) (string, error) {
	var b strings.Builder
	for range n {
		res, err := w.ipmitool(ctx, machine, "-R", "1", "-N", "1", "chassis", "power", "status")
		if err != nil {
			return b.String(), err
		}
		switch {
		case res.err == nil && strings.Contains(res.out, "Chassis Power is"):
			b.WriteByte('.')
		case res.err != nil && strings.Contains(res.out, "failed: Timeout"):
			b.WriteByte('x')
		default:
			return b.String(), fmt.Errorf("%s: %v\n%s", res.line, res.err, res.out)
		}
	}
	return b.String(), nil
}
