package scenarios

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// ROMProbe is what one network boot of metalbed's simulated NIC ROM and
// kernel did.
type ROMProbe struct {
	Image   pxe.Image // what the ROM handed the kernel (zero if it did not get that far)
	Booted  bool      // the ROM handed over a kernel
	Err     error     // the boot's error (ROM, kernel or ramdisk)
	Console string
}

// probeROMBoot boots metalbed's simulated NIC ROM (vms/sim/pxe) and
// simulated kernel (vms/sim/kernel) once, in this process, for a machine
// with the given MAC against a running `metalbed netboot serve`. It stands
// in for the wiring `metalbed up` does not do yet (its machines run
// sim.StockFirmware with no NetBoot), so a scenario can see how far a real
// Ironic's boot files take metalbed's machine; everything on the wire
// (DHCP, TFTP, HTTP, the Ironic API the ramdisk calls) is real.
func probeROMBoot(t testing.TB, nb *Netboot, mac string, mode vms.BootMode, timeout time.Duration) ROMProbe {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(nb.TFTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	tftpPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := os.Create(filepath.Join(t.TempDir(), "probe-disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	const diskSize = 1 << 30
	if err := disk.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}

	var probe ROMProbe
	exec := kernel.Executor(kernel.Config{TFTPPort: tftpPort})
	rom := &pxe.ROM{
		DHCPServer: nb.DHCPAddr, DHCPClient: "127.0.0.1:0", TFTPPort: tftpPort,
		Exec: func(ctx context.Context, b *sim.BootContext, img pxe.Image) error {
			probe.Image, probe.Booted = img, true
			return exec(ctx, b, img)
		},
	}
	console := &syncBuffer{}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	bc := &sim.BootContext{
		Machine: "rom-probe", Device: vms.BootPXE, Override: true, Mode: mode,
		Disk:    sizedFile{disk, diskSize},
		NICs:    []vms.NIC{{MAC: hw}},
		Console: console,
		Emit:    func(vms.EventKind, string) {},
		Reset:   cancel, PowerOff: cancel,
	}
	probe.Err = rom.Boot(ctx, bc)
	probe.Console = console.String()
	return probe
}

// sizedFile is a sparse file as a simulated disk.
type sizedFile struct {
	*os.File
	size int64
}

func (f sizedFile) Size() int64 { return f.size }
