package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	srvIP    = netip.MustParseAddr("192.0.2.1")
	tftpIP   = netip.MustParseAddr("192.0.2.2")
	relayIP  = netip.MustParseAddr("198.51.100.1")
	macKnown = mustMAC("52:54:00:00:00:01")
	macOther = mustMAC("52:54:00:00:00:02")
	macStray = mustMAC("52:54:00:00:00:ff")
	pxeHost  = Host{
		BIOSBootFile:   "pxelinux.0",
		UEFIBootFile:   "ipxe.efi",
		UEFI32BootFile: "ipxe32.efi",
		IPXEScript:     "http://192.0.2.1:8080/boot.ipxe",
		TFTPServer:     tftpIP,
	}
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func testConfig(hosts HostSource) Config {
	return Config{
		ServerIP: srvIP,
		Pool: Pool{
			Subnet: netip.MustParsePrefix("192.0.2.0/24"),
			First:  netip.MustParseAddr("192.0.2.100"),
			Last:   netip.MustParseAddr("192.0.2.199"),
			Router: srvIP,
		},
		RelayPools: []Pool{{
			Subnet: netip.MustParsePrefix("198.51.100.0/24"),
			First:  netip.MustParseAddr("198.51.100.10"),
			Last:   netip.MustParseAddr("198.51.100.20"),
			Router: relayIP,
		}},
		Hosts: hosts,
	}
}

func newTestServer(t testing.TB, mutate func(*Config)) (*Server, *StaticHosts) {
	t.Helper()
	hosts := &StaticHosts{}
	hosts.Set(macKnown, pxeHost)
	hosts.Set(macOther, pxeHost)
	cfg := testConfig(hosts)
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, hosts
}

// discover builds a DISCOVER like a PXE ROM or iPXE sends.
func discover(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func withArch(a iana.Arch) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClientArch(a))
}

func withPXEClient(arch int) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch)))
}

var (
	pxeUUID  = append([]byte{0}, []byte("0123456789abcdef")...)
	withUUID = dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, pxeUUID)
	withIPXE = dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))
	fromZero = netip.MustParseAddrPort("0.0.0.0:68")
)

