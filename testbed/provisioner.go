package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/provisioner/api"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/loader"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// bed is the provisioner beside the machines: the provisioner service
// (API, conductor, boot servers), the deploy images, the timeline every
// component records into (timeline.go) and the injected faults
// (faults.go).
type bed struct {
	cfg     Provisioner
	dir     string // <state dir>/provisioner
	version string
	log     *slog.Logger
	// unpack is where the machines' ROMs unpack the deploy ramdisk: as
	// many at once as the host has CPUs, and once for identical bytes
	// (pxe.Unpacker).
	unpack *pxe.Unpacker
	// vmNet, when set, is the boot network of real VMs: the DHCP, TFTP
	// and HTTP boot servers listen inside its namespace on its address,
	// the API is reachable there too (ramdisks call back to it), and the
	// conductor dials ramdisks and agents from inside it. The API and
	// timeline for people and scripts stay on loopback, as do the BMCs.
	vmNet      *libvirt.Network
	ramdiskDir string

	// tl is the timeline every component records into, its log tlLog
	// (opened by prepare); faults the injected fault rules, asked through
	// inject by every server.
	tl     *events.Timeline
	tlLog  *events.Log
	faults *fault.Set
	inject fault.Injector

	apiLn, tlLn net.Listener
	// htpasswd is the merged htpasswd file the API and the timeline
	// endpoint load, internal the testbed's own account in it (auth.go);
	// both unset without Provisioner.HTPasswdFile.
	htpasswd string
	internal *url.Userinfo
	// vmAPILn is the API's listener inside vmNet's namespace, proxied to
	// apiLn (nil without vmNet); vmPeers maps the proxy's connections to
	// the API (their local address) to the VMs' addresses (apiPeer).
	vmAPILn net.Listener
	vmPeers sync.Map
	// The boot servers' sockets, handed to the service.
	dhcpConn, tftpConn net.PacketConn
	httpLn             net.Listener
	boot               service.BootServers // sockets and pool; prepare adds the hooks

	svc *service.Service // built by prepare
	// enrolled is closed once the machines are enrolled (or re-pointed at
	// their BMCs) after the provisioner answers: the conductor carries on
	// nodes a previous run left waiting only then (service ResumeAfter).
	enrolled chan struct{}
	// reg is the testbed's metrics registry, handed to every component.
	reg *prometheus.Registry
	// deploy images, built by prepare
	deployKernel, deployRamdisk string
}

// listenBed binds every socket of the provisioner side; it writes no file.
// leases, with simulated machines, is the DHCP range the testbed holds.
func listenBed(t *Testbed, nw *libvirt.Network, leases *blockClaim) (_ *bed, err error) {
	b := &bed{cfg: *t.cfg.Provisioner, dir: filepath.Join(t.cfg.StateDir, "provisioner"), version: t.cfg.Version, unpack: pxe.NewUnpacker(runtime.GOMAXPROCS(0)),
		log: t.log, vmNet: nw, reg: t.reg, ramdiskDir: t.cfg.Libvirt.RamdiskDir, faults: fault.NewSet(), tl: events.New(events.Config{}),
		enrolled: make(chan struct{})}
	b.inject = b.newInjector()
	b.internal = newInternalAccount(b.cfg)
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if leases != nil {
		b.cfg.DHCPRange = leases.rng.String()
	}
	if nw != nil {
		if err := b.listenVMNet(); err != nil {
			return nil, err
		}
	} else if err := b.listenLoopback(); err != nil {
		return nil, err
	}
	if b.apiLn, err = listen(b.cfg.Listeners.API, b.cfg.APIAddr); err != nil {
		return nil, addrError("Provisioner.APIAddr", b.cfg.APIAddr, fmt.Errorf("provisioner API: %w", err))
	}
	if b.tlLn, err = listen(b.cfg.Listeners.Timeline, b.cfg.TimelineAddr); err != nil {
		return nil, addrError("Provisioner.TimelineAddr", b.cfg.TimelineAddr, fmt.Errorf("timeline endpoint: %w", err))
	}
	return b, nil
}

