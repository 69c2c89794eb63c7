//go:build libvirt_dlopen

package libvirt_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "libvirt.org/go/libvirt"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// domainBootOrder reads the boot devices of the domain's persistent
// definition, as the next start will use them.
func domainBootOrder(t *testing.T, name string) string {
	t.Helper()
	conn, err := golibvirt.NewConnect("qemu:///system")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	doc, err := dom.GetXMLDesc(golibvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, part := range strings.Split(doc, "<boot dev='")[1:] {
		order = append(order, part[:strings.IndexByte(part, '\'')])
	}
	return strings.Join(order, ",")
}

// waitPower polls until the machine reports want.
func waitPower(t *testing.T, m vms.Machine, want vms.PowerState) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ps, err := m.PowerState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if ps == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine still %s, want %s", ps, want)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestMachineLifecycle drives a real domain through the power actions a
// BMC sends, and checks the boot flags: kept across a reopen (domain
// metadata), applied as the boot order of the next start, a one-time
// override consumed by it, a persistent one kept.
func TestMachineLifecycle(t *testing.T) {
	requireLibvirt(t)
	ctx := t.Context()
	dir := t.TempDir()
	id := fmt.Sprintf("m%d", os.Getpid()%1e8)
	netw, err := libvirt.CreateNetwork(ctx, libvirt.NetworkConfig{Name: id, Addr: netip.MustParsePrefix("10.233.8.1/24")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netw.Close() })
	cfg := libvirt.Config{
		Name: "mbtest-" + id, MAC: net.HardwareAddr{0x52, 0x54, 0x00, 0xbf, byte(os.Getpid() >> 8), byte(os.Getpid())},
		Bridge: netw.Bridge, Disk: filepath.Join(dir, "disk.img"), DiskBytes: 16 << 20,
		SerialLog: filepath.Join(dir, "console.log"),
	}
	m, err := libvirt.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove() })
	if ps, err := m.PowerState(ctx); err != nil || ps != vms.PowerOff {
		t.Fatalf("new machine: %s, %v; want off", ps, err)
	}
	if err := m.Power(ctx, vms.ActionReset); err == nil || !strings.Contains(err.Error(), vms.ErrPoweredOff.Error()) {
		t.Errorf("reset while off: %v, want ErrPoweredOff", err)
	}

	pxeOnce := vms.NewBootFlags(vms.BootPXE, false, false)
	if err := m.SetBootFlags(ctx, pxeOnce); err != nil {
		t.Fatal(err)
	}
	if got := domainBootOrder(t, cfg.Name); got != "network,hd" {
		t.Errorf("boot order with a PXE override: %s", got)
	}
	// A restarted metalbed finds the flags in the domain's metadata.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m, err = libvirt.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := m.BootFlags(ctx); err != nil || f != pxeOnce {
		t.Fatalf("flags after reopen: % x, %v; want % x", f, err, pxeOnce)
	}
	var events eventLog
	defer m.Subscribe(func(e vms.Event) { events.add("%s %s", e.Kind, e.Detail) })()

	if err := m.Power(ctx, vms.ActionOn); err != nil {
		t.Fatal(err)
	}
	waitPower(t, m, vms.PowerOn)
	if f, _ := m.BootFlags(ctx); f != (vms.BootFlags{}) {
		t.Errorf("one-time override not consumed: % x", f)
	}
	if got := domainBootOrder(t, cfg.Name); got != "hd,network" {
		t.Errorf("boot order after the override was consumed: %s", got)
	}
	persistentPXE := vms.NewBootFlags(vms.BootPXE, true, false)
	if err := m.SetBootFlags(ctx, persistentPXE); err != nil {
		t.Fatal(err)
	}
	if err := m.Power(ctx, vms.ActionReset); err != nil {
		t.Fatal(err)
	}
	waitPower(t, m, vms.PowerOn)
	if err := m.Power(ctx, vms.ActionCycle); err != nil {
		t.Fatal(err)
	}
	if f, _ := m.BootFlags(ctx); f != persistentPXE {
		t.Errorf("persistent override changed by boots: % x", f)
	}
	if err := m.Power(ctx, vms.ActionDiag); err != nil {
		t.Errorf("NMI: %v", err)
	}
	if err := m.Power(ctx, vms.ActionOff); err != nil {
		t.Fatal(err)
	}
	waitPower(t, m, vms.PowerOff)
	if err := m.Power(ctx, vms.ActionOff); err != nil {
		t.Errorf("off while off: %v", err)
	}
	want := "power-on \nboot pxe\n" + // one-time PXE
		"power-off \nreset \npower-on \nboot pxe\n" + // reset with persistent PXE
		"power-off \npower-on \nboot pxe\n" + // cycle
		"power-off \n"
	if got := events.String(); got != want {
		t.Errorf("events:\n%s\nwant:\n%s", got, want)
	}
}
