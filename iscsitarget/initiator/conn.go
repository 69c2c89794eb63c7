package initiator

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// Task management functions and async events (RFC 7143 11.5.1, 11.9.1).
const (
	tmfAbortTask          = 1
	asyncSCSIEvent        = 0
	asyncLogoutRequest    = 1
	asyncDropConnection   = 2
	asyncDropAllConns     = 3
	asyncRenegotiate      = 4
	logoutCloseSession    = 0
	taskAttrSimple        = 1
	maxUnitAttentionRetry = 3
	maxBusyRetry          = 8
	// dataOutBatch is how many bytes of Data-Out PDUs go out in one write call.
	dataOutBatch = 1 << 20
)

var errTargetLogout = errors.New("iscsi: the target asked for a logout; session ended")

// task is one command in flight: a SCSI command, a NOP-Out ping, a logout or a TMF.
type task struct {
	itt   uint32
	cmdSN uint32
	name  string
	read  []byte   // Data-In destination
	r2t   chan r2t // R2Ts for a write; nil otherwise
	done  chan struct{}

	mu        sync.Mutex // guards the fields below against detach while Data-In is copied
	detached  bool
	got       int
	expDataSN uint32

	resp *pdu.PDU // final response, set before done is closed
	err  error
}

type r2t struct {
	ttt, offset, length, sn uint32
}

func newTask(name string) *task { return &task{name: name, done: make(chan struct{})} }

func newSession(cfg Config, conn net.Conn) *Session {
	return &Session{
		cfg:      cfg,
		log:      cfg.Logger,
		conn:     conn,
		lun:      encodeLUN(cfg.LUN),
		tasks:    make(map[uint32]*task),
		window:   make(chan struct{}),
		slots:    make(chan struct{}, cfg.MaxOutstanding),
		ctrl:     make(chan *pdu.PDU, 16),
		asyncEvt: make(chan *pdu.PDU, 4),
		done:     make(chan struct{}),
		stop:     make(chan struct{}),
		nextITT:  1,
	}
}

// start runs the reader (one per connection, demultiplexing by ITT) and the control
// goroutine (NOP replies, keepalive pings, asynchronous messages).
func (s *Session) start() {
	s.lastRecv.Store(time.Now().UnixNano())
	s.wg.Add(2)
	go s.reader()
	go s.control()
}

// serial number arithmetic (RFC 1982, 32 bits)
func snLT(a, b uint32) bool  { return a != b && int32(b-a) > 0 }
func snLTE(a, b uint32) bool { return a == b || int32(b-a) > 0 }

// fail ends the session with err: the connection is closed and every task fails.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	if s.closing != nil && !errors.Is(err, s.closing) {
		// The session is ending on purpose; what broke on the way is detail.
		err = fmt.Errorf("%w (%v)", s.closing, err)
	}
	s.err = err
	tasks := s.tasks
	s.tasks = make(map[uint32]*task)
	close(s.window)
	s.mu.Unlock()
	s.conn.Close()
	for _, t := range tasks {
		t.mu.Lock()
		t.detached = true
		t.mu.Unlock()
		t.err = fmt.Errorf("%s: %w", t.name, err)
		close(t.done)
	}
}

// sessionErr is the reason the session takes no more commands, or nil.
func (s *Session) sessionErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// finish completes t with a response or an error, unless someone else already did.
func (s *Session) finish(t *task, resp *pdu.PDU, err error) {
	s.mu.Lock()
	if s.tasks[t.itt] != t {
		s.mu.Unlock()
		return
	}
	delete(s.tasks, t.itt)
	s.mu.Unlock()
	t.mu.Lock()
	t.detached = true
	t.mu.Unlock()
	t.resp, t.err = resp, err
	close(t.done)
}

// detach takes t away from the reader; it reports false when t completed meanwhile.
func (s *Session) detach(t *task) bool {
	s.mu.Lock()
	owned := s.tasks[t.itt] == t
	if owned {
		delete(s.tasks, t.itt)
	}
	s.mu.Unlock()
	if !owned {
		return false
	}
	t.mu.Lock()
	t.detached = true
	t.mu.Unlock()
	return true
}

func (s *Session) lookup(itt uint32) *task {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tasks[itt]
}

