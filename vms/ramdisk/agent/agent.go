// Package agent is the agent mode of metalbed's deploy ramdisk: a program
// that speaks ironic-python-agent's protocol, so that metalbed's conductor
// and a real Ironic deploy a machine through it with the direct deploy
// interface.
//
// Run inspects the machine, looks its node up in Ironic (GET /v1/lookup,
// falling back to the legacy vendor_passthru lookup), serves IPA's REST API
// (port 9999: /v1/commands with agent_token, wait=true|false, 409 when
// busy) and heartbeats (POST /v1/heartbeat/<uuid>) every 0.3–0.6 ×
// heartbeat_timeout. The commands are IPA's: standby.prepare_image (HTTP
// download streamed to the disk, checksum md5 or os_hash_algo/value,
// whole-disk or partition images with a config drive),
// standby.get_partition_uuids, image.install_bootloader, standby.power_off,
// standby.sync, deploy.get_deploy_steps/execute_deploy_step (write_image),
// clean.get_clean_steps/execute_clean_step (erase_devices_metadata,
// erase_devices) and log.collect_system_logs, with IPA's result and error
// shapes.
//
// The ramdisk runs in agent mode when its kernel command line carries
// ipa-api-url (ramdisk.Params.AgentMode); ConfigFromParams reads the other
// ipa-* parameters. The machine is reached through Env: the ramdisk's
// disks, listener and reset line (EnvFrom adapts a ramdisk.Env), plus the
// hardware description for the inventory and a power-off line.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/httpserve"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// Env is the machine the agent runs on. The disk and network methods are
// those of ramdisk.Env; the agent adds the inventory and power off.
type Env interface {
	Disks(ctx context.Context) ([]ramdisk.Disk, error)
	// Hardware describes the machine for the inventory and the lookup.
	Hardware(ctx context.Context) (Hardware, error)
	// Listen opens a TCP listener on the agent's own address.
	Listen(ctx context.Context, port int) (net.Listener, error)
	// Reboot resets the machine; PowerOff turns it off. Either may not
	// return: the program dies with its machine.
	Reboot(ctx context.Context) error
	PowerOff(ctx context.Context) error
}

// Hardware is what the agent reports of the machine besides its disks.
type Hardware struct {
	NICs []NIC
	CPU  CPU
	// MemoryBytes is the memory the kernel sees; PhysicalMB the installed
	// memory (IPA's total and physical_mb).
	MemoryBytes int64
	PhysicalMB  int64
	BMCAddress  string // "0.0.0.0" when unknown, as IPA reports it
	Vendor      SystemVendor
	BootMode    string // "bios" or "uefi": how this boot happened
	// PXEInterface is the MAC the machine booted from (BOOTIF).
	PXEInterface string
	Hostname     string
}

// NIC is one network interface.
type NIC struct {
	Name       string
	MAC        string
	IPv4       string
	HasCarrier bool
	Vendor     string // PCI vendor ID, e.g. 0x1af4
	Product    string // PCI product ID
}

// CPU is the inventory's cpu.
type CPU struct {
	ModelName    string
	Frequency    string // MHz
	Count        int
	Architecture string
	Flags        []string
}

// SystemVendor is the inventory's system_vendor (DMI).
type SystemVendor struct {
	ProductName  string
	SerialNumber string
	Manufacturer string
}

