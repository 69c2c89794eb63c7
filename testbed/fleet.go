package testbed

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/loader"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// fleet is the machines of a testbed with their BMCs, listening.
type fleet struct {
	dir   string
	nodes []*fleetNode
	// removeVMs makes close undefine real VMs' domains (their disks stay
	// in the state dir) instead of leaving them defined for the next run.
	removeVMs bool
}

// lockStateDir makes dir and takes an exclusive lock on it so that two
// processes never run the same machines (their state files would race).
func lockStateDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
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
	// The holder's PID, for `metalbed status` and `metalbed down`
	// (Holder): only a process holding the lock writes it.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// Holder reports whether a process runs the testbed of state dir dir
// (holds its lock) and, if so, its PID. A dir that was never used is not
// running.
func Holder(dir string) (pid int, running bool, err error) {
	path := filepath.Join(dir, ".lock")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("state dir lock: %w", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0, false, nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, false, fmt.Errorf("state dir lock %s: %w", path, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0, true, fmt.Errorf("state dir lock %s: %w", path, err)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, true, fmt.Errorf("state dir %s is locked by a process that did not write its PID into %s", dir, path)
	}
	return pid, true, nil
}

type fleetNode struct {
	plan    Machine
	machine fleetMachine
	bmc     *bmcemu.Server
	conn    net.PacketConn
	// sel is the machine's System Event Log, shared by its IPMI BMC and
	// the Redfish service.
	sel *bmcemu.SEL
}

// progressEvery is how often a long start-up reports progress.
const progressEvery = 2 * time.Second

// openParallel bounds how many machines open at once. A first start
// creates each machine's files and fsyncs its state: that waits on the disk
// more than on the CPU, so many go at once.
const openParallel = 64

// startFleet opens every machine under dir (made and locked by the
// caller) and binds every BMC socket. It returns once every BMC socket is
// bound, so clients may connect.
//
// progress, when not nil, gets a line every progressEvery while machines
// are still starting (a first start of 10 000 machines takes a while).
//
// hooks, when not nil, wires each machine (by name) to the provisioner;
// nil leaves the stock firmware that boots nothing from the network.
func startFleet(ctx context.Context, plans []Machine, dir string, log *slog.Logger, progress io.Writer, hooks func(name string) nodeHooks) (*fleet, error) {
	// An inventory left by an earlier run names ports that may change: it
	// goes now, and the new one appears once every BMC listens.
	if err := os.Remove(filepath.Join(dir, InventoryFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("old inventory: %w", err)
	}
	f := &fleet{dir: dir, nodes: make([]*fleetNode, len(plans))}
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
				h = hooks(p.Name)
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
	err := g.Wait()
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
// (Config.ExternalDHCP): the NIC's PXE ROM asks it, fetches from the
// next-server's TFTP port (and HTTP, for iPXE scripts), and hands over to
// the simulated kernel, which runs the deploy ramdisk (the agent, for a
// real Ironic's kernel parameters); the local-boot loader boots the
// deployed disk. rec, when set, records the machines' ramdisk and agent
// steps and their BMCs' commands (the machines-only timeline,
// Config.TimelineAddr), and faults, when set, is what the BMCs, ramdisks
// and agents ask. nil without an external DHCP server and rec.
func (t *Testbed) externalNetboot(rec events.Recorder, faults fault.Injector) func(name string) nodeHooks {
	if t.cfg.ExternalDHCP == "" {
		if rec == nil {
			return nil
		}
		// No boot network: virtual media still boots, and is recorded.
		// Nothing here depends on the machine: one set of hooks for all.
		kc := kernel.Config{Logger: t.log, Recorder: rec, Faults: faults}
		h := nodeHooks{firmware: sim.StockFirmware{MediaBoot: mediaBoot(kc)}, bmcEvents: rec, bmcFaults: faults}
		return func(string) nodeHooks { return h }
	}
	dhcpServer, tftpPort, log := t.cfg.ExternalDHCP, t.cfg.ExternalTFTPPort, t.log
	unpack := pxe.NewUnpacker(runtime.GOMAXPROCS(0))
	return func(string) nodeHooks {
		kc := kernel.Config{FetchToken: ramdisk.FetchTFTP, TFTPPort: tftpPort, Logger: log,
			DHCPServer: dhcpServer, DHCPClient: "127.0.0.1:0", Recorder: rec, Faults: faults}
		rom := &pxe.ROM{
			DHCPServer: dhcpServer,
			DHCPClient: "127.0.0.1:0",
			TFTPPort:   tftpPort,
			Exec:       kernel.Executor(kc),
			Unpack:     unpack,
		}
		return nodeHooks{bmcEvents: rec, bmcFaults: faults, firmware: sim.StockFirmware{
			MediaBoot: mediaBoot(kc),
			HTTPBoot:  httpBoot(kc, rom),
			NetBoot:   rom,
			LocalBoot: loader.Loader{Kernel: kc},
		}}
	}
}

// nodeHooks wire one machine and its BMC to the provisioner side.
type nodeHooks struct {
	// firmware runs at power-on; nil => sim.StockFirmware booting only
	// virtual media.
	firmware sim.Firmware
	// bmcFaults is the BMC's fault.Injector (bmcemu Config.Faults: layer
	// ipmi); bmcEvents records what its commands do to the machine
	// (bmcemu Config.Recorder). nil => none.
	bmcFaults fault.Injector
	bmcEvents events.Recorder
	// bmcMetrics receives the BMC's metalbed_bmc_* counters (bmcemu
	// Config.Registerer); nil => none.
	bmcMetrics prometheus.Registerer
	// vm, when set, opens the machine as a real VM instead of a simulated
	// one (firmware is then unused: the VM has its own).
	vm func(p Machine, dir string) (fleetMachine, error)
}

func startNode(p Machine, dir string, log *slog.Logger, h nodeHooks) (*fleetNode, error) {
	var m fleetMachine
	var err error
	if h.vm != nil {
		m, err = h.vm(p, dir)
	} else {
		fw := h.firmware
		if fw == nil {
			// No boot network: virtual media still boots (its ramdisk
			// finds no DHCP server).
			kc := kernel.Config{Logger: log}
			fw = sim.StockFirmware{MediaBoot: mediaBoot(kc), HTTPBoot: httpBoot(kc, nil)}
		}
		m, err = sim.Open(sim.Config{
			Firmware:   fw,
			Name:       p.Name,
			StateDir:   dir,
			MACs:       p.MACs,
			UUID:       p.uuid,
			DiskBytes:  p.DiskBytes,
			BootMode:   p.BootMode,
			PowerDelay: p.PowerDelay,
			Pace:       p.Pace,
			Logger:     log,
		})
	}
	if err != nil {
		return nil, err
	}
	sel := bmcemu.NewSEL(0)
	bmc, err := bmcemu.New(bmcemu.Config{
		Machine:    bmcMachine{m: m, mode: m.BootMode()},
		SEL:        sel,
		Name:       p.Name,
		Username:   p.Username,
		Password:   p.Password,
		GUID:       m.UUID(),
		Faults:     h.bmcFaults,
		Recorder:   h.bmcEvents,
		Registerer: h.bmcMetrics,
		Latency:    p.Pace.BMCLatency,
		Logger:     log,
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("BMC of %s: %w", p.Name, err)
	}
	addr := net.JoinHostPort(p.BMCAddress, strconv.Itoa(p.BMCPort))
	conn, err := p.BMCConn, error(nil)
	if conn == nil {
		conn, err = net.ListenPacket("udp", addr)
	}
	if err != nil {
		m.Close()
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("BMC of %s: %w (ports below 1024, such as --bmc-per-ip's 623, need root or CAP_NET_BIND_SERVICE)", p.Name, err)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			err = fmt.Errorf("%w (another metalbed or vbmc?)", err)
		}
		return nil, addrError("Machine.BMCPort", addr, fmt.Errorf("BMC of %s: %w", p.Name, err))
	}
	return &fleetNode{plan: p, machine: m, bmc: bmc, conn: conn, sel: sel}, nil
}

// serve runs every BMC until ctx ends; the first BMC that fails stops all.
func (f *fleet) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range f.nodes {
		g.Go(func() error {
			if err := n.bmc.Serve(gctx, n.conn); err != nil {
				return fmt.Errorf("BMC of %s: %w", n.plan.Name, err)
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
	return errors.Join(errs...)
}

// bmcAddr is where node n's BMC listens.
func (n *fleetNode) bmcAddr() *net.UDPAddr { return n.conn.LocalAddr().(*net.UDPAddr) }
