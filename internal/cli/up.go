package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/testbed"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/web"
)

// Defaults of `metalbed up`.
const (
	defaultBasePort   = 6230
	defaultBMCAddress = "127.0.0.1"
	defaultUsername   = "admin"
	defaultPassword   = "password"
)

func runUp(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("up", s)
	nodes := fs.Int("nodes", 1, "number of machines (node-0 … node-N-1; the config's machines count first)")
	noProv := fs.Bool("no-provisioner", false, "run only the machines and their BMCs (with --backend libvirt: a provisioner of your own serves the VMs from inside the boot network's namespace, inventory.json boot_network)")
	stateDir := fs.String("state-dir", "", "directory holding every machine's state, disk and console log, and inventory.json (default $XDG_STATE_HOME/metalbed, else ~/.local/state/metalbed)")
	basePort := fs.Int("bmc-base-port", defaultBasePort, "UDP port of node-0's BMC; node-i listens on base+i (0: ephemeral ports)")
	bmcAddr := fs.String("bmc-address", defaultBMCAddress, "IP address the BMCs listen on")
	perIP := fs.Bool("bmc-per-ip", false, "give BMC i its own loopback address 127.0.1.(i+1), port 623 (needs root)")
	user := fs.String("bmc-username", defaultUsername, "BMC user name")
	pass := fs.String("bmc-password", defaultPassword, "BMC password")
	diskSize := fs.String("disk-size", "10GiB", "disk size of each machine (sparse file)")
	bootMode := fs.String("boot-mode", string(vms.BIOS), "firmware boot mode: bios or uefi")
	powerDelay := fs.Duration("power-delay", 0, "how long a power transition takes")
	config := fs.String("config", "", "YAML topology file (machines, credentials, ports, disk sizes, boot modes)")
	logLevel := fs.String("log-level", "warn", "log level on stderr: debug, info, warn, error")
	pf := provisionerFlags(fs)
	timelineAddr := fs.String("timeline-addr", testbed.DefaultTimelineAddr, "per-node timeline endpoint listen address (GET /v1/nodes/NODE/timeline); with --no-provisioner (default a free port, named in inventory.json): the machines' power, boots, ramdisk and agent steps and the Redfish actions on them, for a provisioner metalbed does not run (a real Ironic), and the fault endpoint of the BMC, ramdisk and agent layers")
	enrollNodes := fs.Bool("enroll", false, "enroll every machine as a node (driver ipmi, its BMC, a PXE port per MAC), left in \"enroll\"")
	netbootDHCP := fs.String("netboot-dhcp", "", "with --no-provisioner: the DHCP server (loopback `HOST:PORT`) the machines' PXE ROMs ask when told to network-boot, e.g. metalbed netboot serve as a standalone Ironic's dnsmasq; \"\" = the machines cannot network-boot")
	netbootTFTPPort := fs.Int("netboot-tftp-port", 69, "with --netboot-dhcp: the TFTP port on the next-server the DHCP server names")
	backend := fs.String("backend", "sim", "the machines: sim (simulated, in this process) or libvirt (real VMs under libvirtd; needs root, a metalbed built with -tags libvirt_dlopen, and --ramdisk-dir)")
	bootNet := fs.String("boot-network", testbed.DefaultBootNetwork, "with --backend libvirt: the provisioner's address and prefix on the VMs' boot network, inside a network namespace metalbed creates (nothing is routed to or from it)")
	removeVMs := fs.Bool("remove-vms", false, "with --backend libvirt: on exit, undefine the VMs' libvirt domains (and their UEFI variables) instead of keeping them for the next metalbed up on this state dir; the disks stay")
	ramdiskDir := fs.String("ramdisk-dir", "", "with --backend libvirt: `DIR` holding the deploy kernel and ramdisk real VMs boot, from metalbed ramdisk build --out DIR (default STATE_DIR/ramdisk)")
	redfishAddr := fs.String("redfish-addr", testbed.DefaultRedfishAddr, "HOST:PORT of the Redfish service in front of every machine (each a ComputerSystem at /redfish/v1/Systems/<UUID>, with its BMC's credentials); port 0: a free one; \"\" disables Redfish")
	webAddr := fs.String("web-addr", web.DefaultAddr, "HOST:PORT of the web dashboard (the fleet, each node's timeline and console, live); port 0: a free one; \"\" disables it")
	redfishHTTP := fs.Bool("redfish-plain-http", false, "serve Redfish over plain HTTP instead of HTTPS (HTTPS uses a CA and certificate generated into the state dir; inventory.json names the CA)")
	enrollDriver := fs.String("enroll-driver", "ipmi", "hardware type of the nodes --enroll creates: ipmi (driver_info ipmi_*, each machine's IPMI BMC) or redfish (driver_info redfish_*, each machine's ComputerSystem on the Redfish service)")
	bootIface := fs.String("boot-interface", "", "boot interface of the nodes --enroll creates: pxe (TFTP, needs Debian's pxelinux and ipxe), ipxe (HTTP), redfish-virtual-media (with --enroll-driver redfish: an ISO the BMC inserts as a virtual CD, built with Debian's isolinux or grub-efi-amd64-bin; deploy interface direct), redfish-https (with --enroll-driver redfish and --boot-mode uefi, simulated machines: the same ISO booted by UEFI HTTP); default pxe when pxelinux and ipxe are installed, else ipxe")
	metricsAddr := fs.String("metrics-addr", "", "HOST:PORT of a listener of its own for the Prometheus metrics (GET /metrics; the provisioner API answers /metrics too); port 0: a free one; \"\" = none")
	pprofOn := fs.Bool("pprof", false, "serve Go's profiles under /debug/pprof/ on the --metrics-addr listener")
	pace := timingFlags(fs)
	ports := fs.String("ports", "fixed", "fixed: the default ports above, refused at start when taken; auto: free ones for every port not given (BMCs, Redfish, web, API, timeline, DHCP, TFTP, HTTP), named in the ready line and inventory.json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch *ports {
	case "fixed":
	case "auto":
		autoPorts(fs, set)
	default:
		return usageError("--ports %q: want fixed or auto", *ports)
	}
	if *pf.callbackTimeout < 0 {
		return usageError("--deploy-callback-timeout %s: want a positive duration", *pf.callbackTimeout)
	}
	if *noProv && *enrollNodes {
		return usageError("--enroll needs the provisioner: drop --no-provisioner")
	}
	switch *enrollDriver {
	case "ipmi":
	case "redfish":
		if *redfishAddr == "" {
			return usageError("--enroll-driver redfish needs the Redfish service: drop --redfish-addr \"\"")
		}
	default:
		return usageError("--enroll-driver %q: want ipmi or redfish", *enrollDriver)
	}
	switch *bootIface {
	case "", "pxe", "ipxe":
	case boot.VirtualMediaName, boot.HTTPSName:
		if *enrollDriver != "redfish" {
			return usageError("--boot-interface %s needs --enroll-driver redfish (the BMC boots the ISO)", *bootIface)
		}
	default:
		return usageError("--boot-interface %q: want pxe, ipxe, %s or %s", *bootIface, boot.VirtualMediaName, boot.HTTPSName)
	}
	if *netbootDHCP != "" && !*noProv {
		return usageError("--netboot-dhcp names an external boot server: it goes with --no-provisioner (the provisioner serves its own DHCP)")
	}
	if *backend != "sim" && *backend != "libvirt" {
		return usageError("--backend %q: want sim or libvirt", *backend)
	}
	if *backend == "libvirt" && *netbootDHCP != "" {
		return usageError("--netboot-dhcp is a loopback DHCP server, which real VMs cannot reach: run it inside the boot network's namespace (inventory.json boot_network)")
	}
	if *backend == "libvirt" {
		if err := libvirt.Built(); err != nil {
			return fmt.Errorf("up --backend libvirt: %w", err)
		}
	}
	if *netbootTFTPPort < 1 || *netbootTFTPPort > 65535 {
		return usageError("--netboot-tftp-port %d: want 1-65535", *netbootTFTPPort)
	}
	log, err := newLogger(s, *logLevel)
	if err != nil {
		return err
	}
	var topo *topology
	if *config != "" {
		if topo, err = loadTopology(*config); err != nil {
			return err
		}
	}
	st, dir, err := resolveUp(set, topo, upFlags{
		nodes: *nodes, stateDir: *stateDir, basePort: *basePort, bmcAddr: *bmcAddr, perIP: *perIP,
		user: *user, pass: *pass, diskSize: *diskSize, bootMode: *bootMode, powerDelay: *powerDelay,
	})
	if err != nil {
		return err
	}
	plans, err := plan(st, topo)
	if err != nil {
		return err
	}
	if len(plans) == 0 {
		return usageError("no machines: give --nodes N or list machines in --config")
	}
	cfg := testbed.Config{
		StateDir: dir, Machines: machines(plans), Backend: *backend, Enroll: *enrollNodes, BootInterface: *bootIface, EnrollDriver: *enrollDriver,
		Libvirt:  testbed.Libvirt{BootNetwork: *bootNet, RamdiskDir: *ramdiskDir, RemoveVMs: *removeVMs},
		Progress: s.Err, Version: version(), Logger: log,
	}
	if cfg.Timing, err = pace(); err != nil {
		return err
	}
	if *redfishAddr != "" {
		if _, _, err := net.SplitHostPort(*redfishAddr); err != nil {
			return usageError("--redfish-addr %q: want HOST:PORT, or \"\" to disable Redfish", *redfishAddr)
		}
		cfg.Redfish = &testbed.Redfish{Addr: *redfishAddr, PlainHTTP: *redfishHTTP}
	}
	if *metricsAddr != "" {
		cfg.Metrics = &testbed.Metrics{Addr: *metricsAddr, PProf: *pprofOn}
	} else if *pprofOn {
		return usageError("--pprof serves on the metrics listener: give --metrics-addr too")
	}
	if *webAddr != "" {
		if _, _, err := net.SplitHostPort(*webAddr); err != nil {
			return usageError("--web-addr %q: want HOST:PORT, or \"\" to disable the dashboard", *webAddr)
		}
		cfg.Web = &testbed.Web{Addr: *webAddr}
	}
	if *noProv {
		cfg.ExternalDHCP, cfg.ExternalTFTPPort = *netbootDHCP, *netbootTFTPPort
		// The machines' timeline and fault endpoint: where asked, else
		// on a free port (inventory.json names it).
		cfg.TimelineAddr = "127.0.0.1:0"
		if set["timeline-addr"] {
			cfg.TimelineAddr = *timelineAddr
		}
		cfg.HTPasswdFile = *pf.htpasswd // guards that endpoint
	} else {
		cfg.Provisioner = pf.config(*timelineAddr)
	}
	tb, err := testbed.New(cfg)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- tb.Serve(ctx) }()
	select {
	case err := <-done:
		return flagOfAddr(err)
	case <-tb.Ready():
	}
	inv := tb.Inventory()
	where := filepath.Join(dir, testbed.InventoryFile)
	machines := "machines"
	if len(inv.Nodes) == 1 {
		machines = "machine"
	}
	redfishAt := ""
	if u := tb.RedfishURL(); u != "" {
		redfishAt = ", Redfish " + u
	}
	if u := tb.WebURL(); u != "" {
		redfishAt += ", web " + u
	}
	if cfg.Provisioner == nil {
		if inv.Timeline != "" {
			redfishAt += ", timeline " + inv.Timeline
		}
		if bn := inv.BootNetwork; bn != nil {
			redfishAt += fmt.Sprintf(", boot network %s in netns %s", bn.Address, bn.Namespace)
		}
		fmt.Fprintf(s.Out, "metalbed: %d %s up, BMCs on %s%s, inventory %s\n", len(inv.Nodes), machines, addrSummary(inv), redfishAt, where)
	} else {
		enrolled := ""
		if *enrollNodes {
			enrolled = " (enrolled)"
		}
		boot := ""
		if b := inv.Boot; b != nil {
			boot = fmt.Sprintf(", boot DHCP %s TFTP %s HTTP %s leasing %s", b.DHCP, b.TFTP, b.HTTP, b.DHCPRange)
		}
		fmt.Fprintf(s.Out, "metalbed: %d %s up%s, BMCs on %s%s, API %s, timeline %s%s, inventory %s\n",
			len(inv.Nodes), machines, enrolled, addrSummary(inv), redfishAt, inv.API, inv.Timeline, boot, where)
	}
	if u := tb.MetricsURL(); u != "" {
		fmt.Fprintf(s.Out, "metalbed: metrics on %s/metrics\n", u)
	}
	if err := <-done; err != nil {
		return flagOfAddr(err)
	}
	fmt.Fprintf(s.Err, "metalbed: stopped; state saved in %s\n", dir)
	return nil
}