// Config configures one run of the agent.
type Config struct {
	// APIURL is the Ironic API (ipa-api-url); required.
	APIURL string
	Env    Env // required
	// HTTP is the client for Ironic and image downloads; default a client
	// with no overall timeout (each call has its own deadline).
	HTTP *http.Client
	// LocalIP, when set, is the address HTTP's connections leave from
	// (when HTTP's transport is an *http.Transport or nil): the NIC's own
	// address, which the lookup pins the callback_url to. Default: the
	// system's choice.
	LocalIP net.IP
	// AgentPort is where the agent API listens; default 9999.
	AgentPort int
	// AdvertiseHost and AdvertisePort make the callback_url; defaults: the
	// listener's own address and AgentPort.
	AdvertiseHost string
	AdvertisePort int
	// DriverName is used by the legacy lookup; default "agent_ipmitool".
	DriverName string
	// NodeUUID, when known, is sent with the lookup.
	NodeUUID string
	// InspectionCallbackURL (ipa-inspection-callback-url), when set, is
	// where the agent posts its inventory before the lookup, as IPA's
	// inspector does.
	InspectionCallbackURL string
	// AgentToken is a token known before lookup (ipa-agent-token).
	AgentToken string
	// IronicAPIVersion skips version discovery ("1.68"); default: read the
	// API root and use min(its default version, 1.68).
	IronicAPIVersion string
	GlobalRequestID  string
	// LookupTimeout bounds the lookup retries; default 300 s.
	// LookupInterval is the first retry interval; default 1 s (IPA backs
	// off randomly and exponentially up to 30 s).
	LookupTimeout  time.Duration
	LookupInterval time.Duration
	// HeartbeatErrorInterval is the base retry after a failed heartbeat;
	// default 5 s (IPA waits 1–2 × this).
	HeartbeatErrorInterval time.Duration
	// DownloadTimeout is how long an image download may stall; default 60 s.
	// DownloadRetries is how often a failed download is retried; default 2,
	// negative for none. DownloadRetryInterval default 10 s.
	DownloadTimeout       time.Duration
	DownloadRetries       int
	DownloadRetryInterval time.Duration
	// MinDiskBytes is the smallest disk chosen without root device hints;
	// default 4 GiB as IPA, negative for no minimum.
	MinDiskBytes int64
	// TempDir caches partition images; default os.TempDir().
	TempDir string
	// Bootloaders are what image.install_bootloader installs; nil: those
	// of the ramdisk running on this machine (ramdisk.LocalBootloaders,
	// read from disk.GrubImagesDir, where `metalbed ramdisk build` puts
	// them). A simulated machine passes those of the initramfs it booted.
	// Without GRUB for the boot mode the agent installs metalbed's
	// placeholder loader, which only simulated firmware boots — an error
	// on the console and an AgentBootloaderFallback event unless the
	// ramdisk was built to do so.
	Bootloaders *ramdisk.Bootloaders
	// Console receives what a person reads on the serial console; the
	// agent keeps its own copy for log.collect_system_logs.
	Console io.Writer
	// Recorder, when set, is told each step (events.Agent*, for the
	// node's timeline).
	Recorder events.Recorder
	Logger   *slog.Logger
	// Version is agent_version; default "9.4.0" (the IPA this agent
	// answers like).
	Version string
	// Faults is asked (layer agent, the node known by its UUID once
	// looked up) with op "lookup", "heartbeat" or a command's full name
	// ("deploy.execute_deploy_step"), and the agent carries out the
	// layer's actions (fault.Catalog): "lookup-404" (the lookup is
	// answered 404, so the agent keeps retrying), "heartbeat-stop" (the
	// heartbeat is not sent), "busy" (the command is refused with 409
	// Agent is busy), "command-failed" (the command ends FAILED with Arg,
	// or a default message, as its error). Any hit's Delay is waited
	// first: a slow agent. nil: no faults.
	Faults fault.Injector
}

// Defaults.
const (
	DefaultAgentPort   = 9999
	DefaultVersion     = "9.4.0"
	defaultDriverName  = "agent_ipmitool"
	maxKnownAPIVersion = "1.68"
)

