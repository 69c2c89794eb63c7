package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/metalbed/metalbed/provisioner/boot"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/provisioner/tftp"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/loader"
	"github.com/metalbed/metalbed/vms/sim/pxe"
	tftpclient "github.com/pin/tftp/v3"
)

// Defaults of the provisioner side of `metalbed up` and `metalbed demo`.
const (
	defaultAPIAddr      = "127.0.0.1:6385"
	defaultDHCPAddr     = "127.0.0.1:6767"
	defaultTFTPAddr     = "127.0.0.1:6969"
	defaultHTTPAddr     = "127.0.0.1:8080"
	defaultTimelineAddr = "127.0.0.1:6386"
	// The DHCP pool: 127.1.0.0/16 on lo, away from the BMCs (127.0.0.1 and
	// --bmc-per-ip's 127.0.1.x).
	defaultDHCPRange = "127.1.0.10-127.1.255.250"
)

// bedConfig configures the provisioner side.
type bedConfig struct {
	dir                                                 string // <state dir>/provisioner
	apiAddr, dhcpAddr, tftpAddr, httpAddr, timelineAddr string
	dhcpRange                                           string
	ipmiClient                                          string
	// fastIPMI shortens the IPMI driver's pacing (Ironic's 5 s between
	// commands to one BMC) for simulated BMCs that answer at once.
	fastIPMI bool
	// callbackTimeout is the deploy call-back timeout; 0 = the default.
	callbackTimeout time.Duration
	// notifyDelay is waited before the conductor tells a ramdisk "done"
	// (Ironic: 3 s); negative: none.
	notifyDelay time.Duration
	// vmNet, when set, is the boot network of real VMs (--backend
	// libvirt): the DHCP, TFTP and HTTP boot servers listen inside its
	// namespace on its address, the API is reachable there too (ramdisks
	// call back to it), and the conductor dials ramdisks and agents from
	// inside it. The API and timeline for people and scripts stay on
	// apiAddr and timelineAddr; the BMCs stay on loopback. dhcpAddr,
	// tftpAddr and httpAddr are then ignored.
	vmNet *libvirt.Network
	// ramdiskDir holds vmlinuz and initramfs from `metalbed ramdisk build`:
	// the deploy kernel and ramdisk real VMs boot. Required with vmNet.
	ramdiskDir string
	log        *slog.Logger
}

// bed is the provisioner beside the machines: the Ironic-compatible
// service, the DHCP/TFTP/HTTP boot servers, the deploy images, and one
// per-node timeline every component records into.
type bed struct {
	cfg    bedConfig
	tl     *events.Timeline
	faults *fault.Set // the injected faults (faults.go)
	// inject is the one Injector over faults every server's Config.Faults
	// holds (newInjector).
	inject fault.Injector
	// machineOf maps a NIC's MAC (string) to its machine's name, for
	// faults addressed by name at layers that see only MACs and IPs.
	machineOf sync.Map
	// nodeName maps a node's UUID to its machine's name, for faults
	// addressed by name at the conductor, which sees only UUIDs.
	nodeName sync.Map
	// kill stops the running conductor (a conductor fault); guarded by
	// killMu, set by serveProvisioner.
	killMu sync.Mutex
	kill   context.CancelFunc
	hosts  *dhcp.StaticHosts
	boot   bootServers
	apiLn  net.Listener
	tlLn   net.Listener
	// vmAPILn is the API's listener inside vmNet's namespace, proxied to
	// apiLn (nil without vmNet).
	vmAPILn  net.Listener
	svc      *service.Service
	tlSink   *os.File
	tftpRoot string
	httpRoot string
	// deploy images, built by prepare
	deployKernel, deployRamdisk string
}

