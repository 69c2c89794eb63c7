package iscsitarget

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
	"github.com/metalbed/metalbed/iscsitarget/internal/scsi"
)

const (
	reservedTag = 0xffffffff
	// writeTimeout bounds one PDU write, so an initiator that stops
	// reading cannot hold a session forever.
	writeTimeout = 30 * time.Second
	// maxCommandData bounds the buffer of one command (Data-In or
	// Data-Out); COMPARE AND WRITE of 255 4 KiB blocks needs 2 MiB.
	maxCommandData = scsi.MaxTransferBytes
	// maxConnBuffered bounds the Data-Out bytes one connection buffers.
	maxConnBuffered = 64 << 20
)

// Reject reasons (RFC 7143 11.17.1).
const (
	rejectDataDigest    = 0x02
	rejectSNACK         = 0x03
	rejectProtocol      = 0x04
	rejectNotSupported  = 0x05
	rejectInvalidField  = 0x09
	rejectLongOperation = 0x0a
	rejectWaitingLogout = 0x0c
)

// task is one SCSI command from arrival to response.
type task struct {
	itt      uint32
	lun      uint64
	cdb      [16]byte
	edtl     uint32
	read     bool
	write    bool
	buf      []byte // Data-Out being gathered
	received uint32
	// unsolicited is true while unsolicited Data-Out may still come.
	unsolicited bool
	// ttt and r2t* describe the outstanding R2T, if any.
	ttt       uint32
	r2tSN     uint32
	r2tOffset uint32
	r2tLength uint32
	expDataSN uint32
	aborted   atomic.Bool
	executing bool
}

// conn is one iSCSI connection, which is also its session
// (MaxConnections=1).
type conn struct {
	t      *Target
	nc     net.Conn
	br     *bufio.Reader
	remote string

	closeOnce sync.Once
	closed    chan struct{}

	// Set during login, read-only afterwards.
	nexus     uint64 // unique per connection (= session) of the Target
	initiator string
	isid      [6]byte
	tsih      uint16
	discovery bool
	p         params
	rxOpts    pdu.Options
	txOpts    pdu.Options

	// wmu serialises writes and guards statSN.
	wmu    sync.Mutex
	statSN uint32

	// smu guards the command window and the tasks.
	smu      sync.Mutex
	expCmdSN uint32
	maxCmdSN uint32
	// buffered is the Data-Out buffer bytes held by tracked tasks.
	buffered int
	pending  map[uint32]*pdu.PDU // in-window commands waiting for a gap to fill
	tasks    map[uint32]*task    // by ITT
	nextTTT  uint32

	sem      chan struct{}
	workers  sync.WaitGroup // command goroutines
	pingerWG sync.WaitGroup

	lastRecv atomic.Int64 // unix nanoseconds
	pingTTT  atomic.Uint32
}

func (t *Target) newConn(nc net.Conn) *conn {
	if n := t.resetAfter(); n > 0 {
		nc = &budgetConn{Conn: nc, left: n}
	}
	c := &conn{
		t:       t,
		nc:      nc,
		br:      bufio.NewReaderSize(nc, 64<<10),
		remote:  nc.RemoteAddr().String(),
		closed:  make(chan struct{}),
		pending: map[uint32]*pdu.PDU{},
		tasks:   map[uint32]*task{},
		sem:     make(chan struct{}, t.cfg.QueueDepth),
	}
	if !t.register(c) {
		return nil
	}
	return c
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.nc.Close()
	})
}

