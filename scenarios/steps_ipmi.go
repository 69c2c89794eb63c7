package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cucumber/godog"
)

// cmdResult is one run of an interop tool.
type cmdResult struct {
	line string // the command line, for messages
	out  string // stdout and stderr
	err  error
}

// ipmitoolTimeout bounds one ipmitool run (it retries a lost session itself).
const ipmitoolTimeout = 30 * time.Second

// ipmitool runs ipmitool against machine's BMC. args are the operator's
// arguments; interface, host, port and the inventory's credentials are added
// unless args give their own -I, -U or -P.
func (w *world) ipmitool(ctx context.Context, machine string, args ...string) (*cmdResult, error) {
	if err := w.needEnv(); err != nil {
		return nil, err
	}
	m, err := w.env.machineNamed(machine)
	if err != nil {
		return nil, err
	}
	full := []string{"-H", m.BMC.Address, "-p", strconv.Itoa(m.BMC.Port)}
	if !slices.Contains(args, "-I") {
		full = append(full, "-I", "lanplus")
	}
	if !slices.Contains(args, "-U") {
		full = append(full, "-U", m.BMC.Username)
	}
	if !slices.Contains(args, "-P") {
		full = append(full, "-P", m.BMC.Password)
	}
	full = append(full, args...)
	return w.run(ctx, ipmitoolTimeout, w.s.tools["ipmitool"], full...), nil
}

func (w *world) run(ctx context.Context, timeout time.Duration, bin string, args ...string) *cmdResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	line := bin + " " + strings.Join(args, " ")
	return &cmdResult{line: line, out: string(out), err: err}
}

// mustIPMI runs ipmitool and fails on a non-zero exit.
func (w *world) mustIPMI(ctx context.Context, machine string, args ...string) (string, error) {
	r, err := w.ipmitool(ctx, machine, args...)
	if err != nil {
		return "", err
	}
	if r.err != nil {
		return r.out, fmt.Errorf("%s: %v\n%s", r.line, r.err, r.out)
	}
	return r.out, nil
}

var bootParamData = regexp.MustCompile(`Boot parameter data: ([0-9a-fA-F]+)`)

// bootFlags reads parameter 5 with `chassis bootparam get 5` and returns
// its data bytes as ipmitool prints them, and the whole output.
func (w *world) bootFlags(ctx context.Context, machine string) (string, string, error) {
	out, err := w.mustIPMI(ctx, machine, "chassis", "bootparam", "get", "5")
	if err != nil {
		return "", out, err
	}
	m := bootParamData.FindStringSubmatch(out)
	if m == nil {
		return "", out, fmt.Errorf("no \"Boot parameter data\" in ipmitool's output:\n%s", out)
	}
	return strings.ToLower(m[1]), out, nil
}