// listenBed binds every socket of the provisioner side; it writes no file.
func listenBed(cfg bedConfig) (_ *bed, err error) {
	b := &bed{cfg: cfg, hosts: &dhcp.StaticHosts{}, faults: fault.NewSet(),
		tftpRoot: filepath.Join(cfg.dir, "tftp"), httpRoot: filepath.Join(cfg.dir, "http")}
	b.inject = b.newInjector()
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if cfg.vmNet != nil {
		if err := b.listenVMNet(); err != nil {
			return nil, err
		}
	} else if err := b.listenLoopback(); err != nil {
		return nil, err
	}
	if b.apiLn, err = net.Listen("tcp4", cfg.apiAddr); err != nil {
		return nil, fmt.Errorf("provisioner API: %w", err)
	}
	if b.tlLn, err = net.Listen("tcp4", cfg.timelineAddr); err != nil {
		return nil, fmt.Errorf("timeline endpoint: %w", err)
	}
	return b, nil
}

// listenLoopback opens the boot servers on loopback, for simulated
// machines.
func (b *bed) listenLoopback() error {
	cfg := b.cfg
	server, err := hostOf(cfg.dhcpAddr)
	if err != nil {
		return usageError("--dhcp-addr: %v", err)
	}
	first, last, ok := strings.Cut(cfg.dhcpRange, "-")
	if !ok {
		return usageError("--dhcp-range must be FIRST-LAST, got %q", cfg.dhcpRange)
	}
	pool := dhcp.Pool{Subnet: netip.MustParsePrefix("127.0.0.0/8")}
	if pool.First, err = netip.ParseAddr(strings.TrimSpace(first)); err != nil {
		return usageError("--dhcp-range: %v", err)
	}
	if pool.Last, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil {
		return usageError("--dhcp-range: %v", err)
	}
	if !pool.Subnet.Contains(pool.First) || !pool.Subnet.Contains(pool.Last) {
		return usageError("--dhcp-range %s: simulated machines live on loopback, 127.0.0.0/8", cfg.dhcpRange)
	}
	if err := b.boot.listenDHCP(dhcp.Config{
		ServerIP: server, Pool: pool, Hosts: b.hosts, Faults: b.inject,
		LeaseFile: filepath.Join(cfg.dir, "dhcp-leases.json"),
		Logger:    cfg.log, Observer: b.dhcpEvent,
	}, cfg.dhcpAddr, ""); err != nil {
		return err
	}
	if err := b.boot.listenTFTP(tftp.Config{Root: b.tftpRoot, Logger: cfg.log, Observer: b.tftpEvent, Faults: b.inject}, cfg.tftpAddr); err != nil {
		return err
	}
	return b.boot.listenHTTP(httpboot.Config{Root: b.httpRoot, Logger: cfg.log, Observer: b.httpEvent, Faults: b.inject}, cfg.httpAddr)
}

func hostOf(addr string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}, err
	}
	if !ap.Addr().Is4() || ap.Addr().IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("%s: want an IPv4 loopback address", addr)
	}
	return ap.Addr(), nil
}

// prepare makes the state directories and deploy images and builds the
// provisioner service. It runs once the state directory is locked.
func (b *bed) prepare(ctx context.Context) error {
	for _, d := range []string{b.cfg.dir, b.tftpRoot, b.httpRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("provisioner state: %w", err)
		}
	}
	sink, err := os.OpenFile(filepath.Join(b.cfg.dir, "timeline.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("timeline log: %w", err)
	}
	b.tlSink = sink
	b.tl = events.New(events.Config{Sink: sink})
	if b.cfg.vmNet != nil {
		if b.deployKernel, b.deployRamdisk, err = realRamdisk(b.cfg.ramdiskDir); err != nil {
			return err
		}
	} else if b.deployKernel, b.deployRamdisk, err = deployImages(ctx, filepath.Join(b.cfg.dir, "images")); err != nil {
		return err
	}
	svc, err := service.New(b.serviceConfig())
	if err != nil {
		return err
	}
	b.svc = svc
	return nil
}

// apiURL is the provisioner API as clients and ramdisks reach it.
func (b *bed) apiURL() string { return "http://" + b.apiLn.Addr().String() }

// timelineURL is the timeline endpoint's base URL.
func (b *bed) timelineURL() string { return "http://" + b.tlLn.Addr().String() }

