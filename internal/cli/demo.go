package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/testbed"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/web"
)

// runDemo brings up the demo's testbed (testbed.DemoNodes), deploys every
// machine at once through the API and undeploys them, printing progress,
// a phase table and a summary.
func runDemo(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("demo", s)
	stateDir := fs.String("state-dir", "", "state directory (default: a temporary one, removed afterwards)")
	logLevel := fs.String("log-level", "error", "log level on stderr: debug, info, warn, error")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the deploys have not finished by then")
	undeploy := fs.Bool("undeploy", true, "undeploy the nodes back to available at the end")
	backend := fs.String("backend", "sim", "the machines: sim (simulated, in this process) or libvirt (real VMs: root, libvirtd running, a metalbed built with -tags libvirt_dlopen)")
	ramdiskDir := fs.String("ramdisk-dir", "", "with --backend libvirt: `DIR` holding the deploy kernel and ramdisk (from metalbed ramdisk build --out DIR); default: built from the source tree in the working directory into the state directory")
	webOn := fs.Bool("web", false, "serve the web dashboard on --web-addr while the demo runs, and keep serving after the deploys until interrupted")
	webAddr := fs.String("web-addr", web.DefaultAddr, "with --web: HOST:PORT of the dashboard (port 0: a free one)")
	pace := timingFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(s, *logLevel)
	if err != nil {
		return err
	}
	start := time.Now()
	dir := *stateDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "metalbed-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	// Everything on free loopback ports: the demo never collides with a
	// running `metalbed up`.
	const free = "127.0.0.1:0"
	cfg := testbed.Config{
		StateDir: dir, Backend: *backend, Version: version(), Logger: log,
		Provisioner: &testbed.Provisioner{APIAddr: free, DHCPAddr: free, TFTPAddr: free, HTTPAddr: free, TimelineAddr: free,
			CallbackTimeout: *timeout, NotifyDelay: 500 * time.Millisecond},
		// The virtual media node's BMC (testbed.DemoNodes).
		Redfish: &testbed.Redfish{Addr: free},
		// A demo's VMs go with it when its state does (a temporary directory).
		Libvirt: testbed.Libvirt{RemoveVMs: *stateDir == ""},
	}
	if *webOn {
		if _, _, err := net.SplitHostPort(*webAddr); err != nil {
			return usageError("--web-addr %q: want HOST:PORT", *webAddr)
		}
		cfg.Web = &testbed.Web{Addr: *webAddr}
	}
	if cfg.Timing, err = pace(); err != nil {
		return err
	}
	kind, vm := "simulated machines", false
	switch *backend {
	case "sim":
	case "libvirt":
		if err := libvirt.Built(); err != nil {
			return fmt.Errorf("demo --backend libvirt: %w", err)
		}
		kind, vm = "libvirt VMs", true
		if cfg.Libvirt.RamdiskDir = *ramdiskDir; cfg.Libvirt.RamdiskDir == "" {
			cfg.Libvirt.RamdiskDir = filepath.Join(dir, "ramdisk")
			fmt.Fprintf(s.Out, "building the real deploy ramdisk (metalbed ramdisk build --out %s)...\n", cfg.Libvirt.RamdiskDir)
			if err := runRamdiskBuild(ctx, s, []string{"--out", cfg.Libvirt.RamdiskDir}); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		}
	default:
		return usageError("--backend %q: want sim or libvirt", *backend)
	}
	nodes := testbed.DemoNodes(vm)
	cfg.Machines = testbed.DemoMachines(nodes, vm)
	tb, err := testbed.New(cfg)
	if err != nil {
		return err
	}
	// The testbed serves in the background; stop ends it when the demo is
	// over.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- tb.Serve(runCtx) }()
	serveErr := func() error {
		stop()
		return <-done
	}
	select {
	case <-tb.Started():
	case err := <-done:
		return errors.Join(err, ctx.Err())
	}
	fmt.Fprintf(s.Out, "metalbed demo: %d %s, IPMI BMCs on %s, and the provisioner (state in %s)\n", len(nodes), kind, addrSummary(tb.Inventory()), dir)
	if u := tb.WebURL(); u != "" {
		fmt.Fprintf(s.Out, "web dashboard %s (watch the deploys live there)\n", u)
	}
	fmt.Fprintf(s.Out, "building the deploy kernel and ramdisk and a partition instance image...\n")
	select {
	case <-tb.Ready():
	case err := <-done:
		return errors.Join(err, ctx.Err())
	}
	img, err := tb.BuildDemoImage(ctx)
	if err != nil {
		return errors.Join(err, serveErr())
	}
	fmt.Fprintf(s.Out, "instance image %s (%d MiB, sha256 %s…, root %s), served at %s\n",
		filepath.Base(img.Built.Path), img.Built.Size>>20, img.Built.SHA256[:12], img.Built.RootUUID, img.URL)
	api := tb.APIURL()
	fmt.Fprintf(s.Out, "provisioner API %s (try: OS_AUTH_TYPE=none OS_ENDPOINT=%s baremetal node list)\n\n", api, api)

	dctx, cancel := context.WithTimeout(runCtx, *timeout)
	defer cancel()
	bootIface := "ipxe" // QEMU's NIC ROMs are iPXE
	if !vm {
		if bootIface = testbed.DefaultBootInterface(); bootIface == "ipxe" {
			fmt.Fprintf(s.Out, "boot interface ipxe: Debian's pxelinux/ipxe boot programs are not installed; the simulated NICs' iPXE ROMs boot from the HTTP script alone\n")
		}
	}
	tl := tb.Timeline()
	live := &demoProgress{w: s.Out, start: time.Now(), seen: map[string]bool{}}
	unsub := tl.Subscribe(live.entry)
	results, err := tb.DeployDemo(dctx, nodes, img, bootIface, func(node, state string) { live.say(node, "state", state) })
	unsub()
	if err != nil {
		return errors.Join(err, serveErr())
	}

	fmt.Fprintln(s.Out)
	printPhaseTable(s.Out, tl, results)
	booted := 0
	for _, r := range results {
		if r.Err == nil {
			booted++
		}
	}
	if ctx.Err() != nil {
		serveErr()
		return errors.New("demo: interrupted")
	}
	if *undeploy {
		fmt.Fprintf(s.Out, "\nundeploying all %d nodes...\n", len(results))
		tb.UndeployDemo(dctx, results)
		for _, r := range results {
			if r.UndeployErr != nil {
				fmt.Fprintf(s.Out, "  %-7s undeploy failed: %v\n", r.Name, r.UndeployErr)
			} else {
				cleaned := "not cleaned"
				if r.Wiped {
					cleaned = "cleaned: its ramdisk booted again and wiped the partition tables"
				}
				fmt.Fprintf(s.Out, "  %-7s available again in %.1fs, %s\n", r.Name, r.Undeployed.Seconds(), cleaned)
			}
		}
	}
	if u := tb.WebURL(); u != "" && ctx.Err() == nil {
		fmt.Fprintf(s.Out, "\nthe web dashboard keeps serving at %s until interrupted (Ctrl-C)\n", u)
		<-ctx.Done()
	}
	if err := serveErr(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(s.Out, "\n%d of %d instances booted in %.1fs.\n", booted, len(results), time.Since(start).Seconds())
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Name, r.Err))
		}
		if r.UndeployErr != nil {
			errs = append(errs, fmt.Errorf("%s: undeploy: %w", r.Name, r.UndeployErr))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("demo: %w", errors.Join(errs...))
	}
	protocols := "IPMI, Redfish (virtual media), DHCP, TFTP, iSCSI and HTTP"
	if bootIface == "ipxe" {
		protocols = "IPMI, DHCP, HTTP (iPXE) and iSCSI"
	}
	where := "on loopback"
	if vm {
		where = "in the boot network " + netip.MustParsePrefix(testbed.DefaultBootNetwork).Masked().String()
	}
	fmt.Fprintf(s.Out, "every node went enroll → manageable → available → active over %s %s, "+
		"its instance booted, and it was undeployed back to available.\n", protocols, where)
	return nil
}