func TestReplyConstruction(t *testing.T) {
	tests := []struct {
		name      string
		mods      []dhcpv4.Modifier
		from      netip.AddrPort // zero: fromZero
		wantFile  string
		wantPXE   bool           // option 60/43/97 expected
		wantDst   netip.AddrPort // zero: 255.255.255.255:68
		wantPool  netip.Prefix
		wantRoute netip.Addr
	}{
		{
			name:     "BIOS PXE ROM",
			mods:     []dhcpv4.Modifier{withArch(iana.INTEL_X86PC), withPXEClient(0), withUUID},
			wantFile: "pxelinux.0", wantPXE: true,
		},
		{
			name:     "UEFI x86-64 arch 7",
			mods:     []dhcpv4.Modifier{withArch(iana.EFI_X86_64), withPXEClient(7), withUUID},
			wantFile: "ipxe.efi", wantPXE: true,
		},
		{
			name:     "UEFI arch 9",
			mods:     []dhcpv4.Modifier{withArch(iana.EFI_BC), withPXEClient(9)},
			wantFile: "ipxe.efi", wantPXE: true,
		},
		{
			name:     "IA32 UEFI arch 6",
			mods:     []dhcpv4.Modifier{withArch(iana.EFI_IA32), withPXEClient(6)},
			wantFile: "ipxe32.efi", wantPXE: true,
		},
		{
			name:     "iPXE chains to the HTTP script",
			mods:     []dhcpv4.Modifier{withArch(iana.INTEL_X86PC), withPXEClient(0), withIPXE},
			wantFile: "http://192.0.2.1:8080/boot.ipxe", wantPXE: true,
		},
		{
			name:     "iPXE by option 175 on UEFI",
			mods:     []dhcpv4.Modifier{withArch(iana.EFI_X86_64), dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{1, 1, 1})},
			wantFile: "http://192.0.2.1:8080/boot.ipxe",
		},
		{
			name:     "plain DHCP client without arch gets the BIOS file, no PXE options",
			wantFile: "pxelinux.0",
		},
		{
			name:     "unknown architecture gets an address but no file",
			mods:     []dhcpv4.Modifier{withArch(iana.EFI_ARM64), withPXEClient(11)},
			wantFile: "",
		},
		{
			name:     "relayed: reply to giaddr:67 from the relay's pool",
			mods:     []dhcpv4.Modifier{withArch(iana.INTEL_X86PC), withPXEClient(0), dhcpv4.WithRelay(relayIP.AsSlice())},
			from:     netip.MustParseAddrPort("198.51.100.1:67"),
			wantFile: "pxelinux.0", wantPXE: true,
			wantDst:   netip.MustParseAddrPort("198.51.100.1:67"),
			wantPool:  netip.MustParsePrefix("198.51.100.0/24"),
			wantRoute: relayIP,
		},
		{
			name:     "simulated client on loopback: reply to the sender",
			mods:     []dhcpv4.Modifier{withArch(iana.INTEL_X86PC), withPXEClient(0)},
			from:     netip.MustParseAddrPort("127.0.3.7:40068"),
			wantFile: "pxelinux.0", wantPXE: true,
			wantDst: netip.MustParseAddrPort("127.0.3.7:40068"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, nil)
			req := discover(t, macKnown, tt.mods...)
			from := tt.from
			if !from.IsValid() {
				from = fromZero
			}
			resp, dst, ok := s.handle(req, from)
			if !ok {
				t.Fatal("no reply")
			}
			if resp.MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("type = %s, want OFFER", resp.MessageType())
			}
			if resp.TransactionID != req.TransactionID || resp.OpCode != dhcpv4.OpcodeBootReply {
				t.Errorf("xid/op not a reply to the request: %v", resp.Summary())
			}
			wantDst := tt.wantDst
			if !wantDst.IsValid() {
				wantDst = netip.MustParseAddrPort("255.255.255.255:68")
			}
			if dst != wantDst {
				t.Errorf("dst = %s, want %s", dst, wantDst)
			}
			pool := tt.wantPool
			if !pool.IsValid() {
				pool = netip.MustParsePrefix("192.0.2.0/24")
			}
			yi := addr4(resp.YourIPAddr)
			if !pool.Contains(yi) {
				t.Errorf("yiaddr %s not in %s", yi, pool)
			}
			wantRouter := tt.wantRoute
			if !wantRouter.IsValid() {
				wantRouter = srvIP
			}
			if r := resp.Router(); len(r) != 1 || addr4(r[0]) != wantRouter {
				t.Errorf("router = %v, want %s", r, wantRouter)
			}
			if got := addr4(resp.ServerIdentifier()); got != srvIP {
				t.Errorf("server id = %s", got)
			}
			if ones, _ := resp.SubnetMask().Size(); ones != 24 {
				t.Errorf("mask /%d", ones)
			}
			if resp.BootFileName != tt.wantFile || resp.BootFileNameOption() != tt.wantFile {
				t.Errorf("file = %q / option 67 = %q, want %q", resp.BootFileName, resp.BootFileNameOption(), tt.wantFile)
			}
			if tt.wantFile != "" {
				if addr4(resp.ServerIPAddr) != tftpIP || resp.TFTPServerName() != tftpIP.String() {
					t.Errorf("siaddr = %s, option 66 = %q, want %s", resp.ServerIPAddr, resp.TFTPServerName(), tftpIP)
				}
			} else if addr4(resp.ServerIPAddr).IsValid() || resp.TFTPServerName() != "" {
				t.Errorf("boot server sent without a boot file")
			}
			gotPXE := resp.ClassIdentifier() == "PXEClient"
			if gotPXE != tt.wantPXE {
				t.Errorf("option 60 = %q, want PXEClient %v", resp.ClassIdentifier(), tt.wantPXE)
			}
			if tt.wantPXE {
				if v := resp.GetOneOption(dhcpv4.OptionVendorSpecificInformation); string(v) != "\x06\x01\x08\xff" {
					t.Errorf("option 43 = %x", v)
				}
			}
			wantUUID := tt.wantPXE && req.Options.Has(dhcpv4.OptionClientMachineIdentifier)
			if got := resp.GetOneOption(dhcpv4.OptionClientMachineIdentifier); wantUUID != (string(got) == string(pxeUUID)) {
				t.Errorf("option 97 = %x, want echoed %v", got, wantUUID)
			}
			if lt := resp.IPAddressLeaseTime(0); lt != time.Hour {
				t.Errorf("lease time %s", lt)
			}
			// The reply must survive the wire.
			if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnknownMACIgnoredUnlessAnswerUnknown(t *testing.T) {
	s, _ := newTestServer(t, nil)
	if _, _, ok := s.handle(discover(t, macStray, withArch(0)), fromZero); ok {
		t.Fatal("unknown MAC answered")
	}
	s, _ = newTestServer(t, func(c *Config) {
		c.AnswerUnknown = true
		c.UnknownHost = Host{BIOSBootFile: "undionly.kpxe"}
	})
	resp, _, ok := s.handle(discover(t, macStray, withArch(0)), fromZero)
	if !ok || resp.BootFileName != "undionly.kpxe" || addr4(resp.ServerIPAddr) != srvIP {
		t.Fatalf("AnswerUnknown reply = %v", resp)
	}
}

func TestRelayFromUnknownSubnetIgnored(t *testing.T) {
	s, _ := newTestServer(t, nil)
	req := discover(t, macKnown, dhcpv4.WithRelay(net.IPv4(203, 0, 113, 1)))
	if _, _, ok := s.handle(req, netip.MustParseAddrPort("203.0.113.1:67")); ok {
		t.Fatal("relay from an unserved subnet answered")
	}
}

// dora runs DISCOVER/REQUEST against s directly and returns the ACK.
func dora(t *testing.T, s *Server, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	offer, _, ok := s.handle(discover(t, mac, mods...), fromZero)
	if !ok {
		t.Fatal("no offer")
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	ack, _, ok := s.handle(req, fromZero)
	if !ok || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request: %v", ack)
	}
	if !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("ack %s != offer %s", ack.YourIPAddr, offer.YourIPAddr)
	}
	return ack
}