// addrFlags are the flags of `up` by the testbed.Config field they set.
var addrFlags = map[string]string{
	"Machine.BMCPort":          "--bmc-base-port",
	"Provisioner.APIAddr":      "--api-addr",
	"Provisioner.TimelineAddr": "--timeline-addr",
	"TimelineAddr":             "--timeline-addr",
	"Provisioner.DHCPAddr":     "--dhcp-addr",
	"Provisioner.TFTPAddr":     "--tftp-addr",
	"Provisioner.HTTPAddr":     "--http-addr",
	"Provisioner.DHCPRange":    "--dhcp-range",
	"Redfish.Addr":             "--redfish-addr",
	"Web.Addr":                 "--web-addr",
	"Metrics.Addr":             "--metrics-addr",
}

// autoPorts gives every address flag not set (on the command line or in
// the environment) port 0, a free one, and the BMCs free ports unless the
// topology file names them (--ports auto).
func autoPorts(fs *flag.FlagSet, set map[string]bool) {
	for _, flag := range addrFlags {
		name := strings.TrimPrefix(flag, "--")
		f := fs.Lookup(name)
		if set[name] || f == nil {
			continue
		}
		if name == "bmc-base-port" {
			f.Value.Set("0")
			continue
		}
		if host, _, err := net.SplitHostPort(f.Value.String()); err == nil {
			f.Value.Set(net.JoinHostPort(host, "0"))
		}
	}
}

