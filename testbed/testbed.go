// Package testbed is metalbed's composition root: simulated machines (or
// libvirt VMs), their IPMI BMCs, the provisioner, the per-node timeline and
// fault injection, built from one Config and run by one Serve. `metalbed
// up` and `metalbed demo` are thin command lines over it.
package testbed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/vms/timing"
)

// Defaults of the provisioner side.
const (
	DefaultAPIAddr      = "127.0.0.1:6385"
	DefaultTimelineAddr = "127.0.0.1:6386"
	// DefaultBootNetwork is the provisioner's address on a real-VM boot
	// network; each network is its own namespace and bridge, so testbeds
	// may share it.
	DefaultBootNetwork = "10.235.0.1/24"
	// InventoryFile is written into the state directory once everything
	// listens; its shape (Inventory) is a contract with scripts.
	InventoryFile = "inventory.json"
)

// ErrConfig marks an invalid Config (a command line maps it to a usage
// error).
var ErrConfig = errors.New("testbed config")

func configError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// checkBootInterface checks Config.BootInterface against the enroll
// driver, the backend and the machines' boot modes.
func (t *Testbed) checkBootInterface() error {
	cfg := t.cfg
	switch cfg.BootInterface {
	case "", "pxe", "ipxe":
	case boot.VirtualMediaName:
		if cfg.EnrollDriver != "redfish" {
			return configError("boot interface %s needs enroll driver redfish (the BMC inserts the ISO)", boot.VirtualMediaName)
		}
	case boot.HTTPSName:
		if cfg.EnrollDriver != "redfish" {
			return configError("boot interface %s needs enroll driver redfish (the BMC sets the UEFI HTTP boot)", boot.HTTPSName)
		}
		if cfg.Backend != "sim" {
			return configError("boot interface %s is for simulated machines: libvirt VMs (OVMF) take their HTTP boot URI from DHCP, not from the BMC", boot.HTTPSName)
		}
		for _, m := range cfg.Machines {
			if m.BootMode != vms.UEFI { // "" is bios
				return configError("boot interface %s boots UEFI machines only (legacy BIOS has no HTTP boot): machine %s boots %s (--boot-mode uefi)", boot.HTTPSName, m.Name, cmp.Or(m.BootMode, vms.BIOS))
			}
		}
	default:
		return configError("boot interface %q: want pxe, ipxe, %s or %s", cfg.BootInterface, boot.VirtualMediaName, boot.HTTPSName)
	}
	return nil
}

