// Package dhcp is the provisioner's DHCPv4 server for network boot: it
// answers only the MACs of enrolled ports (a HostSource the conductor
// implements), gives each MAC a fixed address reserved at the offer, hands
// PXE clients the boot file their firmware can run (by client architecture,
// option 93, and iPXE user class, option 77) and answers relays (giaddr).
// Its PXE behaviour follows dnsmasq's: siaddr/next-server, options 66/67 and
// the BOOTP file field, option 60 "PXEClient" echoed with option 43
// discovery control, option 97 (client UUID) passed back.
//
// Packets are encoded and decoded with github.com/insomniacslk/dhcp/dhcpv4.
// Real DHCP uses UDP ports 67 (server) and 68 (client) and so needs root or
// CAP_NET_BIND_SERVICE; every port is configurable and Serve takes an opened
// net.PacketConn, so tests run unprivileged on 127.0.0.1.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/metrics"
)

// Host is what the server tells one MAC: where and what to boot.
type Host struct {
	// IP is a fixed address for this MAC; zero means allocate one from the
	// pool of the client's subnet. It should lie outside the pool ranges.
	IP netip.Addr
	// Hostname is sent as option 12 when set.
	Hostname string
	// BIOSBootFile is the NBP for legacy BIOS PXE (arch 0) and for clients
	// that send no architecture: "pxelinux.0", "undionly.kpxe".
	BIOSBootFile string
	// UEFIBootFile is the NBP for x86-64 UEFI (arch 7 and 9):
	// "ipxe.efi", "snponly.efi", "bootx64.efi".
	UEFIBootFile string
	// UEFI32BootFile is the NBP for IA32 UEFI (arch 6); "" gives none.
	UEFI32BootFile string
	// IPXEScript is the URL given as boot file to iPXE (user class "iPXE"
	// or option 175), e.g. "http://192.0.2.1:8080/boot.ipxe". "" means
	// iPXE gets the NBP of its architecture like any PXE client.
	IPXEScript string
	// TFTPServer is next-server (siaddr) and option 66; zero means
	// Config.NextServer.
	TFTPServer netip.Addr
}

// HostSource says which MACs are enrolled and what they boot. The
// conductor implements it over its ports; StaticHosts is an in-memory one.
// Lookup is called once per packet and must be safe for concurrent use.
type HostSource interface {
	Lookup(mac net.HardwareAddr) (Host, bool)
}

// StaticHosts is an in-memory HostSource safe for concurrent use; the zero
// value is empty and ready.
type StaticHosts struct {
	mu    sync.RWMutex
	hosts map[string]Host
}

// Set adds or replaces the host for mac.
func (h *StaticHosts) Set(mac net.HardwareAddr, host Host) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hosts == nil {
		h.hosts = map[string]Host{}
	}
	h.hosts[mac.String()] = host
}

// Delete forgets mac.
func (h *StaticHosts) Delete(mac net.HardwareAddr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.hosts, mac.String())
}

// Lookup implements HostSource.
func (h *StaticHosts) Lookup(mac net.HardwareAddr) (Host, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	host, ok := h.hosts[mac.String()]
	return host, ok
}

// Pool is one IPv4 subnet the server hands addresses out of.
type Pool struct {
	// Subnet is the network and mask (option 1), e.g. 192.0.2.0/24.
	Subnet netip.Prefix
	// First and Last bound the dynamic range, inclusive, inside Subnet.
	First, Last netip.Addr
	// Router is option 3; zero sends none.
	Router netip.Addr
	// DNS is option 6; empty sends none.
	DNS []netip.Addr
}