// sendCommand numbers req (ITT, CmdSN, ExpStatSN), registers t and writes req. A
// non-immediate command waits for the target's CmdSN window to open.
func (s *Session) sendCommand(ctx context.Context, t *task, req *pdu.PDU, immediate, duringLogout bool) error {
	if immediate {
		req.SetImmediate(true)
	}
	for {
		s.wmu.Lock()
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			s.wmu.Unlock()
			return err
		}
		if s.draining && !duringLogout {
			s.mu.Unlock()
			s.wmu.Unlock()
			return errTargetLogout
		}
		if immediate || snLTE(s.cmdSN, s.maxCmdSN) {
			for {
				t.itt = s.nextITT
				s.nextITT++
				if t.itt != reservedTag && s.tasks[t.itt] == nil {
					break
				}
			}
			s.tasks[t.itt] = t
			t.cmdSN = s.cmdSN
			req.SetITT(t.itt)
			req.SetCmdSN(s.cmdSN)
			if !immediate {
				s.cmdSN++
			}
			req.SetExpStatSN(s.expStatSN)
			s.mu.Unlock()
			err := s.writeLocked(req)
			s.wmu.Unlock()
			if err != nil {
				s.fail(fmt.Errorf("send %v: %w", req.Opcode(), err))
				return s.sessionErr()
			}
			return nil
		}
		window, next := s.window, s.cmdSN
		s.mu.Unlock()
		s.wmu.Unlock()
		s.windowWaits.Add(1)
		s.log.Debug("iscsi CmdSN window closed", "cmdsn", next)
		select {
		case <-window:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writePDU writes an unnumbered PDU (Data-Out, NOP-Out reply) with the current ExpStatSN,
// and, when withCmdSN, the current CmdSN (not advanced).
func (s *Session) writePDU(p *pdu.PDU, withCmdSN bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	p.SetExpStatSN(s.expStatSN)
	if withCmdSN {
		p.SetCmdSN(s.cmdSN)
	}
	s.mu.Unlock()
	if err := s.writeLocked(p); err != nil {
		s.fail(fmt.Errorf("send %v: %w", p.Opcode(), err))
		return s.sessionErr()
	}
	return nil
}

func (s *Session) writeLocked(p *pdu.PDU) error {
	s.renewWriteDeadline()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("iscsi send", "pdu", p.String(), "cmdsn", p.CmdSN())
	}
	_, err := pdu.Write(s.conn, p, s.send)
	return err
}

// renewWriteDeadline keeps a write deadline Timeout ahead, touching the connection's
// timer only when it has drifted by an eighth of Timeout. Called with wmu held.
func (s *Session) renewWriteDeadline() {
	d := time.Now().Add(s.cfg.Timeout)
	if d.Sub(s.wdeadline) > s.cfg.Timeout/8 {
		s.conn.SetWriteDeadline(d)
		s.wdeadline = d
	}
}

// writeBatch writes a Data-Out sequence (or part of one) in one call.
func (s *Session) writeBatch(ps []pdu.PDU) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	exp := s.expStatSN
	s.mu.Unlock()
	bufs := make(net.Buffers, 0, 3*len(ps))
	for i := range ps {
		ps[i].SetExpStatSN(exp)
		var err error
		if bufs, err = pdu.AppendBuffers(bufs, &ps[i], s.send); err != nil {
			return err
		}
	}
	s.renewWriteDeadline()
	if _, err := bufs.WriteTo(s.conn); err != nil {
		s.fail(fmt.Errorf("send Data-Out: %w", err))
		return s.sessionErr()
	}
	return nil
}

func (s *Session) reader() {
	defer s.wg.Done()
	defer close(s.done)
	br := bufio.NewReaderSize(s.conn, 64<<10)
	buf := make([]byte, ourMaxRecvDataSegmentLength+4)
	for {
		var p pdu.PDU
		err := pdu.ReadInto(br, &p, s.recv, buf)
		if errors.Is(err, pdu.ErrDataDigest) && p.Opcode() == pdu.OpDataIn {
			// The PDU was consumed whole, so the connection goes on; only its command fails.
			s.updateSN(&p)
			if t := s.lookup(p.ITT()); t != nil {
				s.log.Warn("iscsi Data-In data digest error", "task", t.name)
				s.finish(t, nil, fmt.Errorf("%s: Data-In at offset %d: %w", t.name, p.BufferOffset(), err))
			}
			continue
		}
		if err == nil {
			s.lastRecv.Store(time.Now().UnixNano())
			err = s.handle(&p)
		} else {
			err = fmt.Errorf("read from target: %w", err)
		}
		if err != nil {
			s.mu.Lock()
			if s.closing != nil {
				err = s.closing // the target closed the connection after our logout
			}
			s.mu.Unlock()
			s.fail(err)
			return
		}
	}
}

