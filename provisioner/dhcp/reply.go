package dhcp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// Client architectures (RFC 4578 option 93, IANA registry).
const (
	ArchBIOS      = 0
	ArchUEFIIA32  = 6
	ArchUEFIX64   = 7
	ArchUEFIBC    = 9 // EFI byte code; in practice x86-64 UEFI firmware
	archNone      = -1
	optIPXEEncap  = 175 // iPXE's encapsulated options: present means iPXE
	pxeVendorID   = "PXEClient"
	pxeDiscCtlOpt = 6 // PXE_DISCOVERY_CONTROL inside option 43
)

// client is what a request says about its sender.
type client struct {
	mac   net.HardwareAddr
	arch  int
	ipxe  bool
	pxe   bool // vendor class starts with "PXEClient"
	relay netip.Addr
}

func describe(req *dhcpv4.DHCPv4) client {
	c := client{mac: req.ClientHWAddr, arch: archNone}
	if archs := req.ClientArch(); len(archs) > 0 {
		c.arch = int(archs[0])
	}
	c.pxe = strings.HasPrefix(req.ClassIdentifier(), pxeVendorID)
	if raw := req.GetOneOption(dhcpv4.OptionUserClassInformation); bytes.Equal(raw, []byte("iPXE")) {
		c.ipxe = true
	} else {
		for _, uc := range req.UserClass() {
			if uc == "iPXE" {
				c.ipxe = true
			}
		}
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(optIPXEEncap)) {
		c.ipxe = true
	}
	c.relay = addr4(req.GatewayIPAddr)
	return c
}

// bootFile chooses what c boots: the iPXE script URL for iPXE, else the
// NBP of its architecture. "" means no boot file.
func (h Host) bootFile(c client) string {
	if c.ipxe && h.IPXEScript != "" {
		return h.IPXEScript
	}
	switch c.arch {
	case archNone, ArchBIOS:
		return h.BIOSBootFile
	case ArchUEFIIA32:
		return h.UEFI32BootFile
	case ArchUEFIX64, ArchUEFIBC:
		return h.UEFIBootFile
	default:
		return ""
	}
}

// Default next-server of the dhcp layer's "wrong-next-server" fault:
// nothing serves TFTP there.
var defaultWrongNextServer = netip.AddrFrom4([4]byte{127, 0, 0, 254})

// injectFault asks Faults about an enrolled MAC (layer dhcp, op "lookup")
// and carries out the layer's actions (fault.Catalog): "no-offer" leaves
// the MAC unanswered, as if not enrolled; "wrong-next-server" names Arg
// (default 127.0.0.254) as next-server.
func (s *Server) injectFault(mac net.HardwareAddr, host Host) (Host, bool) {
	h, ok := s.faults.Inject(fault.DHCP, events.Who{MAC: mac.String()}, "lookup")
	if !ok {
		return host, true
	}
	switch h.Action {
	case "no-offer":
		return Host{}, false
	case "wrong-next-server":
		ip, err := netip.ParseAddr(h.Arg)
		if err != nil {
			ip = defaultWrongNextServer
		}
		host.TFTPServer = ip
	}
	return host, true
}

