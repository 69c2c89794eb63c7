package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// The demo's four machines and how each is deployed: three by the bash
// ramdisk over iSCSI, one by the agent (deploy_interface direct).
type demoNode struct {
	mode   vms.BootMode
	option string // boot_option
	deploy string // deploy_interface
	what   string
}

var demoPlan = []demoNode{
	{vms.BIOS, "netboot", "iscsi", "iSCSI deploy, netboot (bios)"},
	{vms.BIOS, "local", "iscsi", "iSCSI deploy, local boot (bios)"},
	{vms.UEFI, "local", "iscsi", "iSCSI deploy, local boot (uefi)"},
	{vms.BIOS, "local", "direct", "agent deploy, local boot (bios)"},
}

// demoPlanVM is the demo's plan on real VMs (--backend libvirt): netboot
// instances boot with the deploy ramdisk's initramfs, which mounts the
// deployed root; local-boot ones through the GRUB the ramdisk or agent
// installed. Four VMs: about what 2 cores run at once under TCG.
var demoPlanVM = []demoNode{
	{vms.BIOS, "netboot", "iscsi", "iSCSI deploy, netboot (bios, VM)"},
	{vms.UEFI, "local", "iscsi", "iSCSI deploy, local boot (uefi, VM)"},
	{vms.BIOS, "local", "direct", "agent deploy, local boot (bios, VM)"},
	{vms.BIOS, "netboot", "direct", "agent deploy, netboot (bios, VM)"},
}

// demoVMDiskBytes is a demo VM's disk: the agent, as IPA, takes no disk
// under 4 GiB.
const demoVMDiskBytes = 4 << 30

// demoDiskBytes is each demo machine's disk: room for a 1 GiB root
// partition and, in UEFI mode, the ESP.
const demoDiskBytes = 2 << 30