func (c *conn) serve(ctx context.Context) {
	defer c.t.unregister(c)
	// Nothing of this connection outlives serve.
	defer c.pingerWG.Wait()
	defer c.workers.Wait()
	defer c.close()
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	defer func() {
		if r := recover(); r != nil {
			// A bug must cost one connection, not the process.
			c.t.log.Error("iscsi connection panic", "ip", c.remote, "err", fmt.Sprint(r))
		}
	}()
	if err := c.doLogin(); err != nil {
		c.t.log.Debug("iscsi login ended", "ip", c.remote, "err", err)
		return
	}
	c.rxOpts = pdu.Options{HeaderDigest: c.p.headerDigest, DataDigest: c.p.dataDigest, MaxDataSegmentLength: ourMaxRecvDataSegmentLength}
	c.txOpts = pdu.Options{HeaderDigest: c.p.headerDigest, DataDigest: c.p.dataDigest}
	c.lastRecv.Store(time.Now().UnixNano())
	c.pingerWG.Add(1)
	go func() {
		defer c.pingerWG.Done()
		c.pinger()
	}()
	err := c.fullFeature()
	c.close()
	c.workers.Wait()
	c.t.lu.NexusLost(c.nexus)
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		c.t.log.Warn("iscsi connection dropped", "ip", c.remote, "initiator", c.initiator, "err", err)
		c.t.rec.Record(events.Event{Kind: events.ISCSILogout, Detail: fmt.Sprintf("initiator=%s dropped: %v", c.initiator, err),
			Who: events.Who{IQN: c.t.cfg.IQN, IP: remoteIP(c.remote)}})
	} else {
		c.t.log.Info("iscsi connection closed", "ip", c.remote, "initiator", c.initiator)
		c.t.rec.Record(events.Event{Kind: events.ISCSILogout, Detail: "initiator=" + c.initiator,
			Who: events.Who{IQN: c.t.cfg.IQN, IP: remoteIP(c.remote)}})
	}
}

// pinger sends a NOP-In when the connection has been idle for NopInterval.
// The read deadline (NopInterval + NopTimeout after the last PDU) drops a
// peer that answers nothing.
func (c *conn) pinger() {
	tick := time.NewTicker(c.t.cfg.NopInterval / 2)
	defer tick.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-tick.C:
		}
		idle := time.Since(time.Unix(0, c.lastRecv.Load()))
		if idle < c.t.cfg.NopInterval {
			continue
		}
		var p pdu.PDU
		p.SetOpcode(pdu.OpNOPIn)
		p.SetFinal(true)
		p.SetITT(reservedTag)
		c.smu.Lock()
		c.nextTTT++
		if c.nextTTT == reservedTag {
			c.nextTTT = 1
		}
		ttt := c.nextTTT
		c.smu.Unlock()
		c.pingTTT.Store(ttt)
		p.SetTTT(ttt)
		c.t.log.Debug("iscsi nop-in ping", "ip", c.remote, "ttt", ttt)
		if err := c.send(&p, false); err != nil {
			c.close()
			return
		}
	}
}

// send writes p, filling StatSN (advanced when status is true), ExpCmdSN
// and MaxCmdSN.
func (c *conn) send(p *pdu.PDU, status bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.sendLocked(p, status)
}

func (c *conn) sendLocked(p *pdu.PDU, status bool) error {
	p.SetStatSN(c.statSN)
	if status {
		c.statSN++
	}
	c.smu.Lock()
	// The window reopens as commands complete; it never shrinks.
	if m := c.expCmdSN + uint32(c.t.cfg.QueueDepth) - 1 - uint32(min(len(c.tasks), c.t.cfg.QueueDepth)); before(c.maxCmdSN, m) {
		c.maxCmdSN = m
	}
	p.SetExpCmdSN(c.expCmdSN)
	p.SetMaxCmdSN(c.maxCmdSN)
	c.smu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := pdu.Write(c.nc, p, c.txOpts)
	return err
}

func (c *conn) delay() {
	if d := c.t.cfg.ResponseDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-c.closed:
		}
	}
}

