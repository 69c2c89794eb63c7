package service

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	tftpclient "github.com/pin/tftp/v3"

	"github.com/metalbed/metalbed/provisioner/dhcp"
)

// TestServeAgainOnTheSameListener restarts the conductor and API the way
// a conductor fault does: a new Serve on the same Service and listener,
// which answers again with the same nodes.
func TestServeAgainOnTheSameListener(t *testing.T) {
	svc, ln := newService(t, t.TempDir())
	defer ln.Close()
	url := "http://" + ln.Addr().String()
	for round := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- svc.Serve(ctx, ln) }()
		<-svc.Ready()
		// Ready stays closed after the first Serve: wait for this one.
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, _ := callNoFatal(url + "/v1/nodes")
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: API not answering", round)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if round == 0 {
			if code, n := call(t, "POST", url+"/v1/nodes", `{"driver":"fake-hardware","name":"kept"}`); code != 201 {
				t.Fatalf("create: %d %v", code, n)
			}
		} else if code, n := call(t, "GET", url+"/v1/nodes/kept", ""); code != 200 {
			t.Fatalf("round %d: node after restart: %d %v", round, code, n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: Serve = %v", round, err)
		}
	}
}

func callNoFatal(url string) (int, error) {
	res, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// TestBootServers runs the boot servers on sockets the test opened: the
// DHCP server answers a port's MAC with the boot interface's host entry,
// TFTP and HTTP serve their roots, and the leases name the MAC of an IP.
func TestBootServers(t *testing.T) {
	dir := t.TempDir()
	open := func() (net.PacketConn, net.PacketConn, net.Listener) {
		d, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return d, tc, h
	}
	if _, err := New(Config{StateDir: dir, Boot: &BootServers{DHCPAddr: "127.0.0.1:0"}}); err == nil {
		t.Error("port 0 without a socket accepted")
	}
	d, tc, h := open()
	if _, err := New(Config{StateDir: dir, Boot: &BootServers{DHCPConn: d, TFTPConn: tc, HTTPListener: h, DHCPRange: "10.0.0.1-10.0.0.9"}}); err != nil {
		t.Errorf("a range on another network: %v", err)
	}
	events := make(chan dhcp.Event, 10)
	hosts := &dhcp.StaticHosts{}
	mac, _ := net.ParseMAC("52:54:00:aa:bb:cc")
	hosts.Set(mac, dhcp.Host{BIOSBootFile: "pxelinux.0"})
	svc, err := New(Config{StateDir: dir, APIAddr: "127.0.0.1:6385", Boot: &BootServers{
		DHCPConn: d, TFTPConn: tc, HTTPListener: h,
		DHCPObserver: func(e dhcp.Event) { events <- e },
	}, Netboot: &Netboot{Hosts: hosts}})
	if err != nil {
		t.Fatal(err)
	}
	if svc.HTTPURL() != "http://"+h.Addr().String() || svc.TFTPPort() != tc.LocalAddr().(*net.UDPAddr).Port || svc.DHCPAddr() != d.LocalAddr().String() {
		t.Errorf("addresses %s %d %s", svc.HTTPURL(), svc.TFTPPort(), svc.DHCPAddr())
	}
	if err := os.MkdirAll(filepath.Join(dir, "tftp"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tftp", "hello"), []byte("tftp file"), 0o644)
	os.MkdirAll(filepath.Join(dir, "http"), 0o755)
	os.WriteFile(filepath.Join(dir, "http", "hello"), []byte("http file"), 0o644)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.ServeBoot(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeBoot = %v", err)
		}
	})

	res, err := http.Get(svc.HTTPURL() + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "http file" {
		t.Errorf("http: %q", body)
	}
	c, err := tftpclient.NewClient(svc.TFTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	wt, err := c.Receive("hello", "octet")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	wt.WriteTo(&sb)
	if sb.String() != "tftp file" {
		t.Errorf("tftp: %q", sb.String())
	}

	// A DHCP discover from the port's MAC is offered an address of the
	// default pool with the host's boot file.
	cl, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	disc, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.WriteTo(disc.ToBytes(), d.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := cl.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no DHCP offer: %v", err)
	}
	offer, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !strings.HasPrefix(offer.YourIPAddr.String(), "127.1.") || offer.BootFileName != "pxelinux.0" {
		t.Errorf("offer %s", offer.Summary())
	}
	if got, ok := svc.LeaseMAC(netipFrom(offer.YourIPAddr)); !ok || got.String() != mac.String() {
		t.Errorf("LeaseMAC(%s) = %s, %v", offer.YourIPAddr, got, ok)
	}
	select {
	case e := <-events:
		if e.Kind != dhcp.EventOffer {
			t.Errorf("observer saw %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Error("the observer saw no offer")
	}
}

func netipFrom(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}