func runDemo(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("demo", s)
	stateDir := fs.String("state-dir", "", "state directory (default: a temporary one, removed afterwards)")
	logLevel := fs.String("log-level", "error", "log level on stderr: debug, info, warn, error")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the deploys have not finished by then")
	undeploy := fs.Bool("undeploy", true, "undeploy the nodes back to available at the end")
	backend := fs.String("backend", "sim", "the machines: sim (simulated, in this process) or libvirt (real VMs: root, libvirtd running, a metalbed built with -tags libvirt_dlopen)")
	ramdiskDir := fs.String("ramdisk-dir", "", "with --backend libvirt: the deploy kernel and ramdisk of `metalbed ramdisk build --out DIR`; default: built from the source tree in the working directory into the state directory")
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
	bc := bedConfig{
		dir: filepath.Join(dir, "provisioner"), apiAddr: free, dhcpAddr: free, dhcpRange: defaultDHCPRange,
		tftpAddr: free, httpAddr: free, timelineAddr: free, ipmiClient: "native", fastIPMI: true,
		callbackTimeout: *timeout, notifyDelay: 500 * time.Millisecond, log: log,
	}
	nodes, diskBytes, kind := demoPlan, int64(demoDiskBytes), "simulated machines"
	switch *backend {
	case "sim":
	case "libvirt":
		if err := libvirt.Built(); err != nil {
			return fmt.Errorf("demo --backend libvirt: %w", err)
		}
		nodes, diskBytes, kind = demoPlanVM, demoVMDiskBytes, "libvirt VMs"
		if bc.ramdiskDir = *ramdiskDir; bc.ramdiskDir == "" {
			bc.ramdiskDir = filepath.Join(dir, "ramdisk")
			fmt.Fprintf(s.Out, "building the real deploy ramdisk (metalbed ramdisk build --out %s)...\n", bc.ramdiskDir)
			if err := runRamdiskBuild(ctx, s, []string{"--out", bc.ramdiskDir}); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		}
		nw, err := createBootNetwork(ctx, dir, defaultBootNetwork)
		if err != nil {
			return err
		}
		defer nw.Close()
		bc.vmNet = nw
	default:
		return usageError("--backend %q: want sim or libvirt", *backend)
	}
	b, err := listenBed(bc)
	if err != nil {
		return err
	}
	defer b.close()
	st := upSettings{nodes: len(nodes), bmcAddress: defaultBMCAddress, username: defaultUsername,
		password: defaultPassword, diskBytes: diskBytes, bootMode: vms.BIOS}
	plans, err := plan(st, nil)
	if err != nil {
		return err
	}
	for i := range plans {
		plans[i].bootMode = nodes[i].mode
	}
	f, err := startFleet(ctx, plans, dir, log, nil, b.nodeHooks)
	if err != nil {
		return err
	}
	defer f.close()
	// A demo's VMs go with it when its state does (a temporary directory).
	f.removeVMs = *stateDir == ""
	fmt.Fprintf(s.Out, "metalbed demo: %d %s, IPMI BMCs on %s, and the provisioner (state in %s)\n", len(f.nodes), kind, f.addrSummary(), dir)
	fmt.Fprintf(s.Out, "building the deploy kernel and ramdisk and a partition instance image...\n")
	if err := b.prepare(ctx); err != nil {
		return err
	}
	for _, n := range f.nodes {
		defer b.watchMachine(n.machine)()
	}
	inst, err := demoInstance(ctx, b)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "instance image %s (%d MiB, sha256 %s…, root %s), served at %s\n",
		filepath.Base(inst.built.Path), inst.built.Size>>20, inst.built.SHA256[:12], inst.built.RootUUID, inst.url)

	// The machines and the provisioner serve in the background; runCtx
	// ends them when the demo is over.
	runCtx, stop := context.WithCancel(ctx)
	srv, sctx := errgroup.WithContext(runCtx)
	srv.Go(func() error { return f.serve(sctx) })
	srv.Go(func() error { return b.serve(sctx) })
	serveErr := func() error {
		stop()
		return srv.Wait()
	}
	select {
	case <-b.svc.Ready():
	case <-sctx.Done():
		return errors.Join(serveErr(), ctx.Err())
	}
	fmt.Fprintf(s.Out, "provisioner API %s (try: OS_AUTH_TYPE=none OS_ENDPOINT=%s baremetal node list)\n\n", b.apiURL(), b.apiURL())

	api := newAPIClient(b.apiURL())
	dctx, cancel := context.WithTimeout(sctx, *timeout)
	defer cancel()
	bootIface := defaultBootInterface()
	if bc.vmNet != nil {
		bootIface = "ipxe" // QEMU's NIC ROMs are iPXE
	}
	if bootIface == "ipxe" && bc.vmNet == nil {
		fmt.Fprintf(s.Out, "boot interface ipxe: Debian's pxelinux/ipxe boot programs are not installed; the simulated NICs' iPXE ROMs boot from the HTTP script alone\n")
	}
	specs := f.enrollSpecs(b, bootIface)
	for i := range specs {
		specs[i].deployInterface = nodes[i].deploy
	}
	uuids, err := b.enroll(dctx, specs)
	if err != nil {
		return errors.Join(err, serveErr())
	}
	live := &demoProgress{w: s.Out, start: time.Now(), seen: map[string]bool{}}
	unsub := b.tl.Subscribe(live.entry)
	results := make([]demoResult, len(f.nodes))
	var g errgroup.Group // one node's failure does not stop the others
	for i, n := range f.nodes {
		g.Go(func() error {
			results[i] = demoDeploy(dctx, api, b.tl, live, n.plan.name, uuids[n.plan.name], nodes[i], inst)
			return nil
		})
	}
	g.Wait()
	unsub()

	fmt.Fprintln(s.Out)
	printPhaseTable(s.Out, b.tl, results)
	booted := 0
	for _, r := range results {
		if r.err == nil {
			booted++
		}
	}
	if ctx.Err() != nil {
		serveErr()
		return errors.New("demo: interrupted")
	}
	if *undeploy {
		fmt.Fprintf(s.Out, "\nundeploying all %d nodes...\n", len(results))
		var ug errgroup.Group
		for i := range results {
			r := &results[i]
			ug.Go(func() error {
				t0 := time.Now()
				if err := api.provision(dctx, r.uuid, "deleted"); err != nil {
					r.undeployErr = err
					return nil
				}
				if _, err := api.waitState(dctx, r.uuid, "available", nil); err != nil {
					r.undeployErr = err
					return nil
				}
				r.undeployed = time.Since(t0)
				for _, e := range b.tl.Node(r.name) {
					if e.Kind == "conductor.disk_wiped" && !e.Time.Before(t0) {
						r.wiped = true
					}
				}
				return nil
			})
		}
		ug.Wait()
		for _, r := range results {
			if r.undeployErr != nil {
				fmt.Fprintf(s.Out, "  %-7s undeploy failed: %v\n", r.name, r.undeployErr)
			} else {
				cleaned := "not cleaned"
				if r.wiped {
					cleaned = "cleaned: its ramdisk booted again and wiped the partition tables"
				}
				fmt.Fprintf(s.Out, "  %-7s available again in %.1fs, %s\n", r.name, r.undeployed.Seconds(), cleaned)
			}
		}
	}
	if err := serveErr(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(s.Out, "\n%d of %d instances booted in %.1fs.\n", booted, len(results), time.Since(start).Seconds())
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		}
		if r.undeployErr != nil {
			errs = append(errs, fmt.Errorf("%s: undeploy: %w", r.name, r.undeployErr))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("demo: %w", errors.Join(errs...))
	}
	protocols := "IPMI, DHCP, TFTP, iSCSI and HTTP"
	if bootIface == "ipxe" {
		protocols = "IPMI, DHCP, HTTP (iPXE) and iSCSI"
	}
	where := "on loopback"
	if bc.vmNet != nil {
		where = "in the boot network " + bc.vmNet.Prefix().String()
	}
	fmt.Fprintf(s.Out, "every node went enroll → manageable → available → active over %s %s, "+
		"its instance booted, and it was undeployed back to available.\n", protocols, where)
	return nil
}

