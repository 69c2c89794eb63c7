package service

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/internal/metrics"

	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/tftp"
)

// Defaults of the boot servers: loopback ports no root is needed for, and
// a DHCP pool in 127.1.0.0/16, away from BMCs on 127.0.0.1 and 127.0.1.x.
const (
	DefaultDHCPAddr  = "127.0.0.1:6767"
	DefaultTFTPAddr  = "127.0.0.1:6969"
	DefaultHTTPAddr  = "127.0.0.1:8080"
	DefaultDHCPRange = "127.1.0.10-127.1.255.250"
)

// BootServers configures the DHCP, TFTP and HTTP boot servers the service
// runs beside its API (ServeBoot): Ironic's dnsmasq and the web and TFTP
// servers of its conductor host. With BootServers set, Config.Netboot may
// be nil: its roots, server addresses, hosts and API URL then follow from
// these sockets and the state directory.
type BootServers struct {
	// DHCPAddr, TFTPAddr and HTTPAddr are where the servers listen
	// (defaults DefaultDHCPAddr, DefaultTFTPAddr, DefaultHTTPAddr);
	// ServeBoot opens them. DHCPConn, TFTPConn and HTTPListener are
	// sockets the caller opened instead (tests bind 127.0.0.1:0); an
	// address whose port is 0 needs one.
	DHCPAddr, TFTPAddr, HTTPAddr string
	DHCPConn, TFTPConn           net.PacketConn
	HTTPListener                 net.Listener
	// DHCPRange is the pool leased to machines, FIRST-LAST (default
	// DefaultDHCPRange), inside DHCPSubnet (default 127.0.0.0/8 for a
	// loopback range, else the /24 holding FIRST).
	DHCPRange  string
	DHCPSubnet netip.Prefix
	// DHCPServerIP is the DHCP server's own address (server identifier);
	// default the host of its socket, which must then name one.
	DHCPServerIP netip.Addr
	// LeaseFile persists the leases; default <StateDir>/dhcp-leases.json.
	LeaseFile string
	// TFTPSinglePort answers every transfer from the TFTP socket itself
	// (needed where a new socket would open elsewhere, e.g. outside a
	// network namespace).
	TFTPSinglePort bool
	// DHCPObserver, TFTPObserver and HTTPObserver see every lease, file
	// and request (a timeline); nil: none.
	DHCPObserver func(dhcp.Event)
	TFTPObserver func(tftp.Event)
	HTTPObserver func(httpboot.Event)
}

// bootServers are the built servers and where they listen.
type bootServers struct {
	cfg                BootServers
	dhcp               *dhcp.Server
	tftp               *tftp.Server
	http               *httpboot.Server
	tftpRoot, httpRoot string
	tftpAddr, httpAddr netip.AddrPort
	dhcpAddr           string
}

