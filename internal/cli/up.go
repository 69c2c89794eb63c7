package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/metalbed/metalbed/provisioner/boot"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/loader"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// Defaults of `metalbed up`.
const (
	defaultBasePort   = 6230
	defaultBMCAddress = "127.0.0.1"
	defaultUsername   = "admin"
	defaultPassword   = "password"
	inventoryFile     = "inventory.json"
)

func runUp(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("up", s)
	nodes := fs.Int("nodes", 1, "number of machines (node-0 … node-N-1; the config's machines count first)")
	noProv := fs.Bool("no-provisioner", false, "run only the machines and their BMCs")
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
	enrollNodes := fs.Bool("enroll", false, "enroll every machine as a node (driver ipmi, its BMC, a PXE port per MAC), left in \"enroll\"")
	netbootDHCP := fs.String("netboot-dhcp", "", "with --no-provisioner: the DHCP server (loopback HOST:PORT) the machines' PXE ROMs ask when told to network-boot, e.g. `metalbed netboot serve` as a standalone Ironic's dnsmasq; \"\" = the machines cannot network-boot")
	netbootTFTPPort := fs.Int("netboot-tftp-port", 69, "with --netboot-dhcp: the TFTP port on the next-server the DHCP server names")
	backend := fs.String("backend", "sim", "the machines: sim (simulated, in this process) or libvirt (real VMs under libvirtd; needs root, a metalbed built with -tags libvirt_dlopen, and --ramdisk-dir)")
	bootNet := fs.String("boot-network", defaultBootNetwork, "with --backend libvirt: the provisioner's address and prefix on the VMs' boot network, inside a network namespace metalbed creates (nothing is routed to or from it)")
	removeVMs := fs.Bool("remove-vms", false, "with --backend libvirt: on exit, undefine the VMs' libvirt domains (and their UEFI variables) instead of keeping them for the next `up` on this state dir; the disks stay")
	ramdiskDir := fs.String("ramdisk-dir", "", "with --backend libvirt: the deploy kernel and ramdisk real VMs boot, from `metalbed ramdisk build --out DIR` (default STATE_DIR/ramdisk)")
	bootIface := fs.String("boot-interface", "", "boot interface of the nodes --enroll creates: pxe (TFTP, needs Debian's pxelinux and ipxe), ipxe (HTTP); default pxe when those are installed, else ipxe")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *pf.callbackTimeout < 0 {
		return usageError("--deploy-callback-timeout %s: want a positive duration", *pf.callbackTimeout)
	}
	if *noProv && *enrollNodes {
		return usageError("--enroll needs the provisioner: drop --no-provisioner")
	}
	if *netbootDHCP != "" && !*noProv {
		return usageError("--netboot-dhcp names an external boot server: it goes with --no-provisioner (the provisioner serves its own DHCP)")
	}
	if *backend != "sim" && *backend != "libvirt" {
		return usageError("--backend %q: want sim or libvirt", *backend)
	}
	if *backend == "libvirt" {
		if err := libvirt.Built(); err != nil {
			return fmt.Errorf("up --backend libvirt: %w", err)
		}
	}
	if *backend == "libvirt" && *noProv {
		return usageError("--backend libvirt runs the provisioner: the VMs' only network is its boot network (drop --no-provisioner)")
	}
	if *netbootTFTPPort < 1 || *netbootTFTPPort > 65535 {
		return usageError("--netboot-tftp-port %d: want 1-65535", *netbootTFTPPort)
	}
	var netbootServer netip.AddrPort
	if *netbootDHCP != "" {
		ap, err := netip.ParseAddrPort(*netbootDHCP)
		if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() || ap.Port() == 0 {
			return usageError("--netboot-dhcp %q: want a loopback HOST:PORT such as 127.0.0.1:6767 (simulated machines live on loopback)", *netbootDHCP)
		}
		netbootServer = ap
	}
	log, err := newLogger(s, *logLevel)
	if err != nil {
		return err
	}
	var hooks func(name string) nodeHooks
	if netbootServer.IsValid() {
		hooks = externalNetboot(netbootServer.String(), *netbootTFTPPort, log)
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
	var b *bed
	if !*noProv {
		bc := pf.config(filepath.Join(dir, "provisioner"), log)
		if *backend == "libvirt" {
			nw, err := createBootNetwork(ctx, dir, *bootNet)
			if err != nil {
				return err
			}
			defer nw.Close()
			bc.vmNet, bc.ramdiskDir = nw, *ramdiskDir
			if bc.ramdiskDir == "" {
				bc.ramdiskDir = filepath.Join(dir, "ramdisk")
			}
			if *bootIface == "" {
				*bootIface = "ipxe" // QEMU's NIC ROMs are iPXE
			}
		}
		if b, err = listenBed(bc); err != nil {
			return err
		}
		defer b.close()
		hooks = b.nodeHooks
	}
	f, err := startFleet(ctx, plans, dir, log, s.Err, hooks)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil // interrupted while starting: nothing half-done is left
		}
		return err
	}
	defer f.close()
	f.removeVMs = *removeVMs
	if b != nil {
		if err := b.prepare(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, n := range f.nodes {
			defer b.watchMachine(n.machine)()
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.serve(gctx) })
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
			if *enrollNodes {
				if _, err := b.enroll(gctx, f.enrollSpecs(b, *bootIface)); err != nil {
					if gctx.Err() != nil {
						return nil
					}
					return err
				}
			}
		}
		inv := filepath.Join(dir, inventoryFile)
		if err := f.writeInventory(inv, b); err != nil {
			return err
		}
		machines := "machines"
		if len(f.nodes) == 1 {
			machines = "machine"
		}
		if b == nil {
			fmt.Fprintf(s.Out, "metalbed: %d %s up, BMCs on %s, inventory %s\n", len(f.nodes), machines, f.addrSummary(), inv)
			return nil
		}
		enrolled := ""
		if *enrollNodes {
			enrolled = " (enrolled)"
		}
		fmt.Fprintf(s.Out, "metalbed: %d %s up%s, BMCs on %s, API %s, timeline %s, inventory %s\n",
			len(f.nodes), machines, enrolled, f.addrSummary(), b.apiURL(), b.timelineURL(), inv)
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if err := f.close(); err != nil {
		return err
	}
	fmt.Fprintf(s.Err, "metalbed: stopped; state saved in %s\n", dir)
	return nil
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