// listen is ln when the caller opened it, else a new TCP listener on addr.
func listen(ln net.Listener, addr string) (net.Listener, error) {
	if ln != nil {
		return ln, nil
	}
	return net.Listen("tcp4", addr)
}

// listenPacket is conn when the caller opened it, else a new UDP socket on
// addr.
func listenPacket(conn net.PacketConn, addr string) (net.PacketConn, error) {
	if conn != nil {
		return conn, nil
	}
	return net.ListenPacket("udp4", addr)
}

// checkLoopback checks the boot servers' loopback addresses and DHCP
// range of simulated machines.
func checkLoopback(p Provisioner) error {
	ap, err := netip.ParseAddrPort(p.DHCPAddr)
	if err != nil {
		return configError("DHCP address: %v", err)
	}
	if !ap.Addr().Is4() || ap.Addr().IsUnspecified() {
		return configError("DHCP address %s: want an IPv4 loopback address", p.DHCPAddr)
	}
	if p.DHCPRange == "" {
		return nil // a free block (blocks.go)
	}
	r, err := parseRange(p.DHCPRange)
	if err != nil {
		return configError("DHCP range %v", err)
	}
	lo := netip.MustParsePrefix("127.0.0.0/8")
	if !lo.Contains(r.first) || !lo.Contains(r.last) {
		return configError("DHCP range %s: simulated machines live on loopback, 127.0.0.0/8", p.DHCPRange)
	}
	return nil
}

// listenLoopback opens the boot servers' sockets on loopback, for
// simulated machines.
func (b *bed) listenLoopback() error {
	var err error
	ls := b.cfg.Listeners
	if b.dhcpConn, err = listenPacket(ls.DHCP, b.cfg.DHCPAddr); err != nil {
		return addrError("Provisioner.DHCPAddr", b.cfg.DHCPAddr, fmt.Errorf("dhcp: %w", err))
	}
	if b.tftpConn, err = listenPacket(ls.TFTP, b.cfg.TFTPAddr); err != nil {
		return addrError("Provisioner.TFTPAddr", b.cfg.TFTPAddr, fmt.Errorf("tftp: %w", err))
	}
	if b.httpLn, err = listen(ls.HTTP, b.cfg.HTTPAddr); err != nil {
		return addrError("Provisioner.HTTPAddr", b.cfg.HTTPAddr, fmt.Errorf("http: %w", err))
	}
	b.boot = service.BootServers{DHCPConn: b.dhcpConn, TFTPConn: b.tftpConn, HTTPListener: b.httpLn,
		DHCPRange: b.cfg.DHCPRange, DHCPSubnet: netip.MustParsePrefix("127.0.0.0/8")}
	return nil
}

// prepare makes the state directory, the timeline and the deploy images and
// builds the provisioner service. It runs once the state directory is
// locked.
func (b *bed) prepare(ctx context.Context) error {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return fmt.Errorf("provisioner state: %w", err)
	}
	if err := b.openTimeline(); err != nil {
		return err
	}
	var err error
	if b.vmNet != nil {
		if b.deployKernel, b.deployRamdisk, err = realRamdisk(b.ramdiskDir); err != nil {
			return err
		}
	} else if b.deployKernel, b.deployRamdisk, err = DeployImages(ctx, filepath.Join(b.dir, "images"), b.version); err != nil {
		return err
	}
	if err := b.setupAuth(); err != nil {
		return err
	}
	if b.svc, err = service.New(b.serviceConfig()); err != nil {
		return err
	}
	return nil
}

// apiURL is the provisioner API as clients and ramdisks reach it.
func (b *bed) apiURL() string { return "http://" + b.apiLn.Addr().String() }