// demoPhases are the columns of the final table: the first timeline
// entry of one of these kinds after the deploy request. Titles are short
// so that the table fits tableWidth columns.
var demoPhases = []struct {
	title string
	kinds []events.Kind
}{
	{"DHCP", []events.Kind{events.DHCPAck}},
	{"TFTP/CD", []events.Kind{events.TFTPFile, events.BMCRedfishMedia}},
	{"RAMDISK", []events.Kind{events.RamdiskUp, events.AgentUp}},
	// The ramdisk reached: the agent looks its node up and heartbeats,
	// the bash ramdisk's disk is logged in to over iSCSI.
	{"CALLBACK", []events.Kind{events.AgentLookup, events.AgentHeartbeat, events.ISCSILogin, events.ConductorISCSILogin}},
	{"WRITTEN", []events.Kind{events.ConductorImageWritten, events.AgentImageWritten}},
	{"BOOTLDR", []events.Kind{events.RamdiskBootloader, events.AgentBootloader}},
	{"REBOOT", []events.Kind{events.ConductorReboot}},
	{"ACTIVE", []events.Kind{events.ConductorActive}},
	{"BOOTED", []events.Kind{events.InstanceBooted}},
}

// tableWidth is the widest line the demo's summary prints, in runes: it
// fits a 120-column terminal.
const tableWidth = 120