// Config configures a Server. The embedded Pool is the directly attached
// subnet; RelayPools are subnets behind DHCP relays, chosen by giaddr.
type Config struct {
	// ServerIP is this server's address: option 54 (server identifier).
	// Required.
	ServerIP netip.Addr
	Pool
	// RelayPools are the subnets served through relays; a relayed packet
	// whose giaddr lies in none of them (nor in Pool) is ignored.
	RelayPools []Pool
	// LeaseTime is option 51; default 1h. T1 and T2 are 1/2 and 7/8 of it.
	LeaseTime time.Duration
	// OfferHold is how long an offered, unrequested address stays reserved
	// for its MAC before another MAC may take it when the pool runs out;
	// default 1m. (A MAC keeps its address after that while it is free.)
	OfferHold time.Duration
	// DeclineHold is how long an address a client declined (found in use)
	// is not offered again; default 10m.
	DeclineHold time.Duration
	// Hosts says which MACs to answer and what they boot. Required.
	Hosts HostSource
	// AnswerUnknown makes the server answer MACs Hosts does not know,
	// with an address and the boot files of UnknownHost.
	AnswerUnknown bool
	// UnknownHost is what unknown MACs boot when AnswerUnknown is set.
	UnknownHost Host
	// NextServer is the default TFTP server (siaddr, option 66) for hosts
	// that name none; default ServerIP.
	NextServer netip.Addr
	// LeaseFile is where leases persist (JSON, replaced atomically) and are
	// reloaded from by New; "" keeps them in memory only. It is written in
	// the background after changes and once more when Serve returns.
	LeaseFile string
	// LeaseFileInterval is the least time between two writes of LeaseFile,
	// so a burst of leases costs one write; default 100ms. A crash loses at
	// most the changes of the last interval.
	LeaseFileInterval time.Duration
	// ClientPort is the port broadcast replies go to; default 68.
	ClientPort int
	// RelayPort is the port replies to relays (giaddr) go to; default 67.
	RelayPort int
	// BroadcastAddr is where replies to clients without an address go;
	// default 255.255.255.255 (the conn must be bound to the client's link,
	// e.g. with server4.NewIPv4UDPConn).
	BroadcastAddr netip.Addr
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Observer, when set, is called synchronously for every offer, ack,
	// nak, release, decline and inform; it must not block.
	Observer func(Event)
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// Faults is asked about every request from an enrolled MAC (layer
	// dhcp, op "lookup", the client known by its MAC) before it is
	// answered: "no-offer" leaves the MAC unanswered, as if not enrolled;
	// "wrong-next-server" sends next-server Arg (default 127.0.0.254,
	// where nothing serves TFTP). nil: no faults.
	Faults fault.Injector
	// Registerer receives metalbed_dhcp_messages_total{kind}: offers,
	// acks and naks sent, releases, declines and informs received. nil:
	// none are exported.
	Registerer prometheus.Registerer
}

// EventKind names what the server did.
type EventKind string

// Event kinds.
const (
	EventOffer   EventKind = "offer"
	EventAck     EventKind = "ack"
	EventNak     EventKind = "nak"
	EventRelease EventKind = "release"
	EventDecline EventKind = "decline"
	EventInform  EventKind = "inform"
)

// Event is one DHCP milestone for a MAC, for the per-node timeline.
type Event struct {
	Kind     EventKind
	MAC      net.HardwareAddr
	IP       netip.Addr // the address offered/acked/released; zero for a nak
	Relay    netip.Addr // giaddr when relayed
	Arch     int        // option 93 value, -1 when absent
	IPXE     bool       // the client is iPXE
	BootFile string     // boot file sent, "" when none
	Time     time.Time
}

// Server is a DHCPv4 server. Create it with New; it is safe for
// concurrent use and Serve may run on several conns at once.
type Server struct {
	cfg    Config
	log    *slog.Logger
	faults fault.Injector
	msgs   *prometheus.CounterVec // kind
	leases *leaseTable
	dirty  chan struct{} // lease table changed and must be written
}

// New validates cfg, applies defaults and loads cfg.LeaseFile if it exists.
func New(cfg Config) (*Server, error) {
	if !cfg.ServerIP.Is4() {
		return nil, errors.New("dhcp: ServerIP must be an IPv4 address")
	}
	if cfg.Hosts == nil {
		return nil, errors.New("dhcp: Hosts is required")
	}
	pools := append([]Pool{cfg.Pool}, cfg.RelayPools...)
	for i, p := range pools {
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("dhcp: pool %d: %w", i, err)
		}
		for _, q := range pools[:i] {
			if q.Subnet.Overlaps(p.Subnet) {
				return nil, fmt.Errorf("dhcp: pools %s and %s overlap", q.Subnet, p.Subnet)
			}
		}
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = time.Hour
	}
	if cfg.OfferHold <= 0 {
		cfg.OfferHold = time.Minute
	}
	if cfg.LeaseFileInterval <= 0 {
		cfg.LeaseFileInterval = 100 * time.Millisecond
	}
	if cfg.DeclineHold <= 0 {
		cfg.DeclineHold = 10 * time.Minute
	}
	if !cfg.NextServer.IsValid() {
		cfg.NextServer = cfg.ServerIP
	}
	if cfg.ClientPort == 0 {
		cfg.ClientPort = 68
	}
	if cfg.RelayPort == 0 {
		cfg.RelayPort = 67
	}
	if !cfg.BroadcastAddr.IsValid() {
		cfg.BroadcastAddr = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lt := newLeaseTable(pools)
	if cfg.LeaseFile != "" {
		if err := lt.load(cfg.LeaseFile); err != nil {
			return nil, fmt.Errorf("dhcp: %w", err)
		}
	}
	r := &metrics.Registry{Reg: cfg.Registerer}
	msgs := r.CounterVec("dhcp", "messages_total",
		"DHCP exchanges by kind: offer, ack and nak sent; release, decline and inform received.", "kind")
	if r.Err != nil {
		return nil, fmt.Errorf("dhcp: %w", r.Err)
	}
	return &Server{cfg: cfg, log: log, leases: lt, dirty: make(chan struct{}, 1), faults: fault.OrNone(cfg.Faults), msgs: msgs}, nil
}

