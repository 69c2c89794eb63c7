package iscsitarget

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
	"github.com/metalbed/metalbed/iscsitarget/internal/scsi"
)

const testIQN = "iqn.2026-11.org.metalbed.test:disk"

func TestNewValidates(t *testing.T) {
	disk := newMemDisk(1 << 20)
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{IQN: testIQN, Disk: disk}, true},
		{"no iqn", Config{Disk: disk}, false},
		{"no disk", Config{IQN: testIQN}, false},
		{"odd block size", Config{IQN: testIQN, Disk: disk, BlockSize: 520}, false},
		{"4k", Config{IQN: testIQN, Disk: disk, BlockSize: 4096}, true},
		{"too small", Config{IQN: testIQN, Disk: newMemDisk(100)}, false},
		{"chap without secret", Config{IQN: testIQN, Disk: disk, CHAP: CHAP{Username: "u"}}, false},
		{"mutual without chap", Config{IQN: testIQN, Disk: disk, CHAP: CHAP{MutualUsername: "t", MutualSecret: "s"}}, false},
		{"half mutual", Config{IQN: testIQN, Disk: disk, CHAP: CHAP{Username: "u", Secret: "s", MutualUsername: "t"}}, false},
	} {
		_, err := New(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

func TestNewSizesFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(3 << 20); err != nil {
		t.Fatal(err)
	}
	tg, err := New(Config{IQN: testIQN, Disk: f})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Size() != 3<<20 {
		t.Errorf("size %d", tg.Size())
	}
}

func TestBindErrorIsReturned(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tg, err := New(Config{IQN: testIQN, Disk: newMemDisk(1 << 20), Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.ListenAndServe(t.Context()); err == nil {
		t.Fatal("ListenAndServe on a taken port returned nil")
	}
}

func TestLoginInquiryCapacity(t *testing.T) {
	disk := newMemDisk(8 << 20)
	_, addr := startTarget(t, Config{Disk: disk})
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	if c.params["TargetPortalGroupTag"] != "1" {
		t.Errorf("TargetPortalGroupTag = %q", c.params["TargetPortalGroupTag"])
	}
	// REPORT LUNS on LUN 0 lists 0 and 1.
	rl := make([]byte, 12)
	rl[0] = scsi.OpReportLUNs
	binary.BigEndian.PutUint32(rl[6:], 256)
	r := c.command(0, rl, nil, 256)
	if r.status != 0 || len(r.data) != 24 || r.data[9] != 0 || r.data[17] != 1 {
		t.Fatalf("REPORT LUNS status %d data %x", r.status, r.data)
	}
	// INQUIRY: LUN 0 is a controller, LUN 1 a disk, LUN 5 absent.
	for lun, want := range map[uint64]byte{0: 0x0c, 1: 0x00, 5: 0x7f} {
		r := c.command(lun, []byte{scsi.OpInquiry, 0, 0, 0, 96, 0}, nil, 96)
		if r.status != 0 || len(r.data) < 36 || r.data[0] != want {
			t.Errorf("INQUIRY lun %d: status %d type %x", lun, r.status, r.data)
		}
	}
	rc := cdb16(scsi.OpServiceActionIn16, 0, 32)
	rc[1] = 0x10 // READ CAPACITY(16)
	r2 := c.command(1, rc, nil, 32)
	if r2.status != 0 || binary.BigEndian.Uint64(r2.data)+1 != (8<<20)/512 || binary.BigEndian.Uint32(r2.data[8:]) != 512 {
		t.Errorf("READ CAPACITY(16) = %d %x", r2.status, r2.data)
	}
	c.logout()
}

func TestWriteReadNegotiations(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []pdu.KV
	}{
		{"defaults", nil},
		{"immediate unsolicited", []pdu.KV{{Key: "ImmediateData", Value: "Yes"}, {Key: "InitialR2T", Value: "No"}, {Key: "FirstBurstLength", Value: "65536"}}},
		{"r2t only", []pdu.KV{{Key: "ImmediateData", Value: "No"}, {Key: "InitialR2T", Value: "Yes"}}},
		{"tiny bursts", []pdu.KV{{Key: "ImmediateData", Value: "No"}, {Key: "MaxBurstLength", Value: "4096"}, {Key: "MaxRecvDataSegmentLength", Value: "512"}}},
		{"digests", []pdu.KV{{Key: "HeaderDigest", Value: "CRC32C,None"}, {Key: "DataDigest", Value: "CRC32C,None"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := newMemDisk(8 << 20)
			_, addr := startTarget(t, Config{Disk: disk})
			c, err := dial(t, addr, loginOpts{iqn: testIQN, keys: tc.keys})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tc.name, "digests") && (!c.opts.HeaderDigest || !c.opts.DataDigest) {
				t.Fatalf("digests not agreed: %v", c.params)
			}
			data := make([]byte, 300*512)
			rand.Read(data)
			r := c.command(1, cdb16(scsi.OpWrite16, 100, 300), data, 0)
			if r.status != 0 {
				t.Fatalf("WRITE(16) status %d sense %x", r.status, r.sense)
			}
			if !bytes.Equal(disk.bytes(100*512, len(data)), data) {
				t.Fatal("disk does not hold the written data")
			}
			r = c.command(1, cdb16(scsi.OpRead16, 100, 300), nil, uint32(len(data)))
			if r.status != 0 || !bytes.Equal(r.data, data) {
				t.Fatalf("READ(16) status %d, %d bytes, equal %v", r.status, len(r.data), bytes.Equal(r.data, data))
			}
			c.logout()
		})
	}
}

func TestResiduals(t *testing.T) {
	_, addr := startTarget(t, Config{})
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	r := c.command(1, cdb16(scsi.OpRead16, 0, 1), nil, 10000)
	if r.status != 0 || len(r.data) != 512 || r.flags&pdu.FlagUnderflow == 0 || r.resid != 10000-512 {
		t.Errorf("underflow: status %d len %d flags %x resid %d", r.status, len(r.data), r.flags, r.resid)
	}
	r = c.command(1, cdb16(scsi.OpRead16, 0, 1), nil, 200)
	if r.status != 0 || len(r.data) != 200 || r.flags&pdu.FlagOverflow == 0 || r.resid != 312 {
		t.Errorf("overflow: status %d len %d flags %x resid %d", r.status, len(r.data), r.flags, r.resid)
	}
}

func TestCHAP(t *testing.T) {
	chap := CHAP{Username: "node1", Secret: "secret-12345", MutualUsername: "target1", MutualSecret: "mutual-secret-1"}
	_, addr := startTarget(t, Config{CHAP: chap})
	if _, err := dial(t, addr, loginOpts{iqn: testIQN, chapUser: "node1", chapSecret: "secret-12345"}); err != nil {
		t.Errorf("right secret: %v", err)
	}
	c, err := dial(t, addr, loginOpts{iqn: testIQN, chapUser: "node1", chapSecret: "secret-12345", mutual: true, mutualSec: "mutual-secret-1"})
	if err != nil {
		t.Errorf("mutual: %v", err)
	} else {
		c.nop(true)
	}
	for _, o := range []loginOpts{
		{iqn: testIQN, chapUser: "node1", chapSecret: "wrong-secret"},
		{iqn: testIQN, chapUser: "other", chapSecret: "secret-12345"},
		{iqn: testIQN}, // no CHAP at all
	} {
		_, err := dial(t, addr, o)
		if !errors.Is(err, errLogin) || !strings.Contains(err.Error(), "0x0201") {
			t.Errorf("login %+v: err = %v, want status 0x0201", o, err)
		}
	}
}

func TestLoginRefusals(t *testing.T) {
	in := faulttest.New(t, fault.Rule{Layer: fault.ISCSI, Op: "login", Action: "refuse-login", Count: 1})
	_, addr := startTarget(t, Config{Faults: in})
	// Layer iscsi "refuse-login": authorization failure, once.
	if _, err := dial(t, addr, loginOpts{iqn: testIQN}); !errors.Is(err, errLogin) || !strings.Contains(err.Error(), "0x0202") {
		t.Errorf("refused login: %v", err)
	}
	if h := in.Hits(); len(h) != 1 || h[0].Who.IQN != testIQN || h[0].Op != "login" {
		t.Errorf("hits %+v", h)
	}
	for _, tc := range []struct {
		o    loginOpts
		want string
	}{
		{loginOpts{iqn: "iqn.2026-11.org.metalbed.test:other"}, "0x0203"},
		{loginOpts{iqn: testIQN, tsih: 0x1234}, "0x020a"},
	} {
		_, err := dial(t, addr, tc.o)
		if !errors.Is(err, errLogin) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("login %+v: err = %v, want %s", tc.o, err, tc.want)
		}
	}
	// Still serving.
	if _, err := dial(t, addr, loginOpts{iqn: testIQN}); err != nil {
		t.Errorf("after refusals: %v", err)
	}
}

// TestNonImmediateNOPAdvancesCmdSN is the gotgt bug that hung libiscsi:
// a NOP-Out that is not immediate takes a CmdSN.
func TestNonImmediateNOPAdvancesCmdSN(t *testing.T) {
	_, addr := startTarget(t, Config{QueueDepth: 4})
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ { // far more than the window
		r := c.nop(false)
		if r.ExpCmdSN() != c.cmdSN {
			t.Fatalf("NOP %d: ExpCmdSN %d, want %d", i, r.ExpCmdSN(), c.cmdSN)
		}
		if before(r.MaxCmdSN(), r.ExpCmdSN()) {
			t.Fatalf("window closed: ExpCmdSN %d MaxCmdSN %d", r.ExpCmdSN(), r.MaxCmdSN())
		}
	}
	r := c.command(1, cdb16(scsi.OpRead16, 0, 1), nil, 512)
	if r.status != 0 {
		t.Fatalf("READ after NOPs: %d", r.status)
	}
}

func TestCmdSNOutsideWindowIgnored(t *testing.T) {
	_, addr := startTarget(t, Config{})
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	var p pdu.PDU
	p.SetOpcode(pdu.OpSCSICommand)
	p.SetFinal(true)
	p.SetITT(0x999)
	p.SetCmdSN(c.cmdSN + 1000)
	c.write(&p) // TEST UNIT READY far beyond MaxCmdSN: ignored
	r := c.nop(true)
	if r.ITT() == 0x999 {
		t.Fatal("out-of-window command answered")
	}
	if res := c.command(1, make([]byte, 6), nil, 0); res.status != 0 {
		t.Fatalf("TEST UNIT READY: %d", res.status)
	}
}

func TestSCSICommandsOverTheWire(t *testing.T) {
	disk := newMemDisk(8 << 20)
	_, addr := startTarget(t, Config{Disk: disk})
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	// Unsupported commands: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
	for _, op := range []byte{0x42 /* UNMAP */, 0x5e /* PR IN */, 0x5f /* PR OUT */, 0x48 /* SANITIZE */, 0x83 /* XCOPY */, 0xff} {
		cdb := make([]byte, 16)
		cdb[0] = op
		r := c.command(1, cdb, nil, 64)
		if k, asc := senseOf(t, r); r.status != scsi.StatusCheckCondition || k != scsi.KeyIllegalRequest || asc != scsi.ASCInvalidOpcode {
			t.Errorf("opcode %#x: status %d sense %x/%04x", op, r.status, k, asc)
		}
	}
	// Out of range.
	r := c.command(1, cdb16(scsi.OpRead16, (8<<20)/512, 1), nil, 512)
	if k, asc := senseOf(t, r); k != scsi.KeyIllegalRequest || asc != scsi.ASCLBAOutOfRange {
		t.Errorf("read beyond end: %x/%04x", k, asc)
	}
	// WRITE SAME(16) really writes.
	block := bytes.Repeat([]byte{0xab}, 512)
	ws := cdb16(scsi.OpWriteSame16, 10, 8)
	if r := c.command(1, ws, block, 0); r.status != 0 {
		t.Fatalf("WRITE SAME: %d %x", r.status, r.sense)
	}
	if !bytes.Equal(disk.bytes(10*512, 8*512), bytes.Repeat(block, 8)) {
		t.Error("WRITE SAME did not write")
	}
	// COMPARE AND WRITE: miscompare leaves the disk, match writes.
	caw := cdb16(scsi.OpCompareAndWrite, 10, 0)
	caw[13] = 1
	wrong := append(bytes.Repeat([]byte{0}, 512), bytes.Repeat([]byte{1}, 512)...)
	r = c.command(1, caw, wrong, 0)
	if k, asc := senseOf(t, r); k != scsi.KeyMiscompare || asc != scsi.ASCMiscompareDuringVerify {
		t.Errorf("CAW miscompare: %x/%04x", k, asc)
	}
	right := append(bytes.Clone(block), bytes.Repeat([]byte{1}, 512)...)
	if r := c.command(1, caw, right, 0); r.status != 0 {
		t.Errorf("CAW: %d %x", r.status, r.sense)
	}
	if !bytes.Equal(disk.bytes(10*512, 512), bytes.Repeat([]byte{1}, 512)) {
		t.Error("CAW did not write")
	}
	// ORWRITE(16) ORs (the command that crashed gotgt).
	if r := c.command(1, cdb16(scsi.OpOrWrite16, 10, 1), bytes.Repeat([]byte{0x80}, 512), 0); r.status != 0 {
		t.Errorf("ORWRITE: %d %x", r.status, r.sense)
	}
	if got := disk.bytes(10*512, 1)[0]; got != 0x81 {
		t.Errorf("ORWRITE result %#x, want 0x81", got)
	}
	// Faulty write.
	c.nop(true)
}

func TestTaskManagement(t *testing.T) {
	_, addr := startTarget(t, Config{})
	c, err := dial(t, addr, loginOpts{iqn: testIQN, keys: []pdu.KV{{Key: "ImmediateData", Value: "No"}}})
	if err != nil {
		t.Fatal(err)
	}
	// A write waiting for its R2T data is aborted: no response for it.
	var p pdu.PDU
	p.SetOpcode(pdu.OpSCSICommand)
	p.SetFinal(true)
	p.SetWriteFlag(true)
	p.SetLUN(1 << 48)
	p.SetITT(0x77)
	p.SetCmdSN(c.cmdSN)
	c.cmdSN++
	copy(p.CDB(), cdb16(scsi.OpWrite16, 0, 8))
	p.SetExpectedDataTransferLength(8 * 512)
	c.write(&p)
	if r := c.read(); r.Opcode() != pdu.OpR2T || r.ITT() != 0x77 {
		t.Fatalf("want R2T, got %v", r.Opcode())
	}
	tmf := func(fn byte, ref uint32) byte {
		var m pdu.PDU
		m.SetOpcode(pdu.OpTaskMgmtReq)
		m.SetImmediate(true)
		m.SetTMFunction(fn)
		m.SetLUN(1 << 48)
		m.SetITT(c.itt)
		c.itt++
		m.SetRefTaskTag(ref)
		m.SetCmdSN(c.cmdSN)
		c.write(&m)
		r := c.read()
		if r.Opcode() != pdu.OpTaskMgmtResp {
			t.Fatalf("TMF answered with %v", r.Opcode())
		}
		return r.Response()
	}
	if resp := tmf(tmfAbortTask, 0x77); resp != tmfComplete {
		t.Errorf("ABORT TASK: response %d", resp)
	}
	if resp := tmf(tmfAbortTask, 0x12345); resp != tmfNoTask {
		t.Errorf("ABORT TASK of unknown task: response %d", resp)
	}
	if resp := tmf(tmfLUNReset, 0); resp != tmfComplete {
		t.Errorf("LUN RESET: response %d", resp)
	}
	if resp := tmf(tmfClearACA, 0); resp != tmfNotSupported {
		t.Errorf("CLEAR ACA: response %d", resp)
	}
	if r := c.command(1, make([]byte, 6), nil, 0); r.status != 0 {
		t.Errorf("TEST UNIT READY after TMF: %d", r.status)
	}
}

func TestSendTargets(t *testing.T) {
	_, addr := startTarget(t, Config{})
	c, err := dial(t, addr, loginOpts{discovery: true})
	if err != nil {
		t.Fatal(err)
	}
	var p pdu.PDU
	p.SetOpcode(pdu.OpTextReq)
	p.SetImmediate(true)
	p.SetFinal(true)
	p.SetITT(5)
	p.SetTTT(reservedTag)
	p.Data = pdu.EncodeText([]pdu.KV{{Key: "SendTargets", Value: "All"}})
	c.write(&p)
	r := c.read()
	kvs, err := pdu.ParseText(r.Data)
	if err != nil || r.Opcode() != pdu.OpTextResp {
		t.Fatalf("%v %v", r.Opcode(), err)
	}
	if v, _ := pdu.Lookup(kvs, "TargetName"); v != testIQN {
		t.Errorf("TargetName %q", v)
	}
	if v, _ := pdu.Lookup(kvs, "TargetAddress"); v != addr+",1" {
		t.Errorf("TargetAddress %q, want %s,1", v, addr)
	}
	// SCSI commands are refused in a discovery session.
	var cmd pdu.PDU
	cmd.SetOpcode(pdu.OpSCSICommand)
	cmd.SetImmediate(true)
	cmd.SetITT(6)
	c.write(&cmd)
	if r := c.read(); r.Opcode() != pdu.OpReject {
		t.Errorf("SCSI command in discovery answered with %v", r.Opcode())
	}
}

func TestCloseDropsSessions(t *testing.T) {
	tg, err := New(Config{IQN: testIQN, Disk: newMemDisk(1 << 20), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tg.Serve(context.Background(), ln) }()
	c, err := dial(t, ln.Addr().String(), loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Sessions() != 1 {
		t.Errorf("Sessions() = %d", tg.Sessions())
	}
	tg.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("session still open after Close: %v", err)
	}
	if tg.Sessions() != 0 {
		t.Errorf("Sessions() after Close = %d", tg.Sessions())
	}
}

func TestServeReturnsNilOnCancel(t *testing.T) {
	tg, err := New(Config{IQN: testIQN, Disk: newMemDisk(1 << 20)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tg.Serve(ctx, ln) }()
	c, err := dial(t, ln.Addr().String(), loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("session survived Serve: %v", err)
	}
}

// TestTwoTargetsNoCrossTalk writes different bytes to two targets at once.
func TestTwoTargetsNoCrossTalk(t *testing.T) {
	da, db := newMemDisk(4<<20), newMemDisk(4<<20)
	_, addrA := startTarget(t, Config{Disk: da, IQN: "iqn.2026-11.org.metalbed.test:a"})
	_, addrB := startTarget(t, Config{Disk: db, IQN: "iqn.2026-11.org.metalbed.test:b"})
	var wg sync.WaitGroup
	for _, x := range []struct {
		addr, iqn string
		fill      byte
	}{{addrA, "iqn.2026-11.org.metalbed.test:a", 0xaa}, {addrB, "iqn.2026-11.org.metalbed.test:b", 0xbb}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial(t, x.addr, loginOpts{iqn: x.iqn})
			if err != nil {
				t.Error(err)
				return
			}
			data := bytes.Repeat([]byte{x.fill}, 64*1024)
			for lba := uint64(0); lba < (4<<20)/512; lba += 128 {
				if r := c.command(1, cdb16(scsi.OpWrite16, lba, 128), data, 0); r.status != 0 {
					t.Errorf("write: %d", r.status)
					return
				}
			}
		}()
	}
	wg.Wait()
	if !bytes.Equal(da.bytes(0, 4<<20), bytes.Repeat([]byte{0xaa}, 4<<20)) {
		t.Error("target A's disk holds foreign bytes")
	}
	if !bytes.Equal(db.bytes(0, 4<<20), bytes.Repeat([]byte{0xbb}, 4<<20)) {
		t.Error("target B's disk holds foreign bytes")
	}
}

// TestSlowPeersDoNotBlockOthers: a connection that stalls mid-header, one
// that sends nothing and one that never reads do not stop a fourth.
func TestSlowPeersDoNotBlockOthers(t *testing.T) {
	_, addr := startTarget(t, Config{LoginTimeout: 300 * time.Millisecond})
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	half, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write(make([]byte, 20))
	// A reader that never reads: queue many big reads.
	greedy, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 16; i++ {
		var p pdu.PDU
		p.SetOpcode(pdu.OpSCSICommand)
		p.SetFinal(true)
		p.SetReadFlag(true)
		p.SetLUN(1 << 48)
		p.SetITT(uint32(100 + i))
		p.SetCmdSN(greedy.cmdSN)
		greedy.cmdSN++
		copy(p.CDB(), cdb16(scsi.OpRead16, 0, 2048))
		p.SetExpectedDataTransferLength(2048 * 512)
		greedy.write(&p)
	}
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.command(1, cdb16(scsi.OpRead16, 0, 8), nil, 4096); r.status != 0 {
		t.Fatalf("read: %d", r.status)
	}
	// The silent connection is closed by the login deadline.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent connection not closed: %v", err)
	}
}

func TestMalformedPDUs(t *testing.T) {
	tg, addr := startTarget(t, Config{LoginTimeout: 500 * time.Millisecond})
	for i, wire := range [][]byte{
		bytes.Repeat([]byte{0xff}, 48),                                             // garbage opcode before login
		append([]byte{0x43, 0x87, 0, 0, 0, 0xff, 0xff, 0xff}, make([]byte, 40)...), // 16 MiB login text
		append([]byte{0x43, 0x87, 0, 0, 0, 0, 0, 12}, append(make([]byte, 40), "no-equals\x00\x00\x00"...)...),
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(wire)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, nc); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("malformed login %d: connection still open", i)
		}
		nc.Close()
	}
	// Garbage in full feature phase.
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	var p pdu.PDU
	p.SetOpcode(0x1f) // no such opcode
	p.SetITT(9)
	c.write(&p)
	if r := c.read(); r.Opcode() != pdu.OpReject {
		t.Errorf("unknown opcode answered with %v", r.Opcode())
	}
	var d pdu.PDU
	d.SetOpcode(pdu.OpDataOut) // Data-Out for no task: dropped
	d.SetITT(0xdead)
	d.Data = []byte("junk")
	c.write(&d)
	c.nop(true)
	if _, err := dial(t, addr, loginOpts{iqn: testIQN}); err != nil {
		t.Fatalf("target stopped serving: %v", err)
	}
	_ = tg
}

