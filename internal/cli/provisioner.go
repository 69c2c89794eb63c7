package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/metalbed/metalbed/provisioner/api"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/testbed"
)

// provisionerStateDir is where the provisioner keeps its database unless
// told: the provisioner/ folder of metalbed's state directory.
func provisionerStateDir() string {
	dir, err := defaultStateDir()
	if err != nil {
		return "metalbed-state"
	}
	return filepath.Join(dir, "provisioner")
}

// provisionerRegistry builds the enabled hardware types from a comma list.
func provisionerRegistry(list string, ipmi drivers.IPMIConfig) (*drivers.Registry, error) {
	var types []*drivers.HardwareType
	for _, name := range strings.Split(list, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "ipmi":
			h, err := drivers.NewIPMI(ipmi)
			if err != nil {
				return nil, err
			}
			types = append(types, h)
		case "redfish":
			h, err := drivers.NewRedfish(drivers.RedfishConfig{PollInterval: ipmi.PollInterval, Logger: ipmi.Logger})
			if err != nil {
				return nil, err
			}
			types = append(types, h)
		case "fake-hardware":
			types = append(types, drivers.NewFakeHardware())
		default:
			return nil, usageError("unknown hardware type %q (want ipmi, redfish, fake-hardware)", name)
		}
	}
	if len(types) == 0 {
		return nil, usageError("--drivers enables no hardware type")
	}
	return drivers.NewRegistry(types...)
}

// runProvisionerServe runs the provisioner on its own: the
// Ironic-compatible API and conductor and (unless --boot-servers=false) the
// DHCP, TFTP and HTTP boot servers, so that it deploys machines whose BMCs run
// elsewhere (`metalbed up --no-provisioner --netboot-dhcp ADDR`, or real
// ones).
func runProvisionerServe(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("provisioner serve", s)
	addr := fs.String("addr", api.DefaultAddr, "API listen address")
	stateDir := fs.String("state-dir", provisionerStateDir(), "directory holding the provisioner database")
	driverList := fs.String("drivers", defaultDrivers, "enabled hardware types, comma-separated")
	ipmiClient := fs.String("ipmi-client", drivers.ClientIPMITool, "IPMI client behind the ipmi hardware type: ipmitool or native")
	ipmiInterval := fs.Duration("ipmi-min-command-interval", 5*time.Second, "least time between two IPMI commands to one BMC (Ironic's [ipmi]min_command_interval; simulated BMCs need none)")
	ipmiPoll := fs.Duration("ipmi-poll-interval", time.Second, "pause between power state polls after a power change")
	htpasswd := fs.String("htpasswd", "", "htpasswd file (bcrypt) turning on HTTP basic auth; \"\" = no auth")
	hostname := fs.String("hostname", "", "conductor name (default: the host name)")
	powerSync := fs.Duration("power-sync-interval", 60*time.Second, "how often power states are read from the BMCs (negative disables)")
	callbackTimeout := fs.Duration("deploy-callback-timeout", 1800*time.Second, "how long a node may wait for its deploy ramdisk")
	automatedClean := fs.Bool("automated-clean", true, "clean nodes whose automated_clean is unset on provide and undeploy through the deploy ramdisk (Ironic's default); false: straight to available")
	notifyDelay := fs.Duration("notify-delay", 3*time.Second, "pause before the conductor tells a ramdisk it is done (Ironic's 3 s)")
	dhcpAddr := fs.String("dhcp-addr", service.DefaultDHCPAddr, "DHCP server listen address (port 67 needs root)")
	dhcpRange := fs.String("dhcp-range", "", "addresses leased to the machines, FIRST-LAST; a loopback range is claimed in the host's registry of testbed blocks (refused when a running testbed holds it); default: a block of 127.0.0.0/8 of its own, 127.N.0.10-127.N.255.250, the same across restarts")
	tftpAddr := fs.String("tftp-addr", service.DefaultTFTPAddr, "TFTP boot server listen address")
	httpAddr := fs.String("http-addr", service.DefaultHTTPAddr, "HTTP boot server listen address")
	withBoot := fs.Bool("boot-servers", true, "run the DHCP, TFTP and HTTP boot servers (--dhcp-addr, --tftp-addr, --http-addr) and give the ipmi hardware type the network boot (pxe, ipxe) and deploy (iscsi, direct) interfaces, so the provisioner deploys machines on its own; --boot-servers=false runs the API and conductor only")
	verbose := fs.Bool("verbose", false, "log debug messages")
	metricsAddr := fs.String("metrics-addr", "", "HOST:PORT of a listener of its own for the Prometheus metrics (GET /metrics; the API answers /metrics too); port 0: a free one; \"\" = none")
	pprofOn := fs.Bool("pprof", false, "serve Go's profiles under /debug/pprof/ on the --metrics-addr listener")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *pprofOn && *metricsAddr == "" {
		return usageError("--pprof serves on the metrics listener: give --metrics-addr too")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: level}))
	ipmi := drivers.IPMIConfig{Client: *ipmiClient, MinCommandInterval: *ipmiInterval, PollInterval: *ipmiPoll, Logger: log}
	// "ipmi,fake-hardware" was the default before redfish joined it.
	if *withBoot && !sameSet(*driverList, defaultDrivers) && !sameSet(*driverList, "ipmi,fake-hardware") {
		return usageError("the boot servers come with the default hardware types (--drivers %s); add --boot-servers=false to run other hardware types with the API and conductor only", defaultDrivers)
	}
	var reg *drivers.Registry // nil: the service's default set, with network boot
	if !*withBoot {
		var err error
		if reg, err = provisionerRegistry(*driverList, ipmi); err != nil {
			return err
		}
	}
	var ls listeners
	defer ls.close()
	ln, err := ls.listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("provisioner API: %w", err)
	}
	cfg := service.Config{
		APIAddr: ln.Addr().String(), StateDir: *stateDir, Drivers: reg, IPMI: ipmi, Hostname: *hostname, HTPasswdFile: *htpasswd,
		PowerSyncInterval: *powerSync, DeployCallbackTimeout: *callbackTimeout, CleanCallbackTimeout: *callbackTimeout,
		CheckProvisionInterval: min(max(*callbackTimeout/10, 100*time.Millisecond), 60*time.Second),
		AutomatedClean:         *automatedClean, Logger: log,
	}
	mreg := metrics.NewRegistry()
	cfg.Registerer, cfg.Gatherer, cfg.PProf = mreg, mreg, *pprofOn
	if *metricsAddr != "" {
		if cfg.MetricsListener, err = ls.listen("tcp", *metricsAddr); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	if *withBoot {
		block, err := claimDHCPRange(*dhcpRange, *stateDir)
		if err != nil {
			return err
		}
		if block != nil {
			defer block.Release()
			*dhcpRange = block.Range()
		}
		bs := &service.BootServers{DHCPRange: *dhcpRange}
		if bs.DHCPConn, err = ls.listenPacket(*dhcpAddr); err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		if bs.TFTPConn, err = ls.listenPacket(*tftpAddr); err != nil {
			return fmt.Errorf("tftp: %w", err)
		}
		if bs.HTTPListener, err = ls.listen("tcp4", *httpAddr); err != nil {
			return fmt.Errorf("http: %w", err)
		}
		cfg.Boot = bs
		cfg.Netboot = &service.Netboot{NotifyDelay: *notifyDelay, Loaders: boot.Loaders{IPXEOnly: boot.MissingIPXE()}}
	}
	svc, err := service.New(cfg)
	if err != nil {
		return usageError("%v", err)
	}
	names := "ipmi, fake-hardware"
	if reg != nil {
		names = strings.Join(reg.Names(), ", ")
	}
	fmt.Fprintf(s.Out, "provisioner API on http://%s (state in %s, drivers %s)\n", ln.Addr(), *stateDir, names)
	if cfg.MetricsListener != nil {
		fmt.Fprintf(s.Out, "metrics on http://%s/metrics\n", cfg.MetricsListener.Addr())
	}
	if *withBoot {
		fmt.Fprintf(s.Out, "boot servers: dhcp %s (range %s), tftp %s, http %s\n", svc.DHCPAddr(), *dhcpRange, svc.TFTPAddr(), svc.HTTPURL())
	}
	return svc.Run(ctx, ln)
}

