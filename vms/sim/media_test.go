package sim

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/vms"
)

// mediaFirmware stands in for vmedia.Booter: it reports the drive's image.
type mediaFirmware struct{ seen chan string }

func (f mediaFirmware) Boot(ctx context.Context, b *BootContext) error {
	dev := vms.MediaCD
	if b.Device == vms.BootUSB {
		dev = vms.MediaUSB
	}
	f.seen <- b.Device.String() + " " + b.Media(dev)
	return errors.New("stand-in cannot boot it")
}

// TestVirtualMedia: inserted media are kept per drive across restarts, a
// Once Cd override boots the CD drive's image through MediaBoot and is
// consumed, and an empty drive fails on the console and as boot-failed.
func TestVirtualMedia(t *testing.T) {
	dir := t.TempDir()
	seen := make(chan string, 4)
	fw := StockFirmware{MediaBoot: mediaFirmware{seen}}
	m := open(t, Config{StateDir: dir, Firmware: fw})
	ctx := t.Context()
	if err := m.InsertMedia(ctx, vms.MediaCD, "http://127.0.0.1/a.iso"); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertMedia(ctx, "floppy", "http://x"); !errors.Is(err, vms.ErrNoMediaDrive) {
		t.Errorf("floppy: %v", err)
	}
	m.Close()
	m = open(t, Config{StateDir: dir, Firmware: fw})
	if u, err := m.Media(ctx, vms.MediaCD); err != nil || u != "http://127.0.0.1/a.iso" {
		t.Fatalf("after a restart the CD holds %q, %v", u, err)
	}
	ev := watch(t, m)
	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootCDROM, false, false)); err != nil {
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionOn)
	if got := <-seen; got != "cdrom http://127.0.0.1/a.iso" {
		t.Errorf("firmware saw %q", got)
	}
	e := ev.waitFor(t, vms.EventBootFail, 1)
	if !strings.Contains(e.Detail, "cdrom: stand-in cannot boot it") {
		t.Errorf("boot-failed %q", e.Detail)
	}
	if f := flagsOf(t, m); f != (vms.BootFlags{}) {
		t.Errorf("Once Cd not consumed: % x", f)
	}
	mustPower(t, m, vms.ActionOff)

	// An empty USB slot: the boot fails before the media boot runs.
	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootUSB, false, true)); err != nil {
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionOn)
	e = ev.waitFor(t, vms.EventBootFail, 2)
	if !strings.Contains(e.Detail, "usb: no medium") {
		t.Errorf("boot-failed %q", e.Detail)
	}
	if err := m.EjectMedia(ctx, vms.MediaCD); err != nil {
		t.Fatal(err)
	}
	if u, _ := m.Media(ctx, vms.MediaCD); u != "" {
		t.Errorf("after eject: %q", u)
	}
	if err := m.EjectMedia(ctx, vms.MediaCD); err != nil {
		t.Errorf("eject of an empty drive: %v", err)
	}
}