// TestFaults carries out the target's fault actions: layer iscsi
// "medium-error" and layer disk "write-error" (op "write") fail a WRITE
// with MEDIUM ERROR and leave the disk untouched; "reset-after" (op
// "connect") resets a connection after Arg bytes; ResponseDelay holds
// responses back.
func TestFaults(t *testing.T) {
	disk := newMemDisk(4 << 20)
	in := faulttest.New(t,
		fault.Rule{Layer: fault.ISCSI, Op: "write", Action: "medium-error", Count: 1},
		fault.Rule{Layer: fault.Disk, Op: "write", Action: "write-error", Count: 1})
	_, addr := startTarget(t, Config{Disk: disk, Faults: in})
	c, err := dial(t, addr, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		r := c.command(1, cdb16(scsi.OpWrite16, 0, 1), bytes.Repeat([]byte{7}, 512), 0)
		if k, asc := senseOf(t, r); k != scsi.KeyMediumError || asc != scsi.ASCWriteError {
			t.Errorf("faulty write %d: %x/%04x", i, k, asc)
		}
		if disk.bytes(0, 1)[0] != 0 {
			t.Errorf("faulty write %d touched the disk", i)
		}
	}
	if hits := in.Hits(); len(hits) != 2 || hits[0].Layer != fault.ISCSI || hits[1].Layer != fault.Disk || hits[1].Who.IQN != testIQN {
		t.Errorf("hits %+v", hits)
	}
	c.command(1, cdb16(scsi.OpWrite16, 0, 1), bytes.Repeat([]byte{7}, 512), 0)
	if disk.bytes(0, 1)[0] != 7 {
		t.Error("write after the faults are spent did not reach the disk")
	}

	_, addrSlow := startTarget(t, Config{ResponseDelay: 200 * time.Millisecond})
	cs, err := dial(t, addrSlow, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cs.command(1, make([]byte, 6), nil, 0)
	if time.Since(start) < 200*time.Millisecond {
		t.Error("response not delayed")
	}

	_, addr2 := startTarget(t, Config{Faults: faulttest.New(t, fault.Rule{Layer: fault.ISCSI, Op: "connect", Action: "reset-after", Arg: "4096"})})
	c2, err := dial(t, addr2, loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatal(err)
	}
	var p pdu.PDU
	p.SetOpcode(pdu.OpSCSICommand)
	p.SetFinal(true)
	p.SetReadFlag(true)
	p.SetLUN(1 << 48)
	p.SetITT(1)
	p.SetCmdSN(c2.cmdSN)
	copy(p.CDB(), cdb16(scsi.OpRead16, 0, 64))
	p.SetExpectedDataTransferLength(64 * 512)
	c2.write(&p)
	c2.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c2.nc)
	if n >= 64*512 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection not reset after the byte budget: read %d, %v (want ECONNRESET)", n, err)
	}
}

