package bmcemu

import (
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// Wire constants (IPMI v2.0 §13.1–13.8, DMTF ASF for the RMCP header).
const (
	rmcpVersion     = 0x06
	rmcpClassASF    = 0x06
	rmcpClassIPMI   = 0x07
	authTypeRMCPP   = 0x06
	payloadIPMI     = 0x00
	payloadSOL      = 0x01
	payloadOpenReq  = 0x10
	payloadRAKP1    = 0x12
	payloadRAKP2    = 0x13
	payloadRAKP3    = 0x14
	payloadRAKP4    = 0x15
	flagEncrypted   = 0x80
	flagAuthentic   = 0x40
	maxIPMIPacket   = 1024 // nothing legitimate in IPMI over LAN comes near
	ipmiMinRequest  = 7    // rsAddr netFn chk rqAddr rqSeq cmd chk
	ccDropMarker    = 0xFE // reserved code: our private "send nothing" marker
	authTypeNone15  = 0x00
	v15HeaderNoAuth = 4 + 1 + 4 + 4 + 1 // RMCP, auth type, seq, session ID, length
)

// header is what the gate learns from a packet before go-ipmi sees it.
type header struct {
	class       uint8
	rmcpPlus    bool
	payloadType uint8 // RMCP+ only, flag bits removed
	encrypted   bool
	sessionID   uint32
	// plain is the IPMI message when it travels unencrypted (IPMI 1.5, or
	// RMCP+ session-less or unencrypted); nil otherwise.
	plain []byte
	// payload is an RMCP+ packet's payload (16 bytes in); nil otherwise.
	payload []byte
}

var (
	errShort    = errors.New("packet too short")
	errVersion  = errors.New("not RMCP version 1.0")
	errClass    = errors.New("unknown RMCP message class")
	errLength   = errors.New("payload length disagrees with packet")
	errTooLarge = errors.New("packet too large")
)

// parseHeader validates the RMCP and session headers of an inbound packet
// (IPMI v2.0 tables 13-1 to 13-8). It never reads past pkt and rejects any
// length field that disagrees with the datagram.
func parseHeader(pkt []byte) (header, error) {
	var h header
	if len(pkt) > maxIPMIPacket {
		return h, errTooLarge
	}
	if len(pkt) < 4 {
		return h, errShort
	}
	if pkt[0] != rmcpVersion {
		return h, errVersion
	}
	h.class = pkt[3] & 0x1f
	switch h.class {
	case rmcpClassASF:
		if len(pkt) < 12 {
			return h, errShort
		}
		return h, nil
	case rmcpClassIPMI:
	default:
		return h, errClass
	}
	if len(pkt) < 5 {
		return h, errShort
	}
	if pkt[4] == authTypeRMCPP {
		h.rmcpPlus = true
		if len(pkt) < 16 {
			return h, errShort
		}
		h.payloadType = pkt[5] & 0x3f
		h.encrypted = pkt[5]&flagEncrypted != 0
		if h.payloadType == 0x02 { // OEM explicit: extra IANA and OEM payload ID
			return h, errClass
		}
		h.sessionID = binary.LittleEndian.Uint32(pkt[6:10])
		n := int(binary.LittleEndian.Uint16(pkt[14:16]))
		if 16+n > len(pkt) {
			return h, errLength
		}
		h.payload = pkt[16 : 16+n]
		if h.payloadType == payloadIPMI && !h.encrypted {
			h.plain = h.payload
		}
		return h, nil
	}
	// IPMI 1.5 session header: auth type, seq, session ID, [16-byte auth
	// code unless auth type none], length.
	if pkt[4] > 0x05 {
		return h, errClass
	}
	off := 4 + 1 + 4
	if len(pkt) < off+4 {
		return h, errShort
	}
	h.sessionID = binary.LittleEndian.Uint32(pkt[off : off+4])
	off += 4
	if pkt[4] != authTypeNone15 {
		off += 16
	}
	if len(pkt) < off+1 {
		return h, errShort
	}
	n := int(pkt[off])
	off++
	if off+n > len(pkt) {
		return h, errLength
	}
	h.plain = pkt[off : off+n]
	return h, nil
}

// ipmiRequest is the decoded IPMI LAN request message (IPMI v2.0 table 13-4).
type ipmiRequest struct {
	netfn, lun, cmd uint8
	seq             uint8
	data            []byte
}

// parseIPMIRequest decodes an IPMI LAN request message and checks both
// checksums.
func parseIPMIRequest(msg []byte) (ipmiRequest, error) {
	var r ipmiRequest
	if len(msg) < ipmiMinRequest {
		return r, errShort
	}
	if checksum(msg[:2]) != msg[2] {
		return r, errors.New("bad header checksum")
	}
	if checksum(msg[3:len(msg)-1]) != msg[len(msg)-1] {
		return r, errors.New("bad data checksum")
	}
	r.netfn = msg[1] >> 2
	r.lun = msg[1] & 0x03
	r.seq = msg[4] >> 2
	r.cmd = msg[5]
	r.data = msg[6 : len(msg)-1]
	return r, nil
}

// ipmiResponseCC returns the completion code of a plaintext IPMI LAN
// response message, if msg looks like one.
func ipmiResponseCC(msg []byte) (uint8, bool) {
	// rqAddr netFn chk rsAddr rqSeq cmd cc ... chk
	if len(msg) < 8 || msg[1]>>2&1 == 0 {
		return 0, false
	}
	return msg[6], true
}

func checksum(b []byte) uint8 {
	var s uint8
	for _, c := range b {
		s += c
	}
	return -s
}

// gateConn sits between the caller's PacketConn and go-ipmi: malformed
// datagrams never reach go-ipmi, and replies marked for dropping by the
// ipmi fault layer never leave.
type gateConn struct {
	srv     *Server
	conn    net.PacketConn
	pace    *pacer
	replay  replay
	closing atomic.Bool
}

func (g *gateConn) ReadFrom(buf []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.conn.ReadFrom(buf)
		if err != nil {
			if g.closing.Load() {
				return 0, nil, net.ErrClosed
			}
			return n, addr, err
		}
		g.pace.received(addr)
		if !g.srv.admit(buf[:n], addr) {
			continue
		}
		if reply, ok := g.replay.resent(addr, buf[:n]); ok {
			if reply != nil && !g.srv.dropReply(reply, addr) {
				g.srv.metrics.replies.Inc()
				_, _ = g.pace.send(reply, addr)
			}
			continue
		}
		return n, addr, nil
	}
}

