// Package service wires the provisioner together: the SQLite store under a
// state directory, the conductor and the Ironic-compatible API, served on
// one listener. It is the single entry point "metalbed provisioner serve"
// and "metalbed up" use.
package service

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"net/netip"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner/api"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/conductor"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store/sqlite"
)

// DBName is the database file inside StateDir.
const DBName = "provisioner.db"

// Config configures the provisioner service. Zero values take the
// documented defaults.
type Config struct {
	// APIAddr is where callers should listen (Serve takes the listener);
	// default api.DefaultAddr, 127.0.0.1:6385.
	APIAddr string
	// StateDir holds the database; required. Created if missing.
	StateDir string
	// Drivers are the enabled hardware types; default
	// drivers.NewDefaultRegistry(IPMI, Redfish): "ipmi", "redfish" and
	// "fake-hardware".
	Drivers *drivers.Registry
	// IPMI configures the default "ipmi" hardware type when Drivers is nil.
	IPMI drivers.IPMIConfig
	// Redfish configures the default "redfish" hardware type when Drivers
	// is nil; its Boot and Deploy default to those of IPMI (after Netboot
	// filled them), its DefaultBootMode and Logger too.
	Redfish drivers.RedfishConfig
	// Hostname names the conductor; default os.Hostname().
	Hostname string
	// HTPasswdFile turns on HTTP basic auth (bcrypt htpasswd); default off.
	HTPasswdFile string
	// Timeline, when set, answers the API's GET /v1/nodes/{node}/timeline
	// (api.Config.Timeline); default nil: 404.
	Timeline http.Handler
	// APIPeer maps an API connection's remote address to its client's,
	// for a TCP proxy in front of the API (api.Config.Peer); default nil.
	APIPeer func(remoteAddr string) string
	// PowerSyncInterval, DeployCallbackTimeout, CleanCallbackTimeout,
	// CheckProvisionInterval, AutomatedClean: see conductor.Config
	// (defaults 60 s, 1800 s, 1800 s, 60 s, false). With Netboot set,
	// AutomatedClean true makes "provide" and "deleted" boot the deploy
	// ramdisk and wipe the disk's partition tables.
	PowerSyncInterval      time.Duration
	DeployCallbackTimeout  time.Duration
	CleanCallbackTimeout   time.Duration
	CheckProvisionInterval time.Duration
	AutomatedClean         bool
	// Netboot, when set and Drivers is nil, gives the "ipmi" hardware type
	// the "pxe" (default) and "ipxe" boot interfaces and the "iscsi" and
	// "direct" deploy interfaces (nodes choose one with deploy_interface).
	Netboot *Netboot
	// Recorder, when set, receives the events of the conductor (each
	// provision state a node enters, active, failed), of the deploy
	// interfaces (image cached, prepare, power on, pass_deploy_info, iscsi
	// login, image written, iscsi logout, bootloader, notify, reboot, disk
	// wiped) and of the API (ports created, changed, deleted), keyed by node
	// UUID and name. It is called from conductor tasks and must not block.
	Recorder events.Recorder
	// Faults is asked at every dispatch point of the provisioner's servers
	// (DHCP, TFTP, HTTP boot) and at each step of the conductor (layer
	// conductor: a "kill" hit stops the conductor as a crash would, and
	// Serve returns ErrConductorKilled). nil: no faults.
	Faults fault.Injector
	// Boot, when set, adds the DHCP, TFTP and HTTP boot servers
	// (ServeBoot) and fills what Netboot leaves empty from them.
	Boot *BootServers
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics of the conductor, the API and the
	// boot servers (metalbed_conductor_*, metalbed_api_*, metalbed_dhcp_*,
	// metalbed_tftp_*, metalbed_httpboot_*); Gatherer, when set, answers
	// GET /metrics on the API listener (behind HTPasswdFile's auth when
	// set). nil: none. Never the global registry: the caller makes one.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// MetricsListener, when set, is a listener of its own Run serves
	// Gatherer's /metrics on (without auth), with Go's profiles under
	// /debug/pprof/ when PProf is set.
	MetricsListener net.Listener
	PProf           bool
	// ResumeAfter holds back carrying on, at each conductor start, the
	// nodes left waiting for their machines until it is closed
	// (conductor.Config.ResumeAfter): a caller that re-points nodes at
	// BMCs that moved closes it once it did. nil: at once.
	ResumeAfter <-chan struct{}
	// Now is the conductor's clock (conductor.Config.Now) and the deploy
	// interfaces' (deploy.Config.Now); default time.Now.
	Now func() time.Time
}