// fleet is the machines of one `metalbed up` with their BMCs, listening.
type fleet struct {
	dir   string
	lock  *os.File // flock on DIR/.lock: one process per state dir
	nodes []*fleetNode
	// removeVMs makes close undefine real VMs' domains (their disks stay
	// in the state dir) instead of leaving them defined for the next run.
	removeVMs bool
}

// lockStateDir takes an exclusive lock on dir so that two processes never
// run the same machines (their state files would race).
func lockStateDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir %s is in use by another metalbed process", dir)
		}
		return nil, fmt.Errorf("state dir lock %s: %w", path, err)
	}
	return f, nil
}

type fleetNode struct {
	plan    nodePlan
	machine fleetMachine
	bmc     *bmcemu.Server
	conn    net.PacketConn
}

// progressEvery is how often a long start-up reports progress.
const progressEvery = 2 * time.Second

// openParallel bounds how many machines open at once. A first start
// creates each machine's files and fsyncs its state: that waits on the disk
// more than on the CPU, so many go at once.
const openParallel = 64

// startFleet opens every machine under dir and binds every BMC socket. It
// returns once every BMC socket is bound, so clients may connect.
//
// progress, when not nil, gets a line every progressEvery while machines
// are still starting (a first start of 10 000 machines takes a while).
//
// hooks, when not nil, wires each machine (by name) to the provisioner;
// nil leaves the stock firmware that boots nothing from the network.
func startFleet(ctx context.Context, plans []nodePlan, dir string, log *slog.Logger, progress io.Writer, hooks func(name string) nodeHooks) (*fleet, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	lock, err := lockStateDir(dir)
	if err != nil {
		return nil, err
	}
	// An inventory left by an earlier run names ports that may change: it
	// goes now, and the new one appears once every BMC listens.
	if err := os.Remove(filepath.Join(dir, inventoryFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("old inventory: %w", err)
	}
	f := &fleet{dir: dir, lock: lock, nodes: make([]*fleetNode, len(plans))}
	var started atomic.Int64
	if progress != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(progressEvery)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					fmt.Fprintf(progress, "metalbed: starting machines and BMCs: %d/%d\n", started.Load(), len(plans))
				case <-stop:
					return
				}
			}
		}()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(openParallel)
	for i, p := range plans {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			var h nodeHooks
			if hooks != nil {
				h = hooks(p.name)
			}
			n, err := startNode(p, dir, log, h)
			if err != nil {
				return err
			}
			f.nodes[i] = n
			started.Add(1)
			return nil
		})
	}
	err = g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// externalNetboot wires machines to a boot server metalbed does not run