// serve runs the provisioner and its servers until ctx ends.
func (b *bed) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.boot.serve(gctx) })
	g.Go(func() error { return b.serveProvisioner(gctx) })
	g.Go(func() error {
		srv := &http.Server{Handler: faultHandler(b.faults, httpBootInfo{URL: b.boot.httpURL(), Root: b.httpRoot}, timelineHandler(b.tl)), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-gctx.Done()
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(shut)
		}()
		if err := srv.Serve(b.tlLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("timeline endpoint: %w", err)
		}
		return nil
	})
	g.Go(func() error { return b.watchNodes(gctx) })
	if b.vmAPILn != nil {
		g.Go(func() error { return b.serveVMAPI(gctx) })
		// iPXE waits ~16 s for an IPv6 router unless told there is none.
		g.Go(func() error { return b.cfg.vmNet.ServeRA(gctx, 0) })
	}
	return g.Wait()
}

// close closes every socket and the timeline log.
func (b *bed) close() {
	b.boot.close()
	if b.apiLn != nil {
		b.apiLn.Close()
	}
	if b.tlLn != nil {
		b.tlLn.Close()
	}
	if b.vmAPILn != nil {
		b.vmAPILn.Close()
	}
	if b.tlSink != nil {
		b.tlSink.Close()
		b.tlSink = nil
	}
}

// The timeline's sources.
const (
	srcDHCP      = "dhcp"
	srcTFTP      = "tftp"
	srcHTTP      = "http"
	srcISCSI     = "iscsi"
	srcRamdisk   = "ramdisk"
	srcConductor = "conductor"
	srcMachine   = "machine"
	srcBMC       = "bmc"
)

func (b *bed) dhcpEvent(e dhcp.Event) {
	detail := e.IP.String()
	if e.BootFile != "" {
		detail += " boot " + e.BootFile
	}
	b.tl.Add(events.Entry{Time: e.Time, Key: e.MAC.String(), Source: srcDHCP, Kind: "dhcp." + string(e.Kind), Detail: detail})
}

// peerKey names the node a TFTP or HTTP client is: its MAC from the DHCP
// leases, else the node UUID in the file's path, else its address.
func (b *bed) peerKey(remote netip.AddrPort, file string) string {
	if mac, ok := b.boot.dhcp.MACOf(remote.Addr()); ok {
		return mac.String()
	}
	name := strings.TrimPrefix(file, "/")
	if u, ok := strings.CutPrefix(name, "token-"); ok {
		return u
	}
	if i := strings.IndexByte(name, '/'); i > 0 {
		return name[:i]
	}
	return remote.Addr().String()
}