func (p Pool) validate() error {
	if !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() {
		return errors.New("Subnet must be an IPv4 prefix")
	}
	if !p.First.Is4() || !p.Last.Is4() || !p.Subnet.Contains(p.First) || !p.Subnet.Contains(p.Last) {
		return fmt.Errorf("range %s-%s must lie inside %s", p.First, p.Last, p.Subnet)
	}
	if p.Last.Less(p.First) {
		return fmt.Errorf("range %s-%s is reversed", p.First, p.Last)
	}
	return nil
}

// Leases returns a copy of the lease table, sorted by address.
func (s *Server) Leases() []Lease { return s.leases.snapshot() }

// MACOf returns the MAC holding ip (offered or bound), so a TFTP or HTTP
// event from ip can be put on that node's timeline.
func (s *Server) MACOf(ip netip.Addr) (net.HardwareAddr, bool) {
	m := s.leases.holder(ip)
	if m == "" {
		return nil, false
	}
	mac, err := net.ParseMAC(m)
	return mac, err == nil
}

// Serve answers DHCP packets on conn until ctx ends, then closes conn,
// writes the lease file a last time and returns nil. Replies go to the
// relay (giaddr:RelayPort), to the sender when it has a source address,
// else to BroadcastAddr:ClientPort; Serve enables SO_BROADCAST on conn when
// it can.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	enableBroadcast(conn)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		conn.Close()
	}()
	var flushErr error
	go func() {
		defer wg.Done()
		flushErr = s.flushLoop(ctx)
	}()
	buf := make([]byte, 4096)
	var err error
	for {
		var n int
		var peer net.Addr
		n, peer, err = conn.ReadFrom(buf)
		if err != nil {
			break
		}
		s.handlePacket(conn, buf[:n], peer)
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		err = nil // the conn was closed because ctx ended
	}
	if err != nil {
		return errors.Join(fmt.Errorf("dhcp: read: %w", err), flushErr)
	}
	return flushErr
}

// flushLoop writes the lease file whenever the table changed, coalescing
// bursts, and once more when ctx ends.
func (s *Server) flushLoop(ctx context.Context) error {
	if s.cfg.LeaseFile == "" {
		<-ctx.Done()
		return nil
	}
	for {
		select {
		case <-s.dirty:
			if err := s.leases.save(s.cfg.LeaseFile); err != nil {
				s.log.Error("dhcp: writing leases", "err", err)
			}
			select { // let changes gather before the next write
			case <-time.After(s.cfg.LeaseFileInterval):
			case <-ctx.Done():
			}
		case <-ctx.Done():
			if err := s.leases.save(s.cfg.LeaseFile); err != nil {
				return fmt.Errorf("dhcp: writing leases: %w", err)
			}
			return nil
		}
	}
}

func (s *Server) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// handlePacket decodes one datagram, builds the reply and sends it.
func (s *Server) handlePacket(conn net.PacketConn, b []byte, peer net.Addr) {
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.log.Debug("dhcp: undecodable packet", "peer", peer, "err", err)
		return
	}
	var from netip.AddrPort
	if u, ok := peer.(*net.UDPAddr); ok {
		from = u.AddrPort()
	}
	resp, dst, ok := s.handle(req, from)
	if !ok {
		return
	}
	if _, err := conn.WriteTo(resp.ToBytes(), net.UDPAddrFromAddrPort(dst)); err != nil {
		s.log.Warn("dhcp: sending reply", "mac", req.ClientHWAddr.String(), "dst", dst, "err", err)
	}
}

// enableBroadcast sets SO_BROADCAST on conn when it is a socket.
func enableBroadcast(conn net.PacketConn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
	})
}