// Config is what the YAML topology and the command line describe.
type Config struct {
	// StateDir holds every machine's state, disk and console log,
	// inventory.json and the provisioner's state (provisioner/); required.
	// One process at a time may use it (it is locked).
	StateDir string
	// Machines are the machines and their BMCs, resolved; at least one.
	Machines []Machine
	// Backend is "sim" (default: simulated machines in this process) or
	// "libvirt" (real VMs on a boot network in a namespace metalbed
	// creates; without Provisioner nothing serves DHCP or boot files there:
	// a provisioner started inside the namespace does, see
	// Inventory.BootNetwork).
	Backend string
	// Libvirt configures the libvirt backend.
	Libvirt Libvirt
	// Provisioner, when set, runs the provisioner beside the machines and
	// wires their firmware to it; nil runs only the machines and BMCs.
	Provisioner *Provisioner
	// ExternalDHCP, without Provisioner, is a loopback DHCP server
	// (HOST:PORT) the machines' PXE ROMs ask when told to network-boot (a
	// standalone Ironic's dnsmasq); ExternalTFTPPort the TFTP port on the
	// next-server it names (default 69). "": the machines cannot
	// network-boot.
	ExternalDHCP     string
	ExternalTFTPPort int
	// TimelineAddr, without Provisioner, serves the machines' timeline
	// (their power, boots, console milestones, ramdisk and agent steps,
	// the Redfish actions on them) at HOST:PORT (port 0: a free one), as
	// the provisioner's timeline endpoint does, for a provisioner metalbed
	// does not run; it is kept in memory only. The endpoint also takes
	// fault rules (GET/POST/DELETE /v1/faults) for the layers that run
	// without the provisioner: ipmi, redfish, and the machines' ramdisk
	// and agent. "": neither. With Provisioner,
	// Provisioner.TimelineAddr is the timeline endpoint.
	TimelineAddr string
	// Enroll enrolls every machine as a node (driver ipmi, its BMC, a PXE
	// port per MAC), left in "enroll", before Ready; BootInterface is their
	// boot interface ("" = pxe when Debian's pxelinux and ipxe are
	// installed, else ipxe; libvirt: ipxe; redfish-virtual-media with
	// EnrollDriver redfish: deploy interface direct, boot_option local;
	// redfish-https the same, for simulated UEFI machines only).
	Enroll        bool
	BootInterface string
	// EnrollDriver is the hardware type Enroll gives the nodes: "ipmi"
	// (default: driver_info ipmi_*, the machine's IPMI BMC) or "redfish"
	// (driver_info redfish_*, the machine's ComputerSystem on the Redfish
	// service: needs Redfish). Boot and deploy interfaces are the same.
	EnrollDriver string
	// Redfish, when set, serves every machine as a Redfish ComputerSystem
	// on one listener as well (the IPMI BMCs stay); nil: no Redfish.
	Redfish *Redfish
	// Web, when set, serves the dashboard (package web) over the
	// machines, the timeline, the API and the faults; nil: none.
	Web *Web
	// Progress gets a line every 2 s while machines are still starting;
	// nil: none.
	Progress io.Writer
	// Version stamps the deploy ramdisk built from this binary.
	Version string
	// Metrics, when set, serves the testbed's Prometheus metrics (and
	// pprof) on a listener of its own (metrics.go); nil: only at the
	// provisioner API's /metrics.
	Metrics *Metrics
	// HTPasswdFile, without Provisioner, is a bcrypt htpasswd file whose
	// users alone may use the machines' timeline and fault endpoint
	// (TimelineAddr), as Provisioner.HTPasswdFile guards the provisioner's;
	// "" = no auth.
	HTPasswdFile string
	// Timing, when set, gives every simulated machine the pace of real
	// hardware (vms/timing); nil: as fast as the host.
	Timing *Timing
	// Logger; nil discards.
	Logger *slog.Logger
}

// Timing is the hardware pace of a testbed's machines: each machine's
// figures are drawn around Profile's from Seed and its name, and divided
// by Speed (vms/timing.Profile.Machine).
type Timing struct {
	Profile timing.Profile
	Speed   float64
	Seed    uint64
}

// Machine is one machine and its BMC.
type Machine struct {
	Name string
	// MACs are its NICs' addresses; nil: NICs addresses (default 1)
	// derived from the testbed's ID (IdentityFile) and the name, unique
	// to this testbed and the same across its restarts.
	MACs       []net.HardwareAddr
	NICs       int
	DiskBytes  int64
	BootMode   vms.BootMode
	PowerDelay time.Duration
	// Pace is the machine's hardware pace (POST, link-up, disk rate, BMC
	// latency); zero: Config.Timing's figures for it, else the host's.
	Pace timing.Figures
	// BMCAddress and BMCPort are where its BMC listens (port 0: a free
	// one); BMCConn, when set, is a socket the caller opened instead.
	BMCAddress string
	BMCPort    int
	BMCConn    net.PacketConn
	Username   string
	Password   string

	// uuid is its SMBIOS UUID, derived as its MACs are (withIdentity).
	uuid [16]byte
}