func (b *bed) tftpEvent(e tftp.Event) {
	kind, detail := "tftp.file", fmt.Sprintf("%s %d bytes", e.File, e.Bytes)
	if e.Err != nil {
		kind, detail = "tftp.error", fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	b.tl.Add(events.Entry{Time: e.Time, Key: b.peerKey(e.Remote, e.File), Source: srcTFTP, Kind: kind, Detail: detail})
}

func (b *bed) httpEvent(e httpboot.Event) {
	kind := "http.file"
	if e.Status >= 400 {
		kind = "http.error"
	}
	b.tl.Add(events.Entry{Time: e.Time, Key: b.peerKey(e.Remote, e.Path), Source: srcHTTP, Kind: kind,
		Detail: fmt.Sprintf("%s %s %d %d bytes", e.Method, e.Path, e.Status, e.Bytes)})
}

// enroll enrolls the machines through the API (see enroll) and ties each
// node's UUID to its machine's timeline at once.
func (b *bed) enroll(ctx context.Context, specs []enrollSpec) (map[string]string, error) {
	uuids, err := enroll(ctx, newAPIClient(b.apiURL()), specs)
	for name, uuid := range uuids {
		b.tl.Alias(uuid, name)
		b.nodeName.Store(uuid, name)
	}
	return uuids, err
}

// watchNodes follows the nodes through the API, once a second: it ties
// node UUIDs to machine names through the ports' MACs (the machines' MACs
// are aliases of their names), for nodes enrolled by --enroll or by hand,
// so conductor entries (keyed by UUID) join the machine's timeline; and it
// records each provision state it sees change ("conductor.state"; a state
// that lasts less than the poll may be missed).
func (b *bed) watchNodes(ctx context.Context) error {
	select {
	case <-b.svc.Ready():
	case <-ctx.Done():
		return nil
	}
	c := newAPIClient(b.apiURL())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	aliased := map[string]bool{}
	states := map[string]string{}
	for {
		var ports struct {
			Ports []struct {
				Address  string `json:"address"`
				NodeUUID string `json:"node_uuid"`
			} `json:"ports"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/ports/detail", nil, &ports); err == nil {
			for _, p := range ports.Ports {
				if k := p.NodeUUID + p.Address; !aliased[k] && p.NodeUUID != "" {
					aliased[k] = true
					b.tl.Alias(p.NodeUUID, p.Address) // resolves to the machine's name
					if name := b.machineNamed(p.Address); name != "" {
						b.nodeName.Store(p.NodeUUID, name)
					}
				}
			}
		}
		var nodes struct {
			Nodes []apiNode `json:"nodes"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/nodes?fields=uuid,provision_state,target_provision_state", nil, &nodes); err == nil {
			for _, n := range nodes.Nodes {
				st := n.ProvisionState
				if n.TargetProvisionState != nil && *n.TargetProvisionState != "" {
					st += " → " + *n.TargetProvisionState
				}
				if states[n.UUID] != st {
					states[n.UUID] = st
					b.tl.Record(n.UUID, srcConductor, "conductor.state", st)
				}
				b.conductorFault(n.UUID, "now")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// nodeHooks wires machine name to the bed: its firmware, and its BMC's
// power and boot device commands into its timeline.
func (b *bed) nodeHooks(name string) nodeHooks {
	var firmware sim.Firmware
	var vm func(nodePlan, string) (fleetMachine, error)
	if nw := b.cfg.vmNet; nw != nil {
		vm = func(p nodePlan, dir string) (fleetMachine, error) { return openVM(nw, p, dir) }
	} else {
		firmware = b.machineFirmware(name)
	}
	return nodeHooks{
		firmware:  firmware,
		vm:        vm,
		bmcFaults: b.inject, // bmcemu records chassis control and boot flags itself
	}
}

// machineFirmware is what a machine runs at power-on: the NIC's PXE ROM
// against the bed's DHCP and TFTP servers, and the local-boot loader; both
// hand over to the simulated kernel, which runs the deploy ramdisk with an
// iSCSI target exporting the machine's disk.
func (b *bed) machineFirmware(name string) sim.Firmware {
	kc := kernel.Config{
		Export:     b.exporter(name),
		FetchToken: fetchTFTP,
		TFTPPort:   b.boot.tftpPort(),
		Milestone: func(machine, kind, detail string) {
			b.tl.Record(machine, srcRamdisk, kind, detail)
		},
		Faults: b.inject,
		Logger: b.cfg.log,
	}
	return sim.StockFirmware{
		NetBoot: &pxe.ROM{
			DHCPServer: b.boot.dhcpConn.LocalAddr().String(),
			DHCPClient: "127.0.0.1:0",
			TFTPPort:   b.boot.tftpPort(),
			Exec:       kernel.Executor(kc),
		},
		LocalBoot: loader.Loader{Kernel: kc},
	}
}

// exporter is the ramdisk's iSCSI target (tgtd in Ironic's bash ramdisk):
// metalbed's iscsitarget serving the machine's disk as LUN 1. Logins go
// into the machine's timeline.
func (b *bed) exporter(name string) ramdisk.Exporter {
	return func(ctx context.Context, ln net.Listener, iqn string, dev ramdisk.BlockDevice) error {
		log := slog.New(&loginRecorder{next: b.cfg.log.Handler(), tl: b.tl, key: name})
		t, err := iscsitarget.New(iscsitarget.Config{IQN: iqn, Disk: dev, Size: dev.Size(), Logger: log,
			Faults: fault.Tag(b.inject, events.Who{Machine: name})})
		if err != nil {
			return err
		}
		defer t.Close()
		err = t.Serve(ctx, ln)
		if errors.Is(err, iscsitarget.ErrClosed) || ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// loginRecorder passes log records on and turns the target's "iscsi login"
// records into timeline entries.
type loginRecorder struct {
	next slog.Handler
	tl   *events.Timeline
	key  string
}

func (h *loginRecorder) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *loginRecorder) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "iscsi login" || r.Message == "iscsi connection closed" {
		var detail []string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "initiator" || a.Key == "session" {
				detail = append(detail, a.Key+"="+a.Value.String())
			}
			return true
		})
		kind := "iscsi.login"
		if r.Message != "iscsi login" {
			kind = "iscsi.logout"
		}
		h.tl.Record(h.key, srcISCSI, kind, strings.Join(detail, " "))
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *loginRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &loginRecorder{next: h.next.WithAttrs(as), tl: h.tl, key: h.key}
}

func (h *loginRecorder) WithGroup(g string) slog.Handler {
	return &loginRecorder{next: h.next.WithGroup(g), tl: h.tl, key: h.key}
}

// watchMachine records a machine's events (power, boots, console
// milestones such as "instance booted") in its timeline and makes its MACs
// and SMBIOS UUID aliases of its name.
func (b *bed) watchMachine(m fleetMachine) (cancel func()) {
	name := m.Name()
	for _, nic := range m.NICs() {
		b.tl.Alias(nic.MAC.String(), name)
		b.machineOf.Store(nic.MAC.String(), name)
	}
	b.tl.Alias(sim.FormatUUID(m.UUID()), name)
	b.tl.Record(name, srcMachine, "machine.up", fmt.Sprintf("%s, BMC and provisioner wired", m.BootMode()))
	return m.Subscribe(func(ev vms.Event) {
		kind, detail, src := "machine."+string(ev.Kind), ev.Detail, srcMachine
		if ev.Kind == vms.EventConsole {
			switch {
			case strings.HasPrefix(detail, "ramdisk."):
				return // recorded through kernel.Config.Milestone
			case strings.HasPrefix(detail, "milestone "):
				// A real VM's ramdisk or agent step, read off its serial
				// console (a simulated one's come through Milestone).
				kind, detail, _ = strings.Cut(strings.TrimPrefix(detail, "milestone "), " ")
				src = srcRamdisk
			case strings.HasPrefix(detail, "instance booted"):
				kind, detail = "instance.booted", strings.TrimPrefix(detail, "instance booted ")
			default:
				word, rest, _ := strings.Cut(detail, " ")
				kind, detail = "machine."+word, rest
			}
		}
		b.tl.Add(events.Entry{Time: ev.Time, Key: name, Source: src, Kind: kind, Detail: detail})
	})
}

// fetchTFTP is the ramdisk's tftp client (busybox tftp in Ironic's bash
// ramdisk): it reads the token file from the boot server.
func fetchTFTP(ctx context.Context, server net.IP, port int, name string) ([]byte, error) {
	c, err := tftpclient.NewClient(net.JoinHostPort(server.String(), strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(3)
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			ch <- result{err: err}
			return
		}
		var buf bytes.Buffer
		_, err = wt.WriteTo(&buf)
		ch <- result{buf.Bytes(), err}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err() // the transfer times out on its own
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("tftp://%s:%d/%s: %w", server, port, name, r.err)
		}
		return r.b, nil
	}
}

// bedFlags are the provisioner flags `up` shares with `demo`.
type bedFlags struct {
	apiAddr, dhcpAddr, dhcpRange, tftpAddr, httpAddr, timelineAddr *string
	ipmiClient                                                     *string
	callbackTimeout, notifyDelay                                   *time.Duration
}

func provisionerFlags(fs *flag.FlagSet) bedFlags {
	return bedFlags{
		apiAddr:         fs.String("api-addr", defaultAPIAddr, "provisioner API (Ironic v1) listen address"),
		dhcpAddr:        fs.String("dhcp-addr", defaultDHCPAddr, "DHCP server address the machines' PXE ROMs send to (loopback, no root)"),
		dhcpRange:       fs.String("dhcp-range", defaultDHCPRange, "addresses leased to the machines, FIRST-LAST inside 127.0.0.0/8"),
		tftpAddr:        fs.String("tftp-addr", defaultTFTPAddr, "TFTP boot server listen address"),
		httpAddr:        fs.String("http-addr", defaultHTTPAddr, "HTTP boot server listen address"),
		timelineAddr:    fs.String("timeline-addr", defaultTimelineAddr, "per-node timeline endpoint listen address (GET /v1/nodes/NODE/timeline)"),
		ipmiClient:      fs.String("ipmi-client", drivers.ClientNative, "IPMI client of the ipmi hardware type: native or ipmitool"),
		callbackTimeout: fs.Duration("deploy-callback-timeout", 10*time.Minute, "how long a node may wait in \"wait call-back\" or \"clean wait\" for its ramdisk (a call-back, or the agent's next heartbeat) before it fails; testbeds shorten it (e.g. 20s) to see a timeout in seconds"),
		notifyDelay:     fs.Duration("notify-delay", 3*time.Second, "pause before the conductor tells a ramdisk it is done (Ironic's 3 s)"),
	}
}

func (f bedFlags) config(dir string, log *slog.Logger) bedConfig {
	return bedConfig{
		dir: dir, apiAddr: *f.apiAddr, dhcpAddr: *f.dhcpAddr, dhcpRange: *f.dhcpRange,
		tftpAddr: *f.tftpAddr, httpAddr: *f.httpAddr, timelineAddr: *f.timelineAddr,
		ipmiClient: *f.ipmiClient, fastIPMI: true, callbackTimeout: *f.callbackTimeout, notifyDelay: *f.notifyDelay, log: log,
	}
}

// checkInterval is how often the conductor looks for timed-out call-backs:
// a tenth of the timeout, between 100 ms and Ironic's 10 s, so that a
// shortened --deploy-callback-timeout fires within 10 % of itself.
// 0 (the conductor's default timeout) checks every 10 s.
func checkInterval(callbackTimeout time.Duration) time.Duration {
	if callbackTimeout <= 0 {
		return 10 * time.Second
	}
	return min(max(callbackTimeout/10, 100*time.Millisecond), 10*time.Second)
}

// serviceConfig configures the provisioner for simulated machines.
func (b *bed) serviceConfig() service.Config {
	ipmi := drivers.IPMIConfig{Client: b.cfg.ipmiClient, Logger: b.cfg.log}
	if b.cfg.fastIPMI {
		// Simulated BMCs answer at once and need no pacing between
		// commands; power transitions are polled often.
		ipmi.MinCommandInterval = 10 * time.Millisecond
		ipmi.PollInterval = 100 * time.Millisecond
	}
	tftpServer, _ := hostOf(b.boot.tftpConn.LocalAddr().String())
	return service.Config{
		Timeline:               timelineHandler(b.tl),
		APIAddr:                b.apiLn.Addr().String(),
		StateDir:               b.cfg.dir,
		IPMI:                   ipmi,
		DeployCallbackTimeout:  b.cfg.callbackTimeout,
		CleanCallbackTimeout:   b.cfg.callbackTimeout,
		CheckProvisionInterval: checkInterval(b.cfg.callbackTimeout),
		Netboot: &service.Netboot{
			TFTPRoot: b.tftpRoot, TFTPServer: tftpServer,
			HTTPRoot: b.httpRoot, HTTPURL: b.boot.httpURL(),
			APIURL:       b.ramdiskAPIURL(),
			DialContext:  b.dialContext(),
			AppendParams: b.appendParams(),
			Hosts:        b.hosts,
			NotifyDelay:  b.cfg.notifyDelay,
			// Without Debian's ipxe package, the ipxe interface still boots
			// iPXE ROMs (the simulated machines) from the script alone.
			Loaders: boot.Loaders{IPXEOnly: boot.MissingIPXE()},
		},
		Milestone: func(node, kind, detail string) {
			// "iscsi login" -> "conductor.iscsi_login", as the other
			// sources name their kinds.
			b.tl.Record(node, srcConductor, "conductor."+strings.ReplaceAll(kind, " ", "_"), detail)
			b.conductorFault(node, kind)
		},
		Logger: b.cfg.log,
	}
}
