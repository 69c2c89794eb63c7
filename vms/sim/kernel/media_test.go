package kernel

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// plainDHCP answers every DISCOVER/REQUEST with ip, recording the clients'
// class identifiers (a ramdisk's client sends none of PXE's).
func plainDHCP(t *testing.T, ip net.IP) (addr string, classes func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		mu.Lock()
		seen = append(seen, m.ClassIdentifier())
		mu.Unlock()
		typ := dhcpv4.MessageTypeOffer
		if m.MessageType() == dhcpv4.MessageTypeRequest {
			typ = dhcpv4.MessageTypeAck
		}
		resp, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(ip),
			dhcpv4.WithNetmask(net.CIDRMask(8, 32)), dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1))))
		if err != nil {
			t.Error(err)
			return
		}
		conn.WriteTo(resp.ToBytes(), peer)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server4.NewServer("", nil, handler, server4.WithConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return conn.LocalAddr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// TestMediaBootAgentBringsUpNIC: the ramdisk booted from virtual media,
// with the command line Ironic's ISO carries (ipa-api-url, the agent
// token, no BOOTIF, no ip=), gets its address by DHCP as an OS does, looks
// the machine up by MAC and heartbeats with the token from the command line.
func TestMediaBootAgentBringsUpNIC(t *testing.T) {
	leased := net.IPv4(127, 78, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1))
	dhcpAddr, classes := plainDHCP(t, leased)
	mac, _ := net.ParseMAC("52:54:00:12:34:57")
	// Ironic hides a token it already handed out (virtual media).
	api := testenv.NewFakeIronic(t, mac.String(), testenv.IronicLookup("******"))

	b, con := bootContext(t)
	b.Device = vms.BootCDROM
	b.NICs = []vms.NIC{{MAC: mac}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	img := pxe.Image{
		KernelName: "/vmlinuz", Kernel: pxe.LoadBytes("/vmlinuz", bzImage()),
		Initrds: []pxe.File{pxe.LoadBytes("/initrd", initramfs(t))},
		Cmdline: "BOOT_IMAGE=/vmlinuz initrd=/initrd text ipa-api-url=" + api.URL + " ipa-agent-token=t0k3n ipa-global-request-id=req-1 boot_method=vmedia --",
		NIC:     vms.NIC{MAC: mac},
	}
	done := make(chan error, 1)
	go func() { done <- Executor(Config{DHCPServer: dhcpAddr, DHCPClient: "127.0.0.1:0"})(ctx, b, img) }()
	select {
	case hb := <-api.Heartbeats:
		tok := hb.AgentToken
		if !strings.Contains(tok, "t0k3n") {
			t.Errorf("heartbeat carried token %q, want the command line's", tok)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no heartbeat; console:\n%s", con)
	}
	if !strings.Contains(con.String(), leased.String()+"/8 via DHCP") {
		t.Errorf("console lacks the DHCP lease:\n%s", con)
	}
	for _, c := range classes() {
		if strings.HasPrefix(c, "PXEClient") {
			t.Errorf("the ramdisk's DHCP client sent class %q", c)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("executor: %v", err)
	}
}

// TestMediaBootWithoutDHCP: no DHCP server on the machine's network fails
// the ramdisk on the console.
func TestMediaBootWithoutDHCP(t *testing.T) {
	b, con := bootContext(t)
	mac, _ := net.ParseMAC("52:54:00:12:34:58")
	b.NICs = []vms.NIC{{MAC: mac}}
	img := pxe.Image{KernelName: "/vmlinuz", Kernel: pxe.LoadBytes("/vmlinuz", bzImage()),
		Initrds: []pxe.File{pxe.LoadBytes("/initrd", initramfs(t))},
		Cmdline: "ipa-api-url=http://127.0.0.1:1"}
	err := Executor(Config{})(t.Context(), b, img)
	if err == nil || !strings.Contains(con.String(), "no DHCP server") {
		t.Errorf("err %v; console:\n%s", err, con)
	}
}