// fullFeature reads and dispatches PDUs until the connection ends.
func (c *conn) fullFeature() error {
	idle := c.t.cfg.NopInterval + c.t.cfg.NopTimeout
	var lastDeadline time.Time
	rbuf := make([]byte, ourMaxRecvDataSegmentLength+4)
	for {
		now := time.Now()
		if now.Sub(lastDeadline) > time.Second {
			c.nc.SetReadDeadline(now.Add(idle))
			lastDeadline = now
		}
		p := &pdu.PDU{}
		// Data segments land in one reused buffer: every handler consumes
		// p.Data before the next read, except the pending queue, which
		// copies it.
		err := pdu.ReadInto(c.br, p, c.rxOpts, rbuf)
		c.lastRecv.Store(time.Now().UnixNano())
		if errors.Is(err, pdu.ErrDataDigest) {
			c.t.log.Warn("iscsi data digest error", "ip", c.remote)
			if err := c.reject(p, rejectDataDigest); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		stop, err := c.dispatch(p)
		if err != nil || stop {
			return err
		}
	}
}

// pduHandler handles one PDU of full feature phase; stop ends the
// connection after a logout.
type pduHandler struct {
	handle func(c *conn, p *pdu.PDU) (stop bool, err error)
	// discovery: also allowed in a discovery session.
	discovery bool
}

// pduHandlers is the dispatch table keyed by initiator opcode, built once
// per Target by New and never changed while serving.
func pduHandlers() [64]pduHandler {
	keep := func(f func(*conn, *pdu.PDU) error) func(*conn, *pdu.PDU) (bool, error) {
		return func(c *conn, p *pdu.PDU) (bool, error) { return false, f(c, p) }
	}
	return [64]pduHandler{
		pdu.OpNOPOut:      {keep((*conn).ordered), true},
		pdu.OpSCSICommand: {keep((*conn).ordered), false},
		pdu.OpTaskMgmtReq: {keep((*conn).ordered), false},
		pdu.OpTextReq:     {keep((*conn).ordered), true},
		pdu.OpDataOut:     {keep((*conn).dataOut), false},
		pdu.OpLogoutReq:   {(*conn).logout, true},
		pdu.OpSNACKReq: {func(c *conn, p *pdu.PDU) (bool, error) {
			return false, c.reject(p, rejectSNACK) // ErrorRecoveryLevel 0
		}, false},
	}
}

// dispatch handles one PDU through the Target's table.
func (c *conn) dispatch(p *pdu.PDU) (stop bool, err error) {
	h := c.t.handlers[p.Opcode()]
	if h.handle == nil || (c.discovery && !h.discovery) {
		return false, c.reject(p, rejectProtocol)
	}
	return h.handle(c, p)
}

// before reports whether serial number a < b (RFC 1982).
func before(a, b uint32) bool { return int32(a-b) < 0 }

// ordered applies the CmdSN rules: immediate PDUs run at once; others run
// in CmdSN order within [ExpCmdSN, MaxCmdSN]; others are dropped.
func (c *conn) ordered(p *pdu.PDU) error {
	if p.Immediate() {
		return c.run(p)
	}
	sn := p.CmdSN()
	c.smu.Lock()
	if before(sn, c.expCmdSN) || before(c.maxCmdSN, sn) {
		exp, max := c.expCmdSN, c.maxCmdSN
		c.smu.Unlock()
		c.t.log.Debug("iscsi CmdSN outside window, ignored", "ip", c.remote, "cmdsn", sn, "exp", exp, "max", max)
		return nil
	}
	if sn != c.expCmdSN {
		if len(c.pending) < c.t.cfg.QueueDepth {
			p.Data = bytes.Clone(p.Data)
			c.pending[sn] = p
		}
		c.smu.Unlock()
		return nil
	}
	c.expCmdSN++
	c.smu.Unlock()
	if err := c.run(p); err != nil {
		return err
	}
	for {
		c.smu.Lock()
		next, ok := c.pending[c.expCmdSN]
		if ok {
			delete(c.pending, c.expCmdSN)
			c.expCmdSN++
		}
		c.smu.Unlock()
		if !ok {
			return nil
		}
		if err := c.run(next); err != nil {
			return err
		}
	}
}

func (c *conn) run(p *pdu.PDU) error {
	switch p.Opcode() {
	case pdu.OpNOPOut:
		return c.nopOut(p)
	case pdu.OpSCSICommand:
		return c.command(p)
	case pdu.OpTextReq:
		return c.text(p)
	case pdu.OpTaskMgmtReq:
		return c.taskMgmt(p)
	}
	return nil
}

func (c *conn) reject(p *pdu.PDU, reason byte) error {
	var r pdu.PDU
	r.SetOpcode(pdu.OpReject)
	r.SetFinal(true)
	r.SetRejectReason(reason)
	r.SetITT(reservedTag)
	r.Data = append([]byte(nil), p.BHS[:]...)
	c.t.log.Warn("iscsi PDU rejected", "ip", c.remote, "pdu", p.Opcode().String(), "reason", reason)
	return c.send(&r, true)
}

func (c *conn) nopOut(p *pdu.PDU) error {
	c.t.log.Debug("iscsi nop-out", "ip", c.remote, "immediate", p.Immediate(), "itt", p.ITT(), "ttt", p.TTT())
	if p.ITT() == reservedTag {
		// An answer to our ping, or a ping that wants no answer.
		return nil
	}
	var r pdu.PDU
	r.SetOpcode(pdu.OpNOPIn)
	r.SetFinal(true)
	r.SetLUN(p.LUN())
	r.SetITT(p.ITT())
	r.SetTTT(reservedTag)
	r.Data = p.Data
	c.delay()
	return c.send(&r, true)
}

// lunNumber decodes the 8-byte LUN field (peripheral or flat addressing).
func lunNumber(l uint64) (uint64, bool) {
	hi := l >> 48
	if l&0x0000ffffffffffff != 0 {
		return 0, false
	}
	switch hi >> 14 {
	case 0, 1:
		return hi & 0x3fff, true
	}
	return 0, false
}

func (c *conn) command(p *pdu.PDU) error {
	tk := &task{
		itt:   p.ITT(),
		lun:   p.LUN(),
		edtl:  p.ExpectedDataTransferLength(),
		read:  p.ReadFlag(),
		write: p.WriteFlag(),
	}
	copy(tk.cdb[:], p.CDB())
	if !tk.write {
		c.smu.Lock()
		full := len(c.tasks) >= 2*c.t.cfg.QueueDepth
		c.smu.Unlock()
		if full {
			c.respond(tk, scsi.Result{Status: scsi.StatusTaskSetFull})
			return nil
		}
		c.track(tk)
		tk.executing = true
		c.execute(tk)
		return nil
	}
	if tk.edtl > maxCommandData {
		// Answer now; Data-Out for this ITT is then dropped as unknown.
		c.respond(tk, scsi.Result{Status: scsi.StatusCheckCondition,
			Sense: scsi.Sense{Key: scsi.KeyIllegalRequest, ASC: scsi.ASCInvalidFieldInCDB}.Bytes()})
		return nil
	}
	if uint32(len(p.Data)) > tk.edtl || (len(p.Data) > 0 && !c.p.immediateData) {
		return c.reject(p, rejectProtocol)
	}
	// Bound what one connection may hold: commands (immediate ones bypass
	// the CmdSN window) and buffered Data-Out bytes.
	c.smu.Lock()
	full := len(c.tasks) >= 2*c.t.cfg.QueueDepth || c.buffered+int(tk.edtl) > maxConnBuffered
	if !full {
		c.buffered += int(tk.edtl)
	}
	c.smu.Unlock()
	if full {
		c.respond(tk, scsi.Result{Status: scsi.StatusTaskSetFull})
		return nil
	}
	tk.buf = c.t.pool.get(int(tk.edtl))
	tk.received = uint32(copy(tk.buf, p.Data))
	tk.unsolicited = !c.p.initialR2T && !p.Final() && tk.received < tk.edtl
	c.track(tk)
	return c.advance(tk)
}

// track records tk until its response is sent; a task reusing a live ITT
// replaces (and silences) the old one.
func (c *conn) track(tk *task) {
	c.smu.Lock()
	if old, dup := c.tasks[tk.itt]; dup {
		old.aborted.Store(true)
	}
	c.tasks[tk.itt] = tk
	c.smu.Unlock()
}

// release returns a task's Data-Out buffer.
func (c *conn) release(tk *task) {
	c.smu.Lock()
	c.releaseLocked(tk)
	c.smu.Unlock()
}

func (c *conn) releaseLocked(tk *task) {
	if tk.buf == nil {
		return
	}
	c.buffered -= int(tk.edtl)
	c.t.pool.put(tk.buf)
	tk.buf = nil
}

// advance issues the next R2T of a write, or executes it once all data is
// in. It runs on the reader goroutine.
func (c *conn) advance(tk *task) error {
	if tk.unsolicited || tk.ttt != 0 {
		return nil
	}
	if tk.received >= tk.edtl {
		tk.executing = true
		c.execute(tk)
		return nil
	}
	c.smu.Lock()
	c.nextTTT++
	if c.nextTTT == reservedTag || c.nextTTT == 0 {
		c.nextTTT = 1
	}
	tk.ttt = c.nextTTT
	c.smu.Unlock()
	tk.r2tOffset = tk.received
	tk.r2tLength = min(c.p.maxBurstLength, tk.edtl-tk.received)
	tk.expDataSN = 0
	var r pdu.PDU
	r.SetOpcode(pdu.OpR2T)
	r.SetFinal(true)
	r.SetLUN(tk.lun)
	r.SetITT(tk.itt)
	r.SetTTT(tk.ttt)
	r.SetR2TSN(tk.r2tSN)
	r.SetBufferOffset(tk.r2tOffset)
	r.SetDesiredDataTransferLength(tk.r2tLength)
	tk.r2tSN++
	return c.send(&r, false)
}

func (c *conn) dataOut(p *pdu.PDU) error {
	c.smu.Lock()
	tk := c.tasks[p.ITT()]
	c.smu.Unlock()
	if tk == nil || tk.executing {
		// Data for a task already answered or aborted: drop it.
		return nil
	}
	off, n := p.BufferOffset(), uint32(len(p.Data))
	solicited := p.TTT() != reservedTag
	switch {
	case solicited && p.TTT() != tk.ttt,
		!solicited && !tk.unsolicited,
		p.DataSN() != tk.expDataSN,
		off != tk.received,
		uint64(off)+uint64(n) > uint64(tk.edtl),
		solicited && uint64(off)+uint64(n) > uint64(tk.r2tOffset)+uint64(tk.r2tLength),
		!solicited && uint64(off)+uint64(n) > uint64(c.p.firstBurstLength):
		// A sequence error at ErrorRecoveryLevel 0 ends the connection
		// (RFC 7143 7.1.4); the initiator recovers the session.
		return fmt.Errorf("Data-Out itt=0x%x ttt=0x%x datasn=%d offset=%d len=%d out of sequence", p.ITT(), p.TTT(), p.DataSN(), off, n)
	}
	copy(tk.buf[off:], p.Data)
	tk.received += n
	tk.expDataSN++
	if p.Final() {
		if solicited {
			tk.ttt = 0
		} else {
			tk.unsolicited = false
		}
		tk.expDataSN = 0
		return c.advance(tk)
	}
	return nil
}

// execute runs tk on a worker once a slot is free.
func (c *conn) execute(tk *task) {
	select {
	case c.sem <- struct{}{}:
	case <-c.closed:
		c.release(tk)
		return
	}
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		defer func() { <-c.sem }()
		c.work(tk)
	}()
}

