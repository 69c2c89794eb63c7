package kernel

import (
	"context"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/ramdisk/agent"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// simMemoryBytes and simCPUs are the memory and CPUs a simulated machine
// reports to the agent: what the testbed enrolls and its BMCs report.
const (
	simMemoryBytes = 2 << 30
	simCPUs        = 2
)

// runAgent is the ramdisk's /init in agent mode (ipa-api-url on the kernel
// command line): metalbed's ironic-python-agent-compatible agent, with the
// machine's disk, NIC lease and power lines, and the boot loaders bl of
// the initramfs.
func runAgent(ctx context.Context, cfg Config, b *sim.BootContext, img pxe.Image, p ramdisk.Params, base ramdisk.Env, rec events.Recorder, bl ramdisk.Bootloaders) error {
	acfg, err := agent.ConfigFromParams(p)
	if err != nil {
		fmt.Fprintf(b.Console, "metalbed-ramdisk: bad agent parameters: %v\r\n", err)
		return fmt.Errorf("agent: %w", err)
	}
	mode := "bios"
	if b.Mode == vms.UEFI {
		mode = "uefi"
	}
	hw := agent.Hardware{
		CPU:          agent.CPU{ModelName: "metalbed simulated CPU", Count: simCPUs, Architecture: "x86_64"},
		MemoryBytes:  simMemoryBytes,
		PhysicalMB:   simMemoryBytes >> 20,
		BMCAddress:   "0.0.0.0",
		Vendor:       agent.SystemVendor{Manufacturer: "metalbed", ProductName: "SimMachine", SerialNumber: b.Machine},
		BootMode:     mode,
		PXEInterface: img.NIC.MAC.String(),
		Hostname:     b.Machine,
	}
	if p.BootIF != nil {
		hw.PXEInterface = p.BootIF.String()
	}
	for i, n := range b.NICs {
		nic := agent.NIC{Name: fmt.Sprintf("eth%d", i), MAC: n.MAC.String(), HasCarrier: true, Vendor: "0x1af4", Product: "0x1000"}
		if n.MAC.String() == img.NIC.MAC.String() && img.Lease.IP != nil {
			nic.IPv4 = img.Lease.IP.String()
		}
		hw.NICs = append(hw.NICs, nic)
	}
	powerOff := func(ctx context.Context) error {
		if b.PowerOff == nil {
			return fmt.Errorf("machine %s has no power-off line", b.Machine)
		}
		b.PowerOff()
		<-ctx.Done() // power goes away under the agent
		return nil
	}
	acfg.LocalIP = img.Lease.IP // nil without a lease: the system's choice
	acfg.Env = agent.EnvFrom(base, hw, powerOff)
	acfg.Console = crlf{b.Console}
	acfg.Recorder = rec
	acfg.Bootloaders = &bl
	acfg.Logger = cfg.Logger
	acfg.Faults = fault.Tag(cfg.Faults, events.Who{Machine: b.Machine})
	acfg.MinDiskBytes = -1 // simulated disks may be smaller than IPA's 4 GiB minimum
	err = agent.Run(ctx, acfg)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