// newBootServers checks s.cfg.Boot, builds the servers and fills what
// s.cfg.Netboot leaves empty. It does no I/O.
func (s *Service) newBootServers() error {
	c := *s.cfg.Boot
	if c.DHCPAddr == "" {
		c.DHCPAddr = DefaultDHCPAddr
	}
	if c.TFTPAddr == "" {
		c.TFTPAddr = DefaultTFTPAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.DHCPRange == "" {
		c.DHCPRange = DefaultDHCPRange
	}
	if c.LeaseFile == "" {
		c.LeaseFile = filepath.Join(s.cfg.StateDir, "dhcp-leases.json")
	}
	b := &bootServers{cfg: c}
	var err error
	dhcpAP, err := socketAddr("dhcp", c.DHCPAddr, c.DHCPConn)
	if err != nil {
		return err
	}
	b.dhcpAddr = dhcpAP.String()
	if b.tftpAddr, err = socketAddr("tftp", c.TFTPAddr, c.TFTPConn); err != nil {
		return err
	}
	if b.httpAddr, err = socketAddr("http", c.HTTPAddr, listenerPacket{c.HTTPListener}); err != nil {
		return err
	}
	server := c.DHCPServerIP
	if !server.IsValid() {
		server = dhcpAP.Addr()
	}
	if !server.Is4() || server.IsUnspecified() {
		return fmt.Errorf("boot servers: DHCP server %s: want an IPv4 address (set DHCPServerIP)", server)
	}
	pool, err := parseRange(c.DHCPRange, c.DHCPSubnet)
	if err != nil {
		return err
	}
	nb := Netboot{}
	if s.cfg.Netboot != nil {
		nb = *s.cfg.Netboot
	}
	if nb.TFTPRoot == "" {
		nb.TFTPRoot = filepath.Join(s.cfg.StateDir, "tftp")
	}
	if nb.HTTPRoot == "" {
		nb.HTTPRoot = filepath.Join(s.cfg.StateDir, "http")
	}
	if !nb.TFTPServer.IsValid() {
		nb.TFTPServer = b.tftpAddr.Addr()
		if nb.TFTPServer.IsUnspecified() {
			nb.TFTPServer = server
		}
	}
	if nb.HTTPURL == "" {
		nb.HTTPURL = "http://" + b.httpAddr.String()
	}
	if nb.APIURL == "" {
		nb.APIURL = "http://" + s.cfg.APIAddr
	}
	if nb.Hosts == nil {
		nb.Hosts = &dhcp.StaticHosts{}
	}
	hosts, ok := nb.Hosts.(dhcp.HostSource)
	if !ok {
		return fmt.Errorf("boot servers: Netboot.Hosts %T is not a dhcp.HostSource the DHCP server can answer from", nb.Hosts)
	}
	b.tftpRoot, b.httpRoot = nb.TFTPRoot, nb.HTTPRoot
	if b.dhcp, err = dhcp.New(dhcp.Config{
		ServerIP: server, Pool: pool, Hosts: hosts, LeaseFile: c.LeaseFile,
		Logger: s.cfg.Logger, Observer: c.DHCPObserver, Faults: s.cfg.Faults, Registerer: s.cfg.Registerer,
	}); err != nil {
		return err
	}
	if b.tftp, err = tftp.New(tftp.Config{Root: nb.TFTPRoot, SinglePort: c.TFTPSinglePort,
		Logger: s.cfg.Logger, Observer: c.TFTPObserver, Faults: s.cfg.Faults, Registerer: s.cfg.Registerer}); err != nil {
		return err
	}
	if b.http, err = httpboot.New(httpboot.Config{Root: nb.HTTPRoot,
		Logger: s.cfg.Logger, Observer: c.HTTPObserver, Faults: s.cfg.Faults, Registerer: s.cfg.Registerer}); err != nil {
		return err
	}
	s.cfg.Netboot = &nb
	s.boot = b
	return nil
}

// listenerPacket lets socketAddr read a stream listener's address.
type listenerPacket struct{ ln net.Listener }

func (l listenerPacket) addr() net.Addr {
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// socketAddr is where a boot server listens: its pre-opened socket's
// address, else addr, whose port must then be fixed.
func socketAddr(what, addr string, sock any) (netip.AddrPort, error) {
	var a net.Addr
	switch v := sock.(type) {
	case net.PacketConn:
		if v != nil {
			a = v.LocalAddr()
		}
	case listenerPacket:
		a = v.addr()
	}
	if a != nil {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("boot servers: %s socket %s: %w", what, a, err)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("boot servers: %s address: %w", what, err)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("boot servers: %s address %s: port 0 needs a socket opened by the caller", what, addr)
	}
	return ap, nil
}

// parseRange parses FIRST-LAST into a pool inside subnet (default
// 127.0.0.0/8 for loopback addresses, else the /24 holding FIRST).
func parseRange(rng string, subnet netip.Prefix) (dhcp.Pool, error) {
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return dhcp.Pool{}, fmt.Errorf("DHCP range must be FIRST-LAST, got %q", rng)
	}
	var p dhcp.Pool
	var err error
	if p.First, err = netip.ParseAddr(strings.TrimSpace(first)); err != nil {
		return p, fmt.Errorf("DHCP range: %w", err)
	}
	if p.Last, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil {
		return p, fmt.Errorf("DHCP range: %w", err)
	}
	switch {
	case subnet.IsValid():
		p.Subnet = subnet.Masked()
	case p.First.IsLoopback():
		p.Subnet = netip.MustParsePrefix("127.0.0.0/8")
	default:
		if p.Subnet, err = p.First.Prefix(24); err != nil {
			return p, fmt.Errorf("DHCP range: %w", err)
		}
	}
	if !p.Subnet.Contains(p.First) || !p.Subnet.Contains(p.Last) {
		return p, fmt.Errorf("DHCP range %s: not inside %s", rng, p.Subnet)
	}
	return p, nil
}

// ServeBoot runs the DHCP, TFTP and HTTP boot servers (Config.Boot) until
// ctx ends, opening the sockets the caller did not; it returns nil at once
// without BootServers. The boot servers outlive conductor restarts: they
// run apart from Serve.
func (s *Service) ServeBoot(ctx context.Context) error {
	b := s.boot
	if b == nil {
		return nil
	}
	for _, d := range []string{b.tftpRoot, b.httpRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("boot servers: %w", err)
		}
	}
	dconn, tconn, hln := b.cfg.DHCPConn, b.cfg.TFTPConn, b.cfg.HTTPListener
	var err error
	if dconn == nil {
		if dconn, err = net.ListenPacket("udp4", b.cfg.DHCPAddr); err != nil {
			return fmt.Errorf("dhcp: listen %s: %w", b.cfg.DHCPAddr, err)
		}
	}
	if tconn == nil {
		if tconn, err = net.ListenPacket("udp4", b.cfg.TFTPAddr); err != nil {
			dconn.Close()
			return fmt.Errorf("tftp: listen %s: %w", b.cfg.TFTPAddr, err)
		}
	}
	if hln == nil {
		if hln, err = net.Listen("tcp4", b.cfg.HTTPAddr); err != nil {
			dconn.Close()
			tconn.Close()
			return fmt.Errorf("http: listen %s: %w", b.cfg.HTTPAddr, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.dhcp.Serve(gctx, dconn) })
	g.Go(func() error { return b.tftp.Serve(gctx, tconn) })
	g.Go(func() error {
		defer hln.Close()
		return b.http.Serve(gctx, hln)
	})
	return g.Wait()
}

// Run serves the API and conductor on ln (Serve), the boot servers
// (ServeBoot) and the metrics listener (Config.MetricsListener) until ctx
// ends.
func (s *Service) Run(ctx context.Context, ln net.Listener) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ServeBoot(gctx) })
	g.Go(func() error { return s.Serve(gctx, ln) })
	if mln := s.cfg.MetricsListener; mln != nil {
		gather := s.cfg.Gatherer
		if gather == nil {
			gather = prometheus.NewRegistry() // an empty scrape rather than none
		}
		g.Go(func() error { return metrics.Serve(gctx, mln, gather, s.cfg.PProf) })
	}
	return g.Wait()
}

