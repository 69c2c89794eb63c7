package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/vms"
)

// demoNodes is how many machines the demo brings up.
const demoNodes = 3

func runDemo(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("demo", s)
	stateDir := fs.String("state-dir", "", "state directory (default: a temporary one, removed afterwards)")
	logLevel := fs.String("log-level", "error", "log level on stderr: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(s, *logLevel)
	if err != nil {
		return err
	}
	dir := *stateDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "metalbed-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	st := upSettings{nodes: demoNodes, bmcAddress: defaultBMCAddress, username: defaultUsername,
		password: defaultPassword, diskBytes: 1 << 30, bootMode: vms.BIOS}
	plans, err := plan(st, nil)
	if err != nil {
		return err
	}
	plans[1].bootMode = vms.UEFI // show both firmware flavours
	f, err := startFleet(ctx, plans, dir, log, nil)
	if err != nil {
		return err
	}
	defer f.close()

	fmt.Fprintf(s.Out, "metalbed demo: %d simulated machines with IPMI v2.0 BMCs on %s (state in %s)\n", len(f.nodes), f.addrSummary(), dir)
	fmt.Fprintf(s.Out, "driving each BMC over the wire (lanplus, cipher suite 17) as Ironic does before a deploy:\n\n")

	serveCtx, stopServe := context.WithCancel(ctx)
	serveErr := make(chan error, 1)
	go func() { serveErr <- f.serve(serveCtx) }()

	p := &progress{w: s.Out, start: time.Now()}
	timelines := make([][]demoStep, len(f.nodes))
	g, gctx := errgroup.WithContext(ctx)
	for i, n := range f.nodes {
		g.Go(func() error {
			tl, err := demoNode(gctx, n, p)
			timelines[i] = tl
			return err
		})
	}
	runErr := g.Wait()
	stopServe()
	if err := <-serveErr; err != nil && runErr == nil {
		runErr = err
	}

	fmt.Fprintln(s.Out)
	printTimelines(s.Out, f, timelines)
	fmt.Fprintln(s.Out)
	if runErr != nil {
		return fmt.Errorf("demo: %w", runErr)
	}
	fmt.Fprintf(s.Out, "every BMC step succeeded: %d machines powered on from their BMCs, tried their one-time PXE boot "+
		"(the one-time flag was consumed by that boot) and were powered off.\n", len(f.nodes))
	fmt.Fprintf(s.Out, "not built yet: the provisioner (DHCP/TFTP/iSCSI deploy) and the PXE client in the simulated firmware, "+
		"so the machines stop at \"No bootable device.\" instead of deploying.\n")
	fmt.Fprintf(s.Out, "next: `metalbed up --nodes 3 --no-provisioner` and drive the BMCs with ipmitool -I lanplus -C 3 or 17.\n")
	return nil
}

// progress prints one live line per step, across nodes running at once.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *progress) say(node, format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "  %6.3fs  %-7s %s\n", time.Since(p.start).Seconds(), node, fmt.Sprintf(format, a...))
}

// demoStep is one row of a node's timeline.
type demoStep struct {
	name    string
	elapsed time.Duration // since the node's first step started
	took    time.Duration
	result  string
	err     error
}