// timelineURL is the timeline endpoint's base URL.
func (b *bed) timelineURL() string { return "http://" + b.tlLn.Addr().String() }

// httpURL is the HTTP boot server's base URL.
func (b *bed) httpURL() string { return "http://" + b.httpLn.Addr().String() }

// httpRoot is the directory the HTTP boot server serves.
func (b *bed) httpRoot() string { return filepath.Join(b.dir, "http") }

// tftpPort is the TFTP server's UDP port.
func (b *bed) tftpPort() int { return b.tftpConn.LocalAddr().(*net.UDPAddr).Port }

// serve runs the provisioner and its servers until ctx ends.
func (b *bed) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.svc.ServeBoot(gctx) })
	g.Go(func() error { return b.serveProvisioner(gctx) })
	var h http.Handler = faultHandler(b.faults, HTTPBootInfo{URL: b.httpURL(), Root: b.httpRoot()}, knownNode(b.tl), timelineHandler(b.tl))
	if f := b.htpasswd; f != "" {
		creds, err := api.LoadHTPasswd(f)
		if err != nil {
			return err
		}
		h = creds.Require("metalbed timeline", h)
	}
	g.Go(func() error { return serveHTTP(gctx, b.tlLn, h, "timeline endpoint") })
	if b.vmAPILn != nil {
		g.Go(func() error { return b.serveVMAPI(gctx) })
		// iPXE waits ~16 s for an IPv6 router unless told there is none.
		g.Go(func() error { return b.vmNet.ServeRA(gctx, 0) })
	}
	return g.Wait()
}

// serveProvisioner runs the conductor and API until ctx ends; each time a
// conductor fault kills it (faults.go), a new Serve of the same service
// starts on the same database and API socket, recovering the nodes as
// Ironic's conductor does on start.
func (b *bed) serveProvisioner(ctx context.Context) error {
	for restarts := 1; ; restarts++ {
		err := b.svc.Serve(ctx, b.apiLn)
		if !errors.Is(err, service.ErrConductorKilled) || ctx.Err() != nil {
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("provisioner: %w", err)
			}
			return nil
		}
		b.log.Warn("conductor killed by an injected fault; restarting", "event", "conductor.restart")
		b.recordRestart(restarts)
	}
}

// close closes every socket and the timeline log.
func (b *bed) close() {
	for _, c := range []interface{ Close() error }{b.dhcpConn, b.tftpConn, b.httpLn, b.apiLn, b.tlLn, b.vmAPILn} {
		if c != nil {
			c.Close()
		}
	}
	b.closeTimeline()
}

// checkInterval is how often the conductor looks for timed-out call-backs:
// a tenth of the timeout, between 100 ms and Ironic's 10 s, so that a
// shortened call-back timeout fires within 10 % of itself. 0 (the
// conductor's default timeout) checks every 10 s.
func checkInterval(callbackTimeout time.Duration) time.Duration {
	if callbackTimeout <= 0 {
		return 10 * time.Second
	}
	return min(max(callbackTimeout/10, 100*time.Millisecond), 10*time.Second)
}

