package libvirt

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireNetAdmin skips unless the test may create namespaces and bridges.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("METALBED_LIBVIRT") == "required" {
			t.Fatal("METALBED_LIBVIRT=required but not root: namespaces and bridges need root")
		}
		t.Skip("not root: namespaces and bridges need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("METALBED_LIBVIRT") == "required" || os.Getenv("METALBED_INTEROP") == "required" {
			t.Fatal("ip missing: apt-get install iproute2")
		}
		t.Skip("ip missing: apt-get install iproute2")
	}
}

func TestNetwork(t *testing.T) {
	requireNetAdmin(t)
	ctx := t.Context()
	cfg := NetworkConfig{Name: fmt.Sprintf("tn%d", os.Getpid()%1e8), Addr: netip.MustParsePrefix("10.233.250.1/24")}
	n, err := CreateNetwork(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A second create with the same name clears the first (a stale run).
	n, err = CreateNetwork(ctx, cfg)
	if err != nil {
		t.Fatalf("re-create over stale devices: %v", err)
	}
	t.Cleanup(func() { n.Close() })

	for _, dev := range []string{n.Bridge, "mbh-" + cfg.Name} {
		b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv6/conf", dev, "disable_ipv6"))
		if err != nil || strings.TrimSpace(string(b)) != "1" {
			t.Errorf("%s: disable_ipv6 = %q, %v; want 1", dev, b, err)
		}
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		if addrs, _ := ifc.Addrs(); len(addrs) != 0 {
			t.Errorf("%s in the root namespace has addresses %v", dev, addrs)
		}
	}
	// The provisioner address exists only inside the namespace.
	if _, err := net.ListenPacket("udp4", "10.233.250.1:0"); err == nil {
		t.Error("the namespace's address is bindable in the root namespace")
	}
	c, err := n.ListenPacket("udp4", "10.233.250.1:0")
	if err != nil {
		t.Fatalf("listen inside the namespace: %v", err)
	}
	defer c.Close()
	// A socket made in the namespace talks to another one there.
	d, err := n.ListenPacket("udp4", "10.233.250.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.WriteTo([]byte("hi"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8)
	k, _, err := c.ReadFrom(buf)
	if err != nil || string(buf[:k]) != "hi" {
		t.Fatalf("read in namespace: %q, %v", buf[:k], err)
	}
	dc, err := n.ListenDHCP()
	if err != nil {
		t.Fatal(err)
	}
	dc.Close()

	// A client outside the Network (another process's namespace, by name)
	// reaches a server listening inside it.
	ln, err := n.Listen("tcp4", "10.233.250.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if sc, err := ln.Accept(); err == nil {
			sc.Write([]byte("ok"))
			sc.Close()
		}
	}()
	cc, err := NamespaceDialer(n.NS)(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatalf("NamespaceDialer(%s): %v", n.NS, err)
	}
	got, err := io.ReadAll(cc)
	cc.Close()
	if err != nil || string(got) != "ok" {
		t.Errorf("read through NamespaceDialer: %q, %v", got, err)
	}
	if _, err := NamespaceDialer("mb-nosuchnet")(ctx, "tcp4", ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "mb-nosuchnet") {
		t.Errorf("NamespaceDialer of a missing namespace: %v, want an error naming it", err)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{n.Bridge, "mbh-" + cfg.Name} {
		if linkExists(dev) {
			t.Errorf("%s left after Close", dev)
		}
	}
	if _, err := os.Stat("/run/netns/" + n.NS); err == nil {
		t.Errorf("namespace %s left after Close", n.NS)
	}
}

func TestCreateNetworkRejects(t *testing.T) {
	for _, cfg := range []NetworkConfig{
		{Name: "", Addr: netip.MustParsePrefix("10.0.0.1/24")},
		{Name: "UPPER", Addr: netip.MustParsePrefix("10.0.0.1/24")},
		{Name: "waytoolongname", Addr: netip.MustParsePrefix("10.0.0.1/24")},
		{Name: "ok"},
		{Name: "ok", Addr: netip.MustParsePrefix("fd00::1/64")},
	} {
		if _, err := CreateNetwork(t.Context(), cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
