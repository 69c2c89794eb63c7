//go:build libvirt_dlopen

package libvirt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "libvirt.org/go/libvirt"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// requireLibvirt skips unless libvirtd answers (ci/libvirt/start.sh) and
// this process may create namespaces; with METALBED_LIBVIRT=required it
// fails instead.
func requireLibvirt(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("METALBED_LIBVIRT") == "required" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("real VMs need root (namespaces, bridges, qemu:///system)")
	}
	for tool, pkg := range map[string]string{"ip": "iproute2", "qemu-system-x86_64": "qemu-system-x86"} {
		if _, err := exec.LookPath(tool); err != nil {
			fail("%s missing: apt-get install %s", tool, pkg)
		}
	}
	conn, err := golibvirt.NewConnect("qemu:///system")
	if err != nil {
		fail("libvirt not reachable (apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients; ci/libvirt/start.sh): %v", err)
		return
	}
	conn.Close()
}

// metalbedBinary builds cmd/metalbed once per test.
func metalbedBinary(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "metalbed")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/metalbed/metalbed/cmd/metalbed")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build metalbed: %v\n%s", err, out)
	}
	return bin
}

// kernelPath is the gokrazy kernel's bzImage (virtio, e1000, 8250 built in).
func kernelPath(t *testing.T) string {
	out, err := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "github.com/gokrazy/kernel.amd64").Output()
	if err != nil {
		t.Fatalf("go list gokrazy kernel: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "vmlinuz")
}

// buildInitramfs builds testdata/pxeinit and packs it as /init.
func buildInitramfs(t *testing.T, dst string) {
	bin := filepath.Join(t.TempDir(), "init")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./testdata/pxeinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pxeinit: %v\n%s", err, out)
	}
	var buf bytes.Buffer
	if err := ramdisk.BuildInitramfs(&buf, ramdisk.ImageConfig{Init: bin, Version: "pxe-test"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPXEBoot boots a real VM over the network from metalbed's own DHCP,
// TFTP and HTTP servers, in BIOS (SeaBIOS + iPXE ROM) and UEFI (OVMF +
// iPXE) mode: iPXE gets the script URL over DHCP, the script over TFTP, the
// kernel and initramfs over HTTP; /init prints a marker with a nonce only
// this run knows, then powers off.
func TestPXEBoot(t *testing.T) {
	requireLibvirt(t)
	for i, mode := range []vms.BootMode{vms.BIOS, vms.UEFI} {
		t.Run(string(mode), func(t *testing.T) { testPXEBoot(t, mode, i) })
	}
}

func testPXEBoot(t *testing.T, mode vms.BootMode, idx int) {
	ctx := t.Context()
	dir := t.TempDir()
	buildInitramfs(t, filepath.Join(dir, "initrd.gz"))
	kernel, err := os.ReadFile(kernelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("p%d%d", os.Getpid()%1e6, idx)
	netw := createNetwork(t, id, "10.233.7.1/24")

	nonceB := make([]byte, 8)
	rand.Read(nonceB)
	nonce := hex.EncodeToString(nonceB)
	srv := netw.Addr()

	writeBootScript(t, dir, "http://"+srv.String()+":8080", "vmlinuz", "initrd.gz", "console=ttyS0,115200 panic=-1 mbnonce="+nonce, mode)

	// The boot servers run as `metalbed netboot serve` inside the
	// namespace (fixed ports are fine there: nothing else lives in it).
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xbe, byte(os.Getpid()), byte(idx)}
	servers := serveNetboot(t, netw, metalbedBinary(t), dir, "10.233.7.100-10.233.7.199", mac)
	events := servers

	consoleLog := filepath.Join(dir, "console.log")
	m := newMachine(t, libvirt.Config{
		Name: "mbtest-" + id, MAC: mac, Bridge: netw.Bridge,
		Disk: filepath.Join(dir, "disk.img"), DiskBytes: 64 << 20,
		SerialLog: consoleLog, BootMode: mode,
	})
	var machineEvents eventLog
	cancel := m.Subscribe(func(e vms.Event) { machineEvents.add("%s %s", e.Kind, e.Detail) })
	defer cancel()

	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootPXE, false, mode == vms.UEFI)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Power(ctx, vms.ActionOn); err != nil {
		t.Fatal(err)
	}
	// The one-time override is consumed by this boot.
	if f, err := m.BootFlags(ctx); err != nil || f != (vms.BootFlags{}) {
		t.Errorf("boot flags after the boot: % x, %v; want consumed (zero)", f, err)
	}
	if got := machineEvents.String(); got != "power-on \nboot pxe\n" {
		t.Errorf("machine events %q, want power-on then boot pxe", got)
	}

	want := "metalbed-pxe-init: booted nonce=" + nonce
	deadline := time.Now().Add(4 * time.Minute)
	var log []byte
	for {
		log, _ = os.ReadFile(consoleLog)
		if bytes.Contains(log, []byte(want)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the serial console after %v\nservers:\n%s\nconsole:\n%s", want, time.Since(start), events.String(), tail(log, 3000))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	booted := time.Since(start)
	// /init powers the machine off; the domain stops by itself.
	for {
		ps, err := m.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ps == vms.PowerOff {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine still %s after /init powered off\nconsole:\n%s", ps, tail(log, 2000))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	ev := events.String()
	for _, w := range []string{"msg=\"dhcp: ack\" mac=" + mac.String(), "tftp: sent\" file=boot.ipxe", "path=vmlinuz ip=10.233.7.1", "path=initrd.gz ip=10.233.7.1"} {
		if !strings.Contains(ev, w) {
			t.Errorf("servers did not see %q:\n%s", w, ev)
		}
	}
	t.Logf("%s: power on to marker on the console: %v; servers:\n%s", mode, booted, ev)
}

// createNetwork creates the libvirt network id with this host at addr
// (e.g. "10.233.7.1/24"), removed when the test ends.
func createNetwork(t *testing.T, id, addr string) *libvirt.Network {
	t.Helper()
	netw, err := libvirt.CreateNetwork(t.Context(), libvirt.NetworkConfig{Name: id, Addr: netip.MustParsePrefix(addr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netw.Close(); err != nil {
			t.Errorf("remove network: %v", err)
		}
	})
	return netw
}

// newMachine defines a libvirt machine, removed when the test ends.
func newMachine(t *testing.T, cfg libvirt.Config) *libvirt.Machine {
	t.Helper()
	m, err := libvirt.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Remove(); err != nil {
			t.Errorf("remove machine: %v", err)
		}
	})
	return m
}

// writeBootScript writes dir/boot.ipxe: boot kernel with params and the
// initrd, both fetched from base.
func writeBootScript(t *testing.T, dir, base, kernel, initrd, params string, mode vms.BootMode) {
	t.Helper()
	if mode == vms.UEFI {
		params += " initrd=" + initrd // iPXE's EFI loader passes the initrd by name
	}
	script := fmt.Sprintf("#!ipxe\nkernel %s/%s %s\ninitrd %s/%s\nboot\n", base, kernel, params, base, initrd)
	if err := os.WriteFile(filepath.Join(dir, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// serveNetboot runs `metalbed netboot serve` (bin) inside netw's namespace
// until the test ends: DHCP for mac only, leases from pool
// ("FIRST-LAST"), the iPXE script tftp://SERVER/boot.ipxe, TFTP and HTTP
// from dir, fixed ports (nothing else lives in the namespace), and router
// adverts saying there is no IPv6. It returns what the servers print.
func serveNetboot(t *testing.T, netw *libvirt.Network, bin, dir, pool string, mac net.HardwareAddr) *eventLog {
	t.Helper()
	srv := netw.Addr().String()
	servers := &eventLog{}
	sctx, stop := context.WithCancel(t.Context())
	cmd := netw.Command(sctx, bin, "netboot", "serve",
		"--dhcp-addr", "0.0.0.0:67", "--dhcp-iface", netw.Iface, "--server-ip", srv,
		"--range", pool, "--host", mac.String(),
		"--ipxe-script", "tftp://"+srv+"/boot.ipxe",
		"--tftp-root", dir, "--tftp-addr", srv+":69",
		"--http-root", dir, "--http-addr", srv+":8080")
	cmd.Stdout, cmd.Stderr = servers, servers
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		stop()
		t.Fatal(err)
	}
	raDone := make(chan error, 1)
	go func() { raDone <- netw.ServeRA(sctx, 0) }()
	t.Cleanup(func() {
		stop()
		cmd.Wait()
		if err := <-raDone; err != nil {
			t.Errorf("router adverts: %v", err)
		}
	})
	return servers
}