func (c *conn) work(tk *task) {
	defer func() {
		if r := recover(); r != nil {
			c.t.log.Error("iscsi command panic", "ip", c.remote, "cdb", fmt.Sprintf("% x", tk.cdb), "err", fmt.Sprint(r))
			c.close()
		}
	}()
	var dataIn []byte
	if tk.read && tk.edtl > 0 {
		dataIn = c.t.pool.get(int(min(tk.edtl, maxCommandData)))
	}
	cmd := &scsi.Command{CDB: tk.cdb[:], DataIn: dataIn, Nexus: c.nexus}
	if tk.write {
		cmd.DataOut = tk.buf[:tk.received]
	}
	var res scsi.Result
	lun, ok := lunNumber(tk.lun)
	switch {
	case ok && lun == 1:
		res = c.t.lu.Execute(cmd)
	default:
		res = scsi.ExecuteLUN0(cmd, ok && lun == 0)
	}
	c.delay()
	c.t.metrics.command(tk, res)
	c.respond(tk, res)
	c.release(tk)
	if dataIn != nil {
		c.t.pool.put(dataIn)
	}
}

// respond sends the Data-In and status of a finished command.
func (c *conn) respond(tk *task, res scsi.Result) {
	data := res.Data
	if !tk.read {
		data = nil
	}
	if uint32(len(data)) > tk.edtl {
		data = data[:tk.edtl]
	}
	var resid uint32
	var flags byte
	switch {
	case res.Want > tk.edtl:
		flags, resid = pdu.FlagOverflow, res.Want-tk.edtl
	case res.Want < tk.edtl:
		flags, resid = pdu.FlagUnderflow, tk.edtl-res.Want
	}
	if res.Status != scsi.StatusGood && len(res.Sense) > 0 && res.Want == 0 {
		// A failed command moved no data.
		flags, resid = 0, 0
		if tk.edtl > 0 {
			flags, resid = pdu.FlagUnderflow, tk.edtl
		}
	}

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if tk.aborted.Load() {
		return
	}
	c.smu.Lock()
	if c.tasks[tk.itt] == tk {
		delete(c.tasks, tk.itt)
	}
	c.smu.Unlock()
	collapse := res.Status == scsi.StatusGood && len(data) > 0
	seg := int(c.p.maxSendDataSegmentLength)
	burst := int(c.p.maxBurstLength)
	var dataSN uint32
	for off := 0; off < len(data); {
		n := min(seg, len(data)-off, burst-off%burst)
		var d pdu.PDU
		d.SetOpcode(pdu.OpDataIn)
		d.SetLUN(tk.lun)
		d.SetITT(tk.itt)
		d.SetTTT(reservedTag)
		d.SetDataSN(dataSN)
		d.SetBufferOffset(uint32(off))
		d.Data = data[off : off+n]
		off += n
		dataSN++
		last := off == len(data)
		if last || off%burst == 0 {
			d.SetFinal(true)
		}
		var err error
		if last && collapse {
			d.SetFlags(d.Flags() | pdu.FlagStatus | flags)
			d.SetStatus(res.Status)
			d.SetResidualCount(resid)
			err = c.sendLocked(&d, true)
		} else {
			err = c.sendLocked(&d, false)
		}
		if err != nil {
			c.close()
			return
		}
	}
	if collapse {
		return
	}
	var r pdu.PDU
	r.SetOpcode(pdu.OpSCSIResponse)
	r.SetFlags(pdu.FlagFinal | flags)
	r.SetITT(tk.itt)
	r.SetStatus(res.Status)
	r.SetExpDataSN(dataSN)
	r.SetResidualCount(resid)
	if len(res.Sense) > 0 {
		r.Data = make([]byte, 2+len(res.Sense))
		binary.BigEndian.PutUint16(r.Data, uint16(len(res.Sense)))
		copy(r.Data[2:], res.Sense)
	}
	if err := c.sendLocked(&r, true); err != nil {
		c.close()
	}
}