// phaseOf names the phase an entry marks, "" for none.
func phaseOf(kind events.Kind) string {
	for _, p := range demoPhases {
		for _, k := range p.kinds {
			if k == kind {
				return p.title
			}
		}
	}
	return ""
}

// printPhaseTable prints, per node, when each phase was first reached
// after its deploy request (in seconds), then each failure on a line of
// its own; no line is wider than tableWidth.
func printPhaseTable(w io.Writer, tl *events.Timeline, results []testbed.DemoResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"NODE", "DEPLOY"}
	for _, p := range demoPhases {
		head = append(head, p.title)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\tRESULT")
	for _, r := range results {
		row := []string{r.Name, shorten(r.What, 24)}
		first := firstPhases(tl, r)
		for _, p := range demoPhases {
			row = append(row, seconds(first, p.title, r.DeployStart))
		}
		result := "booted"
		if r.Err != nil {
			result = "FAILED"
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t"+result)
	}
	tw.Flush()
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintln(w, shorten(fmt.Sprintf("%s FAILED: %v", r.Name, r.Err), tableWidth))
		}
	}
	fmt.Fprintln(w, "(seconds since each node's deploy request; CALLBACK: the agent's lookup or the iSCSI login;")
	fmt.Fprintln(w, " a node's whole timeline: its entries in timeline.jsonl, or `metalbed timeline NODE` against `metalbed up`)")
}

// firstPhases is when r's node first reached each phase after its deploy
// request.
func firstPhases(tl *events.Timeline, r testbed.DemoResult) map[string]time.Time {
	first := map[string]time.Time{}
	if r.DeployStart.IsZero() {
		return first
	}
	for _, e := range tl.Node(r.Name) {
		if e.Time.Before(r.DeployStart) {
			continue
		}
		if ph := phaseOf(e.Kind); ph != "" {
			if t, ok := first[ph]; !ok || e.Time.Before(t) {
				first[ph] = e.Time
			}
		}
	}
	return first
}

// seconds is the table cell of phase: the seconds from start to its time
// in first, at most 6 runes below 10 000 s; "-" when not reached.
func seconds(first map[string]time.Time, phase string, start time.Time) string {
	t, ok := first[phase]
	if !ok {
		return "-"
	}
	s := t.Sub(start).Seconds()
	if s < 100 {
		return fmt.Sprintf("%.2f", s)
	}
	return fmt.Sprintf("%.1f", s)
}

// demoProgress prints live progress lines: each node's state changes and
// the first time it reaches each phase.
type demoProgress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	seen  map[string]bool // node + phase already shown (reset per state)
}

func (p *demoProgress) say(node, what, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if what == "state" {
		// A new provision state: phases may show again (a reboot DHCPs
		// again, undeploy boots again).
		for k := range p.seen {
			if strings.HasPrefix(k, node+"\x00") {
				delete(p.seen, k)
			}
		}
		fmt.Fprintf(p.w, "  %7.2fs  %-7s → %s\n", time.Since(p.start).Seconds(), node, detail)
		return
	}
	key := node + "\x00" + what
	if p.seen[key] {
		return
	}
	p.seen[key] = true
	fmt.Fprintf(p.w, "  %7.2fs  %-7s   %-8s %s\n", time.Since(p.start).Seconds(), node, what, shorten(detail, 88))
}

// entry shows timeline entries that mark a phase.
func (p *demoProgress) entry(e events.Entry) {
	if ph := phaseOf(e.Kind); ph != "" {
		p.say(e.Node, ph, e.Detail)
	}
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