// Provisioner configures the provisioner side. Every address may have
// port 0 (a free port).
type Provisioner struct {
	// APIAddr is the Ironic v1 API (default DefaultAPIAddr); TimelineAddr
	// the timeline and fault endpoint (default DefaultTimelineAddr).
	APIAddr, TimelineAddr string
	// DHCPAddr, TFTPAddr and HTTPAddr: the boot servers on loopback
	// (defaults service.DefaultDHCPAddr …). DHCPRange: the addresses
	// leased to the machines, FIRST-LAST inside 127.0.0.0/8, on which
	// their ramdisks listen; Serve refuses one that overlaps a range
	// another running testbed holds. "": a block of the host's no running
	// testbed holds (127.N.0.10-127.N.255.250), the same across restarts
	// when free (blocks.go). Ignored with the libvirt backend, whose boot
	// servers live in the boot network.
	DHCPAddr, TFTPAddr, HTTPAddr, DHCPRange string
	// IPMIClient is the ipmi hardware type's client: "native" (default)
	// or "ipmitool".
	IPMIClient string
	// CallbackTimeout is the deploy and clean call-back timeout (0: the
	// conductor's default); NotifyDelay is waited before the conductor
	// tells a ramdisk "done" (0: 3 s as Ironic; negative: none).
	CallbackTimeout time.Duration
	NotifyDelay     time.Duration
	// AutomatedClean cleans nodes whose automated_clean is unset on
	// provide and undeploy, as Ironic's [conductor]automated_clean (true
	// there, and in `metalbed up`); false: they go straight to available.
	AutomatedClean bool
	// HTPasswdFile, when set, is a bcrypt htpasswd file whose users alone
	// may use the API and the timeline and fault endpoint (HTTP basic
	// auth); the ramdisks' endpoints stay guarded by deploy key and agent
	// token. "" = no auth.
	HTPasswdFile string
	// Listeners, when set, are sockets the caller opened instead of the
	// addresses above (each one that is set replaces its address).
	Listeners Listeners
}

// Listeners are the provisioner side's sockets opened by the caller. The
// boot servers' (DHCP, TFTP, HTTP) are used with the sim backend only.
type Listeners struct {
	API, Timeline, HTTP net.Listener
	DHCP, TFTP          net.PacketConn
}

// Libvirt configures real VMs.
type Libvirt struct {
	// BootNetwork is the provisioner's address and prefix on the VMs' boot
	// network (default DefaultBootNetwork).
	BootNetwork string
	// RamdiskDir holds vmlinuz and initramfs of `metalbed ramdisk build`;
	// default <StateDir>/ramdisk.
	RamdiskDir string
	// RemoveVMs undefines the VMs' domains when Serve returns.
	RemoveVMs bool
}

// Testbed is a configured testbed; Serve runs it.
type Testbed struct {
	cfg     Config
	log     *slog.Logger
	blocks  blockRegistry // the host's loopback blocks (blocks.go)
	bootNet netip.Prefix
	started chan struct{}
	ready   chan struct{}

	// Set while Serve runs, before started is closed.
	fleet   *fleet
	bed     *bed            // nil without a provisioner
	redfish *redfishService // nil without Config.Redfish
	web     *webService     // nil without Config.Web
	uuids   map[string]string
	// machineTL is the machines-only timeline (Config.TimelineAddr); nil
	// with a provisioner or without it.
	machineTL *machineTimeline
	// vmNet is the real VMs' boot network; nil with the sim backend.
	vmNet *libvirt.Network
	// reg is this testbed's metrics registry (metrics.go); metricsLn its
	// own listener (nil without Config.Metrics).
	reg       *prometheus.Registry
	metricsLn net.Listener

	mu sync.Mutex
}