func (g *gateConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	b = g.srv.rakpStatus(b)
	// A reply the fault layer drops was sent and lost, as far as the
	// client can tell: its resend gets the same answer (dropped again while
	// drops remain).
	g.replay.sent(addr, b)
	if g.srv.dropReply(b, addr) {
		return len(b), nil
	}
	g.srv.metrics.replies.Inc()
	if d := g.srv.cfg.Latency; d > 0 {
		time.Sleep(d)
	}
	return g.pace.send(b, addr)
}

// Close leaves the caller's conn open: Serve's caller owns it.
func (g *gateConn) Close() error { return nil }

// LocalAddr lets go-ipmi report the SOL payload port (Activate Payload).
func (g *gateConn) LocalAddr() net.Addr { return g.conn.LocalAddr() }

// admit decides whether an inbound datagram goes on to the session layer.
func (s *Server) admit(pkt []byte, addr net.Addr) bool {
	s.metrics.packets.Inc()
	h, err := parseHeader(pkt)
	if err != nil {
		s.metrics.malformed.Inc()
		s.log().Debug("dropped malformed packet", "ip", addrString(addr), "err", err)
		return false
	}
	if h.rmcpPlus && h.payloadType == payloadRAKP1 {
		s.noteRAKP1(h.payload)
	}
	if h.plain != nil && (!h.rmcpPlus || h.payloadType == payloadIPMI) {
		if _, err := parseIPMIRequest(h.plain); err != nil {
			s.metrics.malformed.Inc()
			s.log().Debug("dropped malformed IPMI message", "ip", addrString(addr), "err", err)
			return false
		}
	}
	return true
}

// dropReply reports whether an outbound datagram must vanish: either the
// ipmi fault layer marked the remote address (in-session RMCP+, whose payload
// is encrypted), or the plaintext reply carries the drop marker code.
func (s *Server) dropReply(b []byte, addr net.Addr) bool {
	if s.cfg.Faults == nil {
		return false
	}
	if h, err := parseHeader(b); err == nil && h.plain != nil {
		if cc, ok := ipmiResponseCC(h.plain); ok && cc == ccDropMarker {
			s.takeDrop(addr) // an unencrypted session reply was marked too
			return true
		}
	}
	return s.takeDrop(addr)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// RMCP+ status codes of RAKP messages 2 and 4 (IPMI v2.0 table 13-15).
const (
	rakpUnauthorizedName = 0x0d
	rakpInvalidICV       = 0x0f
)

// noteRAKP1 remembers a RAKP 1 that names a user this BMC does not have
// (IPMI v2.0 table 13-11: username at byte 28, its length at byte 27), so
// that its RAKP 2 answers "unauthorized name" as the spec says. go-ipmi
// answers such a RAKP 1 with a valid-looking RAKP 2 and fails the session
// only at RAKP 3.
func (s *Server) noteRAKP1(p []byte) {
	if len(p) < 28 || 28+int(p[27]) > len(p) {
		return
	}
	if _, err := s.bmc.Users.GetByName(string(p[28 : 28+int(p[27])])); err == nil {
		return
	}
	managed := binary.LittleEndian.Uint32(p[4:8])
	sess, err := s.bmc.Sessions.Get(managed)
	if err != nil {
		return
	}
	s.unknownUser.Store(sess.ConsoleID, managed)
}

// rakpStatus corrects the status of go-ipmi's RAKP 2 and 4 to the spec's
// codes: RAKP 2 for a RAKP 1 naming an unknown user becomes 0x0D
// (unauthorized name; the pending session is closed), and RAKP 4 refusing
// a RAKP 3 whose key exchange code does not match — a wrong password —
// says 0x0F (invalid integrity check value), not 0x0D. Anything else is
// returned as it is.
func (s *Server) rakpStatus(b []byte) []byte {
	h, err := parseHeader(b)
	if err != nil || !h.rmcpPlus || len(h.payload) < 8 {
		return b
	}
	switch h.payloadType {
	case payloadRAKP2:
		console := binary.LittleEndian.Uint32(h.payload[4:8])
		v, ok := s.unknownUser.LoadAndDelete(console)
		if !ok || h.payload[1] != 0 {
			return b
		}
		_ = s.bmc.Sessions.Close(v.(uint32))
		// The error form: tag, status, reserved, console session ID.
		out := append([]byte(nil), b[:16+8]...)
		out[16+1] = rakpUnauthorizedName
		binary.LittleEndian.PutUint16(out[14:16], 8)
		return out
	case payloadRAKP4:
		if h.payload[1] == rakpUnauthorizedName {
			out := append([]byte(nil), b...)
			out[16+1] = rakpInvalidICV
			return out
		}
	}
	return b
}