// claimDHCPRange holds the provisioner's DHCP range in the host's registry
// of loopback blocks, as `up` holds a testbed's (testbed.ClaimLeaseBlock):
// rng when given, else a free block. nil for a range of a real network.
func claimDHCPRange(rng, stateDir string) (*testbed.LeaseBlock, error) {
	block, err := testbed.ClaimLeaseBlock(rng, stateDir)
	switch {
	case errors.Is(err, testbed.ErrConfig):
		return nil, usageError("--dhcp-range: %v", err)
	case err != nil:
		return nil, flagOfAddr(err)
	}
	return block, nil
}

// defaultDrivers are the hardware types of the service's default registry.
const defaultDrivers = "ipmi,redfish,fake-hardware"

// sameSet reports whether two comma lists name the same elements.
func sameSet(a, b string) bool {
	set := func(l string) map[string]bool {
		m := map[string]bool{}
		for _, v := range strings.Split(l, ",") {
			if v = strings.TrimSpace(v); v != "" {
				m[v] = true
			}
		}
		return m
	}
	return maps.Equal(set(a), set(b))
}

// listeners are the sockets a command opened, closed when it returns.
type listeners []io.Closer

func (ls *listeners) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err == nil {
		*ls = append(*ls, ln)
	}
	return ln, err
}

func (ls *listeners) listenPacket(addr string) (net.PacketConn, error) {
	c, err := net.ListenPacket("udp4", addr)
	if err == nil {
		*ls = append(*ls, c)
	}
	return c, err
}

func (ls listeners) close() {
	for _, c := range ls {
		c.Close()
	}
}