// owned copies the parts of a PDU read into the reader's buffer that outlive it.
func owned(p *pdu.PDU) *pdu.PDU {
	return &pdu.PDU{BHS: p.BHS, Data: bytes.Clone(p.Data)}
}

// handle dispatches one PDU from the target; an error ends the session.
func (s *Session) handle(p *pdu.PDU) error {
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("iscsi recv", "pdu", p.String(), "statsn", p.StatSN(), "expcmdsn", p.ExpCmdSN(), "maxcmdsn", p.MaxCmdSN())
	}
	op := p.Opcode()
	s.updateSN(p)
	switch op {
	case pdu.OpDataIn:
		return s.dataIn(p)
	case pdu.OpSCSIResponse, pdu.OpLogoutResp, pdu.OpTextResp, pdu.OpTaskMgmtResp:
		if t := s.lookup(p.ITT()); t != nil {
			s.finish(t, owned(p), nil)
		} else {
			s.log.Debug("iscsi response for an unknown task", "pdu", p.String())
		}
	case pdu.OpR2T:
		return s.r2t(p)
	case pdu.OpNOPIn:
		if p.ITT() != reservedTag {
			if t := s.lookup(p.ITT()); t != nil {
				s.finish(t, owned(p), nil)
			}
			return nil
		}
		if p.TTT() == reservedTag {
			return nil // unsolicited NOP-In that wants no answer
		}
		reply := &pdu.PDU{Data: bytes.Clone(p.Data)}
		reply.SetOpcode(pdu.OpNOPOut)
		reply.SetImmediate(true)
		reply.SetFinal(true)
		reply.SetLUN(p.LUN())
		reply.SetITT(reservedTag)
		reply.SetTTT(p.TTT())
		select {
		case s.ctrl <- reply:
		default:
			s.log.Warn("iscsi target sends NOP-In pings faster than we answer; dropping one")
		}
	case pdu.OpAsync:
		select {
		case s.asyncEvt <- owned(p):
		default:
			s.log.Warn("iscsi asynchronous message dropped: too many queued", "event", p.AsyncEvent())
		}
	case pdu.OpReject:
		return s.reject(p)
	default:
		return fmt.Errorf("target sent %v, which an initiator does not accept", op)
	}
	return nil
}

// updateSN takes ExpCmdSN, MaxCmdSN and StatSN from a target PDU (RFC 7143 4.2.2.1).
func (s *Session) updateSN(p *pdu.PDU) {
	op := p.Opcode()
	status := false
	switch op {
	case pdu.OpSCSIResponse, pdu.OpLogoutResp, pdu.OpTextResp, pdu.OpTaskMgmtResp, pdu.OpReject, pdu.OpAsync:
		status = true
	case pdu.OpDataIn:
		status = p.StatusFlag()
	case pdu.OpNOPIn:
		status = p.ITT() != reservedTag
	}
	exp, max := p.ExpCmdSN(), p.MaxCmdSN()
	s.mu.Lock()
	defer s.mu.Unlock()
	if status && snLTE(s.expStatSN, p.StatSN()) {
		s.expStatSN = p.StatSN() + 1
	}
	if int32(max-exp) < -1 {
		return // MaxCmdSN < ExpCmdSN-1: invalid, ignored as RFC 7143 4.2.2.1 says
	}
	changed := false
	if snLT(s.expCmdSN, exp) {
		s.expCmdSN = exp
		changed = true
	}
	if snLT(s.maxCmdSN, max) {
		s.maxCmdSN = max
		changed = true
	}
	if changed && s.err == nil {
		close(s.window)
		s.window = make(chan struct{})
	}
}