func TestRequestStates(t *testing.T) {
	var events []Event
	s, hosts := newTestServer(t, func(c *Config) { c.Observer = func(e Event) { events = append(events, e) } })
	ack := dora(t, s, macKnown)
	ip := addr4(ack.YourIPAddr)
	if mac, ok := s.MACOf(ip); !ok || mac.String() != macKnown.String() {
		t.Fatalf("MACOf(%s) = %s, %v", ip, mac, ok)
	}
	if len(events) != 2 || events[0].Kind != EventOffer || events[1].Kind != EventAck || events[1].IP != ip || events[1].MAC.String() != macKnown.String() {
		t.Fatalf("events = %+v", events)
	}

	t.Run("renew unicast", func(t *testing.T) {
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(macKnown), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ip.AsSlice()))
		resp, dst, ok := s.handle(req, netip.AddrPortFrom(ip, 68))
		if !ok || resp.MessageType() != dhcpv4.MessageTypeAck || addr4(resp.YourIPAddr) != ip || dst != netip.AddrPortFrom(ip, 68) {
			t.Fatalf("renew: %v to %s", resp, dst)
		}
	})
	for _, c := range []struct {
		name      string
		mac       net.HardwareAddr
		requested net.IP
	}{
		{"init-reboot with another address is refused", macKnown, net.IPv4(192, 0, 2, 150)},
		{"init-reboot wrong network is refused", macOther, net.IPv4(10, 9, 9, 9)},
		{"someone else's address is refused", macOther, ip.AsSlice()},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := dhcpv4.New(dhcpv4.WithHwAddr(c.mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(c.requested)))
			resp, _, ok := s.handle(req, fromZero)
			if !ok || resp.MessageType() != dhcpv4.MessageTypeNak {
				t.Fatalf("want NAK, got %v", resp)
			}
		})
	}
	t.Run("request for another server frees the offer", func(t *testing.T) {
		offer, _, _ := s.handle(discover(t, macOther), fromZero)
		req, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 254))))
		if resp, _, ok := s.handle(req, fromZero); ok {
			t.Fatalf("answered a request for another server: %v", resp)
		}
		l, _ := s.leases.lookup(macOther)
		if l.State != LeaseReleased {
			t.Fatalf("offer not freed: %+v", l)
		}
	})
	t.Run("release keeps the address for the MAC", func(t *testing.T) {
		rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(macKnown), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(ip.AsSlice()))
		if _, _, ok := s.handle(rel, netip.AddrPortFrom(ip, 68)); ok {
			t.Fatal("release answered")
		}
		if l, _ := s.leases.lookup(macKnown); l.State != LeaseReleased {
			t.Fatalf("lease %+v", l)
		}
		again := dora(t, s, macKnown)
		if addr4(again.YourIPAddr) != ip {
			t.Fatalf("after release got %s, want %s again", again.YourIPAddr, ip)
		}
	})
	t.Run("decline moves the MAC to another address", func(t *testing.T) {
		dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(macKnown), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice())))
		s.handle(dec, fromZero)
		again := dora(t, s, macKnown)
		if addr4(again.YourIPAddr) == ip {
			t.Fatalf("declined address %s offered again", ip)
		}
	})
	t.Run("inform", func(t *testing.T) {
		inf, _ := dhcpv4.NewInform(macOther, net.IPv4(192, 0, 2, 50), withArch(0))
		resp, dst, ok := s.handle(inf, netip.MustParseAddrPort("192.0.2.50:68"))
		if !ok || resp.MessageType() != dhcpv4.MessageTypeAck || addr4(resp.YourIPAddr).IsValid() || resp.BootFileName != "pxelinux.0" {
			t.Fatalf("inform: %v", resp)
		}
		if resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || dst != netip.MustParseAddrPort("192.0.2.50:68") {
			t.Fatalf("inform reply has a lease time or goes to %s", dst)
		}
	})
	t.Run("fixed address", func(t *testing.T) {
		fixed := netip.MustParseAddr("192.0.2.42")
		h := pxeHost
		h.IP = fixed
		hosts.Set(macOther, h)
		ack := dora(t, s, macOther)
		if addr4(ack.YourIPAddr) != fixed {
			t.Fatalf("got %s, want fixed %s", ack.YourIPAddr, fixed)
		}
	})
}

