package scenarios

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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

// probeROMBoot prepares one network boot of metalbed's simulated NIC ROM
// (vms/sim/pxe) and simulated kernel (vms/sim/kernel), in this process, for
// a machine with the given MAC, SMBIOS UUID (as in the inventory) and disk (a disk image file, e.g. a machine's
// disk.img from the inventory, or "" for a scratch one) against a running
// `metalbed netboot serve`, and returns the boot to run. It stands in for
// the wiring `metalbed up` does not do yet (its machines run
// sim.StockFirmware with no NetBoot), so a scenario can see how far a real
// Ironic's boot files take metalbed's machine; everything on the wire (DHCP,
// TFTP, HTTP, the Ironic API the ramdisk's agent calls) is real. The boot
// ends when the booted program does, when it powers the machine off or
// resets it, or when ctx ends; it is safe to run on another goroutine.
// powerOff (nil = none) runs when the booted program powers the machine off,
// before the boot ends: e.g. powering off through the machine's BMC what
// the OS's shutdown would power off.
func probeROMBoot(t testing.TB, nb *Netboot, mac, uuid string, mode vms.BootMode, diskPath string, powerOff func()) func(ctx context.Context) ROMProbe {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	var id [16]byte // the machine's SMBIOS UUID, as PXELINUX's first config name
	raw, err := hex.DecodeString(strings.ReplaceAll(uuid, "-", ""))
	if err != nil || len(raw) != len(id) {
		t.Fatalf("machine UUID %q: want 32 hex digits", uuid)
	}
	copy(id[:], raw)
	_, port, err := net.SplitHostPort(nb.TFTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	tftpPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	if diskPath == "" {
		diskPath = filepath.Join(t.TempDir(), "probe-disk.img")
		if err := os.WriteFile(diskPath, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(diskPath, 1<<30); err != nil {
			t.Fatal(err)
		}
	}
	disk, err := os.OpenFile(diskPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	st, err := disk.Stat()
	if err != nil {
		t.Fatal(err)
	}
	exec := kernel.Executor(kernel.Config{TFTPPort: tftpPort})

	return func(ctx context.Context) ROMProbe {
		var probe ROMProbe
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rom := &pxe.ROM{
			DHCPServer: nb.DHCPAddr, DHCPClient: "127.0.0.1:0", TFTPPort: tftpPort,
			Exec: func(ctx context.Context, b *sim.BootContext, img pxe.Image) error {
				probe.Image, probe.Booted = img, true
				return exec(ctx, b, img)
			},
		}
		console := &syncBuffer{}
		bc := &sim.BootContext{
			Machine: "rom-probe", UUID: id, Device: vms.BootPXE, Override: true, Mode: mode,
			Disk:    sizedFile{disk, st.Size()},
			NICs:    []vms.NIC{{MAC: hw}},
			Console: console,
			Emit:    func(vms.EventKind, string) {},
			Reset:   cancel,
			PowerOff: func() {
				if powerOff != nil {
					powerOff()
				}
				cancel()
			},
		}
		probe.Err = rom.Boot(ctx, bc)
		probe.Console = console.String()
		return probe
	}
}

// sizedFile is a sparse file as a simulated disk.
type sizedFile struct {
	*os.File
	size int64
}

func (f sizedFile) Size() int64 { return f.size }
