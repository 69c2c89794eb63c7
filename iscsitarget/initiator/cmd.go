package initiator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// command runs one SCSI command, retrying it when the target reports a UNIT ATTENTION
// (a new I_T nexus, a reset, a capacity change). It returns the bytes of data moved.
// A target that is BUSY or whose task set is full gets the command again after a pause
// that doubles from 10 ms, up to maxBusyRetry times.
func (s *Session) command(ctx context.Context, c scsiCmd) (int, error) {
	ua, busy := 0, 0
	for {
		n, err := s.do(ctx, c)
		var se *SenseError
		switch {
		case err == nil:
			return n, nil
		case ua < maxUnitAttentionRetry && IsSense(err, SenseUnitAttention):
			ua++
			s.log.Debug("iscsi unit attention, retrying", "err", err)
		case busy < maxBusyRetry && errors.As(err, &se) && (se.Status == statusBusy || se.Status == statusTaskSetFull):
			pause := 10 * time.Millisecond << busy
			busy++
			s.log.Debug("iscsi target busy, retrying", "err", err, "after", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return 0, err
			}
		default:
			return n, err
		}
	}
}

// do runs one SCSI command within MaxOutstanding and Timeout.
func (s *Session) do(ctx context.Context, c scsiCmd) (int, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("%s: %w", c.name, ctx.Err())
	}
	defer func() { <-s.slots }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()

	t := newTask(c.name)
	t.read = c.read
	req := &pdu.PDU{}
	req.SetOpcode(pdu.OpSCSICommand)
	req.SetFinal(true)
	req.SetTaskAttr(taskAttrSimple)
	req.SetLUN(s.lun)
	copy(req.CDB(), c.cdb)
	var imm, unsolicited int
	switch {
	case c.read != nil:
		req.SetReadFlag(true)
		req.SetExpectedDataTransferLength(uint32(len(c.read)))
	case c.write != nil:
		req.SetWriteFlag(true)
		req.SetExpectedDataTransferLength(uint32(len(c.write)))
		t.r2t = make(chan r2t, max(s.params.maxOutstandingR2T, 1)+4)
		p := s.params
		if !p.initialR2T {
			unsolicited = min(len(c.write), int(p.firstBurst))
		}
		if p.immediateData {
			imm = min(len(c.write), int(p.firstBurst), int(p.targetMRDSL))
			unsolicited = max(unsolicited, imm)
		}
		req.Data = c.write[:imm]
		req.SetFinal(unsolicited == imm) // F: no unsolicited Data-Out follows
	}
	if err := s.sendCommand(ctx, t, req, false, false); err != nil {
		return 0, fmt.Errorf("%s: %w", c.name, err)
	}
	if c.write != nil {
		if err := s.sendData(ctx, t, c.write, imm, unsolicited); err != nil {
			return 0, fmt.Errorf("%s: %w", c.name, err)
		}
	} else {
		select {
		case <-t.done:
		case <-ctx.Done():
			if s.abort(t) {
				return 0, fmt.Errorf("%s: %w", c.name, ctx.Err())
			}
		}
	}
	return s.result(t, c)
}

// sendData sends the unsolicited Data-Out of a write and then answers the target's R2Ts
// until the command completes.
func (s *Session) sendData(ctx context.Context, t *task, data []byte, imm, unsolicited int) error {
	if unsolicited > imm {
		if err := s.dataOut(t, reservedTag, data, imm, unsolicited); err != nil {
			return err
		}
	}
	for {
		select {
		case r := <-t.r2t:
			end := uint64(r.offset) + uint64(r.length)
			if r.length == 0 || end > uint64(len(data)) {
				s.finish(t, nil, fmt.Errorf("target's R2T asks for bytes %d..%d of %d", r.offset, end, len(data)))
				continue
			}
			if err := s.dataOut(t, r.ttt, data, int(r.offset), int(end)); err != nil {
				return err
			}
		case <-t.done:
			return nil
		case <-ctx.Done():
			if s.abort(t) {
				return ctx.Err()
			}
			return nil
		}
	}
}

// dataOut sends data[from:to] as one Data-Out sequence in PDUs no longer than the target's
// MaxRecvDataSegmentLength, up to dataOutBatch bytes of them per write call.
func (s *Session) dataOut(t *task, ttt uint32, data []byte, from, to int) error {
	step := int(s.params.targetMRDSL)
	sn := uint32(0)
	for off := from; off < to; {
		select {
		case <-t.done:
			return nil // the target already ended the command
		default:
		}
		end := min(to, off+max(dataOutBatch, step))
		batch := make([]pdu.PDU, 0, (end-off+step-1)/step)
		for ; off < end; off += step {
			n := min(step, end-off)
			batch = append(batch, pdu.PDU{Data: data[off : off+n]})
			p := &batch[len(batch)-1]
			p.SetOpcode(pdu.OpDataOut)
			p.SetFinal(off+n == to)
			p.SetLUN(s.lun)
			p.SetITT(t.itt)
			p.SetTTT(ttt)
			p.SetDataSN(sn)
			p.SetBufferOffset(uint32(off))
			sn++
		}
		off = end
		if err := s.writeBatch(batch); err != nil {
			return err
		}
	}
	return nil
}

// result turns a completed task into bytes moved and an error.
func (s *Session) result(t *task, c scsiCmd) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	resp := t.resp
	if resp.Opcode() == pdu.OpSCSIResponse && resp.Response() != 0 {
		return 0, fmt.Errorf("%s: target failure (iSCSI response 0x%02x)", c.name, resp.Response())
	}
	if st := resp.Status(); st != statusGood && st != statusConditionMet {
		if resp.Opcode() == pdu.OpSCSIResponse {
			return 0, senseFromResponse(c.name, st, resp.Data)
		}
		return 0, &SenseError{Op: c.name, Status: st}
	}
	want := max(len(c.read), len(c.write))
	n := want
	if resp.Flags()&pdu.FlagUnderflow != 0 {
		n = want - int(min(resp.ResidualCount(), uint32(want)))
	}
	if c.read != nil {
		n = min(n, t.got)
	}
	return n, nil
}
