package initiator

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// fake is a scripted in-test iSCSI target over net.Pipe: a small but strict target that
// checks what the initiator sends (CmdSN window, Data-Out sizes and order) and lets a test
// change its behaviour through hooks.
type fake struct {
	t    testing.TB
	conn net.Conn
	disk []byte // 512-byte blocks

	// negotiation answers of the operational stage
	immediateData bool
	initialR2T    bool
	maxBurst      int
	firstBurst    int
	mrdsl         int // what the fake declares it receives
	maxR2T        int

	// loginStatus, when set, refuses (or redirects) the login with that class<<8|detail.
	loginStatus uint16
	redirectTo  string

	// window is MaxCmdSN-ExpCmdSN+1 advertised after each response.
	window int
	// closeWindowAfterResponse closes the window with every SCSI Response and reopens
	// it with a separate unsolicited NOP-In.
	closeWindowAfterResponse bool

	// onCommand, when set, may handle a SCSI command itself (returning true).
	onCommand func(f *fake, cmd *pdu.PDU) bool
	// onNOPOut receives NOP-Outs answering the fake's own pings.
	onNOPOut func(f *fake, p *pdu.PDU)
	// ignorePings leaves the initiator's NOP-Out pings unanswered.
	ignorePings bool
	// digests accepts CRC32C when offered; corrupt, when it returns true, spoils the data
	// digest of a PDU the fake sends.
	digests bool
	corrupt func(p *pdu.PDU) bool
	opts    pdu.Options

	wmu      sync.Mutex
	statSN   uint32
	expCmdSN uint32
	maxCmdSN uint32
	writes   map[uint32]*fakeWrite
	answered map[uint32]bool // ITTs that got their status
	ttt      uint32
	loggedIn chan struct{}
	aborts   chan uint32 // RefTaskTag of each TMF received
	logouts  int
}

type fakeWrite struct {
	lba    uint64
	data   []byte
	got    int
	burst  int // end offset of the burst now being sent
	r2tSN  uint32
	dataSN uint32
}

func newFake(t testing.TB, blocks int) *fake {
	return &fake{
		t: t, disk: make([]byte, blocks*512),
		immediateData: true, initialR2T: false, maxBurst: 262144, firstBurst: 65536,
		mrdsl: 8192, maxR2T: 1, window: 32,
		writes: map[uint32]*fakeWrite{}, answered: map[uint32]bool{}, loggedIn: make(chan struct{}), aborts: make(chan uint32, 4),
	}
}

// dialer returns a Config.Dial that serves each connection with f.
func (f *fake) dialer() func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, s := net.Pipe()
		f.conn = s
		go f.serve()
		return c, nil
	}
}

func (f *fake) errorf(format string, args ...any) {
	f.t.Errorf("fake target: "+format, args...)
}

// send numbers and writes a PDU; status PDUs advance StatSN.
func (f *fake) send(p *pdu.PDU, status bool) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	p.SetStatSN(f.statSN)
	if status {
		f.statSN++
	}
	p.SetExpCmdSN(f.expCmdSN)
	p.SetMaxCmdSN(f.maxCmdSN)
	opts := f.opts
	if p.Opcode() == pdu.OpLoginResp {
		opts = pdu.Options{}
	}
	b, err := pdu.Marshal(p, opts)
	if err != nil {
		return err
	}
	if f.corrupt != nil && f.corrupt(p) {
		b[len(b)-1] ^= 0xff // the data digest
	}
	_, err = f.conn.Write(b)
	return err
}

func (f *fake) openWindow() {
	f.wmu.Lock()
	f.maxCmdSN = f.expCmdSN + uint32(f.window) - 1
	f.wmu.Unlock()
}

