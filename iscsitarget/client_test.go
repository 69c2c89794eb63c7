package iscsitarget

// A minimal initiator for unit tests: it speaks the wire protocol through
// the shared codec so the target can be tested without external tools.
// Interop against real initiators is in interop_test.go.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
	"github.com/metalbed/metalbed/iscsitarget/internal/scsi"
)

// memDisk is an in-memory Disk.
type memDisk struct {
	mu sync.Mutex
	b  []byte
}

func newMemDisk(size int) *memDisk { return &memDisk{b: make([]byte, size)} }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("write beyond end")
	}
	return copy(m.b[off:], p), nil
}

func (m *memDisk) Size() int64 { return int64(len(m.b)) }

func (m *memDisk) bytes(off, n int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.b[off:off+n]...)
}

// startTarget serves cfg on 127.0.0.1:0 until the test ends.
func startTarget(t *testing.T, cfg Config) (*Target, string) {
	t.Helper()
	if cfg.IQN == "" {
		cfg.IQN = "iqn.2026-11.org.metalbed.test:disk"
	}
	if cfg.Disk == nil {
		cfg.Disk = newMemDisk(8 << 20)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	tg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tg.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
		tg.Close()
	})
	return tg, ln.Addr().String()
}

type testWriter struct {
	t  *testing.T
	mu sync.Mutex
	on bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t, on: os.Getenv("METALBED_TEST_LOG") != ""}
	t.Cleanup(func() { w.mu.Lock(); w.on = false; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// client is the test initiator.
type client struct {
	t        *testing.T
	nc       net.Conn
	opts     pdu.Options // after login
	cmdSN    uint32
	expStat  uint32
	itt      uint32
	maxRecv  uint32 // target's MaxRecvDataSegmentLength
	params   map[string]string
	lastResp *pdu.PDU
}

type loginOpts struct {
	iqn        string
	keys       []pdu.KV // operational keys offered
	chapUser   string
	chapSecret string
	mutual     bool
	mutualSec  string
	discovery  bool
	tsih       uint16
}

var errLogin = errors.New("login refused")

// dial connects and logs in; a refused login returns errLogin wrapped
// with the status.
func dial(t *testing.T, addr string, o loginOpts) (*client, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, nc: nc, cmdSN: 1, itt: 1, maxRecv: 8192, params: map[string]string{}}
	t.Cleanup(func() { nc.Close() })
	if err := c.login(o); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *client) loginPDU(csg, nsg byte, transit bool, o loginOpts, kvs []pdu.KV) (*pdu.PDU, []pdu.KV, error) {
	var p pdu.PDU
	p.SetOpcode(pdu.OpLoginReq)
	p.SetImmediate(true)
	p.SetTransit(transit)
	p.SetCSG(csg)
	p.SetNSG(nsg)
	p.SetISID([6]byte{0x80, 0, 0, 0x12, 0x34, 0x56})
	p.SetTSIH(o.tsih)
	p.SetITT(c.itt)
	p.SetCmdSN(c.cmdSN)
	p.SetExpStatSN(c.expStat)
	p.Data = pdu.EncodeText(kvs)
	if _, err := pdu.Write(c.nc, &p, pdu.Options{}); err != nil {
		return nil, nil, err
	}
	r, err := pdu.Read(c.nc, pdu.Options{MaxDataSegmentLength: 1 << 20})
	if err != nil {
		return nil, nil, err
	}
	if r.Opcode() != pdu.OpLoginResp {
		return nil, nil, fmt.Errorf("got %v", r.Opcode())
	}
	if r.StatusClass() != 0 {
		return r, nil, fmt.Errorf("%w: status 0x%02x%02x", errLogin, r.StatusClass(), r.StatusDetail())
	}
	c.expStat = r.StatSN() + 1
	got, err := pdu.ParseText(r.Data)
	if err != nil {
		return nil, nil, err
	}
	for _, kv := range got {
		c.params[kv.Key] = kv.Value
	}
	return r, got, nil
}

func (c *client) login(o loginOpts) error {
	first := []pdu.KV{{Key: "InitiatorName", Value: "iqn.2026-11.org.metalbed.test:initiator"}}
	if o.discovery {
		first = append(first, pdu.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		first = append(first, pdu.KV{Key: "SessionType", Value: "Normal"}, pdu.KV{Key: "TargetName", Value: o.iqn})
	}
	if o.chapUser != "" {
		_, _, err := c.loginPDU(0, 1, false, o, append(first, pdu.KV{Key: "AuthMethod", Value: "CHAP,None"}))
		if err != nil {
			return err
		}
		if c.params["AuthMethod"] != "CHAP" {
			return fmt.Errorf("AuthMethod %q", c.params["AuthMethod"])
		}
		_, _, err = c.loginPDU(0, 1, false, o, []pdu.KV{{Key: "CHAP_A", Value: "5"}})
		if err != nil {
			return err
		}
		id, _ := strconv.Atoi(c.params["CHAP_I"])
		chal, err := hex.DecodeString(strings.TrimPrefix(c.params["CHAP_C"], "0x"))
		if err != nil {
			return err
		}
		h := md5.Sum(append(append([]byte{byte(id)}, o.chapSecret...), chal...))
		kvs := []pdu.KV{{Key: "CHAP_N", Value: o.chapUser}, {Key: "CHAP_R", Value: "0x" + hex.EncodeToString(h[:])}}
		myChal := []byte("metalbed-mutual-challenge")
		if o.mutual {
			kvs = append(kvs, pdu.KV{Key: "CHAP_I", Value: "7"}, pdu.KV{Key: "CHAP_C", Value: "0x" + hex.EncodeToString(myChal)})
		}
		_, _, err = c.loginPDU(0, 1, true, o, kvs)
		if err != nil {
			return err
		}
		if o.mutual {
			want := md5.Sum(append(append([]byte{7}, o.mutualSec...), myChal...))
			if c.params["CHAP_R"] != "0x"+hex.EncodeToString(want[:]) {
				return fmt.Errorf("mutual CHAP_R %q does not authenticate the target", c.params["CHAP_R"])
			}
		}
		first = nil
	}
	keys := append(first, o.keys...)
	r, _, err := c.loginPDU(1, 3, true, o, keys)
	if err != nil {
		return err
	}
	if !r.Transit() || r.NSG() != 3 {
		return fmt.Errorf("no transit to full feature phase")
	}
	c.opts = pdu.Options{
		HeaderDigest:         c.params["HeaderDigest"] == "CRC32C",
		DataDigest:           c.params["DataDigest"] == "CRC32C",
		MaxDataSegmentLength: 1 << 20,
	}
	if v, ok := c.params["MaxRecvDataSegmentLength"]; ok {
		n, _ := strconv.Atoi(v)
		c.maxRecv = uint32(n)
	}
	return nil
}

func (c *client) write(p *pdu.PDU) {
	c.t.Helper()
	p.SetExpStatSN(c.expStat)
	if _, err := pdu.Write(c.nc, p, c.opts); err != nil {
		c.t.Fatalf("write %v: %v", p.Opcode(), err)
	}
}

func (c *client) read() *pdu.PDU {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	p, err := pdu.Read(c.nc, c.opts)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

type cmdResult struct {
	status byte
	sense  []byte
	data   []byte
	resid  uint32
	flags  byte
	resp   *pdu.PDU
}

// command runs one SCSI command to completion, answering R2Ts, with
// unsolicited data as the negotiated parameters allow.
func (c *client) command(lun uint64, cdb []byte, out []byte, readLen uint32) cmdResult {
	c.t.Helper()
	var p pdu.PDU
	p.SetOpcode(pdu.OpSCSICommand)
	p.SetFinal(true)
	p.SetLUN(lun << 48)
	itt := c.itt
	c.itt++
	p.SetITT(itt)
	p.SetCmdSN(c.cmdSN)
	c.cmdSN++
	copy(p.CDB(), cdb)
	edtl := readLen
	if out != nil {
		p.SetWriteFlag(true)
		edtl = uint32(len(out))
	}
	if readLen > 0 {
		p.SetReadFlag(true)
	}
	p.SetExpectedDataTransferLength(edtl)
	sent := 0
	if out != nil && c.params["ImmediateData"] == "Yes" {
		fb, _ := strconv.Atoi(c.params["FirstBurstLength"])
		if fb == 0 {
			fb = 65536
		}
		sent = min(len(out), int(c.maxRecv), fb)
		p.Data = out[:sent]
	}
	c.write(&p)
	var res cmdResult
	for {
		r := c.read()
		switch r.Opcode() {
		case pdu.OpR2T:
			off, n := r.BufferOffset(), r.DesiredDataTransferLength()
			for sn := uint32(0); n > 0; sn++ {
				k := min(n, c.maxRecv)
				var d pdu.PDU
				d.SetOpcode(pdu.OpDataOut)
				d.SetITT(itt)
				d.SetTTT(r.TTT())
				d.SetLUN(lun << 48)
				d.SetDataSN(sn)
				d.SetBufferOffset(off)
				d.Data = out[off : off+k]
				off += k
				n -= k
				d.SetFinal(n == 0)
				c.write(&d)
			}
		case pdu.OpDataIn:
			if r.ITT() != itt {
				c.t.Fatalf("Data-In for itt %x, want %x", r.ITT(), itt)
			}
			if int(r.BufferOffset()) != len(res.data) {
				c.t.Fatalf("Data-In offset %d, have %d", r.BufferOffset(), len(res.data))
			}
			res.data = append(res.data, r.Data...)
			if r.StatusFlag() {
				c.expStat = r.StatSN() + 1
				res.status, res.resid, res.flags, res.resp = r.Status(), r.ResidualCount(), r.Flags(), r
				return res
			}
		case pdu.OpSCSIResponse:
			c.expStat = r.StatSN() + 1
			res.status, res.resid, res.flags, res.resp = r.Status(), r.ResidualCount(), r.Flags(), r
			if len(r.Data) >= 2 {
				n := int(binary.BigEndian.Uint16(r.Data))
				res.sense = r.Data[2 : 2+n]
			}
			return res
		case pdu.OpNOPIn:
			if r.TTT() != reservedTag {
				c.pong(r)
			}
		default:
			c.t.Fatalf("unexpected %v during command", r.Opcode())
		}
	}
}

// pong answers a target NOP-In ping.
func (c *client) pong(r *pdu.PDU) {
	var p pdu.PDU
	p.SetOpcode(pdu.OpNOPOut)
	p.SetImmediate(true)
	p.SetFinal(true)
	p.SetITT(reservedTag)
	p.SetTTT(r.TTT())
	p.SetCmdSN(c.cmdSN)
	c.write(&p)
}

func (c *client) nop(immediate bool) *pdu.PDU {
	c.t.Helper()
	var p pdu.PDU
	p.SetOpcode(pdu.OpNOPOut)
	p.SetImmediate(immediate)
	p.SetFinal(true)
	p.SetITT(c.itt)
	c.itt++
	p.SetTTT(reservedTag)
	p.SetCmdSN(c.cmdSN)
	if !immediate {
		c.cmdSN++
	}
	p.Data = []byte("ping")
	c.write(&p)
	r := c.read()
	if r.Opcode() != pdu.OpNOPIn || r.ITT() != p.ITT() || string(r.Data) != "ping" {
		c.t.Fatalf("NOP-Out answered with %v itt=%x data=%q", r.Opcode(), r.ITT(), r.Data)
	}
	c.expStat = r.StatSN() + 1
	return r
}

func (c *client) logout() {
	c.t.Helper()
	var p pdu.PDU
	p.SetOpcode(pdu.OpLogoutReq)
	p.SetImmediate(true)
	p.SetLogoutReason(0)
	p.SetITT(c.itt)
	c.itt++
	p.SetCmdSN(c.cmdSN)
	c.write(&p)
	r := c.read()
	if r.Opcode() != pdu.OpLogoutResp || r.Response() != 0 {
		c.t.Fatalf("logout answered with %v response %d", r.Opcode(), r.Response())
	}
}

func senseOf(t *testing.T, r cmdResult) (byte, uint16) {
	t.Helper()
	k, asc, ok := scsi.ParseSense(r.sense)
	if !ok {
		t.Fatalf("status %#x without parseable sense %x", r.status, r.sense)
	}
	return k, asc
}

func cdb16(op byte, lba uint64, blocks uint32) []byte {
	b := make([]byte, 16)
	b[0] = op
	binary.BigEndian.PutUint64(b[2:], lba)
	binary.BigEndian.PutUint32(b[10:], blocks)
	return b
}