// TestCommandFloodIsBounded: immediate commands bypass the CmdSN window;
// writes that never send their data must not pile up without bound.
func TestCommandFloodIsBounded(t *testing.T) {
	_, addr := startTarget(t, Config{QueueDepth: 4})
	c, err := dial(t, addr, loginOpts{iqn: testIQN, keys: []pdu.KV{{Key: "ImmediateData", Value: "No"}}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := 0; i < n; i++ {
		var p pdu.PDU
		p.SetOpcode(pdu.OpSCSICommand)
		p.SetImmediate(true)
		p.SetFinal(true)
		p.SetWriteFlag(true)
		p.SetLUN(1 << 48)
		p.SetITT(uint32(0x1000 + i))
		p.SetCmdSN(c.cmdSN)
		copy(p.CDB(), cdb16(scsi.OpWrite16, 0, 8192))
		p.SetExpectedDataTransferLength(8192 * 512)
		c.write(&p)
	}
	r2ts, full := 0, 0
	for r2ts+full < n {
		r := c.read()
		switch {
		case r.Opcode() == pdu.OpR2T:
			r2ts++
		case r.Opcode() == pdu.OpSCSIResponse && r.Status() == scsi.StatusTaskSetFull:
			full++
		default:
			t.Fatalf("unexpected %v status %#x", r.Opcode(), r.Status())
		}
	}
	if r2ts != 8 || full != n-8 {
		t.Errorf("%d R2Ts and %d TASK SET FULL, want 8 and %d", r2ts, full, n-8)
	}
	c.nop(true)
}

// emfileListener fails its first n Accepts with EMFILE, as accept(2) does
// when the process is out of file descriptors, then accepts for real.
type emfileListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.n > 0
	if fail {
		l.n--
	}
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestServeSurvivesEMFILE: running out of file descriptors makes Accept
// fail for a while; the target backs off and serves again afterwards
// instead of ending Serve (and the ramdisk's export with it).
func TestServeSurvivesEMFILE(t *testing.T) {
	tg, err := New(Config{IQN: testIQN, Disk: newMemDisk(1 << 20), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: inner, n: 5}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tg.Serve(ctx, ln) }()
	c, err := dial(t, inner.Addr().String(), loginOpts{iqn: testIQN})
	if err != nil {
		t.Fatalf("login after EMFILE: %v", err)
	}
	c.nc.Close()
	ln.mu.Lock()
	left := ln.n
	ln.mu.Unlock()
	if left != 0 {
		t.Errorf("%d EMFILE left: the login did not come after them", left)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}