// LeaseMAC is the MAC holding ip in the DHCP server's leases, so that a
// TFTP or HTTP request from ip can be put on that machine's account.
func (s *Service) LeaseMAC(ip netip.Addr) (net.HardwareAddr, bool) {
	if s.boot == nil {
		return nil, false
	}
	return s.boot.dhcp.MACOf(ip)
}

// DHCPAddr is where the DHCP server listens ("" without BootServers).
func (s *Service) DHCPAddr() string {
	if s.boot == nil {
		return ""
	}
	return s.boot.dhcpAddr
}

// TFTPAddr is where the TFTP server listens ("" without BootServers).
func (s *Service) TFTPAddr() string {
	if s.boot == nil {
		return ""
	}
	return s.boot.tftpAddr.String()
}

// TFTPPort is the TFTP server's UDP port (0 without BootServers).
func (s *Service) TFTPPort() int {
	if s.boot == nil {
		return 0
	}
	return int(s.boot.tftpAddr.Port())
}

// HTTPURL is the HTTP boot server's base URL, without a trailing slash
// ("" without BootServers).
func (s *Service) HTTPURL() string {
	if s.boot == nil {
		return ""
	}
	return "http://" + s.boot.httpAddr.String()
}

// HTTPRoot is the directory the HTTP boot server serves ("" without
// BootServers).
func (s *Service) HTTPRoot() string {
	if s.boot == nil {
		return ""
	}
	return s.boot.httpRoot
}