// Netboot configures network booting and the iSCSI deploy.
type Netboot struct {
	// TFTPRoot is the directory the TFTP server serves, TFTPServer its
	// address as machines reach it (next-server). Required.
	TFTPRoot   string
	TFTPServer netip.Addr
	// HTTPRoot and HTTPURL are the HTTP boot server's directory and base URL
	// as machines reach it; both required for the "ipxe" boot interface,
	// which is left out when they are empty.
	HTTPRoot string
	HTTPURL  string
	// APIURL is ironic_api_url: this service's API as deploy ramdisks reach
	// it, e.g. "http://127.0.0.1:6385". Required.
	APIURL string
	// Hosts receives each PXE port's DHCP answer (*dhcp.StaticHosts, shared
	// with the DHCP server). Required.
	Hosts boot.Hosts
	// ImageCacheDir holds the image cache's master copies (deploy kernels
	// and ramdisks, instance images); default <StateDir>/master_images.
	// ImagesDir holds each node's instance image while it is deployed;
	// default <StateDir>/images.
	ImageCacheDir string
	ImagesDir     string
	// Loaders locate pxelinux.0, ldlinux.c32, undionly.kpxe, ipxe.efi.
	Loaders boot.Loaders
	// ISOLoaders finds ISOLINUX and GRUB for the redfish-virtual-media
	// boot interface's ISOs (boot.Config.ISOLoaders); default
	// disk.DefaultISOLoaders, asked when a node first needs them.
	ISOLoaders func(ctx context.Context, bios, uefi bool) (disk.ISOLoaders, error)
	// DefaultBootMode ("uefi" default, or "bios") and DefaultBootOption
	// ("netboot" default, or "local") apply when a node chooses none.
	DefaultBootMode   string
	DefaultBootOption string
	// NotifyDelay is waited before telling a ramdisk "done" (Ironic sleeps
	// 3 s); default 3 s, negative: none. NotifyPort is where ramdisks wait
	// for it (default 10000); ISCSIPort their portal port (default 3260).
	NotifyDelay time.Duration
	NotifyPort  int
	ISCSIPort   int
	// AppendParams is Ironic's [pxe]pxe_append_params, on the deploy and
	// instance kernels' command lines; default "nofb nomodeset
	// vga=normal". Real VMs add console=ttyS0,115200 to see them on the
	// serial log.
	AppendParams string
	// DialContext opens the conductor's connections to machines' ramdisks
	// and agents (iSCSI portal, notice port, agent API) and to image URLs;
	// default a net.Dialer's. Real VMs behind a network namespace are
	// reached through the namespace's dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// AgentPowerOffInterval is how often the "direct" deploy asks the BMC
	// whether the agent's soft power off took (6 tries, as Ironic);
	// default 5 s.
	AgentPowerOffInterval time.Duration
}

// Service is a configured provisioner, not yet serving.
type Service struct {
	cfg       Config
	ready     chan struct{}
	readyOnce sync.Once
	// crash stops the running Serve as a crash of the conductor process
	// would (a conductor fault); nil while none runs.
	crashMu sync.Mutex
	crash   context.CancelCauseFunc
	boot    *bootServers // nil without Config.Boot
}

// New checks cfg and applies defaults. It does no I/O.
func New(cfg Config) (*Service, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("provisioner: StateDir is required")
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = api.DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Service{cfg: cfg, ready: make(chan struct{})}
	if s.cfg.Boot != nil {
		if err := s.newBootServers(); err != nil {
			return nil, err
		}
	}
	if s.cfg.Drivers == nil {
		if s.cfg.IPMI.Logger == nil {
			s.cfg.IPMI.Logger = s.cfg.Logger
		}
		if s.cfg.Netboot != nil {
			if err := s.netboot(); err != nil {
				return nil, err
			}
		}
		rf := s.cfg.Redfish
		if rf.Boot == nil {
			rf.Boot = s.cfg.IPMI.Boot
		}
		if rf.Deploy == nil {
			rf.Deploy = s.cfg.IPMI.Deploy
		}
		if rf.Inspect == nil {
			rf.Inspect = s.cfg.IPMI.Inspect
		}
		if rf.DefaultBootMode == "" {
			rf.DefaultBootMode = s.cfg.IPMI.DefaultBootMode
		}
		if rf.Logger == nil {
			rf.Logger = s.cfg.IPMI.Logger
		}
		reg, err := drivers.NewDefaultRegistry(s.cfg.IPMI, rf)
		if err != nil {
			return nil, fmt.Errorf("provisioner drivers: %w", err)
		}
		s.cfg.Drivers = reg
	}
	return s, nil
}

