package initiator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// A discovery session is short and strictly request/response, so it runs without the
// reader goroutine: each request is written and its answer read in turn.

// roundTrip writes req (numbered with the session's CmdSN and ExpStatSN) and reads PDUs
// until one for req's ITT arrives, answering NOP-In pings on the way.
func (s *Session) roundTrip(ctx context.Context, req *pdu.PDU, immediate bool) (*pdu.PDU, error) {
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	const itt = 1
	req.SetImmediate(immediate)
	req.SetITT(itt)
	req.SetCmdSN(s.cmdSN)
	req.SetExpStatSN(s.expStatSN)
	if !immediate {
		s.cmdSN++
	}
	if _, err := pdu.Write(s.conn, req, s.send); err != nil {
		return nil, err
	}
	for {
		p, err := pdu.Read(s.conn, s.recv)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return nil, err
		}
		s.updateSN(p)
		switch {
		case p.ITT() == itt:
			return p, nil
		case p.Opcode() == pdu.OpNOPIn && p.TTT() != reservedTag:
			reply := &pdu.PDU{Data: p.Data}
			reply.SetOpcode(pdu.OpNOPOut)
			reply.SetImmediate(true)
			reply.SetFinal(true)
			reply.SetLUN(p.LUN())
			reply.SetITT(reservedTag)
			reply.SetTTT(p.TTT())
			reply.SetCmdSN(s.cmdSN)
			reply.SetExpStatSN(s.expStatSN)
			if _, err := pdu.Write(s.conn, reply, s.send); err != nil {
				return nil, err
			}
		case p.Opcode() == pdu.OpReject:
			return nil, fmt.Errorf("target rejected our %v (reason 0x%02x)", req.Opcode(), p.RejectReason())
		default:
			s.log.Debug("iscsi discovery: ignoring PDU", "pdu", p.String())
		}
	}
}

// sendTargets asks for SendTargets=All and gathers a possibly multi-PDU answer.
func (s *Session) sendTargets(ctx context.Context) ([]Target, error) {
	data := pdu.EncodeText([]pdu.KV{{Key: "SendTargets", Value: "All"}})
	ttt := uint32(reservedTag)
	var text []byte
	for {
		req := &pdu.PDU{Data: data}
		req.SetOpcode(pdu.OpTextReq)
		req.SetFinal(true)
		req.SetTTT(ttt)
		resp, err := s.roundTrip(ctx, req, false)
		if err != nil {
			return nil, fmt.Errorf("SendTargets: %w", err)
		}
		if resp.Opcode() != pdu.OpTextResp {
			return nil, fmt.Errorf("SendTargets: target answered %v", resp.Opcode())
		}
		text = append(text, resp.Data...)
		if len(text) > 1<<20 {
			return nil, errors.New("SendTargets: answer longer than 1 MiB")
		}
		if resp.Final() && !resp.Continue() {
			break
		}
		ttt, data = resp.TTT(), nil
	}
	kvs, err := pdu.ParseTextRepeated(text)
	if err != nil {
		return nil, fmt.Errorf("SendTargets answer: %w", err)
	}
	var out []Target
	for _, kv := range kvs {
		switch kv.Key {
		case "TargetName":
			out = append(out, Target{Name: kv.Value})
		case "TargetAddress":
			if len(out) == 0 {
				return nil, errors.New("SendTargets answer: TargetAddress before any TargetName")
			}
			out[len(out)-1].Addresses = append(out[len(out)-1].Addresses, kv.Value)
		}
	}
	return out, nil
}

// logoutSync logs a discovery session out.
func (s *Session) logoutSync(ctx context.Context) error {
	req := &pdu.PDU{}
	req.SetOpcode(pdu.OpLogoutReq)
	req.SetLogoutReason(logoutCloseSession)
	resp, err := s.roundTrip(ctx, req, true)
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	if resp.Opcode() != pdu.OpLogoutResp || resp.Response() != 0 {
		return fmt.Errorf("logout: target answered %v with response %d", resp.Opcode(), resp.Response())
	}
	return nil
}