func (c *Config) defaults() error {
	if c.APIURL == "" {
		return errors.New("agent: no Ironic API URL (ipa-api-url)")
	}
	if c.Env == nil {
		return errors.New("agent: no Env")
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{}
	}
	if c.LocalIP != nil {
		c.HTTP = fromAddress(c.HTTP, c.LocalIP)
	}
	if c.AgentPort == 0 {
		c.AgentPort = DefaultAgentPort
	}
	if c.DriverName == "" {
		c.DriverName = defaultDriverName
	}
	if c.LookupTimeout == 0 {
		c.LookupTimeout = 300 * time.Second
	}
	if c.LookupInterval == 0 {
		c.LookupInterval = time.Second
	}
	if c.HeartbeatErrorInterval == 0 {
		c.HeartbeatErrorInterval = 5 * time.Second
	}
	if c.DownloadTimeout == 0 {
		c.DownloadTimeout = 60 * time.Second
	}
	if c.DownloadRetries == 0 {
		c.DownloadRetries = 2
	}
	if c.DownloadRetries < 0 {
		c.DownloadRetries = 0
	}
	if c.DownloadRetryInterval == 0 {
		c.DownloadRetryInterval = 10 * time.Second
	}
	if c.MinDiskBytes == 0 {
		c.MinDiskBytes = 4 << 30
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.Console == nil {
		c.Console = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	return nil
}

// Agent is one running agent. Its state is what IPA keeps in memory: the
// node from the lookup, the token, the command results and what the last
// image write left on the disk.
type Agent struct {
	cfg     Config
	log     *consoleLog
	ironic  *ironicClient
	started time.Time
	exts    map[string]map[string]commandSpec // built in New, read-only after

	cmdMu     sync.Mutex // IPA's command_lock
	mu        sync.Mutex
	node      map[string]any // node from lookup, then from deploy/clean steps
	nodeUUID  string
	token     string
	tokenless bool // a legacy conductor issued no token: commands need none
	hbTimeout int
	commands  []*command
	byID      map[string]*command
	getLocked bool // a GET carried a token: GETs need it from now on
	deployed  *deployState
	forceHB   chan struct{}
	run       context.Context // the agent's lifetime, for async commands
}

// New checks cfg and builds an agent; it does no I/O.
func New(cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:     cfg,
		byID:    map[string]*command{},
		forceHB: make(chan struct{}, 1),
		token:   cfg.AgentToken,
	}
	a.log = newConsoleLog(cfg.Console)
	a.ironic = &ironicClient{cfg: &a.cfg, say: a.say, fault: a.fault}
	a.exts = a.extensions()
	return a, nil
}

// Run inspects the machine, looks the node up, serves the agent API and
// heartbeats until ctx ends (nil) or the lookup fails for good (an error,
// as IPA exits then).
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Run is the agent's main loop; see the package Run.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	a.mu.Lock()
	a.run = ctx
	a.mu.Unlock()
	a.say("ironic-python-agent compatible agent %s (metalbed) starting; api %s", a.cfg.Version, a.cfg.APIURL)
	a.milestone(events.AgentUp, a.cfg.Version)

	inv, err := a.inventory(ctx)
	if err != nil {
		return fmt.Errorf("agent: inventory: %w", err)
	}
	ln, err := a.cfg.Env.Listen(ctx, a.cfg.AgentPort)
	if err != nil {
		return fmt.Errorf("agent: listen on port %d: %w", a.cfg.AgentPort, err)
	}
	defer ln.Close()
	a.say("agent API listening on %s", ln.Addr())

	if id := a.runInspection(ctx, inv); id != "" && a.cfg.NodeUUID == "" {
		a.cfg.NodeUUID = id
	}
	lk, err := a.ironic.lookup(ctx, inv)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		a.say("ERROR: lookup failed: %v", err)
		return fmt.Errorf("agent: %w", err)
	}
	a.mu.Lock()
	a.node = lk.Node
	a.nodeUUID = lk.UUID
	a.hbTimeout = lk.HeartbeatTimeout
	if lk.Token != "" && lk.Token != redactedToken {
		a.token = lk.Token
	}
	a.tokenless = lk.Legacy && lk.Token == "" && a.token == ""
	noToken := a.token == "" && !a.tokenless
	a.mu.Unlock()
	if noToken {
		a.say("ERROR: the lookup gave no agent token (%q: it was handed to an earlier lookup); every command will be refused", lk.Token)
		a.milestone(events.AgentTokenMissing, lk.UUID)
	}
	a.say("lookup succeeded, node UUID is %s (heartbeat_timeout %d s%s)", lk.UUID, lk.HeartbeatTimeout, map[bool]string{true: ", legacy API"}[lk.Legacy])
	a.milestone(events.AgentLookup, lk.UUID)

	callback := a.callbackURL(ln.Addr())
	srv := httpserve.Server(a.Handler(), httpserve.Options{ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(a.cfg.Logger.Handler(), slog.LevelWarn)})
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() {
		defer cancel()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	})
	wg.Go(func() {
		<-gctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	})
	wg.Go(func() { a.heartbeat(gctx, lk, callback) })
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return serveErr
}