func (w *world) registerIPMISteps(sc *godog.ScenarioContext) {
	sc.Step(`^I run ipmitool "([^"]*)" against the BMC of machine "([^"]*)"$`, func(ctx context.Context, args, machine string) error {
		r, err := w.ipmitool(ctx, machine, strings.Fields(args)...)
		w.lastCmd = r
		return err
	})
	sc.Step(`^ipmitool "([^"]*)" succeeds against the BMC of machine "([^"]*)"$`, func(ctx context.Context, args, machine string) error {
		out, err := w.mustIPMI(ctx, machine, strings.Fields(args)...)
		w.lastCmd = &cmdResult{out: out}
		return err
	})
	sc.Step(`^the command succeeds$`, func() error {
		if w.lastCmd == nil {
			return fmt.Errorf("no command was run")
		}
		if w.lastCmd.err != nil {
			return fmt.Errorf("%s: %v\n%s", w.lastCmd.line, w.lastCmd.err, w.lastCmd.out)
		}
		return nil
	})
	sc.Step(`^the command fails$`, func() error {
		if w.lastCmd == nil {
			return fmt.Errorf("no command was run")
		}
		var ee *exec.ExitError
		if !errors.As(w.lastCmd.err, &ee) {
			return fmt.Errorf("%s: want a non-zero exit, got %v\n%s", w.lastCmd.line, w.lastCmd.err, w.lastCmd.out)
		}
		return nil
	})
	sc.Step(`^its output (?:contains|says) "([^"]*)"$`, func(text string) error {
		if w.lastCmd == nil {
			return fmt.Errorf("no command was run")
		}
		if !strings.Contains(w.lastCmd.out, text) {
			return fmt.Errorf("output does not contain %q:\n%s", text, w.lastCmd.out)
		}
		return nil
	})
	sc.Step(`^its output does not contain "([^"]*)"$`, func(text string) error {
		if w.lastCmd == nil {
			return fmt.Errorf("no command was run")
		}
		if strings.Contains(w.lastCmd.out, text) {
			return fmt.Errorf("output contains %q:\n%s", text, w.lastCmd.out)
		}
		return nil
	})
	sc.Step(`^machine "([^"]*)" has BMC credentials "([^"]*)" / "([^"]*)" and boot mode "([^"]*)"$`, func(name, user, pass, mode string) error {
		if err := w.needEnv(); err != nil {
			return err
		}
		m, err := w.env.machineNamed(name)
		if err != nil {
			return err
		}
		if m.BMC.Username != user || m.BMC.Password != pass || m.BootMode != mode {
			return fmt.Errorf("inventory has %s with BMC %s / %s and boot mode %s, want %s / %s and %s",
				name, m.BMC.Username, m.BMC.Password, m.BootMode, user, pass, mode)
		}
		return nil
	})
	sc.Step(`^the BMC of machine "([^"]*)" reports chassis power (on|off)$`, func(ctx context.Context, machine, want string) error {
		return poll(ctx, 20*time.Second, fmt.Sprintf("the BMC of %s to report power %s", machine, want), func() (bool, string, error) {
			out, err := w.mustIPMI(ctx, machine, "chassis", "power", "status")
			if err != nil {
				return false, "", err
			}
			return strings.Contains(out, "Chassis Power is "+want), strings.TrimSpace(out), nil
		})
	})
	sc.Step(`^machine "([^"]*)" is powered (on|off) through its BMC$`, func(ctx context.Context, machine, state string) error {
		if _, err := w.mustIPMI(ctx, machine, "chassis", "power", state); err != nil {
			return err
		}
		return poll(ctx, 20*time.Second, fmt.Sprintf("%s to power %s", machine, state), func() (bool, string, error) {
			out, err := w.mustIPMI(ctx, machine, "chassis", "power", "status")
			if err != nil {
				return false, "", err
			}
			return strings.Contains(out, "Chassis Power is "+state), strings.TrimSpace(out), nil
		})
	})
	sc.Step(`^the BMC of machine "([^"]*)" holds boot flags "([0-9a-f]{10})"$`, func(ctx context.Context, machine, want string) error {
		return poll(ctx, 30*time.Second, fmt.Sprintf("the BMC of %s to hold boot flags %s", machine, want), func() (bool, string, error) {
			got, out, err := w.bootFlags(ctx, machine)
			if err != nil {
				return false, "", err
			}
			w.lastCmd = &cmdResult{out: out}
			return got == want, got, nil
		})
	})
	sc.Step(`^"chassis bootparam get 5" on machine "([^"]*)" shows:$`, func(ctx context.Context, machine string, doc *godog.DocString) error {
		_, out, err := w.bootFlags(ctx, machine)
		if err != nil {
			return err
		}
		w.lastCmd = &cmdResult{out: out}
		for _, line := range strings.Split(doc.Content, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.Contains(out, line) {
				return fmt.Errorf("bootparam get 5 does not show %q:\n%s", line, out)
			}
		}
		return nil
	})
	sc.Step(`^the console of machine "([^"]*)" shows "([^"]*)"$`, func(ctx context.Context, machine, text string) error {
		return w.consoleShows(ctx, machine, text, 1)
	})
	sc.Step(`^the console of machine "([^"]*)" shows "([^"]*)" (\d+) times$`, func(ctx context.Context, machine, text string, n int) error {
		return w.consoleShows(ctx, machine, text, n)
	})
	sc.Step(`^the system event log of machine "([^"]*)" records "([^"]*)"$`, func(ctx context.Context, machine, text string) error {
		return poll(ctx, 20*time.Second, fmt.Sprintf("the SEL of %s to record %q", machine, text), func() (bool, string, error) {
			out, err := w.mustIPMI(ctx, machine, "sel", "list")
			if err != nil {
				return false, "", err
			}
			w.lastCmd = &cmdResult{out: out}
			return strings.Contains(out, text), lastLines(out, 5), nil
		})
	})

	// Serial over LAN.
	sc.Step(`^I attach to the serial console of machine "([^"]*)" with cipher suite (\d+)$`, func(ctx context.Context, machine string, cs int) error {
		if w.sol != nil {
			return fmt.Errorf("a serial console is already attached")
		}
		m, err := w.env.machineNamed(machine)
		if err != nil {
			return err
		}
		s, err := startSOL(ctx, w.s.tools["ipmitool"], "-I", "lanplus", "-C", strconv.Itoa(cs), "-H", m.BMC.Address,
			"-p", strconv.Itoa(m.BMC.Port), "-U", m.BMC.Username, "-P", m.BMC.Password, "sol", "activate")
		if err != nil {
			return err
		}
		w.sol = s
		return poll(ctx, 20*time.Second, "ipmitool sol activate to connect", func() (bool, string, error) {
			out := s.output()
			if s.exited() {
				return false, out, fmt.Errorf("ipmitool sol activate exited: %s", out)
			}
			return strings.Contains(out, "SOL Session operational"), out, nil
		})
	})
	sc.Step(`^the serial console shows "([^"]*)"$`, func(ctx context.Context, text string) error {
		if w.sol == nil {
			return fmt.Errorf("no serial console attached")
		}
		return poll(ctx, 30*time.Second, fmt.Sprintf("the serial console to show %q", text), func() (bool, string, error) {
			out := w.sol.output()
			return strings.Contains(out, text), lastLines(out, 5), nil
		})
	})
	sc.Step(`^I leave the serial console with "~\."$`, func(ctx context.Context) error {
		if w.sol == nil {
			return fmt.Errorf("no serial console attached")
		}
		return w.sol.leave(ctx)
	})

	// The baremetal CLI (python3-ironicclient), as an operator runs it.
	sc.Step(`^I run "baremetal ([^"]*)"$`, func(ctx context.Context, args string) error {
		if err := w.needEnv(); err != nil {
			return err
		}
		full := append([]string{"--os-endpoint", w.env.apiURL, "--os-auth-type", "none"}, strings.Fields(w.expandMachine(args))...)
		w.lastCmd = w.run(ctx, 60*time.Second, w.s.tools["baremetal"], full...)
		return nil
	})
}