// demoNode drives one BMC through Ironic's pre-deploy sequence.
func demoNode(ctx context.Context, n *fleetNode, p *progress) ([]demoStep, error) {
	name := n.plan.name
	a := n.bmcAddr()
	var steps []demoStep
	t0 := time.Now()
	step := func(label string, fn func() (string, error)) error {
		start := time.Now()
		res, err := fn()
		st := demoStep{name: label, elapsed: start.Sub(t0), took: time.Since(start), result: res, err: err}
		steps = append(steps, st)
		if err != nil {
			p.say(name, "%-34s FAILED: %v", label, err)
			return fmt.Errorf("%s: %s: %w", name, label, err)
		}
		p.say(name, "%-34s %s (%s)", label, res, st.took.Round(time.Microsecond))
		return nil
	}

	// Watch the machine itself: its events, and its console for the
	// firmware's last words.
	evs := make(chan vms.Event, 64)
	cancel := n.machine.Subscribe(func(ev vms.Event) {
		select {
		case evs <- ev:
		default:
		}
	})
	defer cancel()
	con, err := n.machine.AttachConsole(ctx)
	if err != nil {
		return steps, err
	}
	defer con.Close()
	var conMu sync.Mutex
	var conBuf strings.Builder
	go func() {
		b := make([]byte, 512)
		for {
			k, err := con.Read(b)
			conMu.Lock()
			conBuf.Write(b[:k])
			conMu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	c, err := client.NewClient(a.IP.String(), a.Port, n.plan.username, n.plan.password)
	if err != nil {
		return steps, err
	}
	c.WithInterface(client.InterfaceLanplus).WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(2 * time.Second).WithRetry(2)
	if err := step("open session (lanplus, suite 17)", func() (string, error) {
		return "ok", c.Connect(ctx)
	}); err != nil {
		return steps, err
	}
	defer c.Close(context.WithoutCancel(ctx))

	powerStatus := func() (bool, error) {
		r, err := c.GetChassisStatus(ctx)
		if err != nil {
			return false, err
		}
		return r.PowerIsOn, nil
	}
	waitPower := func(want bool) (string, error) {
		deadline := time.Now().Add(10 * time.Second)
		polls := 0
		for {
			on, err := powerStatus()
			polls++
			if err != nil {
				return "", err
			}
			if on == want {
				return fmt.Sprintf("%s after %d poll(s)", onOff(on), polls), nil
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("still %s after 10s", onOff(on))
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if err := step("power status", func() (string, error) {
		on, err := powerStatus()
		return onOff(on), err
	}); err != nil {
		return steps, err
	}
	if err := step("raw 0x00 0x08 0x03 0x08", func() (string, error) {
		_, err := c.RawCommand(ctx, types.NetFnChassisRequest, 0x08, []byte{0x03, 0x08}, "Set Boot Options: clear valid-bit timeout")
		return "boot flag timeout cleared", err
	}); err != nil {
		return steps, err
	}
	want := vms.NewBootFlags(vms.BootPXE, false, n.plan.bootMode == vms.UEFI)
	setBoot := "chassis bootdev pxe (one-time)"
	if n.plan.bootMode == vms.UEFI {
		setBoot = "raw 0x00 0x08 0x05 0xa0 0x04 0 0 0"
	}
	if err := step(setBoot, func() (string, error) {
		if n.plan.bootMode == vms.UEFI {
			_, err := c.RawCommand(ctx, types.NetFnChassisRequest, 0x08, append([]byte{0x05}, want[:]...), "Set Boot Options: boot flags")
			return "PXE, next boot only, EFI", err
		}
		err := c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false)
		return "PXE, next boot only, legacy", err
	}); err != nil {
		return steps, err
	}
	getFlags := func() (vms.BootFlags, error) {
		r, err := c.GetSystemBootOptionsParam(ctx, types.BootOptionParamSelector_BootFlags, 0, 0)
		if err != nil {
			return vms.BootFlags{}, err
		}
		if len(r.ParamData) < 5 {
			return vms.BootFlags{}, fmt.Errorf("parameter 5 is %d bytes", len(r.ParamData))
		}
		return vms.BootFlags(r.ParamData[:5]), nil
	}
	if err := step("chassis bootparam get 5", func() (string, error) {
		got, err := getFlags()
		if err != nil {
			return "", err
		}
		if got[0] != want[0] || got.Device() != vms.BootPXE {
			return "", fmt.Errorf("BMC stored % x, want % x", got[:], want[:])
		}
		return fmt.Sprintf("% x: %s, valid, one-time", got[:], got.Device()), nil
	}); err != nil {
		return steps, err
	}
	if err := step("power on", func() (string, error) {
		_, err := c.ChassisControl(ctx, chassis.ChassisControlPowerUp)
		return "accepted", err
	}); err != nil {
		return steps, err
	}
	if err := step("power status (poll until on)", func() (string, error) { return waitPower(true) }); err != nil {
		return steps, err
	}
	if err := step("machine boots (its events)", func() (string, error) {
		timeout := time.After(10 * time.Second)
		var seen []string
		for {
			select {
			case ev := <-evs:
				seen = append(seen, string(ev.Kind))
				if ev.Kind == vms.EventBootFail || ev.Kind == vms.EventBoot {
					// The console line was written before the event; give
					// the console reader a moment to catch up with it.
					var last string
					for range 50 {
						conMu.Lock()
						last = lastLine(conBuf.String())
						conMu.Unlock()
						if last != "" && (ev.Kind != vms.EventBootFail || strings.Contains(last, "No bootable device")) {
							break
						}
						time.Sleep(10 * time.Millisecond)
					}
					return fmt.Sprintf("%s: %q (console: %q)", ev.Kind, shorten(ev.Detail, 60), last), nil
				}
			case <-timeout:
				return "", fmt.Errorf("no boot outcome within 10s (events: %v)", seen)
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	}); err != nil {
		return steps, err
	}
	if err := step("bootparam get 5 (after the boot)", func() (string, error) {
		got, err := getFlags()
		if err != nil {
			return "", err
		}
		if got.Valid() {
			return "", fmt.Errorf("one-time override not consumed: % x", got[:])
		}
		return fmt.Sprintf("% x: no override (one-time flag consumed)", got[:]), nil
	}); err != nil {
		return steps, err
	}
	if err := step("power off", func() (string, error) {
		_, err := c.ChassisControl(ctx, chassis.ChassisControlPowerDown)
		return "accepted", err
	}); err != nil {
		return steps, err
	}
	if err := step("power status (poll until off)", func() (string, error) { return waitPower(false) }); err != nil {
		return steps, err
	}
	return steps, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func lastLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// printTimelines prints, per node, every step with when it started and how
// long it took.
func printTimelines(w io.Writer, f *fleet, timelines [][]demoStep) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tBMC\tSTEP\tAT\tTOOK\tRESULT")
	for i, tl := range timelines {
		n := f.nodes[i]
		for j, st := range tl {
			node, bmc := "", ""
			if j == 0 {
				node, bmc = n.plan.name, n.bmcAddr().String()
			}
			res := st.result
			if st.err != nil {
				res = "FAILED: " + st.err.Error()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t+%.3fs\t%s\t%s\n", node, bmc, st.name, st.elapsed.Seconds(), st.took.Round(time.Microsecond), shorten(res, 70))
		}
		if len(tl) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t(no step ran)\t\t\t\n", n.plan.name, n.bmcAddr())
		}
	}
	tw.Flush()
}