// flagOfAddr names the flag of an address the testbed could not have (a
// port taken, a DHCP range another testbed holds).
func flagOfAddr(err error) error {
	var ae *testbed.AddrError
	if !errors.As(err, &ae) || addrFlags[ae.Field] == "" {
		return err
	}
	hint := "give another, port 0 for a free one, or --ports auto for free ones throughout"
	if ae.Field == "Provisioner.DHCPRange" {
		hint = "leave --dhcp-range out: each testbed then leases from a block of its own"
	}
	return fmt.Errorf("%s %s: %w (%s)", addrFlags[ae.Field], ae.Addr, err, hint)
}

// machines turns the resolved plans into the testbed's machines.
func machines(plans []nodePlan) []testbed.Machine {
	ms := make([]testbed.Machine, len(plans))
	for i, p := range plans {
		ms[i] = testbed.Machine{Name: p.name, MACs: p.macs, NICs: p.nics, DiskBytes: p.diskBytes, BootMode: p.bootMode, PowerDelay: p.powerDelay,
			BMCAddress: p.addr, BMCPort: p.port, Username: p.username, Password: p.password}
	}
	return ms
}

// addrSummary says where the BMCs listen in a few words:
// "127.0.0.1:6230-6232", or first and last when ports are not a run.
func addrSummary(inv testbed.Inventory) string {
	ns := inv.Nodes
	if len(ns) == 0 {
		return "nothing"
	}
	first, last := ns[0].BMC, ns[len(ns)-1].BMC
	run := true
	for i, n := range ns {
		if n.BMC.Address != first.Address || n.BMC.Port != first.Port+i {
			run = false
			break
		}
	}
	addr := func(b testbed.InventoryBMC) string { return fmt.Sprintf("%s:%d", b.Address, b.Port) }
	switch {
	case len(ns) == 1:
		return addr(first)
	case run:
		return fmt.Sprintf("%s-%d", addr(first), last.Port)
	default:
		return strings.Join([]string{addr(first), "…", addr(last)}, " ")
	}
}

