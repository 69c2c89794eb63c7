// Package kernel is what a booted Linux kernel does on a simulated machine.
// Firmware (the NIC ROM, the local-boot loader) hands it a bzImage, initrds
// and a command line. If the initrd is metalbed's deploy ramdisk, its /init
// — the ramdisk program — runs in-process with the machine's disk, its NIC's
// leased address and its reset line. Anything else cannot run here and ends
// as a real kernel without a usable root would: a panic on the console.
package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// Config is what the simulated kernel needs from its wiring.
type Config struct {
	// Export serves the deploy disk over iSCSI (the ramdisk's tgtd).
	Export ramdisk.Exporter
	// FetchToken reads token-<uuid> from the boot server over TFTP.
	FetchToken ramdisk.TokenFetcher
	// TFTPPort is the boot server's TFTP port (69 on a real network).
	TFTPPort int
	// DHCPServer and DHCPClient are where the ramdisk's DHCP client sends
	// and binds (see pxe.ROM) when the firmware handed over without a
	// lease — a boot from virtual media: the ramdisk then brings its NIC
	// up by DHCP, as IPA's does. DHCPServer "" => such a ramdisk finds no
	// network; DHCPClient "" => "0.0.0.0:68".
	DHCPServer, DHCPClient string
	// Reset resets the machine, as reboot(2) does. It is called from the
	// running program and must not wait for that program to end.
	Reset func()
	// Recorder records the ramdisk's and the agent's steps for the
	// machine's timeline (tagged with the machine's name); nil: none.
	Recorder events.Recorder
	// Faults is handed to the deploy ramdisk and the agent (layers
	// ramdisk and agent), which ask it about the machine by name (and
	// the node's UUID when they know it); nil: no faults.
	Faults fault.Injector
	Logger *slog.Logger
}

// ErrPanic is a kernel panic: the booted program could not run.
var ErrPanic = errors.New("kernel panic")

// Executor returns the pxe.Executor for one machine.
func Executor(cfg Config) pxe.Executor {
	return func(ctx context.Context, b *sim.BootContext, img pxe.Image) error {
		return Boot(ctx, cfg, b, img)
	}
}

// Boot runs a kernel handed over by firmware: metalbed's ramdisk when an
// initrd is one — with the boot loaders that initramfs carries, as its
// /init on a real machine would find them; else the deployed instance
// when the command line names a root= on the machine's disk; else it
// panics as Linux does.
func Boot(ctx context.Context, cfg Config, b *sim.BootContext, img pxe.Image) error {
	con := b.Console
	if err := pxe.CheckBzImage(img.Kernel.Head); err != nil {
		fmt.Fprintf(con, "error: %s: invalid kernel (%v)\r\n", img.KernelName, err)
		return fmt.Errorf("%w: kernel %s: %v", pxe.ErrExec, img.KernelName, err)
	}
	fmt.Fprintf(con, "[    0.000000] Linux version (metalbed sim) booting %s\r\n", img.KernelName)
	fmt.Fprintf(con, "[    0.000000] Command line: %s\r\n", img.Cmdline)
	for _, rd := range img.Initrds {
		// The firmware loaded it unpacking it (pxe.File): what the
		// kernel finds in it is known.
		if fs := rd.Initramfs; fs != nil {
			fmt.Fprintf(con, "[    0.400000] Unpacking initramfs %s (%s %s)\r\n", rd.Name, fs.Marker.Program, fs.Marker.Version)
			fmt.Fprintf(con, "[    0.500000] Run /init as init process\r\n")
			img.Kernel, img.Initrds = pxe.File{}, nil
			return runRamdisk(ctx, cfg, b, img, fs.Bootloaders)
		}
	}
	if root := rootArg(img.Cmdline); root != "" {
		return bootInstance(ctx, b, root)
	}
	msg := "VFS: Unable to mount root fs on unknown-block(0,0)"
	fmt.Fprintf(con, "[    1.000000] Kernel panic - not syncing: %s\r\n", msg)
	return fmt.Errorf("%w: %s", ErrPanic, msg)
}