// serviceConfig configures the provisioner: simulated BMCs answer at once
// and need no pacing between commands; power transitions are polled often.
func (b *bed) serviceConfig() service.Config {
	ipmi := drivers.IPMIConfig{Client: b.cfg.IPMIClient, Logger: b.log,
		MinCommandInterval: 10 * time.Millisecond, PollInterval: 100 * time.Millisecond}
	bs := b.boot
	bs.DHCPObserver, bs.TFTPObserver, bs.HTTPObserver = b.dhcpEvent, b.tftpEvent, b.httpEvent
	return service.Config{
		Timeline:               timelineHandler(b.tl),
		APIPeer:                b.apiPeer,
		APIAddr:                b.apiLn.Addr().String(),
		StateDir:               b.dir,
		IPMI:                   ipmi,
		AutomatedClean:         b.cfg.AutomatedClean,
		DeployCallbackTimeout:  b.cfg.CallbackTimeout,
		CleanCallbackTimeout:   b.cfg.CallbackTimeout,
		CheckProvisionInterval: checkInterval(b.cfg.CallbackTimeout),
		Boot:                   &bs,
		Netboot: &service.Netboot{
			APIURL:       b.ramdiskAPIURL(),
			DialContext:  b.dialContext(),
			AppendParams: b.appendParams(),
			NotifyDelay:  b.cfg.NotifyDelay,
			// Without Debian's ipxe package, the ipxe interface still boots
			// iPXE ROMs (the simulated machines) from the script alone.
			Loaders: boot.Loaders{IPXEOnly: boot.MissingIPXE()},
		},
		Recorder:     b.tl,
		Faults:       b.inject,
		Registerer:   b.reg,
		Gatherer:     b.reg,
		Logger:       b.log,
		HTPasswdFile: b.htpasswd,
		ResumeAfter:  b.enrolled,
		// The Redfish service answers at once: poll power often. Retries
		// (409, 5xx) 1 s apart span 4 s, past an iDRAC-like 409 on
		// power-on for 3 s after a power-off (the redfish fault).
		Redfish: drivers.RedfishConfig{PollInterval: 100 * time.Millisecond, ConnectionRetryInterval: time.Second},
	}
}

// nodeHooks wires machine name to the bed: its firmware, its BMC's
// commands into its timeline and the fault seams of its BMC.
func (b *bed) nodeHooks(name string) nodeHooks {
	var firmware sim.Firmware
	var vm func(Machine, string) (fleetMachine, error)
	if nw := b.vmNet; nw != nil {
		dial := b.dialContext()
		vm = func(p Machine, dir string) (fleetMachine, error) { return openVM(nw, dial, p, dir) }
	} else {
		firmware = b.machineFirmware(name)
	}
	return nodeHooks{firmware: firmware, vm: vm, bmcFaults: b.inject, bmcEvents: b.tl}
}

// machineFirmware is what a machine runs at power-on: the NIC's PXE ROM
// against the bed's DHCP and TFTP servers, and the local-boot loader; both
// hand over to the simulated kernel, which runs the deploy ramdisk with an
// iSCSI target exporting the machine's disk.
func (b *bed) machineFirmware(name string) sim.Firmware {
	kc := kernel.Config{
		Export:     b.exporter(name),
		FetchToken: ramdisk.FetchTFTP,
		TFTPPort:   b.tftpPort(),
		DHCPServer: b.dhcpConn.LocalAddr().String(),
		DHCPClient: "127.0.0.1:0",
		Recorder:   b.tl,
		Faults:     b.inject,
		Logger:     b.log,
	}
	rom := &pxe.ROM{
		DHCPServer: b.dhcpConn.LocalAddr().String(),
		DHCPClient: "127.0.0.1:0",
		TFTPPort:   b.tftpPort(),
		Exec:       kernel.Executor(kc),
		Unpack:     b.unpack,
	}
	return sim.StockFirmware{
		MediaBoot: mediaBoot(kc),
		HTTPBoot:  httpBoot(kc, rom),
		NetBoot:   rom,
		LocalBoot: loader.Loader{Kernel: kc},
	}
}

// exporter is the ramdisk's iSCSI target (tgtd in Ironic's bash ramdisk):
// metalbed's iscsitarget serving the machine's disk as LUN 1. Logins go
// into the machine's timeline.
func (b *bed) exporter(name string) ramdisk.Exporter {
	return func(ctx context.Context, ln net.Listener, iqn string, dev ramdisk.BlockDevice) error {
		who := events.Who{Machine: name}
		t, err := iscsitarget.New(iscsitarget.Config{IQN: iqn, Disk: dev, Size: dev.Size(), Logger: b.log,
			Recorder: events.Tag(b.tl, who), Faults: fault.Tag(b.inject, who), Registerer: b.reg})
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
