package tftp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// rawClient speaks TFTP packet by packet, for what no client binary does
// (windowsize, dropped blocks, foreign TIDs, malformed requests).
type rawClient struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr // the server's listening socket
}

// packet is one received datagram.
type packet struct {
	op, num uint16 // num: a DATA/ACK block, an ERROR code
	payload []byte // DATA bytes, ERROR message, OACK options
	from    *net.UDPAddr
}

func newRawClient(t *testing.T, to *net.UDPAddr) *rawClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, to: to}
}

// request sends an RRQ (op 1) or WRQ (op 2) for name in mode with opts.
func (c *rawClient) request(op byte, name, mode string, opts ...string) {
	p := []byte{0, op}
	for _, f := range append([]string{name, mode}, opts...) {
		p = append(append(p, f...), 0)
	}
	c.sendTo(c.to, p)
}

func (c *rawClient) sendTo(to *net.UDPAddr, p []byte) {
	c.t.Helper()
	_, err := c.conn.WriteToUDP(p, to)
	must(c.t, err)
}

// ack acknowledges block to the transfer's socket.
func (c *rawClient) ack(to *net.UDPAddr, block uint16) {
	c.t.Helper()
	c.sendTo(to, binary.BigEndian.AppendUint16([]byte{0, opACK}, block))
}

// read returns the next packet (failing the test after 10 s of silence).
func (c *rawClient) read() packet {
	c.t.Helper()
	must(c.t, c.conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 70000)
	n, from, err := c.conn.ReadFromUDP(buf)
	must(c.t, err)
	if n < 2 {
		c.t.Fatalf("short packet %x", buf[:n])
	}
	p := packet{op: binary.BigEndian.Uint16(buf), from: from}
	if n >= 4 && p.op != opOACK {
		p.num, p.payload = binary.BigEndian.Uint16(buf[2:]), buf[4:n]
	} else {
		p.payload = buf[2:n]
	}
	return p
}

// wantError reads the next packet and checks it is ERROR code.
func (c *rawClient) wantError(code uint16, what string) {
	c.t.Helper()
	p := c.read()
	if p.op != opERROR || p.num != code {
		c.t.Errorf("%s: opcode %d code/block %d %q, want ERROR %d", what, p.op, p.num, p.payload, code)
	}
}

// receive runs an RFC 7440 receiver after the OACK: it acknowledges every
// window blocks (and the last block), and on a gap acknowledges the last
// block received in order once. drop says which arrivals to discard as if
// lost. It returns the file and how often each block arrived.
func (c *rawClient) receive(server *net.UDPAddr, window int, blksize int, drop func(block uint16, seen int) bool) ([]byte, map[uint16]int) {
	c.t.Helper()
	var file []byte
	seen := map[uint16]int{}
	next, inWindow, nacked := uint16(1), 0, false
	for {
		p := c.read()
		if p.op != opDATA {
			c.t.Fatalf("opcode %d %q during the transfer", p.op, p.payload)
		}
		if d := p.num - next; d >= uint16(window) && d < 0x8000 {
			c.t.Fatalf("block %d sent before the window ending at %d was acknowledged", p.num, next-1+uint16(window))
		}
		seen[p.num]++
		if drop != nil && drop(p.num, seen[p.num]) {
			continue
		}
		if p.num != next {
			if !nacked {
				c.ack(server, next-1)
				nacked, inWindow = true, 0
			}
			continue
		}
		file = append(file, p.payload...)
		next++
		inWindow++
		nacked = false
		last := len(p.payload) < blksize
		if inWindow == window || last {
			c.ack(server, next-1)
			inWindow = 0
		}
		if last {
			return file, seen
		}
	}
}

// oack reads the OACK and returns its options as "name value" pairs.
func (c *rawClient) oack() (string, *net.UDPAddr) {
	c.t.Helper()
	p := c.read()
	if p.op != opOACK {
		c.t.Fatalf("opcode %d %q, want OACK", p.op, p.payload)
	}
	return strings.ReplaceAll(strings.TrimRight(string(p.payload), "\x00"), "\x00", " "), p.from
}