// Task management functions and responses (RFC 7143 11.5, 11.6).
const (
	tmfAbortTask       = 1
	tmfAbortTaskSet    = 2
	tmfClearACA        = 3
	tmfClearTaskSet    = 4
	tmfLUNReset        = 5
	tmfTargetWarmReset = 6
	tmfTargetColdReset = 7
	tmfTaskReassign    = 8
	tmfComplete        = 0
	tmfNoTask          = 1
	tmfNoLUN           = 2
	tmfReassignNotSupp = 4
	tmfNotSupported    = 5
)

func (c *conn) taskMgmt(p *pdu.PDU) error {
	fn := p.TMFunction()
	resp := byte(tmfComplete)
	// Holding wmu orders this against every response: a task is either
	// answered before (and no longer tracked) or silenced here.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	abort := func(tk *task) {
		tk.aborted.Store(true)
		delete(c.tasks, tk.itt)
		if !tk.executing {
			c.releaseLocked(tk)
		}
	}
	abortAll := func() {
		c.smu.Lock()
		for _, tk := range c.tasks {
			abort(tk)
		}
		c.smu.Unlock()
	}
	switch fn {
	case tmfAbortTask:
		c.smu.Lock()
		if tk := c.tasks[p.RefTaskTag()]; tk != nil {
			abort(tk)
		} else {
			resp = tmfNoTask
		}
		c.smu.Unlock()
	case tmfAbortTaskSet, tmfClearTaskSet, tmfLUNReset, tmfTargetWarmReset, tmfTargetColdReset:
		if fn == tmfLUNReset {
			if lun, ok := lunNumber(p.LUN()); !ok || lun > 1 {
				resp = tmfNoLUN
				break
			}
		}
		abortAll()
		if fn == tmfLUNReset || fn == tmfTargetWarmReset || fn == tmfTargetColdReset {
			c.t.lu.Reset()
		}
	case tmfTaskReassign:
		resp = tmfReassignNotSupp
	default:
		resp = tmfNotSupported
	}
	var r pdu.PDU
	r.SetOpcode(pdu.OpTaskMgmtResp)
	r.SetFinal(true)
	r.SetResponse(resp)
	r.SetITT(p.ITT())
	if err := c.sendLocked(&r, true); err != nil {
		return err
	}
	if fn == tmfTargetColdReset && resp == tmfComplete {
		c.close()
	}
	return nil
}