// handle runs the DHCP state machine for one request and returns the reply
// and where to send it; ok is false when nothing must be sent.
func (s *Server) handle(req *dhcpv4.DHCPv4, from netip.AddrPort) (resp *dhcpv4.DHCPv4, dst netip.AddrPort, ok bool) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) == 0 {
		return nil, dst, false
	}
	c := describe(req)
	host, known := s.cfg.Hosts.Lookup(c.mac)
	if known {
		host, known = s.injectFault(c.mac, host)
	}
	if !known {
		if !s.cfg.AnswerUnknown {
			s.log.Debug("dhcp: ignoring unknown MAC", "mac", c.mac.String(), "type", req.MessageType())
			return nil, dst, false
		}
		host = s.cfg.UnknownHost
	}
	pool, poolOK := s.poolFor(req)
	now := s.cfg.Now()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		if !poolOK {
			s.log.Warn("dhcp: no pool for request", "mac", c.mac.String(), "relay", c.relay)
			return nil, dst, false
		}
		l, err := s.leases.reserve(c.mac, pool, host.IP, now, s.cfg.OfferHold)
		if err != nil {
			s.log.Warn("dhcp: cannot offer", "mac", c.mac.String(), "err", err)
			return nil, dst, false
		}
		if resp, err = s.build(req, c, host, pool, dhcpv4.MessageTypeOffer, l.IP); err != nil {
			return nil, dst, false
		}
		s.emit(EventOffer, c, l.IP, resp.BootFileName, now)
	case dhcpv4.MessageTypeRequest:
		return s.request(req, c, host, pool, poolOK, from, now)
	case dhcpv4.MessageTypeRelease:
		ip := addr4(req.ClientIPAddr)
		if s.leases.release(c.mac, ip, now) {
			s.markDirty()
			s.emit(EventRelease, c, ip, "", now)
			s.log.Info("dhcp: released", "mac", c.mac.String(), "ip", ip)
		}
		return nil, dst, false
	case dhcpv4.MessageTypeDecline:
		ip := addr4(req.RequestedIPAddress())
		if s.leases.decline(c.mac, ip, now, s.cfg.DeclineHold) {
			s.markDirty()
			s.emit(EventDecline, c, ip, "", now)
			s.log.Warn("dhcp: client declined address", "mac", c.mac.String(), "ip", ip)
		}
		return nil, dst, false
	case dhcpv4.MessageTypeInform:
		ci := addr4(req.ClientIPAddr)
		if !ci.IsValid() {
			return nil, dst, false
		}
		if !poolOK {
			pool = 0
		}
		var err error
		if resp, err = s.build(req, c, host, pool, dhcpv4.MessageTypeAck, netip.Addr{}); err != nil {
			return nil, dst, false
		}
		resp.DeleteOption(dhcpv4.OptionIPAddressLeaseTime)
		resp.DeleteOption(dhcpv4.OptionRenewTimeValue)
		resp.DeleteOption(dhcpv4.OptionRebindingTimeValue)
		s.emit(EventInform, c, ci, resp.BootFileName, now)
	default:
		return nil, dst, false
	}
	return resp, s.destination(req, resp, from), true
}

// request handles DHCPREQUEST in its three forms (RFC 2131 4.3.2).
func (s *Server) request(req *dhcpv4.DHCPv4, c client, host Host, pool int, poolOK bool, from netip.AddrPort, now time.Time) (*dhcpv4.DHCPv4, netip.AddrPort, bool) {
	sid := addr4(req.ServerIdentifier())
	want := addr4(req.RequestedIPAddress())
	ci := addr4(req.ClientIPAddr)
	if sid.IsValid() && sid != s.cfg.ServerIP {
		// The client chose another server's offer: free ours.
		if l, ok := s.leases.lookup(c.mac); ok && l.State == LeaseOffered {
			s.leases.release(c.mac, l.IP, now)
		}
		return nil, netip.AddrPort{}, false
	}
	if !want.IsValid() {
		want = ci // RENEWING / REBINDING
	}
	nak := func(why string) (*dhcpv4.DHCPv4, netip.AddrPort, bool) {
		s.log.Info("dhcp: nak", "mac", c.mac.String(), "ip", want, "why", why)
		resp, err := s.nak(req, why)
		if err != nil {
			return nil, netip.AddrPort{}, false
		}
		s.emit(EventNak, c, netip.Addr{}, "", now)
		return resp, s.destination(req, resp, from), true
	}
	if !want.IsValid() {
		return nak("no address requested")
	}
	if !poolOK {
		if c.relay.IsValid() {
			return nil, netip.AddrPort{}, false
		}
		return nak("wrong network")
	}
	p := s.leasePool(pool)
	if host.IP.IsValid() {
		if want != host.IP {
			return nak("host has fixed address " + host.IP.String())
		}
	} else {
		l, had := s.leases.lookup(c.mac)
		switch {
		case !p.Subnet.Contains(want):
			return nak("address not on this network")
		case had && l.IP != want:
			return nak("address not leased to this client")
		case !had && !inRange(p, want):
			return nak("address outside the pool")
		}
	}
	bound, err := s.leases.ack(c.mac, want, now, s.cfg.LeaseTime)
	if err != nil {
		return nak(err.Error())
	}
	s.markDirty()
	resp, err := s.build(req, c, host, pool, dhcpv4.MessageTypeAck, bound.IP)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	s.emit(EventAck, c, bound.IP, resp.BootFileName, now)
	s.log.Info("dhcp: ack", "mac", c.mac.String(), "ip", bound.IP, "bootfile", resp.BootFileName)
	return resp, s.destination(req, resp, from), true
}

// poolFor picks the pool by giaddr, else by ciaddr, else the local pool.
func (s *Server) poolFor(req *dhcpv4.DHCPv4) (int, bool) {
	if gi := addr4(req.GatewayIPAddr); gi.IsValid() {
		return s.poolContaining(gi)
	}
	if ci := addr4(req.ClientIPAddr); ci.IsValid() {
		if i, ok := s.poolContaining(ci); ok {
			return i, true
		}
	}
	return 0, true
}