func TestPoolExhaustionAndReuse(t *testing.T) {
	hosts := &StaticHosts{}
	cfg := testConfig(hosts)
	cfg.First = netip.MustParseAddr("192.0.2.100")
	cfg.Last = netip.MustParseAddr("192.0.2.101")
	now := time.Unix(1_700_000_000, 0)
	cfg.Now = func() time.Time { return now }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var macs []net.HardwareAddr
	for i := range 3 {
		m := mustMAC(fmt.Sprintf("52:54:00:00:01:%02x", i))
		hosts.Set(m, Host{})
		macs = append(macs, m)
	}
	dora(t, s, macs[0])
	if _, _, ok := s.handle(discover(t, macs[1]), fromZero); !ok {
		t.Fatal("second MAC not offered")
	}
	if _, _, ok := s.handle(discover(t, macs[2]), fromZero); ok {
		t.Fatal("offered from an exhausted pool")
	}
	now = now.Add(2 * time.Minute) // the unrequested offer's hold ran out
	resp, _, ok := s.handle(discover(t, macs[2]), fromZero)
	if !ok || addr4(resp.YourIPAddr) != netip.MustParseAddr("192.0.2.101") {
		t.Fatalf("expired offer not reclaimed: %v", resp)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := testConfig(&StaticHosts{})
	for name, mut := range map[string]func(*Config){
		"no server ip":   func(c *Config) { c.ServerIP = netip.Addr{} },
		"no hosts":       func(c *Config) { c.Hosts = nil },
		"range outside":  func(c *Config) { c.Last = netip.MustParseAddr("192.0.3.1") },
		"reversed range": func(c *Config) { c.First, c.Last = c.Last, c.First },
		"overlap":        func(c *Config) { c.RelayPools = append(c.RelayPools, c.Pool) },
	} {
		cfg := good
		cfg.RelayPools = append([]Pool(nil), good.RelayPools...)
		mut(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// serveLoopback starts s on 127.0.0.1:0 and returns its address.
func serveLoopback(t *testing.T, s *Server) (*net.UDPAddr, <-chan error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return conn.LocalAddr().(*net.UDPAddr), done
}

func loopbackClient(t *testing.T, srv *net.UDPAddr, mac net.HardwareAddr) *nclient4.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := nclient4.NewWithConn(conn, mac, nclient4.WithServerAddr(srv), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLoopbackNclient4(t *testing.T) {
	var mu sync.Mutex
	var kinds []EventKind
	s, _ := newTestServer(t, func(c *Config) {
		c.Observer = func(e Event) { mu.Lock(); kinds = append(kinds, e.Kind); mu.Unlock() }
	})
	srv, _ := serveLoopback(t, s)
	c := loopbackClient(t, srv, macKnown)
	lease, err := c.Request(t.Context(), withArch(iana.EFI_X86_64), withPXEClient(7))
	if err != nil {
		t.Fatal(err)
	}
	if lease.ACK.BootFileName != "ipxe.efi" || !netip.MustParsePrefix("192.0.2.0/24").Contains(addr4(lease.ACK.YourIPAddr)) {
		t.Fatalf("ack %s", lease.ACK.Summary())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(kinds) != 2 || kinds[0] != EventOffer || kinds[1] != EventAck {
		t.Fatalf("events %v", kinds)
	}
}

func TestConcurrentDiscoverDistinctAddresses(t *testing.T) {
	const n = 50
	s, hosts := newTestServer(t, func(c *Config) {
		c.First = netip.MustParseAddr("192.0.2.10")
		c.Last = netip.MustParseAddr("192.0.2.59") // exactly n addresses
	})
	srv, _ := serveLoopback(t, s)
	macs := make([]net.HardwareAddr, n)
	for i := range macs {
		macs[i] = mustMAC(fmt.Sprintf("52:54:00:aa:00:%02x", i))
		hosts.Set(macs[i], pxeHost)
	}
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		c := loopbackClient(t, srv, macs[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			lease, err := c.Request(t.Context(), withArch(iana.INTEL_X86PC), withPXEClient(0))
			if err != nil {
				errs[i] = err
				return
			}
			ips[i] = addr4(lease.ACK.YourIPAddr)
		}()
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]int{}
	for i, ip := range ips {
		if j, dup := seen[ip]; dup {
			t.Fatalf("MACs %d and %d both got %s", j, i, ip)
		}
		seen[ip] = i
	}
	if len(s.Leases()) != n {
		t.Fatalf("%d leases, want %d", len(s.Leases()), n)
	}
}

func TestRestartKeepsLeases(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	s, _ := newTestServer(t, func(c *Config) { c.LeaseFile = file })
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	lease, err := loopbackClient(t, conn.LocalAddr().(*net.UDPAddr), macKnown).Request(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first := addr4(lease.ACK.YourIPAddr)
	// Written while serving, not only at shutdown.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if b, err := os.ReadFile(file); err == nil && strings.Contains(string(b), `"`+first.String()+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease of %s not in %s while serving", first, file)
		}
		time.Sleep(10 * time.Millisecond) // polling a file with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}

	// A new server from the same file: another MAC asking first must not
	// get the address, and the old MAC gets it back.
	s2, _ := newTestServer(t, func(c *Config) { c.LeaseFile = file })
	if got := s2.Leases(); len(got) != 1 || got[0].IP != first || got[0].State != LeaseBound {
		t.Fatalf("reloaded leases %+v", got)
	}
	srv2, _ := serveLoopback(t, s2)
	other, err := loopbackClient(t, srv2, macOther).Request(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if addr4(other.ACK.YourIPAddr) == first {
		t.Fatalf("restart lost the lease: %s given to another MAC", first)
	}
	again, err := loopbackClient(t, srv2, macKnown).Request(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if addr4(again.ACK.YourIPAddr) != first {
		t.Fatalf("after restart got %s, want %s", again.ACK.YourIPAddr, first)
	}
}

func TestCorruptLeaseFileIsAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	if err := os.WriteFile(file, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(&StaticHosts{})
	cfg.LeaseFile = file
	if _, err := New(cfg); err == nil {
		t.Fatal("corrupt lease file accepted")
	}
}

func TestServeReturnsNilOnCancel(t *testing.T) {
	s, _ := newTestServer(t, nil)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	// Garbage must not stop the server.
	cl, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.Write([]byte{1, 2, 3})
	if _, err := loopbackClient(t, conn.LocalAddr().(*net.UDPAddr), macKnown).Request(t.Context()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func FuzzHandle(f *testing.F) {
	seed := func(mods ...dhcpv4.Modifier) {
		d, err := dhcpv4.NewDiscovery(macKnown, mods...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d.ToBytes())
	}
	seed(withArch(0), withPXEClient(0), withUUID)
	seed(withIPXE, dhcpv4.WithRelay(relayIP.AsSlice()))
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(macKnown), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 100))))
	f.Add(req.ToBytes())
	f.Add([]byte{})
	s, _ := newTestServer(f, func(c *Config) { c.AnswerUnknown = true })
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		resp, _, ok := s.handle(req, fromZero)
		if !ok {
			return
		}
		if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
	})
}

// BenchmarkDORA measures one DISCOVER/OFFER/REQUEST/ACK through the
// handler (no sockets), over a pool large enough for every iteration.
func BenchmarkDORA(b *testing.B) {
	hosts := &StaticHosts{}
	cfg := testConfig(hosts)
	cfg.Subnet = netip.MustParsePrefix("10.0.0.0/8")
	cfg.First = netip.MustParseAddr("10.0.0.10")
	cfg.Last = netip.MustParseAddr("10.255.255.250")
	cfg.Router = netip.Addr{}
	cfg.RelayPools = nil
	cfg.AnswerUnknown = true
	cfg.UnknownHost = pxeHost
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		mac := net.HardwareAddr{0x52, 0x54, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		d, _ := dhcpv4.NewDiscovery(mac, withArch(iana.INTEL_X86PC), withPXEClient(0))
		offer, _, ok := s.handle(d, fromZero)
		if !ok {
			b.Fatal("no offer")
		}
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		if ack, _, ok := s.handle(req, fromZero); !ok || ack.MessageType() != dhcpv4.MessageTypeAck {
			b.Fatal("no ack")
		}
	}
}