// expandMachine replaces {node-0.bmc_port}, {node-0.mac} and {node-0} in a
// command line with the inventory's values and the node's UUID.
func (w *world) expandMachine(s string) string {
	if w.env == nil {
		return s
	}
	for name, m := range w.env.machine {
		s = strings.ReplaceAll(s, "{"+name+".bmc_address}", m.BMC.Address)
		s = strings.ReplaceAll(s, "{"+name+".bmc_port}", strconv.Itoa(m.BMC.Port))
		s = strings.ReplaceAll(s, "{"+name+".bmc_username}", m.BMC.Username)
		s = strings.ReplaceAll(s, "{"+name+".bmc_password}", m.BMC.Password)
		if len(m.MACs) > 0 {
			s = strings.ReplaceAll(s, "{"+name+".mac}", m.MACs[0])
		}
	}
	return w.expand(s)
}

func (w *world) consoleShows(ctx context.Context, machine, text string, n int) error {
	return w.consoleShowsWithin(ctx, machine, text, n, 30*time.Second)
}

// consoleShowsWithin waits up to d for text to appear n times on a
// machine's console.
func (w *world) consoleShowsWithin(ctx context.Context, machine, text string, n int, d time.Duration) error {
	if err := w.needEnv(); err != nil {
		return err
	}
	if _, err := w.env.machineNamed(machine); err != nil {
		return err
	}
	return poll(ctx, d, fmt.Sprintf("the console of %s to show %q %d time(s)", machine, text, n), func() (bool, string, error) {
		tail := w.env.consoleTail(machine, 1000)
		c := strings.Count(tail, text)
		return c >= n, fmt.Sprintf("%d time(s); console ends %q", c, lastLines(tail, 3)), nil
	})
}

// solSession is a running `ipmitool sol activate` fed through a pipe.
type solSession struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *solSession) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *solSession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *solSession) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func startSOL(ctx context.Context, bin string, args ...string) (*solSession, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &solSession{cancel: cancel, done: make(chan struct{})}
	// ipmitool's stdout is a pipe here, so stdio would hold the console back
	// until exit; stdbuf (coreutils) makes it stream as on a terminal.
	if stdbuf, err := exec.LookPath("stdbuf"); err == nil {
		args = append([]string{"-o0", bin}, args...)
		bin = stdbuf
	}
	s.cmd = exec.CommandContext(ctx, bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s, s
	s.cmd.WaitDelay = 5 * time.Second
	in, err := s.cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	s.stdin = in
	if err := s.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("ipmitool sol activate: %w", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// leave types ipmitool's escape "~." at the start of a line and waits for
// ipmitool to exit on its own.
func (s *solSession) leave(ctx context.Context) error {
	if _, err := io.WriteString(s.stdin, "\n~.\n"); err != nil {
		return fmt.Errorf("typing ~.: %w", err)
	}
	select {
	case <-s.done:
		if !s.cmd.ProcessState.Success() {
			return fmt.Errorf("ipmitool sol activate exited with %v:\n%s", s.cmd.ProcessState, s.output())
		}
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("ipmitool did not leave the serial console after ~.:\n%s", s.output())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close ends the session (the process dies with its context) and waits.
func (s *solSession) close() {
	s.stdin.Close()
	s.cancel()
	<-s.done
}