func (s *Server) poolContaining(ip netip.Addr) (int, bool) {
	for i := range 1 + len(s.cfg.RelayPools) {
		if s.leasePool(i).Subnet.Contains(ip) {
			return i, true
		}
	}
	return 0, false
}

func (s *Server) leasePool(i int) Pool {
	if i == 0 {
		return s.cfg.Pool
	}
	return s.cfg.RelayPools[i-1]
}

// build makes an OFFER or ACK for yiaddr with the pool's options and the
// host's boot options.
func (s *Server) build(req *dhcpv4.DHCPv4, c client, host Host, pool int, typ dhcpv4.MessageType, yiaddr netip.Addr) (*dhcpv4.DHCPv4, error) {
	p := s.leasePool(pool)
	lease := uint32(s.cfg.LeaseTime / time.Second)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithNetmask(net.CIDRMask(p.Subnet.Bits(), 32)),
		dhcpv4.WithLeaseTime(lease),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRenewTimeValue, be32(lease/2))),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRebindingTimeValue, be32(lease/8*7))),
	}
	if yiaddr.IsValid() {
		mods = append(mods, dhcpv4.WithYourIP(yiaddr.AsSlice()))
	} else {
		mods = append(mods, dhcpv4.WithYourIP(net.IPv4zero))
	}
	if typ == dhcpv4.MessageTypeAck && req.MessageType() == dhcpv4.MessageTypeInform {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	if p.Router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(p.Router.AsSlice())))
	}
	if len(p.DNS) > 0 {
		ips := make([]net.IP, len(p.DNS))
		for i, d := range p.DNS {
			ips[i] = d.AsSlice()
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(ips...)))
	}
	if host.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(host.Hostname)))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("building reply: %w", err)
	}
	if file := host.bootFile(c); file != "" {
		next := host.TFTPServer
		if !next.IsValid() {
			next = s.cfg.NextServer
		}
		resp.ServerIPAddr = next.AsSlice()
		resp.BootFileName = file
		resp.UpdateOption(dhcpv4.OptTFTPServerName(next.String()))
		resp.UpdateOption(dhcpv4.OptBootFileName(file))
		if c.pxe {
			resp.UpdateOption(dhcpv4.OptClassIdentifier(pxeVendorID))
			// PXE_DISCOVERY_CONTROL=8: boot the file named here, no boot
			// server discovery (what dnsmasq sends alongside a boot file).
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{pxeDiscCtlOpt, 1, 8, 255}))
			if uuid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(uuid) > 0 {
				resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
			}
		}
	}
	return resp, nil
}

// nak builds a DHCPNAK. Through a relay it asks for broadcast (RFC 2131).
func (s *Server) nak(req *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, error) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	if err != nil {
		return nil, fmt.Errorf("building nak: %w", err)
	}
	if addr4(req.GatewayIPAddr).IsValid() {
		resp.SetBroadcast()
	}
	return resp, nil
}

// destination is where resp goes: the relay, else the sender if it has an
// address (a renewing client, or a simulated client on loopback), else the
// broadcast address.
func (s *Server) destination(req, resp *dhcpv4.DHCPv4, from netip.AddrPort) netip.AddrPort {
	if gi := addr4(req.GatewayIPAddr); gi.IsValid() {
		return netip.AddrPortFrom(gi, uint16(s.cfg.RelayPort))
	}
	if a := from.Addr().Unmap(); a.IsValid() && !a.IsUnspecified() && from.Port() != 0 {
		return netip.AddrPortFrom(a, from.Port())
	}
	if ci := addr4(req.ClientIPAddr); ci.IsValid() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return netip.AddrPortFrom(ci, uint16(s.cfg.ClientPort))
	}
	return netip.AddrPortFrom(s.cfg.BroadcastAddr, uint16(s.cfg.ClientPort))
}

func (s *Server) emit(kind EventKind, c client, ip netip.Addr, bootFile string, now time.Time) {
	s.msgs.WithLabelValues(string(kind)).Inc()
	if s.cfg.Observer == nil {
		return
	}
	s.cfg.Observer(Event{Kind: kind, MAC: c.mac, IP: ip, Relay: c.relay, Arch: c.arch, IPXE: c.ipxe, BootFile: bootFile, Time: now})
}

// addr4 converts a net.IP to netip.Addr; nil and 0.0.0.0 give the zero Addr.
func addr4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func be32(v uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, v)
}