// Addr is the API address callers should listen on.
func (s *Service) Addr() string { return s.cfg.APIAddr }

// Ready is closed once Serve has recovered the nodes and answers the API,
// for callers that enroll nodes right after starting it.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Serve opens the store, runs the conductor and answers the API on ln
// until ctx ends; then it stops both, closes the store and returns nil.
// Serve may be called again after it returned, on the same ln: a
// conductor restart (it recovers the nodes from the store as on any
// start). A listener with SetDeadline (TCP, Unix) stays open for that and
// is the caller's to close; any other is closed when Serve returns.
func (s *Service) Serve(ctx context.Context, ln net.Listener) (err error) {
	ln = reusable(ln)
	parent := ctx
	ctx, crash := context.WithCancelCause(ctx)
	s.crashMu.Lock()
	s.crash = crash
	s.crashMu.Unlock()
	defer func() {
		s.crashMu.Lock()
		s.crash = nil
		s.crashMu.Unlock()
		crash(nil)
		if parent.Err() == nil && errors.Is(context.Cause(ctx), ErrConductorKilled) {
			err = ErrConductorKilled
		}
	}()
	if err := os.MkdirAll(s.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(s.cfg.StateDir, DBName))
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while opening (a SIGINT right after start)
		}
		return err
	}
	defer st.Close()
	started := make(chan struct{})
	cond, err := conductor.New(conductor.Config{
		Hostname: s.cfg.Hostname, Store: st, Drivers: s.cfg.Drivers, Logger: s.cfg.Logger,
		PowerSyncInterval: s.cfg.PowerSyncInterval, DeployCallbackTimeout: s.cfg.DeployCallbackTimeout,
		CleanCallbackTimeout: s.cfg.CleanCallbackTimeout, CheckProvisionInterval: s.cfg.CheckProvisionInterval,
		AutomatedClean: s.cfg.AutomatedClean, Recorder: s.cfg.Recorder, Faults: s.conductorFaults(),
		Registerer: s.cfg.Registerer, OnStarted: func() { close(started) }, Now: s.cfg.Now,
		ResumeAfter: s.cfg.ResumeAfter,
	})
	if err != nil {
		return err
	}
	var creds *api.Credentials
	if s.cfg.HTPasswdFile != "" {
		if creds, err = api.LoadHTPasswd(s.cfg.HTPasswdFile); err != nil {
			return err
		}
	}
	srv, err := api.New(api.Config{Conductor: cond, Store: st, Credentials: creds, Logger: s.cfg.Logger, Timeline: s.cfg.Timeline, Recorder: s.cfg.Recorder,
		Registerer: s.cfg.Registerer, Gatherer: s.cfg.Gatherer, Peer: s.cfg.APIPeer})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cond.Run(gctx) })
	g.Go(func() error {
		// Answer once the conductor has recovered and registered.
		select {
		case <-started:
		case <-gctx.Done():
			return nil
		}
		s.cfg.Logger.Info("provisioner API listening", "addr", ln.Addr().String())
		s.readyOnce.Do(func() { close(s.ready) })
		return srv.Serve(gctx, ln)
	})
	return g.Wait()
}

// ErrConductorKilled is what Serve returns when a conductor fault (layer
// conductor, action kill) stopped it: the conductor died as its process
// would, with tasks in flight abandoned; the caller may Serve again, which
// recovers the nodes as Ironic's conductor does on start.
var ErrConductorKilled = errors.New("conductor killed by an injected fault")

// conductorFaults is the Injector the conductor and the deploy interfaces
// ask: Config.Faults, with layer conductor's kill carried out by stopping
// the running Serve.
type conductorFaults struct{ s *Service }

func (f conductorFaults) Inject(layer fault.Layer, who events.Who, op string) (fault.Hit, bool) {
	if f.s.cfg.Faults == nil {
		return fault.Hit{}, false
	}
	h, ok := f.s.cfg.Faults.Inject(layer, who, op)
	if ok && layer == fault.Conductor && h.Action == fault.ActionKill {
		f.s.crashMu.Lock()
		if f.s.crash != nil {
			f.s.crash(ErrConductorKilled)
		}
		f.s.crashMu.Unlock()
	}
	return h, ok
}

// conductorFaults is nil without Config.Faults (the conductor then asks
// nobody), else the Injector that carries a kill out.
func (s *Service) conductorFaults() fault.Injector {
	if s.cfg.Faults == nil {
		return nil
	}
	return conductorFaults{s}
}