func (a *Agent) callbackURL(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if a.cfg.AdvertiseHost != "" {
		host = a.cfg.AdvertiseHost
	}
	if a.cfg.AdvertisePort != 0 {
		port = strconv.Itoa(a.cfg.AdvertisePort)
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (a *Agent) say(format string, args ...any) {
	a.log.printf(format, args...)
}

// fault asks Faults about op; "" when no fault fires.
func (a *Agent) fault(op string) (action, arg string) {
	if a.cfg.Faults == nil {
		return "", ""
	}
	a.mu.Lock()
	who := events.Who{Node: a.nodeUUID}
	a.mu.Unlock()
	h, ok := a.cfg.Faults.Inject(fault.Agent, who, op)
	if !ok {
		return "", ""
	}
	if h.Delay > 0 {
		time.Sleep(h.Delay) // the asking goroutine's own: a slow agent
	}
	return h.Action, h.Arg
}

func (a *Agent) milestone(kind events.Kind, detail string) {
	if a.cfg.Recorder != nil {
		a.cfg.Recorder.Record(events.Event{Kind: kind, Detail: detail})
	}
}

// forceHeartbeat asks for a heartbeat soon, as IPA does after every
// asynchronous command.
func (a *Agent) forceHeartbeat() {
	select {
	case a.forceHB <- struct{}{}:
	default:
	}
}

// fromAddress returns a copy of c whose connections leave from the local
// address ip (its *http.Transport, or http.DefaultTransport, cloned); a
// client with a RoundTripper of its own is returned as is: that
// transport decides.
func fromAddress(c *http.Client, ip net.IP) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	switch t := c.Transport.(type) {
	case nil:
	case *http.Transport:
		tr = t.Clone()
	default:
		return c
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
	tr.DialContext = d.DialContext
	out := *c
	out.Transport = tr
	return &out
}

// ConfigFromParams fills the kernel-parameter part of a Config from the
// ramdisk's command line (ipa-api-url and friends; BOOTIF names the PXE
// interface in the Env's Hardware, which the caller provides). Env,
// Console, Recorder and Logger are the caller's.
func ConfigFromParams(p ramdisk.Params) (Config, error) {
	ap, err := p.ParseAgentParams()
	if err != nil {
		return Config{}, err
	}
	var client *http.Client
	if ap.Insecure {
		// ipa-insecure=1: IPA does not verify Ironic's certificate.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the operator asked for it
		client = &http.Client{Transport: tr}
	}
	return Config{
		HTTP:             client,
		APIURL:           ap.APIURL,
		AgentPort:        ap.ListenPort,
		AdvertiseHost:    ap.AdvertiseHost,
		AdvertisePort:    ap.AdvertisePort,
		DriverName:       ap.DriverName,
		AgentToken:       ap.AgentToken,
		IronicAPIVersion: ap.APIVersion,
		GlobalRequestID:  ap.GlobalRequestID,
		LookupTimeout:    ap.LookupTimeout,
		LookupInterval:   ap.LookupInterval,

		InspectionCallbackURL: ap.InspectionCallbackURL,
	}, nil
}

// EnvFrom makes the agent's Env of a ramdisk.Env (disks, listener, reset
// line: what the simulated kernel gives the iSCSI ramdisk), the machine's
// hardware description and its power-off line.
func EnvFrom(base ramdisk.Env, hw Hardware, powerOff func(ctx context.Context) error) Env {
	return &envAdapter{Env: base, hw: hw, powerOff: powerOff}
}

type envAdapter struct {
	ramdisk.Env
	hw       Hardware
	powerOff func(ctx context.Context) error
}

func (e *envAdapter) Hardware(context.Context) (Hardware, error) { return e.hw, nil }

func (e *envAdapter) PowerOff(ctx context.Context) error {
	if e.powerOff == nil {
		return errors.New("this machine has no power-off line")
	}
	return e.powerOff(ctx)
}