// TestWindowSize: windowsize 4 (RFC 7440) is acknowledged; the server
// sends four blocks per ACK and never more, in both socket modes.
func TestWindowSize(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprint("SinglePort=", single), func(t *testing.T) {
			f, kernel := startWith(t, 100_000, func(c *Config) { c.SinglePort = single; c.Timeout = 5 * time.Second })
			c := newRawClient(t, f.addr)
			c.request(opRRQ, "deploy_kernel", "octet", "windowsize", "4", "tsize", "0")
			opts, server := c.oack()
			if opts != "windowsize 4 tsize 100000" {
				t.Fatalf("OACK %q", opts)
			}
			if single != (server.Port == f.addr.Port) {
				t.Fatalf("SinglePort %v: answered from port %d, listening on %d", single, server.Port, f.addr.Port)
			}
			c.ack(server, 0)
			got, seen := c.receive(server, 4, 512, nil)
			if !bytes.Equal(got, kernel) {
				t.Fatalf("got %d bytes, want the kernel's %d", len(got), len(kernel))
			}
			for b, n := range seen {
				if n != 1 {
					t.Errorf("block %d sent %d times with nothing lost", b, n)
				}
			}
			if ev := f.waitEvent(t, "deploy_kernel", "the transfer"); ev.Err != nil || ev.Bytes != int64(len(kernel)) {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// TestWindowLoss: a block lost mid-window is resent, with the rest of its
// window, from the block after the last one acknowledged (the receiver
// acknowledges the last block it has in order), and the file arrives whole.
func TestWindowLoss(t *testing.T) {
	f, kernel := startWith(t, 20_000, func(c *Config) { c.Timeout = 5 * time.Second })
	c := newRawClient(t, f.addr)
	c.request(opRRQ, "deploy_kernel", "octet", "windowsize", "4", "blksize", "1024")
	if opts, server := c.oack(); opts != "windowsize 4 blksize 1024" {
		t.Fatalf("OACK %q", opts)
	} else {
		c.ack(server, 0)
		got, seen := c.receive(server, 4, 1024, func(b uint16, n int) bool { return (b == 2 || b == 11) && n == 1 })
		if !bytes.Equal(got, kernel) {
			t.Fatalf("got %d bytes, want the kernel's %d", len(got), len(kernel))
		}
		if seen[2] != 2 || seen[11] != 2 || seen[1] != 1 {
			t.Errorf("arrivals per block %v: want blocks 2 and 11 twice, block 1 once", seen)
		}
	}
}

// TestDuplicateACKIgnored: in lock-step a repeated ACK does not send the
// next block twice (the Sorcerer's Apprentice bug).
func TestDuplicateACKIgnored(t *testing.T) {
	f, kernel := startWith(t, 1300, func(c *Config) { c.Timeout = 5 * time.Second })
	c := newRawClient(t, f.addr)
	c.request(opRRQ, "deploy_kernel", "octet")
	var got []byte
	for want := uint16(1); ; want++ {
		p := c.read()
		if p.op != opDATA || p.num != want {
			t.Fatalf("opcode %d block %d, want DATA %d", p.op, p.num, want)
		}
		got = append(got, p.payload...)
		c.ack(p.from, p.num)
		if len(p.payload) < 512 {
			break
		}
		c.ack(p.from, p.num) // the duplicate
	}
	if !bytes.Equal(got, kernel) {
		t.Fatalf("got %d bytes, want %d", len(got), len(kernel))
	}
}

// TestErrorCodes: each refusal carries its RFC 1350/2347 code.
func TestErrorCodes(t *testing.T) {
	f, _ := start(t, 4096)
	for _, c := range []struct {
		what string
		send func(c *rawClient)
		code uint16
	}{
		{"missing file", func(c *rawClient) { c.request(opRRQ, "no-such-file", "octet") }, codeNotFound},
		{"a file under a file", func(c *rawClient) { c.request(opRRQ, "deploy_kernel/x", "octet") }, codeNotFound},
		{"escape", func(c *rawClient) { c.request(opRRQ, "../secret", "octet") }, codeAccess},
		{"symlink out", func(c *rawClient) { c.request(opRRQ, "escape", "octet") }, codeAccess},
		{"write request", func(c *rawClient) { c.request(opWRQ, "deploy_kernel", "octet") }, codeAccess},
		{"mode mail", func(c *rawClient) { c.request(opRRQ, "deploy_kernel", "mail") }, codeIllegalOp},
		{"no NUL after the mode", func(c *rawClient) { c.sendTo(c.to, []byte("\x00\x01deploy_kernel\x00octet")) }, codeIllegalOp},
		{"option without value", func(c *rawClient) { c.request(opRRQ, "deploy_kernel", "octet", "blksize") }, codeIllegalOp},
		{"opcode 9", func(c *rawClient) { c.sendTo(c.to, []byte{0, 9, 0, 0}) }, codeIllegalOp},
		{"ACK without a transfer", func(c *rawClient) { c.ack(c.to, 1) }, codeUnknownTID},
		{"blksize 4", func(c *rawClient) { c.request(opRRQ, "deploy_kernel", "octet", "blksize", "4") }, codeOptionsDeny},
		{"blksize x", func(c *rawClient) { c.request(opRRQ, "deploy_kernel", "octet", "blksize", "x") }, codeOptionsDeny},
		{"timeout 0", func(c *rawClient) { c.request(opRRQ, "deploy_kernel", "octet", "timeout", "0") }, codeOptionsDeny},
		{"timeout 256", func(c *rawClient) { c.request(opRRQ, "deploy_kernel", "octet", "timeout", "256") }, codeOptionsDeny},
		{"windowsize 0", func(c *rawClient) { c.request(opRRQ, "deploy_kernel", "octet", "windowsize", "0") }, codeOptionsDeny},
	} {
		rc := newRawClient(t, f.addr)
		c.send(rc)
		rc.wantError(c.code, c.what)
	}
	// Out-of-range sizes above the maximum are capped, not refused, and
	// unknown options are left out of the OACK.
	rc := newRawClient(t, f.addr)
	rc.request(opRRQ, "deploy_kernel", "OCTET", "BLKSIZE", "70000", "windowsize", "100000", "rollover", "0", "timeout", "3")
	if opts, _ := rc.oack(); opts != "blksize 65464 windowsize 64 timeout 3" {
		t.Errorf("OACK %q", opts)
	}
}

// TestForeignTID: a packet from another port to a transfer's socket gets
// ERROR 5 and the transfer goes on (RFC 1350); in SinglePort mode a
// stranger's ACK to the shared socket gets the same.
func TestForeignTID(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprint("SinglePort=", single), func(t *testing.T) {
			f, kernel := startWith(t, 1500, func(c *Config) { c.SinglePort = single; c.Timeout = 5 * time.Second })
			c := newRawClient(t, f.addr)
			c.request(opRRQ, "deploy_kernel", "octet")
			p := c.read()
			if p.op != opDATA || p.num != 1 {
				t.Fatalf("opcode %d block %d, want DATA 1", p.op, p.num)
			}
			stranger := newRawClient(t, p.from)
			stranger.ack(p.from, 1)
			stranger.wantError(codeUnknownTID, "ACK from a foreign port")
			got := append([]byte(nil), p.payload...)
			c.ack(p.from, 1)
			for len(p.payload) == 512 {
				if p = c.read(); p.op != opDATA {
					t.Fatalf("opcode %d %q after the stranger's ACK", p.op, p.payload)
				}
				got = append(got, p.payload...)
				c.ack(p.from, p.num)
			}
			if !bytes.Equal(got, kernel) {
				t.Fatalf("got %d bytes, want %d", len(got), len(kernel))
			}
		})
	}
}

// TestBusyCode: a request beyond MaxPerClient is refused with code 0 and
// a message saying the server is busy.
func TestBusyCode(t *testing.T) {
	f, _ := startWith(t, 4096, func(c *Config) { c.MaxPerClient = 1; c.Timeout = 5 * time.Second })
	held := newRawClient(t, f.addr)
	held.request(opRRQ, "deploy_kernel", "octet")
	if p := held.read(); p.op != opDATA {
		t.Fatalf("first transfer: opcode %d %q", p.op, p.payload)
	}
	c := newRawClient(t, f.addr)
	c.request(opRRQ, "deploy_kernel", "octet")
	p := c.read()
	if p.op != opERROR || p.num != codeUndefined || !strings.Contains(string(p.payload), "server busy, try again later") {
		t.Fatalf("opcode %d code %d %q, want ERROR 0 server busy", p.op, p.num, p.payload)
	}
}

// TestRolloverCurl: a file of more than 65535 blocks of 512 bytes reaches
// curl whole: block numbers roll over from 65535 to 0.
func TestRolloverCurl(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	f, kernel := start(t, 65536*512+1000)
	out := filepath.Join(t.TempDir(), "k")
	cmd := exec.CommandContext(t.Context(), curl, "-sS", "--fail", "--tftp-blksize", "512",
		"-o", out, fmt.Sprintf("tftp://%s/deploy_kernel", f.addr))
	got := fetched(t, cmd, out)
	if !bytes.Equal(got, kernel) {
		t.Fatalf("got %d bytes, want the %d served", len(got), len(kernel))
	}
}

// TestNetascii: tftp-hpa's client in ascii mode gets the file back as it
// is on disk (LF sent as CR LF, CR as CR NUL, and turned back), and no
// tsize is offered for a converted file.
func TestNetascii(t *testing.T) {
	tftpc := testenv.RequireTool(t, "tftp", "tftp-hpa")
	text := []byte(strings.Repeat("line\nwith\r\ncr\rend", 100) + "\n")
	f, _ := startWith(t, 10, func(c *Config) { c.Files = memFiles{"notes.txt": text} })
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.CommandContext(t.Context(), tftpc, "-m", "ascii", "127.0.0.1", fmt.Sprint(f.addr.Port), "-c", "get", "notes.txt", out)
	got := fetched(t, cmd, out)
	if !bytes.Equal(got, text) {
		t.Fatalf("got %q…, want %q…", got[:min(40, len(got))], text[:40])
	}
	c := newRawClient(t, f.addr)
	c.request(opRRQ, "notes.txt", "netascii", "tsize", "0", "blksize", "1024")
	if opts, _ := c.oack(); opts != "blksize 1024" {
		t.Errorf("netascii OACK %q", opts)
	}
}

// TestLockstepLoss: without windowsize, a DATA block lost on the way is
// resent when the server's timeout passes, and the file arrives whole.
func TestLockstepLoss(t *testing.T) {
	f, kernel := startWith(t, 3000, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	c := newRawClient(t, f.addr)
	c.request(opRRQ, "deploy_kernel", "octet", "blksize", "1024")
	opts, server := c.oack()
	if opts != "blksize 1024" {
		t.Fatalf("OACK %q", opts)
	}
	c.ack(server, 0)
	got, seen := c.receive(server, 1, 1024, func(b uint16, n int) bool { return b == 2 && n == 1 })
	if !bytes.Equal(got, kernel) {
		t.Fatalf("got %d bytes, want the kernel's %d", len(got), len(kernel))
	}
	if seen[2] < 2 {
		t.Errorf("arrivals per block %v: block 2 was dropped, so it must arrive again", seen)
	}
}

// FuzzParseRequest: any datagram parses to a request or an error, and
// negotiation of what parses never panics.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00tsize\x000\x00"))
	f.Add([]byte("\x00\x01a\x00netascii\x00windowsize\x0099999999999999999999\x00"))
	f.Add([]byte("\x00\x02a\x00octet\x00"))
	f.Add([]byte("\x00\x01\x00\x00\x00"))
	f.Add([]byte{0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := parseRequest(p)
		if err != nil {
			return
		}
		prm, _, err := negotiate(r, 100, maxBlockSize)
		if err == nil && (prm.blksize < minBlockSize || prm.blksize > maxBlockSize || prm.window < 1 || prm.window > maxWindow) {
			t.Fatalf("%q negotiated %+v", p, prm)
		}
	})
}