func (f *fake) serve() {
	defer f.conn.Close()
	if !f.login() {
		return
	}
	close(f.loggedIn)
	for {
		p, err := pdu.Read(f.conn, pdu.Options{HeaderDigest: f.opts.HeaderDigest, DataDigest: f.opts.DataDigest, MaxDataSegmentLength: uint32(f.mrdsl)})
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				f.errorf("read: %v", err)
			}
			return
		}
		if !p.Immediate() && (p.Opcode() == pdu.OpSCSICommand || p.Opcode() == pdu.OpNOPOut) {
			f.wmu.Lock()
			cmdSN, exp, max := p.CmdSN(), f.expCmdSN, f.maxCmdSN
			if cmdSN != exp || snLT(max, cmdSN) {
				f.errorf("%v CmdSN %d outside the window %d..%d", p.Opcode(), cmdSN, exp, max)
			}
			f.expCmdSN++
			if !f.closeWindowAfterResponse {
				f.maxCmdSN = f.expCmdSN + uint32(f.window) - 1
			}
			f.wmu.Unlock()
		}
		switch p.Opcode() {
		case pdu.OpSCSICommand:
			if f.onCommand != nil && f.onCommand(f, p) {
				continue
			}
			f.scsi(p)
		case pdu.OpDataOut:
			f.dataOut(p)
		case pdu.OpNOPOut:
			if p.ITT() == reservedTag {
				if f.onNOPOut != nil {
					f.onNOPOut(f, p)
				}
				continue
			}
			if f.ignorePings {
				continue
			}
			r := &pdu.PDU{Data: p.Data}
			r.SetOpcode(pdu.OpNOPIn)
			r.SetFinal(true)
			r.SetITT(p.ITT())
			r.SetTTT(reservedTag)
			f.send(r, true)
		case pdu.OpLogoutReq:
			f.logouts++
			r := &pdu.PDU{}
			r.SetOpcode(pdu.OpLogoutResp)
			r.SetFinal(true)
			r.SetITT(p.ITT())
			f.send(r, true)
			return
		case pdu.OpTaskMgmtReq:
			select {
			case f.aborts <- p.RefTaskTag():
			default:
			}
			r := &pdu.PDU{}
			r.SetOpcode(pdu.OpTaskMgmtResp)
			r.SetFinal(true)
			r.SetITT(p.ITT())
			r.SetResponse(0)
			f.send(r, true)
		default:
			f.errorf("unexpected %v", p.Opcode())
		}
	}
}

func (f *fake) login() bool {
	for {
		p, err := pdu.Read(f.conn, pdu.Options{})
		if err != nil {
			f.errorf("login read: %v", err)
			return false
		}
		if p.Opcode() != pdu.OpLoginReq {
			f.errorf("login: got %v", p.Opcode())
			return false
		}
		kvs, err := pdu.ParseText(p.Data)
		if err != nil {
			f.errorf("login text: %v", err)
			return false
		}
		r := &pdu.PDU{}
		r.SetOpcode(pdu.OpLoginResp)
		r.SetCSG(p.CSG())
		r.SetISID(p.ISID())
		r.SetITT(p.ITT())
		f.expCmdSN = p.CmdSN()
		f.maxCmdSN = p.CmdSN() + uint32(f.window) - 1
		if f.loginStatus != 0 {
			r.SetLoginStatus(byte(f.loginStatus>>8), byte(f.loginStatus))
			if f.redirectTo != "" {
				r.Data = pdu.EncodeText([]pdu.KV{{Key: "TargetAddress", Value: f.redirectTo + ",1"}})
			}
			f.send(r, true)
			return false
		}
		var ans []pdu.KV
		if p.CSG() == pdu.StageSecurity {
			ans = append(ans, pdu.KV{Key: "AuthMethod", Value: "None"}, pdu.KV{Key: "TargetPortalGroupTag", Value: "1"})
		} else {
			for _, kv := range kvs {
				v := kv.Value
				switch kv.Key {
				case "HeaderDigest", "DataDigest":
					v = "None"
					if f.digests && v != kv.Value {
						v = "CRC32C"
					}
				case "MaxRecvDataSegmentLength":
					v = strconv.Itoa(f.mrdsl)
				case "ImmediateData":
					v = pdu.FormatBool(f.immediateData)
				case "InitialR2T":
					v = pdu.FormatBool(f.initialR2T)
				case "MaxBurstLength":
					v = strconv.Itoa(f.maxBurst)
				case "FirstBurstLength":
					v = strconv.Itoa(f.firstBurst)
				case "MaxOutstandingR2T":
					v = strconv.Itoa(f.maxR2T)
				}
				ans = append(ans, pdu.KV{Key: kv.Key, Value: v})
			}
		}
		r.Data = pdu.EncodeText(ans)
		if p.Transit() {
			r.SetTransit(true)
			r.SetNSG(p.NSG())
			if p.NSG() == pdu.StageFullFeature {
				r.SetTSIH(1)
			}
		}
		f.send(r, true)
		if p.Transit() && p.NSG() == pdu.StageFullFeature {
			if f.digests {
				f.opts = pdu.Options{HeaderDigest: true, DataDigest: true}
			}
			return true
		}
	}
}