// New checks cfg and applies defaults. It does no I/O.
func New(cfg Config) (*Testbed, error) {
	if cfg.StateDir == "" {
		return nil, configError("no state directory")
	}
	abs, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, configError("state dir: %v", err)
	}
	cfg.StateDir = abs
	if len(cfg.Machines) == 0 {
		return nil, configError("no machines")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Backend == "" {
		cfg.Backend = "sim"
	}
	if cfg.Timing != nil {
		cfg.Machines = slices.Clone(cfg.Machines)
		for i, m := range cfg.Machines {
			if m.Pace.Zero() {
				cfg.Machines[i].Pace = cfg.Timing.Profile.Machine(m.Name, cfg.Timing.Seed, cfg.Timing.Speed)
			}
		}
	}
	t := &Testbed{cfg: cfg, log: cfg.Logger, started: make(chan struct{}), ready: make(chan struct{}), reg: metrics.NewRegistry(),
		blocks: blockRegistry{dir: blockRegistryDir()}}
	switch cfg.Backend {
	case "sim":
	case "libvirt":
		if cfg.ExternalDHCP != "" {
			return nil, configError("an external DHCP server on loopback cannot serve real VMs: run it inside the boot network's namespace instead")
		}
		if t.cfg.Libvirt.BootNetwork == "" {
			t.cfg.Libvirt.BootNetwork = DefaultBootNetwork
		}
		if t.cfg.Libvirt.RamdiskDir == "" {
			t.cfg.Libvirt.RamdiskDir = filepath.Join(abs, "ramdisk")
		}
		pfx, err := netip.ParsePrefix(t.cfg.Libvirt.BootNetwork)
		if err != nil || !pfx.Addr().Is4() {
			return nil, configError("boot network %q: want an IPv4 address and prefix such as %s", t.cfg.Libvirt.BootNetwork, DefaultBootNetwork)
		}
		if _, err := vmPool(pfx, pfx.Addr()); err != nil {
			return nil, configError("boot network: %v", err)
		}
		t.bootNet = pfx
		if t.cfg.BootInterface == "" {
			t.cfg.BootInterface = "ipxe" // QEMU's NIC ROMs are iPXE
		}
	default:
		return nil, configError("backend %q: want sim or libvirt", cfg.Backend)
	}
	if cfg.Enroll && cfg.Provisioner == nil {
		return nil, configError("enrolling needs the provisioner")
	}
	switch cfg.EnrollDriver {
	case "", "ipmi":
	case "redfish":
		if cfg.Redfish == nil {
			return nil, configError("enrolling with driver redfish needs the Redfish service")
		}
	default:
		return nil, configError("enroll driver %q: want ipmi or redfish", cfg.EnrollDriver)
	}
	if cfg.TimelineAddr != "" && cfg.Provisioner != nil {
		return nil, configError("Config.TimelineAddr is the timeline of machines without the provisioner (the provisioner's is Provisioner.TimelineAddr)")
	}
	if err := t.checkBootInterface(); err != nil {
		return nil, err
	}
	if cfg.ExternalDHCP != "" {
		if cfg.Provisioner != nil {
			return nil, configError("an external DHCP server goes without the provisioner (the provisioner serves its own DHCP)")
		}
		ap, err := netip.ParseAddrPort(cfg.ExternalDHCP)
		if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() || ap.Port() == 0 {
			return nil, configError("external DHCP server %q: want a loopback HOST:PORT such as 127.0.0.1:6767 (simulated machines live on loopback)", cfg.ExternalDHCP)
		}
		if t.cfg.ExternalTFTPPort == 0 {
			t.cfg.ExternalTFTPPort = 69
		}
	}
	if p := cfg.Provisioner; p != nil {
		pc := *p
		if pc.APIAddr == "" {
			pc.APIAddr = DefaultAPIAddr
		}
		if pc.TimelineAddr == "" {
			pc.TimelineAddr = DefaultTimelineAddr
		}
		if pc.DHCPAddr == "" {
			pc.DHCPAddr = service.DefaultDHCPAddr
		}
		if pc.TFTPAddr == "" {
			pc.TFTPAddr = service.DefaultTFTPAddr
		}
		if pc.HTTPAddr == "" {
			pc.HTTPAddr = service.DefaultHTTPAddr
		}
		if pc.IPMIClient == "" {
			pc.IPMIClient = drivers.ClientNative
		}
		if pc.NotifyDelay == 0 {
			pc.NotifyDelay = 3 * time.Second
		}
		if pc.CallbackTimeout < 0 {
			return nil, configError("deploy call-back timeout %s: want a positive duration", pc.CallbackTimeout)
		}
		if cfg.Backend == "sim" {
			if err := checkLoopback(pc); err != nil {
				return nil, err
			}
		}
		t.cfg.Provisioner = &pc
	}
	return t, nil
}