// (--netboot-dhcp): the NIC's PXE ROM asks dhcpServer, fetches from the
// next-server's TFTP port tftpPort (and HTTP, for iPXE scripts), and hands
// over to the simulated kernel, which runs the deploy ramdisk (the agent,
// for a real Ironic's kernel parameters); the local-boot loader boots the
// deployed disk. Nothing records a timeline: there is no provisioner.
func externalNetboot(dhcpServer string, tftpPort int, log *slog.Logger) func(name string) nodeHooks {
	return func(string) nodeHooks {
		kc := kernel.Config{FetchToken: fetchTFTP, TFTPPort: tftpPort, Logger: log}
		return nodeHooks{firmware: sim.StockFirmware{
			NetBoot: &pxe.ROM{
				DHCPServer: dhcpServer,
				DHCPClient: "127.0.0.1:0",
				TFTPPort:   tftpPort,
				Exec:       kernel.Executor(kc),
			},
			LocalBoot: loader.Loader{Kernel: kc},
		}}
	}
}

// nodeHooks wire one machine and its BMC to the provisioner side.
type nodeHooks struct {
	// firmware runs at power-on; nil => sim.StockFirmware{}.
	firmware sim.Firmware
	// bmcFaults is the BMC's fault.Injector (bmcemu Config.Faults: layer
	// ipmi, asked with the machine's name); nil => none.
	bmcFaults fault.Injector
	// vm, when set, opens the machine as a real VM instead of a simulated
	// one (firmware is then unused: the VM has its own).
	vm func(p nodePlan, dir string) (fleetMachine, error)
}

func startNode(p nodePlan, dir string, log *slog.Logger, h nodeHooks) (*fleetNode, error) {
	var m fleetMachine
	var err error
	if h.vm != nil {
		m, err = h.vm(p, dir)
	} else {
		m, err = sim.Open(sim.Config{
			Firmware:   h.firmware,
			Name:       p.name,
			StateDir:   dir,
			MACs:       p.macs,
			DiskBytes:  p.diskBytes,
			BootMode:   p.bootMode,
			PowerDelay: p.powerDelay,
			Logger:     log,
		})
	}
	if err != nil {
		return nil, err
	}
	bmc, err := bmcemu.New(bmcemu.Config{
		Machine:  bmcMachine{m: m},
		Name:     p.name,
		Username: p.username,
		Password: p.password,
		GUID:     m.UUID(),
		Faults:   h.bmcFaults,
		Logger:   log,
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("BMC of %s: %w", p.name, err)
	}
	addr := net.JoinHostPort(p.addr, strconv.Itoa(p.port))
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		m.Close()
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("BMC of %s: %w (ports below 1024, such as --bmc-per-ip's 623, need root or CAP_NET_BIND_SERVICE)", p.name, err)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("BMC of %s: %w (another metalbed or vbmc? choose other ports with --bmc-base-port, or 0 for free ones)", p.name, err)
		}
		return nil, fmt.Errorf("BMC of %s: %w", p.name, err)
	}
	return &fleetNode{plan: p, machine: m, bmc: bmc, conn: conn}, nil
}