func (c *conn) text(p *pdu.PDU) error {
	var r pdu.PDU
	r.SetOpcode(pdu.OpTextResp)
	r.SetFinal(true)
	r.SetITT(p.ITT())
	r.SetTTT(reservedTag)
	if p.Continue() {
		// Long text requests are not needed for SendTargets.
		return c.reject(p, rejectProtocol)
	}
	kvs, err := pdu.ParseText(p.Data)
	if err != nil {
		return c.reject(p, rejectProtocol)
	}
	var out []pdu.KV
	for _, kv := range kvs {
		if kv.Key != "SendTargets" {
			out = append(out, pdu.KV{Key: kv.Key, Value: pdu.ValueNotUnderstood})
			continue
		}
		if kv.Value == "All" || kv.Value == c.t.cfg.IQN || (kv.Value == "" && !c.discovery) {
			out = append(out,
				pdu.KV{Key: "TargetName", Value: c.t.cfg.IQN},
				pdu.KV{Key: "TargetAddress", Value: portal(c.nc.LocalAddr()) + ",1"})
			continue
		}
		out = append(out, pdu.KV{Key: kv.Key, Value: pdu.ValueReject})
	}
	r.Data = pdu.EncodeText(out)
	if len(r.Data) > int(c.p.maxSendDataSegmentLength) {
		return c.reject(p, rejectProtocol)
	}
	return c.send(&r, true)
}