func (s *Session) dataIn(p *pdu.PDU) error {
	t := s.lookup(p.ITT())
	if t == nil {
		s.log.Debug("iscsi Data-In for an unknown task", "pdu", p.String())
		return nil
	}
	var terr error
	t.mu.Lock()
	if !t.detached {
		off, n := int64(p.BufferOffset()), int64(len(p.Data))
		switch {
		case t.read == nil:
			terr = fmt.Errorf("%s: target sent Data-In for a command that reads nothing", t.name)
		case p.DataSN() != t.expDataSN:
			terr = fmt.Errorf("%s: Data-In DataSN %d, want %d", t.name, p.DataSN(), t.expDataSN)
		case off+n > int64(len(t.read)):
			terr = fmt.Errorf("%s: Data-In for bytes %d..%d beyond the %d expected", t.name, off, off+n, len(t.read))
		default:
			copy(t.read[off:], p.Data)
			t.got += int(n)
			t.expDataSN++
		}
	}
	t.mu.Unlock()
	switch {
	case terr != nil:
		s.log.Warn("iscsi target misbehaved", "err", terr)
		s.finish(t, nil, terr)
	case p.StatusFlag():
		s.finish(t, owned(p), nil)
	}
	return nil
}

func (s *Session) r2t(p *pdu.PDU) error {
	t := s.lookup(p.ITT())
	if t == nil {
		s.log.Debug("iscsi R2T for an unknown task", "pdu", p.String())
		return nil
	}
	if t.r2t == nil {
		s.finish(t, nil, fmt.Errorf("%s: target sent R2T for a command that writes nothing", t.name))
		return nil
	}
	select {
	case t.r2t <- r2t{ttt: p.TTT(), offset: p.BufferOffset(), length: p.DesiredDataTransferLength(), sn: p.R2TSN()}:
	default:
		s.finish(t, nil, fmt.Errorf("%s: target sent more R2Ts than MaxOutstandingR2T=%d", t.name, s.params.maxOutstandingR2T))
	}
	return nil
}

var rejectReasons = map[byte]string{
	0x02: "data digest error", 0x03: "SNACK reject", 0x04: "protocol error",
	0x05: "command not supported", 0x06: "immediate command reject", 0x07: "task in progress",
	0x08: "invalid data ack", 0x09: "invalid PDU field", 0x0a: "long operation reject",
	0x0b: "deprecated", 0x0c: "waiting for logout",
}

func (s *Session) reject(p *pdu.PDU) error {
	why := rejectReasons[p.RejectReason()]
	if why == "" {
		why = "unknown reason"
	}
	if len(p.Data) < pdu.BHSLen {
		return fmt.Errorf("target sent a Reject (%s, 0x%02x) without the rejected header", why, p.RejectReason())
	}
	var h pdu.BHS
	copy(h[:], p.Data)
	s.log.Warn("iscsi target rejected a PDU", "reason", why, "pdu", h.Opcode().String(), "itt", h.ITT())
	if t := s.lookup(h.ITT()); t != nil {
		s.finish(t, nil, fmt.Errorf("%s: target rejected our %v: %s (reason 0x%02x)", t.name, h.Opcode(), why, p.RejectReason()))
	}
	return nil
}

// control answers the target's NOP-In pings, pings an idle target and handles
// asynchronous messages, until the session ends or Close begins.
func (s *Session) control() {
	defer s.wg.Done()
	var tick <-chan time.Time
	if s.cfg.KeepAlive > 0 {
		period := max(min(s.cfg.KeepAlive, s.cfg.Timeout)/4, 10*time.Millisecond)
		tk := time.NewTicker(period)
		defer tk.Stop()
		tick = tk.C
	}
	var ping *task
	var pingSent time.Time
	for {
		select {
		case <-s.done:
			return
		case <-s.stop:
			return
		case p := <-s.ctrl:
			if err := s.writePDU(p, true); err != nil {
				return
			}
			s.nopReplies.Add(1)
		case a := <-s.asyncEvt:
			s.async(a)
		case now := <-tick:
			if ping != nil {
				select {
				case <-ping.done:
					if ping.err != nil {
						return
					}
					ping = nil
				default:
					if now.Sub(pingSent) > s.cfg.Timeout {
						s.fail(fmt.Errorf("target did not answer a NOP-Out ping within %v", s.cfg.Timeout))
						return
					}
				}
				continue
			}
			if now.Sub(time.Unix(0, s.lastRecv.Load())) < s.cfg.KeepAlive {
				continue
			}
			t := newTask("NOP-Out ping")
			req := &pdu.PDU{}
			req.SetOpcode(pdu.OpNOPOut)
			req.SetFinal(true)
			req.SetTTT(reservedTag)
			if err := s.sendCommand(context.Background(), t, req, true, true); err != nil {
				return
			}
			ping, pingSent = t, now
			s.pings.Add(1)
			s.log.Debug("iscsi keepalive ping", "itt", t.itt)
		}
	}
}