// Serve opens the machines, binds every socket, builds the deploy images,
// runs the BMCs and the provisioner, enrolls the machines (Config.Enroll)
// and writes inventory.json; it runs until ctx ends, then closes
// everything and returns nil (also when ctx ends while starting).
func (t *Testbed) Serve(ctx context.Context) (err error) {
	defer func() {
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // interrupted while starting: nothing half-done is left
		}
	}()
	lock, err := lockStateDir(t.cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Close() // last: releases the state dir
	id, err := loadIdentity(t.cfg.StateDir)
	if err != nil {
		return err
	}
	plans := withIdentity(t.cfg.Machines, id.ID)
	var leases *blockClaim
	if t.cfg.Provisioner != nil && t.cfg.Backend == "sim" {
		if leases, err = t.claimLeases(id); err != nil {
			return err
		}
		defer leases.release()
	}
	var nw *libvirt.Network
	if t.cfg.Backend == "libvirt" {
		if err := libvirt.Built(); err != nil {
			return err
		}
		if nw, err = createBootNetwork(ctx, t.cfg.StateDir, t.bootNet); err != nil {
			return err
		}
		defer nw.Close()
	}
	mln, err := listenMetrics(t.cfg.Metrics)
	if err != nil {
		return err
	}
	if mln != nil {
		defer mln.Close()
	}
	var mt *machineTimeline
	var rec events.Recorder
	var faults fault.Injector
	if t.cfg.Provisioner == nil && t.cfg.TimelineAddr != "" {
		if mt, err = listenMachineTimeline(t.cfg.TimelineAddr, t.cfg.HTPasswdFile, t.reg); err != nil {
			return err
		}
		defer mt.ln.Close()
		rec, faults = mt.tl, mt.inject
	}
	hooks := t.externalNetboot(rec, faults)
	if nw != nil {
		hooks = vmHooks(nw, rec, faults)
	}
	var b *bed
	if t.cfg.Provisioner != nil {
		if b, err = listenBed(t, nw, leases); err != nil {
			return err
		}
		defer b.close()
		hooks = b.nodeHooks
	}
	f, err := startFleet(ctx, plans, t.cfg.StateDir, t.log, t.cfg.Progress, withMetrics(hooks, t.reg))
	if err != nil {
		return err
	}
	defer f.close()
	f.removeVMs = t.cfg.Libvirt.RemoveVMs
	var rf *redfishService
	if t.cfg.Redfish != nil {
		var rec events.Recorder
		var faults fault.Injector
		if b != nil {
			rec, faults = b.tl, b.inject
		} else if mt != nil {
			rec, faults = mt.tl, mt.inject
		}
		if rf, err = startRedfish(*t.cfg.Redfish, t.cfg.StateDir, f, nw, rec, faults, t.reg, t.log); err != nil {
			return err
		}
		defer rf.close()
	}
	t.mu.Lock()
	t.fleet, t.bed, t.redfish, t.metricsLn, t.machineTL, t.vmNet = f, b, rf, mln, mt, nw
	t.mu.Unlock()
	var ws *webService
	if t.cfg.Web != nil {
		if ws, err = startWeb(*t.cfg.Web, t, b); err != nil {
			return err
		}
		defer ws.ln.Close()
		t.mu.Lock()
		t.web = ws
		t.mu.Unlock()
	}
	close(t.started)
	if b != nil {
		if err := b.prepare(ctx); err != nil {
			return err
		}
		for _, n := range f.nodes {
			defer b.watchMachine(n.machine)()
		}
	}
	if mt != nil {
		for _, n := range f.nodes {
			defer watchMachine(mt.tl, n.machine, "BMC wired")()
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.serve(gctx) })
	if mt != nil {
		g.Go(func() error { return mt.serve(gctx) })
	}
	if rf != nil {
		g.Go(func() error { return rf.serve(gctx) })
	}
	if mln != nil {
		g.Go(func() error { return metrics.Serve(gctx, mln, t.reg, t.cfg.Metrics.PProf) })
	}
	if ws != nil {
		g.Go(func() error { return ws.serve(gctx) })
	}
	if b != nil {
		g.Go(func() error { return b.serve(gctx) })
	}
	g.Go(func() error {
		if b != nil {
			select {
			case <-b.svc.Ready():
			case <-gctx.Done():
				return nil
			}
			if t.cfg.Enroll {
				uuids, err := b.enroll(gctx, f.enrollSpecs(b, t.cfg.BootInterface, t.cfg.EnrollDriver, rf))
				if err != nil {
					if gctx.Err() != nil {
						return nil
					}
					return err
				}
				t.mu.Lock()
				t.uuids = uuids
				t.mu.Unlock()
			}
			close(b.enrolled)
		}
		if err := writeInventory(filepath.Join(t.cfg.StateDir, InventoryFile), t.Inventory()); err != nil {
			return err
		}
		close(t.ready)
		// Start-up (opening every machine, writing its state, the
		// inventory) leaves garbage about the size of the fleet's live
		// heap; the runtime would keep it as RSS for as long as the
		// testbed idles. Hand it back once, now.
		debug.FreeOSMemory()
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return f.close()
}

// Started is closed once every socket is bound and every machine is open:
// the addresses and the inventory are known (the deploy images may still
// be building).
func (t *Testbed) Started() <-chan struct{} { return t.started }

// Ready is closed once the provisioner answers, the machines are enrolled
// (Config.Enroll) and inventory.json is written.
func (t *Testbed) Ready() <-chan struct{} { return t.ready }

// Dir is the state directory.
func (t *Testbed) Dir() string { return t.cfg.StateDir }

// APIURL is the provisioner API, e.g. http://127.0.0.1:6385; "" before
// Started or without a provisioner.
func (t *Testbed) APIURL() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bed == nil {
		return ""
	}
	return t.bed.apiURL()
}

// RedfishURL is the Redfish service, e.g. https://127.0.0.1:8000; ""
// before Started or without Config.Redfish.
func (t *Testbed) RedfishURL() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.redfish == nil {
		return ""
	}
	return t.redfish.url
}