// runRamdisk is the ramdisk's /init on this machine; bl are the boot
// loaders of its initramfs.
func runRamdisk(ctx context.Context, cfg Config, b *sim.BootContext, img pxe.Image, bl ramdisk.Bootloaders) error {
	p, err := ramdisk.ParseCmdline(img.Cmdline)
	if err != nil {
		fmt.Fprintf(b.Console, "metalbed-ramdisk: bad kernel command line: %v\r\n", err)
		return fmt.Errorf("ramdisk: %w", err)
	}
	if img.Lease.IP == nil {
		// Booted from media: no ROM configured a NIC. The ramdisk asks
		// DHCP on BOOTIF's NIC, else on each NIC in turn.
		lease, nic, err := bringUpNIC(ctx, cfg, b, p)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(b.Console, "metalbed-ramdisk: %v\r\n", err)
			return fmt.Errorf("ramdisk: %w", err)
		}
		img.Lease, img.NIC = lease, nic
	}
	if p.ClientIP == nil {
		// iPXE passes no ip=; the NIC's lease is the address.
		p.ClientIP = img.Lease.IP
	}
	if p.BootServer == nil {
		p.BootServer = img.Lease.NextServer
	}
	reset := cfg.Reset
	if reset == nil && b.Reset != nil {
		reset = b.Reset
	}
	env := &env{b: b, ip: img.Lease.IP, reset: reset}
	// Each step goes to the timeline once, and onto the console as a
	// real ramdisk prints it (consoleRecorder).
	rec := ramdisk.ConsoleRecorder(crlf{b.Console}, events.Tag(cfg.Recorder, events.Who{Machine: b.Machine}))
	if p.AgentMode() {
		return runAgent(ctx, cfg, b, img, p, env, rec, bl)
	}
	err = ramdisk.Run(ctx, ramdisk.Config{
		Params:     p,
		Env:        env,
		Export:     cfg.Export,
		FetchToken: cfg.FetchToken,
		Bootloader: bl.Installer(),
		TFTPPort:   cfg.TFTPPort,
		Console:    crlf{b.Console},
		Recorder:   rec,
		Faults:     fault.Tag(cfg.Faults, events.Who{Machine: b.Machine}),
		Logger:     cfg.Logger,
	})
	if ctx.Err() != nil {
		return nil // powered off or reset under the ramdisk
	}
	if err != nil {
		fmt.Fprintf(b.Console, "metalbed-ramdisk: %v\r\n", err)
		return fmt.Errorf("ramdisk: %w", err)
	}
	return nil
}

// dhcpTimeout and dhcpTries bound the ramdisk's DHCP on one NIC.
const (
	dhcpTimeout = time.Second
	dhcpTries   = 3
)

// bringUpNIC configures a NIC by DHCP as the ramdisk's init does when no
// firmware did: BOOTIF's NIC when the command line names one, else the
// first NIC that gets a lease.
func bringUpNIC(ctx context.Context, cfg Config, b *sim.BootContext, p ramdisk.Params) (pxe.Lease, vms.NIC, error) {
	nics := b.NICs
	if p.BootIF != nil {
		nics = nil
		for _, n := range b.NICs {
			if n.MAC.String() == p.BootIF.String() {
				nics = append(nics, n)
			}
		}
		if len(nics) == 0 {
			return pxe.Lease{}, vms.NIC{}, fmt.Errorf("BOOTIF %s is not a NIC of this machine", p.BootIF)
		}
	}
	if len(nics) == 0 {
		return pxe.Lease{}, vms.NIC{}, errors.New("no network interface")
	}
	if cfg.DHCPServer == "" {
		return pxe.Lease{}, vms.NIC{}, errors.New("no DHCP server reachable from this machine's network: no address for the ramdisk")
	}
	var errs []error
	for _, n := range nics {
		i := slices.IndexFunc(b.NICs, func(x vms.NIC) bool { return x.MAC.String() == n.MAC.String() })
		fmt.Fprintf(b.Console, "metalbed-ramdisk: DHCP on eth%d (%s)\r\n", i, n.MAC)
		l, err := pxe.DHCP(ctx, pxe.DHCPConfig{Server: cfg.DHCPServer, Client: cfg.DHCPClient, MAC: n.MAC, Timeout: dhcpTimeout, Tries: dhcpTries})
		if err == nil {
			ones, _ := l.Netmask.Size()
			fmt.Fprintf(b.Console, "metalbed-ramdisk: eth%d: %s/%d via DHCP from %s\r\n", i, l.IP, ones, l.ServerID)
			b.Emit(vms.EventConsole, "dhcp "+l.String())
			return l, n, nil
		}
		if ctx.Err() != nil {
			return pxe.Lease{}, vms.NIC{}, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.MAC, err))
	}
	return pxe.Lease{}, vms.NIC{}, fmt.Errorf("DHCP: no lease: %w", errors.Join(errs...))
}

// env is the simulated machine as the ramdisk sees it.
type env struct {
	b     *sim.BootContext
	ip    net.IP
	reset func()
	once  sync.Once
}

// diskName is how the simulated disk appears to Linux (virtio-blk).
const diskName = "vda"

func (e *env) Disks(context.Context) ([]ramdisk.Disk, error) {
	if e.b.Disk == nil {
		return nil, nil
	}
	return []ramdisk.Disk{{
		Name:      diskName,
		SizeBytes: e.b.Disk.Size(),
		Model:     "metalbed SIMDISK",
		Vendor:    "metalbed",
		Serial:    e.b.Machine + "-disk0",
		Dev:       e.b.Disk,
	}}, nil
}

func (e *env) Listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", net.JoinHostPort(e.ip.String(), strconv.Itoa(port)))
}

// Reboot asks for a reset and waits for it to take the machine down: a
// real reboot does not return.
func (e *env) Reboot(ctx context.Context) error {
	if e.reset == nil {
		return errors.New("this machine has no reset line")
	}
	e.once.Do(func() { go e.reset() })
	<-ctx.Done()
	return nil
}

// crlf turns the ramdisk's \n into the serial console's \r\n.
type crlf struct {
	w interface{ Write([]byte) (int, error) }
}

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}