// respond sends a SCSI Response with status and optional sense data.
func (f *fake) respond(cmd *pdu.PDU, status byte, sense []byte) {
	f.respondResidual(cmd, status, sense, 0)
}

func (f *fake) respondResidual(cmd *pdu.PDU, status byte, sense []byte, underflow int) {
	f.answered[cmd.ITT()] = true
	r := &pdu.PDU{}
	r.SetOpcode(pdu.OpSCSIResponse)
	r.SetFinal(true)
	if underflow > 0 {
		r.SetFlags(r.Flags() | pdu.FlagUnderflow)
		r.SetResidualCount(uint32(underflow))
	}
	r.SetITT(cmd.ITT())
	r.SetStatus(status)
	if sense != nil {
		r.Data = binary.BigEndian.AppendUint16(nil, uint16(len(sense)))
		r.Data = append(r.Data, sense...)
	}
	if f.closeWindowAfterResponse {
		f.wmu.Lock()
		f.maxCmdSN = f.expCmdSN - 1
		f.wmu.Unlock()
	}
	f.send(r, true)
	if f.closeWindowAfterResponse {
		f.openWindow()
		n := &pdu.PDU{}
		n.SetOpcode(pdu.OpNOPIn)
		n.SetFinal(true)
		n.SetITT(reservedTag)
		n.SetTTT(reservedTag)
		f.send(n, false)
	}
}

// dataIn sends data as Data-In PDUs of at most 256 KiB and then a GOOD status.
func (f *fake) dataIn(cmd *pdu.PDU, data []byte) {
	edtl := int(cmd.ExpectedDataTransferLength())
	data = data[:min(len(data), edtl)]
	for sn, off := uint32(0), 0; off < len(data); sn, off = sn+1, off+ourMaxRecvDataSegmentLength {
		n := min(ourMaxRecvDataSegmentLength, len(data)-off)
		d := &pdu.PDU{Data: data[off : off+n]}
		d.SetOpcode(pdu.OpDataIn)
		d.SetITT(cmd.ITT())
		d.SetTTT(reservedTag)
		d.SetDataSN(sn)
		d.SetBufferOffset(uint32(off))
		f.send(d, false)
	}
	f.respondResidual(cmd, statusGood, nil, edtl-len(data))
}

func (f *fake) scsi(cmd *pdu.PDU) {
	cdb := cmd.CDB()
	blocks := uint64(len(f.disk) / 512)
	switch cdb[0] {
	case opInquiry:
		inq := make([]byte, 36)
		inq[2], inq[3], inq[4] = 5, 2, 31
		copy(inq[8:], "METALBED")
		copy(inq[16:], "FAKE            ")
		if cmd.LUN() != encodeLUN(1) {
			inq[0] = 0x7f
		}
		f.dataIn(cmd, inq)
	case opTestUnitReady, opSyncCache10, opSyncCache16:
		f.respond(cmd, statusGood, nil)
	case opServiceAction16:
		b := make([]byte, 32)
		binary.BigEndian.PutUint64(b, blocks-1)
		binary.BigEndian.PutUint32(b[8:], 512)
		f.dataIn(cmd, b)
	case opRead10, opRead16:
		lba, n := rwRange(cdb)
		if lba+n > blocks {
			f.respond(cmd, statusCheckCondition, fixedSense(SenseIllegalRequest, 0x21, 0))
			return
		}
		f.dataIn(cmd, f.disk[lba*512:(lba+n)*512])
	case opWrite10, opWrite16:
		lba, n := rwRange(cdb)
		w := &fakeWrite{lba: lba, data: make([]byte, n*512)}
		if int(cmd.ExpectedDataTransferLength()) != len(w.data) {
			f.errorf("WRITE EDTL %d for %d blocks", cmd.ExpectedDataTransferLength(), n)
		}
		if len(cmd.Data) > 0 {
			if !f.immediateData {
				f.errorf("immediate data though ImmediateData=No")
			}
			if len(cmd.Data) > f.mrdsl || len(cmd.Data) > f.firstBurst {
				f.errorf("immediate data of %d bytes (MRDSL %d, FirstBurst %d)", len(cmd.Data), f.mrdsl, f.firstBurst)
			}
			copy(w.data, cmd.Data)
			w.got = len(cmd.Data)
		}
		f.writes[cmd.ITT()] = w
		w.burst = w.got
		if !cmd.Final() {
			if f.initialR2T {
				f.errorf("unsolicited Data-Out announced though InitialR2T=Yes")
			}
			w.burst = min(len(w.data), f.firstBurst)
			return // unsolicited Data-Out follows
		}
		f.nextBurst(cmd.ITT(), w)
	default:
		f.respond(cmd, statusCheckCondition, fixedSense(SenseIllegalRequest, 0x20, 0))
	}
}