// TimelineURL is the timeline and fault endpoint (without a provisioner:
// the machines' timeline, Config.TimelineAddr); "" before Started or
// without either.
func (t *Testbed) TimelineURL() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.bed != nil:
		return t.bed.timelineURL()
	case t.machineTL != nil:
		return t.machineTL.url()
	}
	return ""
}

// Timeline is the per-node timeline (without a provisioner: the
// machines', Config.TimelineAddr); nil before Ready or without either.
func (t *Testbed) Timeline() *events.Timeline {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.bed != nil:
		return t.bed.tl
	case t.machineTL != nil:
		return t.machineTL.tl
	}
	return nil
}

// NodeUUIDs are the nodes Config.Enroll enrolled, by machine name.
func (t *Testbed) NodeUUIDs() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.uuids
}

// Inventory describes the machines, their BMCs and the endpoints; empty
// before Started.
func (t *Testbed) Inventory() Inventory {
	t.mu.Lock()
	f, b, rf, ws, nw := t.fleet, t.bed, t.redfish, t.web, t.vmNet
	t.mu.Unlock()
	if f == nil {
		return Inventory{Nodes: []InventoryNode{}}
	}
	inv := f.inventory(b, rf)
	if nw != nil {
		inv.BootNetwork = &InventoryBootNetwork{Namespace: nw.NS, Interface: nw.Iface,
			Address: nw.Addr().String(), Prefix: nw.Prefix().String()}
	}
	if inv.Timeline == "" {
		inv.Timeline = t.TimelineURL()
	}
	if ws != nil {
		inv.Web = ws.url
	}
	inv.Metrics = t.MetricsURL()
	return inv
}
