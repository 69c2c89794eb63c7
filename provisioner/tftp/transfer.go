package tftp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"
)

// peer is one transfer's path to its client: a socket of its own, or the
// listening socket shared through Serve's demultiplexer (SinglePort).
type peer interface {
	// send writes one packet to the client.
	send(p []byte) error
	// recv returns the next packet from the client; it fails with
	// os.ErrDeadlineExceeded when deadline passes first and with
	// net.ErrClosed when the server stops. The packet is valid until the
	// next call.
	recv(deadline time.Time) ([]byte, error)
}

// socketPeer is a transfer on a socket of its own (RFC 1350's server TID).
// Packets from any other address get ERROR 5 and the transfer goes on.
type socketPeer struct {
	conn   *net.UDPConn
	remote netip.AddrPort
	buf    []byte
}

func (p *socketPeer) send(b []byte) error {
	_, err := p.conn.WriteToUDPAddrPort(b, p.remote)
	return err
}

func (p *socketPeer) recv(deadline time.Time) ([]byte, error) {
	if err := p.conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(p.buf)
		if err != nil {
			return nil, err
		}
		if unmap(from) == p.remote {
			return p.buf[:n], nil
		}
		if !isError(p.buf[:n]) {
			p.conn.WriteToUDPAddrPort(errorPacket(codeUnknownTID, "unknown transfer ID"), from)
		}
	}
}

// sharedPeer is a transfer answered from the listening socket: Serve hands
// it the packets from its client through in.
type sharedPeer struct {
	conn   net.PacketConn
	remote net.Addr
	in     chan []byte
	done   <-chan struct{} // closed when the server stops
}

func (p *sharedPeer) send(b []byte) error {
	_, err := p.conn.WriteTo(b, p.remote)
	return err
}

func (p *sharedPeer) recv(deadline time.Time) ([]byte, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case b := <-p.in:
		return b, nil
	case <-t.C:
		return nil, os.ErrDeadlineExceeded
	case <-p.done:
		return nil, net.ErrClosed
	}
}

// unmap turns an IPv4-mapped IPv6 address into plain IPv4, so one client
// has one key.
func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// isError reports whether p is an ERROR packet (never answered, RFC 1350).
func isError(p []byte) bool {
	return len(p) >= 2 && binary.BigEndian.Uint16(p) == opERROR
}

// sender sends one file: RFC 1350 lock-step, or RFC 7440 windows of
// window blocks, each window resent from the block after the last one
// acknowledged. Block numbers roll over from 65535 to 0, as tftpd-hpa's.
type sender struct {
	p       peer
	body    io.Reader
	blksize int
	window  int
	timeout time.Duration
	retries int

	base    uint64   // the last block acknowledged
	unacked [][]byte // DATA packets of blocks base+1, base+2, … read and not yet acknowledged
	free    [][]byte // packet buffers to reuse
	eof     bool     // the final block (shorter than blksize) is read
	sent    int64    // file bytes read into blocks
}

// errTimeout ends a transfer whose client stopped answering.
var errTimeout = errors.New("timed out")

// run negotiates (when oack is not nil: RFC 2347's OACK, answered by ACK 0)
// and sends the file. Errors the client did not cause are sent to it.
func (s *sender) run(oack []byte) error {
	if oack != nil {
		if err := s.negotiate(oack); err != nil {
			return err
		}
	}
	tries := 0
	for {
		n, err := s.sendWindow()
		if err != nil {
			s.p.send(errorPacket(codeOf(err), err.Error()))
			return err
		}
		k, err := s.await(func(b uint16) bool { k := b - uint16(s.base); return k >= 1 && int(k) <= n })
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if tries++; tries > s.retries {
				return fmt.Errorf("%w waiting for ACK of block %d", errTimeout, s.base+1)
			}
			continue
		case err != nil:
			return err
		}
		tries = 0
		s.advance(int(k - uint16(s.base)))
		if s.eof && len(s.unacked) == 0 {
			return nil
		}
	}
}