func rwRange(cdb []byte) (lba, blocks uint64) {
	if cdb[0] == opRead10 || cdb[0] == opWrite10 {
		return uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	}
	return binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
}

// nextBurst asks for the next burst of a write with an R2T, or completes it.
func (f *fake) nextBurst(itt uint32, w *fakeWrite) {
	if w.got == len(w.data) {
		delete(f.writes, itt)
		copy(f.disk[w.lba*512:], w.data)
		f.respond(&pdu.PDU{BHS: itt2bhs(itt)}, statusGood, nil)
		return
	}
	n := min(f.maxBurst, len(w.data)-w.got)
	f.ttt++
	r := &pdu.PDU{}
	r.SetOpcode(pdu.OpR2T)
	r.SetFinal(true)
	r.SetITT(itt)
	r.SetTTT(f.ttt)
	r.SetR2TSN(w.r2tSN)
	r.SetBufferOffset(uint32(w.got))
	r.SetDesiredDataTransferLength(uint32(n))
	w.r2tSN++
	w.burst = w.got + n
	w.dataSN = 0
	f.send(r, false)
}

func itt2bhs(itt uint32) pdu.BHS {
	var h pdu.BHS
	h.SetITT(itt)
	return h
}

func (f *fake) dataOut(p *pdu.PDU) {
	w := f.writes[p.ITT()]
	if w == nil {
		if !f.answered[p.ITT()] { // a target discards unsolicited data of a command it ended
			f.errorf("Data-Out for unknown ITT 0x%x", p.ITT())
		}
		return
	}
	switch {
	case len(p.Data) > f.mrdsl:
		f.errorf("Data-Out of %d bytes > MaxRecvDataSegmentLength %d", len(p.Data), f.mrdsl)
	case int(p.BufferOffset()) != w.got:
		f.errorf("Data-Out offset %d, want %d", p.BufferOffset(), w.got)
	case p.DataSN() != w.dataSN:
		f.errorf("Data-Out DataSN %d, want %d", p.DataSN(), w.dataSN)
	case w.got+len(p.Data) > w.burst:
		f.errorf("Data-Out beyond the burst: %d+%d > %d", w.got, len(p.Data), w.burst)
	case p.Final() != (w.got+len(p.Data) == w.burst):
		f.errorf("Data-Out F=%v at %d+%d of burst ending %d", p.Final(), w.got, len(p.Data), w.burst)
	}
	copy(w.data[min(int(p.BufferOffset()), len(w.data)):], p.Data)
	w.got += len(p.Data)
	w.dataSN++
	if p.Final() {
		f.nextBurst(p.ITT(), w)
	}
}

func fixedSense(key SenseKey, asc, ascq byte) []byte {
	b := make([]byte, 18)
	b[0] = 0x70
	b[2] = byte(key)
	b[7] = 10
	b[12], b[13] = asc, ascq
	return b
}

func dialFake(t *testing.T, f *fake, cfg Config) *Session {
	t.Helper()
	cfg.Addr = "fake:3260"
	cfg.TargetIQN = "iqn.2024-01.io.metalbed:fake"
	if cfg.DialContext == nil {
		cfg.DialContext = f.dialer()
	}
	s, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