// portal formats a TargetAddress (IPv6 in brackets).
func portal(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return net.JoinHostPort(ta.IP.String(), fmt.Sprint(ta.Port))
	}
	return a.String()
}

func (c *conn) logout(p *pdu.PDU) (bool, error) {
	if !p.Immediate() {
		c.smu.Lock()
		if p.CmdSN() == c.expCmdSN {
			c.expCmdSN++
		}
		c.smu.Unlock()
	}
	// Let running commands finish and answer first.
	done := make(chan struct{})
	go func() { c.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	var r pdu.PDU
	r.SetOpcode(pdu.OpLogoutResp)
	r.SetFinal(true)
	r.SetITT(p.ITT())
	switch p.LogoutReason() {
	case 0, 1:
		r.SetResponse(0)
	default:
		r.SetResponse(2) // connection recovery is not supported (ERL 0)
	}
	r.SetTime2Wait(ourDefaultTime2Wait)
	err := c.send(&r, true)
	return true, err
}

// budgetConn closes the connection once its byte budget is spent (the
// DropAfterBytes fault).
type budgetConn struct {
	net.Conn
	mu   sync.Mutex
	left int64
}

// reset closes the connection with a TCP RST (SO_LINGER 0), so the peer
// sees "connection reset by peer" whatever it was doing, not a FIN that
// reads as EOF when its receive buffer happens to be empty.
func (b *budgetConn) reset() {
	if tc, ok := b.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	b.Conn.Close()
}

func (b *budgetConn) spend(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left -= int64(n)
	return b.left > 0
}

func (b *budgetConn) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	if !b.spend(n) {
		b.reset()
		if err == nil {
			err = net.ErrClosed
		}
	}
	return n, err
}

func (b *budgetConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	left := b.left
	b.mu.Unlock()
	if left <= 0 {
		b.reset()
		return 0, net.ErrClosed
	}
	if int64(len(p)) > left {
		n, _ := b.Conn.Write(p[:left])
		b.spend(n)
		b.reset()
		return n, net.ErrClosed
	}
	n, err := b.Conn.Write(p)
	b.spend(n)
	return n, err
}

// remoteIP is the address part of a connection's "ip:port", for the
// timeline's keys.
func remoteIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}