// negotiate sends the OACK until the client acknowledges it with ACK 0.
func (s *sender) negotiate(oack []byte) error {
	for tries := 0; ; tries++ {
		if err := s.p.send(oack); err != nil {
			return err
		}
		_, err := s.await(func(b uint16) bool { return b == 0 })
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if tries >= s.retries {
			return fmt.Errorf("%w waiting for ACK of the OACK", errTimeout)
		}
	}
}

// sendWindow sends blocks base+1 up to base+window (fewer at the end of
// the file), reading the ones not read yet; it returns how many it sent.
func (s *sender) sendWindow() (int, error) {
	for i := 0; i < s.window; i++ {
		if i == len(s.unacked) {
			if s.eof {
				return i, nil
			}
			if err := s.readBlock(); err != nil {
				return i, err
			}
		}
		if err := s.p.send(s.unacked[i]); err != nil {
			return i, err
		}
	}
	return s.window, nil
}

// readBlock reads the block after the last one read into a DATA packet.
func (s *sender) readBlock() error {
	var buf []byte
	if n := len(s.free); n > 0 {
		buf, s.free = s.free[n-1], s.free[:n-1]
	} else {
		buf = make([]byte, 4+s.blksize)
	}
	n, err := io.ReadFull(s.body, buf[4:4+s.blksize])
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		s.eof = true
	case err != nil:
		return err
	}
	block := s.base + uint64(len(s.unacked)) + 1
	binary.BigEndian.PutUint16(buf, opDATA)
	binary.BigEndian.PutUint16(buf[2:], uint16(block))
	s.unacked = append(s.unacked, buf[:4+n])
	s.sent += int64(n)
	return nil
}

// advance drops the k blocks after base, now acknowledged.
func (s *sender) advance(k int) {
	for _, b := range s.unacked[:k] {
		s.free = append(s.free, b[:cap(b)])
	}
	s.unacked = append(s.unacked[:0], s.unacked[k:]...)
	s.base += uint64(k)
}

// await waits up to the transfer's timeout for an ACK whose block number
// want accepts and returns that number. Other ACKs (duplicates of one
// already seen: answering them would be the Sorcerer's Apprentice bug)
// and other packets are ignored without extending the wait; an ERROR from
// the client ends the transfer.
func (s *sender) await(want func(uint16) bool) (uint16, error) {
	deadline := time.Now().Add(s.timeout)
	for {
		pkt, err := s.p.recv(deadline)
		if err != nil {
			return 0, err
		}
		block, clientErr, ok := parseAck(pkt)
		switch {
		case !ok:
		case clientErr != nil:
			return 0, clientErr
		case want(block):
			return block, nil
		}
	}
}

// netascii converts a file to RFC 764's NVT ASCII as tftpd-hpa does: LF
// becomes CR LF and CR becomes CR NUL.
type netascii struct {
	r       *bufio.Reader
	pending int // the byte owed after a CR, or -1
}

func newNetascii(r io.Reader) *netascii { return &netascii{r: bufio.NewReader(r), pending: -1} }

func (n *netascii) Read(p []byte) (int, error) {
	i := 0
	for ; i < len(p); i++ {
		if n.pending >= 0 {
			p[i], n.pending = byte(n.pending), -1
			continue
		}
		c, err := n.r.ReadByte()
		if err != nil {
			if i > 0 {
				return i, nil
			}
			return 0, err
		}
		switch c {
		case '\n':
			p[i], n.pending = '\r', '\n'
		case '\r':
			p[i], n.pending = '\r', 0
		default:
			p[i] = c
		}
	}
	return i, nil
}

// stopOn makes ctx's end close c, ending the transfer reading it.
func stopOn(ctx context.Context, c io.Closer) func() bool {
	return context.AfterFunc(ctx, func() { c.Close() })
}