// demoImage is the instance the demo deploys.
type demoImage struct {
	built           *disk.Built
	url             string // image_source
	kernel, ramdisk string // instance kernel and ramdisk, for netboot
}

// demoInstance builds a partition image into the HTTP boot server's root
// (the image cache downloads it from there, as Ironic's does from a web
// server) with an instance kernel and ramdisk for netboot.
func demoInstance(ctx context.Context, b *bed) (*demoImage, error) {
	dir := filepath.Join(b.httpRoot, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("instance image: %w", err)
	}
	built, err := disk.Build(ctx, disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(dir, "instance.img")})
	if err != nil {
		return nil, fmt.Errorf("instance image: %w", err)
	}
	base := b.boot.httpURL() + "/images/"
	if b.cfg.vmNet != nil {
		// Real VMs boot the real kernel with an initramfs that mounts
		// root=UUID= (the kernel alone cannot): the deploy ramdisk's,
		// which does so when booted without deploy parameters.
		for src, dst := range map[string]string{b.deployKernel: "instance-vmlinuz", b.deployRamdisk: "instance-initrd"} {
			if err := linkOrCopy(src, filepath.Join(dir, dst)); err != nil {
				return nil, err
			}
		}
		return &demoImage{built: built, url: base + "instance.img", kernel: base + "instance-vmlinuz", ramdisk: base + "instance-initrd"}, nil
	}
	// The instance's initramfs for simulated machines: an empty one (the
	// simulated kernel reads the root file system from the disk itself).
	var rd bytes.Buffer
	w := cpio.Newc.Writer(&rd)
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "instance-initrd"), rd.Bytes(), 0o644); err != nil {
		return nil, err
	}
	kernel, err := disk.DefaultKernel(ctx)
	if err != nil {
		return nil, err
	}
	if err := linkOrCopy(kernel, filepath.Join(dir, "instance-vmlinuz")); err != nil {
		return nil, err
	}
	return &demoImage{built: built, url: base + "instance.img", kernel: base + "instance-vmlinuz", ramdisk: base + "instance-initrd"}, nil
}

