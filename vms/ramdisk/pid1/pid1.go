// Package pid1 is the program a real machine's deploy ramdisk runs as
// /init: cmd/metalbed runs it when it is PID 1 (`metalbed ramdisk init`).
package pid1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/ramdisk/agent"
)

// Config configures the ramdisk program.
type Config struct {
	// Console is the serial console: progress and milestones for the
	// conductor and people; Log gets the log records.
	Console, Log io.Writer
	// Version is metalbed's version, shown at start.
	Version string
}

// Run is /init of a real machine's deploy ramdisk: it mounts /proc, /sys
// and /dev, configures the boot NIC by DHCP, reads the deploy parameters
// from /proc/cmdline and runs the iSCSI deploy (export the disk,
// pass_deploy_info, wait for the conductor, reboot) or, with ipa-api-url,
// the agent; booted as a netboot instance's initramfs it mounts the
// deployed root instead. It returns only when that fails; its caller, PID
// 1, must not exit.
func Run(ctx context.Context, cfg Config) error {
	log := slog.New(slog.NewTextHandler(cfg.Log, nil))
	fmt.Fprintf(cfg.Console, "metalbed-ramdisk: metalbed %s as /init\n", cfg.Version)
	if err := ramdisk.Mount(); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	if root, ok := ramdisk.ParseInstanceRoot(string(cmdline)); ok {
		// Booted as a netboot instance's initramfs: mount the deployed root.
		root.Console = cfg.Console
		return root.SwitchTo(ctx)
	}
	p, err := ramdisk.ParseCmdline(string(cmdline))
	if err != nil {
		return fmt.Errorf("kernel command line: %w", err)
	}
	if bm := p.Raw["boot_method"]; bm != "" {
		// Ironic's vmedia boot (no BOOTIF, no ip=): the NIC is the first
		// one that gets a lease. The line reaches the timeline.
		fmt.Fprintf(cfg.Console, "metalbed-ramdisk: boot_method=%s\n", bm)
	}
	m, err := ramdisk.NewMachine(ctx, ramdisk.MachineConfig{MAC: p.BootIF, Console: cfg.Console, Logger: log})
	if err != nil {
		return err
	}
	if p.ClientIP == nil {
		p.ClientIP = m.IP // iPXE passes no ip=: the lease is the address
	}
	if p.BootServer == nil {
		if siaddr := m.Lease.ACK.ServerIPAddr; siaddr != nil && !siaddr.IsUnspecified() {
			p.BootServer = siaddr
		}
	}
	if p.AgentMode() {
		return runAgent(ctx, cfg.Console, m, p, log)
	}
	return ramdisk.Run(ctx, ramdisk.Config{
		Params:     p,
		Env:        m,
		Export:     exportBlockDevice(log),
		FetchToken: ramdisk.FetchTFTP,
		Console:    cfg.Console,
		Recorder:   ramdisk.ConsoleRecorder(cfg.Console, nil),
		Logger:     log,
	})
}

// exportBlockDevice serves a disk as LUN 1 with metalbed's iSCSI target.
func exportBlockDevice(log *slog.Logger) ramdisk.Exporter {
	return func(ctx context.Context, ln net.Listener, iqn string, dev ramdisk.BlockDevice) error {
		t, err := iscsitarget.New(iscsitarget.Config{IQN: iqn, Disk: dev, Logger: log})
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

// runAgent is the ramdisk's agent mode on a real machine (ipa-api-url
// on the kernel command line): metalbed's ironic-python-agent-compatible
// agent with the machine's disks, its boot NIC's lease, and the inventory
// read from /proc and /sys. It returns only when the agent fails.
func runAgent(ctx context.Context, console io.Writer, m *ramdisk.Machine, p ramdisk.Params, log *slog.Logger) error {
	acfg, err := agent.ConfigFromParams(p)
	if err != nil {
		return fmt.Errorf("agent parameters: %w", err)
	}
	hw := realHardware(m, p)
	acfg.Env = agent.EnvFrom(m, hw, func(context.Context) error { return m.PowerOff() })
	acfg.Console = console
	acfg.Recorder = ramdisk.ConsoleRecorder(console, nil)
	acfg.Logger = log
	// Partition images are cached before they are written: the
	// initramfs's root is the only writable file system.
	if err := os.MkdirAll("/tmp", 0o1777); err != nil {
		return err
	}
	acfg.TempDir = "/tmp"
	return agent.Run(ctx, acfg)
}

// realHardware reads what the agent reports of the machine: CPU and memory
// from /proc, NICs from /sys/class/net, the boot mode from /sys/firmware/efi,
// SMBIOS vendor strings from /sys/class/dmi/id.
func realHardware(m *ramdisk.Machine, p ramdisk.Params) agent.Hardware {
	hw := agent.Hardware{
		CPU:        agent.CPU{Architecture: "x86_64"},
		BMCAddress: "0.0.0.0", // no IPMI device in the guest
		BootMode:   "bios",
	}
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		hw.BootMode = "uefi"
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "processor":
				hw.CPU.Count++
			case "model name":
				hw.CPU.ModelName = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				hw.MemoryBytes = kb << 10
				// Installed memory: MemTotal lacks what the kernel keeps
				// back; round up to a multiple of 32 MiB.
				hw.PhysicalMB = (hw.MemoryBytes>>20 + 31) / 32 * 32
			}
		}
		f.Close()
	}
	dmi := func(name string) string {
		b, _ := os.ReadFile(filepath.Join("/sys/class/dmi/id", name))
		return strings.TrimSpace(string(b))
	}
	hw.Vendor = agent.SystemVendor{Manufacturer: dmi("sys_vendor"), ProductName: dmi("product_name"), SerialNumber: dmi("product_serial")}
	hw.Hostname, _ = os.Hostname()
	if hw.Hostname == "" || hw.Hostname == "(none)" {
		hw.Hostname = "metalbed-ramdisk"
	}
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) != 6 {
			continue
		}
		dev := filepath.Join("/sys/class/net", ifc.Name, "device")
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(dev, name))
			return strings.TrimSpace(string(b))
		}
		carrier, _ := os.ReadFile(filepath.Join("/sys/class/net", ifc.Name, "carrier"))
		nic := agent.NIC{Name: ifc.Name, MAC: ifc.HardwareAddr.String(), HasCarrier: strings.TrimSpace(string(carrier)) == "1",
			Vendor: read("vendor"), Product: read("device")}
		if ifc.Name == m.Iface && m.IP != nil {
			nic.IPv4 = m.IP.String()
		}
		hw.NICs = append(hw.NICs, nic)
	}
	hw.PXEInterface = ""
	if p.BootIF != nil {
		hw.PXEInterface = p.BootIF.String()
	} else if ifc, err := net.InterfaceByName(m.Iface); err == nil {
		hw.PXEInterface = ifc.HardwareAddr.String()
	}
	return hw
}