// bedFlags are the provisioner flags of `up`.
type bedFlags struct {
	apiAddr, dhcpAddr, dhcpRange, tftpAddr, httpAddr *string
	ipmiClient                                       *string
	callbackTimeout, notifyDelay                     *time.Duration
	htpasswd                                         *string
	automatedClean                                   *bool
}

func provisionerFlags(fs *flag.FlagSet) bedFlags {
	return bedFlags{
		apiAddr:         fs.String("api-addr", testbed.DefaultAPIAddr, "provisioner API (Ironic v1) listen address"),
		dhcpAddr:        fs.String("dhcp-addr", service.DefaultDHCPAddr, "DHCP server address the machines' PXE ROMs send to (loopback, no root)"),
		dhcpRange:       fs.String("dhcp-range", "", "addresses leased to the machines, FIRST-LAST inside 127.0.0.0/8 (their ramdisks listen there; refused when it overlaps a range another running testbed holds); default: a block no running testbed holds, 127.N.0.10-127.N.255.250, kept across restarts"),
		tftpAddr:        fs.String("tftp-addr", service.DefaultTFTPAddr, "TFTP boot server listen address"),
		httpAddr:        fs.String("http-addr", service.DefaultHTTPAddr, "HTTP boot server listen address"),
		ipmiClient:      fs.String("ipmi-client", drivers.ClientNative, "IPMI client of the ipmi hardware type: native or ipmitool"),
		callbackTimeout: fs.Duration("deploy-callback-timeout", 10*time.Minute, "how long a node may wait in \"wait call-back\" or \"clean wait\" for its ramdisk (a call-back, or the agent's next heartbeat) before it fails; testbeds shorten it (e.g. 20s) to see a timeout in seconds"),
		notifyDelay:     fs.Duration("notify-delay", 3*time.Second, "pause before the conductor tells a ramdisk it is done (Ironic's 3 s)"),
		automatedClean:  fs.Bool("automated-clean", true, "clean nodes whose automated_clean is unset on provide and undeploy through the deploy ramdisk (Ironic's default); false: straight to available"),
		htpasswd:        fs.String("htpasswd", "", "`FILE`, an htpasswd (bcrypt) whose users alone may use the API and the timeline and fault endpoint (HTTP basic auth; metalbed fault and timeline then take --url http://USER:PASS@HOST:PORT); \"\" = no auth"),
	}
}