func linkOrCopy(src, dst string) error {
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// demoResult is how one node's deploy went.
type demoResult struct {
	name, uuid  string
	what        string
	deployStart time.Time
	active      time.Duration
	booted      time.Duration
	err         error
	undeployed  time.Duration
	wiped       bool // automated cleaning wiped the disk on undeploy
	undeployErr error
}

// demoDeploy walks one node from enroll to active as a user of the API
// does, then waits for its instance to announce itself on the console.
func demoDeploy(ctx context.Context, api *apiClient, tl *events.Timeline, live *demoProgress, name, uuid string, node demoNode, inst *demoImage) demoResult {
	r := demoResult{name: name, uuid: uuid, what: node.what}
	// The instance's boot is an event on the machine; subscribe before
	// deploying so it cannot be missed.
	booted := make(chan events.Entry, 1)
	unsub := tl.Subscribe(func(e events.Entry) {
		if e.Node == name && e.Kind == "instance.booted" {
			select {
			case booted <- e:
			default:
			}
		}
	})
	defer unsub()
	seen := func(n *apiNode) { live.say(name, "state", n.ProvisionState) }
	step := func(target, want string) error {
		if err := api.provision(ctx, uuid, target); err != nil {
			return err
		}
		_, err := api.waitState(ctx, uuid, want, seen)
		return err
	}
	if r.err = step("manage", "manageable"); r.err != nil {
		return r
	}
	if r.err = step("provide", "available"); r.err != nil {
		return r
	}
	ii := map[string]any{
		"image_source":   inst.url,
		"image_checksum": inst.built.MD5,
		"root_gb":        "1",
		"capabilities":   map[string]any{"boot_option": node.option},
	}
	if node.option == "netboot" {
		ii["kernel"], ii["ramdisk"] = inst.kernel, inst.ramdisk
	}
	if node.deploy == "direct" {
		// The agent is told the image's kind (Ironic: the image's
		// img_type property, or instance_info image_type).
		ii["image_type"] = "partition"
	}
	// Undeploying cleans the node: its ramdisk boots again and the
	// conductor wipes the disk's partition tables.
	ops := []map[string]any{{"op": "replace", "path": "/automated_clean", "value": true}}
	for k, v := range ii {
		ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	if r.err = api.patch(ctx, uuid, ops); r.err != nil {
		return r
	}
	r.deployStart = time.Now()
	if r.err = step("active", "active"); r.err != nil {
		return r
	}
	r.active = time.Since(r.deployStart)
	select {
	case <-booted:
		r.booted = time.Since(r.deployStart)
	case <-ctx.Done():
		r.err = fmt.Errorf("active, but the instance did not boot: %w", ctx.Err())
	}
	return r
}

// demoPhases are the columns of the final table: the first timeline
// entry of one of these kinds after the deploy request.
var demoPhases = []struct {
	title string
	kinds []string
}{
	{"DHCP", []string{"dhcp.ack"}},
	{"TFTP", []string{"tftp.file"}},
	{"RAMDISK UP", []string{"ramdisk.up", "agent.up"}},
	{"LOOKUP", []string{"agent.lookup"}},
	{"HEARTBEAT", []string{"agent.heartbeat"}},
	{"ISCSI LOGIN", []string{"iscsi.login", "conductor.iscsi_login"}},
	{"IMAGE WRITTEN", []string{"conductor.image_written", "agent.image.written"}},
	{"BOOTLOADER", []string{"ramdisk.bootloader", "agent.bootloader"}},
	{"REBOOT", []string{"conductor.reboot"}},
	{"ACTIVE", []string{"conductor.active"}},
	{"INSTANCE BOOTED", []string{"instance.booted"}},
}

// phaseOf names the phase an entry marks, "" for none.
func phaseOf(kind string) string {
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
// after its deploy request.
func printPhaseTable(w io.Writer, tl *events.Timeline, results []demoResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"NODE", "DEPLOY"}
	for _, p := range demoPhases {
		head = append(head, p.title)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\tRESULT")
	for _, r := range results {
		row := []string{r.name, r.what}
		first := map[string]time.Time{}
		if !r.deployStart.IsZero() {
			for _, e := range tl.Node(r.name) {
				if e.Time.Before(r.deployStart) {
					continue
				}
				if ph := phaseOf(e.Kind); ph != "" {
					if t, ok := first[ph]; !ok || e.Time.Before(t) {
						first[ph] = e.Time
					}
				}
			}
		}
		for _, p := range demoPhases {
			if t, ok := first[p.title]; ok {
				row = append(row, fmt.Sprintf("+%.2fs", t.Sub(r.deployStart).Seconds()))
			} else {
				row = append(row, "-")
			}
		}
		result := fmt.Sprintf("booted (%.1fs)", r.booted.Seconds())
		if r.err != nil {
			result = "FAILED: " + r.err.Error()
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t"+result)
	}
	tw.Flush()
	fmt.Fprintln(w, "(times since each node's deploy request; the whole timeline of a node: its entries in timeline.jsonl, or `metalbed timeline NODE` against `metalbed up`)")
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
	fmt.Fprintf(p.w, "  %7.2fs  %-7s   %-15s %s\n", time.Since(p.start).Seconds(), node, what, shorten(detail, 90))
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
