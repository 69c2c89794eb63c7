package scenarios

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
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
		console := &testenv.SyncBuffer{}
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

// noNetbootLine is what a machine of `metalbed up` prints when told to
// network-boot: its firmware has no network boot program yet.
const noNetbootLine = "PXE: no network boot program is available in this build"

// NetbootStandIn network-boots a machine of `metalbed up` in this process
// every time its console says its firmware could not (see probeROMBoot):
// each new noNetbootLine on the machine's console.log ends the previous
// stand-in boot and starts a fresh one. A machine whose firmware can
// network-boot never prints that line, so the stand-in then does nothing.
type NetbootStandIn struct {
	mu    sync.Mutex
	boots []ROMProbe // finished boots, in order
}

// startNetbootStandIn watches machine m's console until the test ends.
// powerOff runs when a booted program powers the machine off.
func startNetbootStandIn(t testing.TB, nb *Netboot, m InventoryNode, mode vms.BootMode, powerOff func()) *NetbootStandIn {
	t.Helper()
	boot := probeROMBoot(t, nb, m.MACs[0], m.UUID, mode, m.Disk.Path, powerOff)
	s := &NetbootStandIn{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		seen := 0
		type running struct {
			stop   context.CancelFunc
			result chan ROMProbe
		}
		var cur *running
		finish := func() {
			if cur == nil {
				return
			}
			cur.stop()
			p := <-cur.result
			s.mu.Lock()
			s.boots = append(s.boots, p)
			s.mu.Unlock()
			cur = nil
		}
		defer finish()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if cur != nil && len(cur.result) > 0 {
				finish() // the boot ended on its own: record it now
			}
			raw, _ := os.ReadFile(m.ConsoleLog)
			n := strings.Count(string(raw), noNetbootLine)
			if n <= seen {
				continue
			}
			seen = n
			finish()
			r := &running{result: make(chan ROMProbe, 1)}
			var bctx context.Context
			bctx, r.stop = context.WithCancel(ctx)
			cur = r
			go func() { r.result <- boot(bctx) }()
		}
	}()
	return s
}

// Failed reports whether the last stand-in boot ended before any kernel ran
// (DHCP, TFTP, HTTP or a boot config the ROM refused).
func (s *NetbootStandIn) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.boots) > 0 && !s.boots[len(s.boots)-1].Booted
}

// Boots returns the stand-in boots that have ended.
func (s *NetbootStandIn) Boots() []ROMProbe {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ROMProbe(nil), s.boots...)
}