func (f bedFlags) config(timelineAddr string) *testbed.Provisioner {
	return &testbed.Provisioner{
		APIAddr: *f.apiAddr, TimelineAddr: timelineAddr, DHCPAddr: *f.dhcpAddr, DHCPRange: *f.dhcpRange,
		TFTPAddr: *f.tftpAddr, HTTPAddr: *f.httpAddr, IPMIClient: *f.ipmiClient,
		CallbackTimeout: *f.callbackTimeout, NotifyDelay: *f.notifyDelay, HTPasswdFile: *f.htpasswd,
		AutomatedClean: *f.automatedClean,
	}
}

// upFlags are the flag values (or their defaults) of `metalbed up`.
type upFlags struct {
	nodes, basePort               int
	stateDir, bmcAddr, user, pass string
	diskSize, bootMode            string
	perIP                         bool
	powerDelay                    time.Duration
}

// resolveUp applies flag > env > file > default: set names the flags given
// on the command line or through METALBED_<FLAG>.
func resolveUp(set map[string]bool, t *topology, f upFlags) (upSettings, string, error) {
	if t == nil {
		t = &topology{}
	}
	d := t.Defaults
	st := upSettings{
		nodes: f.nodes, basePort: f.basePort, bmcAddress: f.bmcAddr, bmcPerIP: f.perIP,
		username: f.user, password: f.pass, powerDelay: f.powerDelay, bootMode: vms.BootMode(f.bootMode),
	}
	dir := f.stateDir
	if !set["nodes"] {
		switch {
		case t.Nodes != nil:
			st.nodes = *t.Nodes
		case len(t.Machines) > 0:
			st.nodes = len(t.Machines)
		}
	}
	if !set["bmc-base-port"] && t.BMCBasePort != nil {
		st.basePort = *t.BMCBasePort
	}
	if !set["bmc-address"] && t.BMCAddress != "" {
		st.bmcAddress = t.BMCAddress
	}
	if !set["bmc-per-ip"] && t.BMCPerIP != nil {
		st.bmcPerIP = *t.BMCPerIP
	}
	if !set["state-dir"] && t.StateDir != "" {
		dir = t.StateDir
	}
	if !set["bmc-username"] && d.BMC.Username != "" {
		st.username = d.BMC.Username
	}
	if !set["bmc-password"] && d.BMC.Password != "" {
		st.password = d.BMC.Password
	}
	if !set["boot-mode"] && d.BootMode != "" {
		st.bootMode = vms.BootMode(d.BootMode)
	}
	if !set["power-delay"] && d.PowerDelay != nil {
		st.powerDelay = time.Duration(*d.PowerDelay)
	}
	size, err := parseByteSize(f.diskSize)
	if err != nil {
		return st, "", usageError("--disk-size: %v", err)
	}
	st.diskBytes = size
	if !set["disk-size"] && d.DiskSize != 0 {
		st.diskBytes = int64(d.DiskSize)
	}
	switch {
	case st.nodes < 0:
		return st, "", usageError("--nodes %d", st.nodes)
	case st.basePort < 0 || st.basePort+st.nodes-1 > 65535:
		return st, "", usageError("--bmc-base-port %d: ports %d to %d do not fit in 1-65535", st.basePort, st.basePort, st.basePort+st.nodes-1)
	case st.bootMode != vms.BIOS && st.bootMode != vms.UEFI:
		return st, "", usageError("--boot-mode %q: want bios or uefi", st.bootMode)
	case st.powerDelay < 0:
		return st, "", usageError("--power-delay %s", st.powerDelay)
	}
	if dir == "" {
		var err error
		if dir, err = defaultStateDir(); err != nil {
			return st, "", err
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return st, "", fmt.Errorf("state dir: %w", err)
	}
	return st, abs, nil
}

// defaultStateDir is $XDG_STATE_HOME/metalbed, else ~/.local/state/metalbed.
func defaultStateDir() (string, error) {
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "metalbed"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", usageError("no --state-dir and no home directory: %v", err)
	}
	return filepath.Join(home, ".local", "state", "metalbed"), nil
}

func newLogger(s Streams, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: l})), nil
}