// serve runs every BMC until ctx ends; the first BMC that fails stops all.
func (f *fleet) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range f.nodes {
		g.Go(func() error {
			if err := n.bmc.Serve(gctx, n.conn); err != nil {
				return fmt.Errorf("BMC of %s: %w", n.plan.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// close closes every socket and machine (machines save as they change, so
// this loses nothing). It may be called more than once.
func (f *fleet) close() error {
	var errs []error
	for i, n := range f.nodes {
		if n == nil {
			continue
		}
		n.conn.Close()
		closeMachine := n.machine.Close
		if r, ok := n.machine.(interface{ Remove() error }); ok && f.removeVMs {
			closeMachine = r.Remove
		}
		if err := closeMachine(); err != nil {
			errs = append(errs, err)
		}
		f.nodes[i] = nil
	}
	if f.lock != nil {
		f.lock.Close() // releases the flock
		f.lock = nil
	}
	return errors.Join(errs...)
}

// bmcAddr is where node n's BMC listens.
func (n *fleetNode) bmcAddr() *net.UDPAddr { return n.conn.LocalAddr().(*net.UDPAddr) }

// The inventory scripts read: its shape is a contract.
type inventory struct {
	Nodes []inventoryNode `json:"nodes"`
	// API and Timeline are the provisioner API and the timeline endpoint,
	// absent with --no-provisioner.
	API      string `json:"api,omitempty"`
	Timeline string `json:"timeline,omitempty"`
}

type inventoryNode struct {
	Name       string        `json:"name"`
	BMC        inventoryBMC  `json:"bmc"`
	MACs       []string      `json:"macs"`
	Disk       inventoryDisk `json:"disk"`
	UUID       string        `json:"uuid"`
	BootMode   vms.BootMode  `json:"boot_mode"`
	ConsoleLog string        `json:"console_log"`
}

type inventoryBMC struct {
	Address  string `json:"address"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type inventoryDisk struct {
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"`
}

func (f *fleet) inventory(b *bed) inventory {
	inv := inventory{Nodes: make([]inventoryNode, 0, len(f.nodes))}
	if b != nil {
		inv.API, inv.Timeline = b.apiURL(), b.timelineURL()
	}
	for _, n := range f.nodes {
		a := n.bmcAddr()
		in := inventoryNode{
			Name:       n.plan.name,
			BMC:        inventoryBMC{Address: a.IP.String(), Port: a.Port, Username: n.plan.username, Password: n.plan.password},
			MACs:       []string{},
			Disk:       inventoryDisk{Path: n.machine.Disk().Path, SizeBytes: n.machine.Disk().SizeBytes},
			UUID:       sim.FormatUUID(n.machine.UUID()),
			BootMode:   n.machine.BootMode(),
			ConsoleLog: n.machine.ConsoleLog(),
		}
		for _, nic := range n.machine.NICs() {
			in.MACs = append(in.MACs, nic.MAC.String())
		}
		inv.Nodes = append(inv.Nodes, in)
	}
	return inv
}

// writeInventory writes inventory.json atomically (temp file + rename).
func (f *fleet) writeInventory(path string, bd *bed) error {
	b, err := json.MarshalIndent(f.inventory(bd), "", "  ")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".inventory.json.tmp*")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	err = tmp.Chmod(0o644)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("inventory %s: %w", path, err)
	}
	return nil
}

// addrSummary says where the BMCs listen in a few words:
// "127.0.0.1:6230-6232", or first and last when ports are not a run.
func (f *fleet) addrSummary() string {
	if len(f.nodes) == 0 {
		return "nothing"
	}
	first, last := f.nodes[0].bmcAddr(), f.nodes[len(f.nodes)-1].bmcAddr()
	run := true
	for i, n := range f.nodes {
		a := n.bmcAddr()
		if !a.IP.Equal(first.IP) || a.Port != first.Port+i {
			run = false
			break
		}
	}
	switch {
	case len(f.nodes) == 1:
		return first.String()
	case run:
		return fmt.Sprintf("%s-%d", first, last.Port)
	default:
		return strings.Join([]string{first.String(), "…", last.String()}, " ")
	}
}

// enrollSpecs describes every machine for enroll.
// defaultBootInterface is pxe when Debian's pxelinux and ipxe boot programs
// are installed; otherwise ipxe, which boots iPXE ROMs (the simulated
// machines', QEMU's) without them.
func defaultBootInterface() string {
	if boot.HavePXELinux() && !boot.MissingIPXE() {
		return "pxe"
	}
	return "ipxe"
}

func (f *fleet) enrollSpecs(b *bed, bootInterface string) []enrollSpec {
	if bootInterface == "" {
		bootInterface = defaultBootInterface()
	}
	specs := make([]enrollSpec, 0, len(f.nodes))
	for _, n := range f.nodes {
		a := n.bmcAddr()
		sp := enrollSpec{
			name: n.plan.name, bmcAddress: a.IP.String(), bmcPort: a.Port,
			username: n.plan.username, password: n.plan.password,
			bootMode: string(n.machine.BootMode()), diskBytes: n.machine.Disk().SizeBytes,
			deployKernel: b.deployKernel, deployRd: b.deployRamdisk, bootInterface: bootInterface,
		}
		for _, nic := range n.machine.NICs() {
			sp.macs = append(sp.macs, nic.MAC.String())
		}
		specs = append(specs, sp)
	}
	return specs
}