// async handles an Asynchronous Message.
func (s *Session) async(p *pdu.PDU) {
	ev := p.AsyncEvent()
	switch ev {
	case asyncLogoutRequest:
		wait := time.Duration(p.AsyncParameter(2)) * time.Second
		s.log.Info("iscsi target requests logout", "within", wait)
		s.mu.Lock()
		if s.err != nil || s.draining {
			s.mu.Unlock()
			return
		}
		s.draining = true
		s.closing = errTargetLogout
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.drainAndLogout(wait)
		}()
	case asyncDropConnection, asyncDropAllConns:
		s.fail(fmt.Errorf("target announced it drops the connection (async event %d, retry after %ds)", ev, p.AsyncParameter(1)))
	case asyncRenegotiate:
		s.log.Warn("iscsi target asks to renegotiate parameters; keeping the current ones")
	case asyncSCSIEvent:
		se := senseFromResponse("asynchronous event", statusCheckCondition, p.Data)
		s.log.Warn("iscsi target reported a SCSI event", "err", se)
	default:
		s.log.Debug("iscsi asynchronous message ignored", "event", ev)
	}
}

// drainAndLogout lets the commands in flight finish (at most wait, or Timeout when the
// target gave none) and then logs out, as a target's logout request asks.
func (s *Session) drainAndLogout(wait time.Duration) {
	if wait <= 0 || wait > s.cfg.Timeout {
		wait = s.cfg.Timeout
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for busy := true; busy; {
		s.mu.Lock()
		busy = false
		for _, t := range s.tasks {
			if t.name != "NOP-Out ping" {
				busy = true
			}
		}
		done := s.err != nil
		s.mu.Unlock()
		if done {
			return
		}
		if !busy {
			break
		}
		select {
		case <-poll.C:
		case <-deadline.C:
			busy = false
		case <-s.done:
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := s.logout(ctx); err != nil {
		s.log.Warn("iscsi logout the target asked for", "err", err)
	}
	s.fail(errTargetLogout)
}

// logout sends a Logout Request closing the session and waits for the response.
func (s *Session) logout(ctx context.Context) error {
	t := newTask("Logout")
	req := &pdu.PDU{}
	req.SetOpcode(pdu.OpLogoutReq)
	req.SetLogoutReason(logoutCloseSession)
	req.SetCID(0)
	if err := s.sendCommand(ctx, t, req, true, true); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		s.detach(t)
		return fmt.Errorf("logout: %w", ctx.Err())
	}
	if t.err != nil {
		return fmt.Errorf("logout: %w", t.err)
	}
	if r := t.resp.Response(); r != 0 {
		return fmt.Errorf("logout: target answered response code %d", r)
	}
	return nil
}

// Close logs out (when the session is still up) and closes the connection. It waits for
// the session's goroutines to end; calls after the first return the first one's result.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.mu.Lock()
		alive := s.err == nil && !s.draining
		if s.closing == nil {
			s.closing = ErrClosed
		}
		s.mu.Unlock()
		if alive {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
			s.closeErr = s.logout(ctx)
			cancel()
			if s.closeErr == nil {
				s.log.Info("iscsi logout", "target", s.cfg.TargetIQN)
			}
		}
		s.fail(ErrClosed)
		s.wg.Wait()
	})
	return s.closeErr
}

// abort gives up on t after its caller stopped waiting: the reader forgets it and, when it
// reached the target, an ABORT TASK tells the target to forget it too. It reports false when
// t completed meanwhile (its result then stands).
func (s *Session) abort(t *task) bool {
	if !s.detach(t) {
		<-t.done
		return false
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return true
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		tm := newTask("ABORT TASK")
		req := &pdu.PDU{}
		req.SetOpcode(pdu.OpTaskMgmtReq)
		req.SetTMFunction(tmfAbortTask)
		req.SetLUN(s.lun)
		req.SetRefTaskTag(t.itt)
		req.SetRefCmdSN(t.cmdSN)
		if err := s.sendCommand(ctx, tm, req, true, true); err != nil {
			return
		}
		select {
		case <-tm.done:
			if tm.err == nil {
				s.log.Info("iscsi task aborted", "task", t.name, "itt", t.itt, "response", tm.resp.Response())
			}
		case <-ctx.Done():
			s.detach(tm)
			s.fail(fmt.Errorf("ABORT TASK for %s got no answer within %v", t.name, s.cfg.Timeout))
		}
	}()
	return true
}
