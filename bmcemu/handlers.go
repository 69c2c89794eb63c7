package bmcemu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// Network functions (IPMI v2.0 table 5-1), request side.
const (
	netfnChassis = 0x00
	netfnSensor  = 0x04
	netfnApp     = 0x06
	netfnStorage = 0x0a
)

// Payload commands (IPMI v2.0 table 24-2) whose state the packet gate follows.
const (
	cmdActivatePayload   = 0x48
	cmdDeactivatePayload = 0x49
)

// Completion codes (IPMI v2.0 table 5-2) bmcemu answers with.
const (
	ccOK                 = 0x00
	ccParamNotSupported  = 0x80
	ccInvalidCommand     = 0xc1
	ccTimeout            = 0xc3
	ccInvalidReservation = 0xc5
	ccLengthInvalid      = 0xc7
	ccNotPresent         = 0xcb
	ccInvalidField       = 0xcc
	ccUnspecified        = 0xff
)

// machineTimeout bounds every call into the Machine from a command.
const machineTimeout = 5 * time.Second

type handlerFunc func(s *Server, ctx context.Context, req []byte) ([]byte, uint8)

// command is one entry of bmcemu's own part of the dispatch table.
type command struct {
	netfn, cmd uint8
	name       string
	fn         handlerFunc
}

// commandTable lists the commands bmcemu answers itself (Cold and Warm
// Reset, which need the session, are registered separately).
var commandTable = []command{
	{netfnApp, 0x01, "Get Device ID", (*Server).getDeviceID},
	{netfnApp, 0x04, "Get Self Test Results", (*Server).getSelfTest},
	{netfnApp, 0x08, "Get Device GUID", (*Server).getGUID},
	{netfnApp, 0x37, "Get System GUID", (*Server).getGUID},
	{netfnChassis, 0x01, "Get Chassis Status", (*Server).getChassisStatus},
	{netfnChassis, 0x02, "Chassis Control", (*Server).chassisControl},
	{netfnChassis, 0x08, "Set System Boot Options", (*Server).setBootOptions},
	{netfnChassis, 0x09, "Get System Boot Options", (*Server).getBootOptions},
	{netfnSensor, 0x2d, "Get Sensor Reading", (*Server).getSensorReading},
	{netfnSensor, 0x27, "Get Sensor Thresholds", (*Server).getSensorThresholds},
	{netfnSensor, 0x25, "Get Sensor Hysteresis", (*Server).getSensorHysteresis},
	{netfnStorage, 0x40, "Get SEL Info", (*Server).getSELInfo},
	{netfnStorage, 0x41, "Get SEL Allocation Info", (*Server).getSELAllocInfo},
	{netfnStorage, 0x42, "Reserve SEL", (*Server).reserveSEL},
	{netfnStorage, 0x43, "Get SEL Entry", (*Server).getSELEntry},
	{netfnStorage, 0x44, "Add SEL Entry", (*Server).addSELEntry},
	{netfnStorage, 0x47, "Clear SEL", (*Server).clearSEL},
	{netfnStorage, 0x48, "Get SEL Time", (*Server).getSELTime},
	{netfnStorage, 0x49, "Set SEL Time", (*Server).setSELTime},
}

// registry is the dispatch table, keyed by netfn/cmd, every Server
// shares: built once, before the first Serve. go-ipmi contributes the
// session commands (authentication capabilities, cipher suites, privilege,
// close, v1.5 challenge/activate), payload activation for SOL, SDR
// repository access, channel, user and LAN configuration; bmcemu's
// handlers replace everything that speaks for the machine. The middleware
// (Faults, metrics, logging, panic recovery) wraps every entry, unknown
// commands included. One table for all BMCs, not one each: at 10 000 BMCs
// a table apiece was a third of the process's heap. A request finds its
// Server through the go-ipmi BMC it arrived at (serving).
var registry = sync.OnceValue(func() *handlers.Registry {
	r := handlers.NewRegistry()
	r.Use(middleware)
	handlers.RegisterAllHandlers(r)
	for _, h := range commandTable {
		fn := h.fn
		r.RegisterFunc(types.Command{ID: h.cmd, NetFn: types.NetFn(h.netfn), Name: h.name},
			func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
				s := serverOf(hctx)
				if s == nil {
					return nil, ccUnspecified, nil
				}
				resp, cc := fn(s, ctx, req)
				return resp, types.CompletionCode(cc), nil
			})
	}
	for _, c := range []types.Command{{ID: 0x02, NetFn: netfnApp, Name: "Cold Reset"}, {ID: 0x03, NetFn: netfnApp, Name: "Warm Reset"}} {
		r.RegisterFunc(c, onServer((*Server).bmcReset))
	}
	r.RegisterFunc(types.CommandActivateSession, onServer((*Server).activateSession15))
	return r
})

// serving maps each serving Server's go-ipmi BMC to the Server.
var serving sync.Map // *bmc.BMC -> *Server

// serverOf is the Server a request arrived at; nil when none serves.
func serverOf(hctx *handlers.HandlerContext) *Server {
	if hctx == nil || hctx.BMC == nil {
		return nil
	}
	v, _ := serving.Load(hctx.BMC)
	s, _ := v.(*Server)
	return s
}

// onServer adapts a Server method to a registry handler.
func onServer(h func(*Server, context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error)) func(context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error) {
	return func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
		s := serverOf(hctx)
		if s == nil {
			return nil, ccUnspecified, nil
		}
		return h(s, ctx, hctx, req)
	}
}

// who is the machine this BMC manages, as Faults and Recorder know it.
func (s *Server) who() events.Who { return events.Who{Machine: s.cfg.Name} }

// ipmiFault asks Faults about netfn/cmd and carries out layer ipmi's
// actions (fault.Catalog): "drop" sends no reply, "cc" answers with the
// completion code in Arg (0xff, unspecified error, when Arg is none), and
// any hit's Delay answers late.
func (s *Server) ipmiFault(netfn, cmd uint8) (cc uint8, drop bool, delay time.Duration) {
	h, ok := s.faults.Inject(fault.IPMI, s.who(), fmt.Sprintf("0x%02x/0x%02x", netfn, cmd))
	if !ok {
		return 0, false, 0
	}
	switch h.Action {
	case "drop":
		return 0, true, h.Delay
	case "cc":
		v, err := h.ArgInt()
		if err != nil || v <= 0 || v > 0xff {
			v = ccUnspecified
		}
		return uint8(v), false, h.Delay
	}
	return 0, false, h.Delay
}

// control carries a power action out on the machine, unless layer ipmi's
// "ignore" (op "power") says to acknowledge it only.
func (s *Server) control(ctx context.Context, a PowerAction) error {
	if h, ok := s.faults.Inject(fault.IPMI, s.who(), "power"); ok && h.Action == "ignore" {
		s.log().Info("chassis control ignored (injected fault)", "event", a.String())
		return nil
	}
	return s.machine.Control(ctx, a)
}

// setBootFlags keeps flags on the machine, unless layer ipmi's
// "forget-bootflags" (op "boot-flags") says to acknowledge them only.
func (s *Server) setBootFlags(ctx context.Context, flags [5]byte) error {
	if h, ok := s.faults.Inject(fault.IPMI, s.who(), "boot-flags"); ok && h.Action == "forget-bootflags" {
		s.log().Info("boot flags forgotten (injected fault)", "event", "boot-flags")
		return nil
	}
	return s.machine.SetBootFlags(ctx, flags)
}

// middleware wraps every command: Faults, metrics, debug log, and panic
// recovery as the last line of defence (a handler panic answers 0xFF).
func middleware(next handlers.Handler) handlers.Handler {
	return handlers.HandlerFunc(func(ctx context.Context, hctx *handlers.HandlerContext, req []byte) (resp []byte, cc types.CompletionCode, err error) {
		s := serverOf(hctx)
		if s == nil {
			return nil, ccUnspecified, nil
		}
		var netfn, cmd uint8
		if hctx != nil {
			netfn, cmd = uint8(hctx.Command.NetFn), hctx.Command.ID
		}
		s.metrics.commands.Inc()
		defer func() {
			if p := recover(); p != nil {
				s.metrics.panics.Inc()
				s.log().Warn("command handler panicked", "netfn", netfn, "cmd", cmd,
					"err", fmt.Sprint(p), "stack", string(debug.Stack()))
				resp, cc, err = nil, ccUnspecified, nil
			}
			if cc != ccOK {
				s.metrics.commandFails.Inc()
			}
			s.log().Debug("ipmi command", "netfn", netfn, "cmd", cmd, "cc", uint8(cc))
		}()
		if icc, drop, delay := s.ipmiFault(netfn, cmd); drop || icc != 0 || delay > 0 {
			s.metrics.faults.Inc()
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
			if drop {
				if hctx != nil && hctx.Session != nil {
					s.markDrop(hctx.Session.GetAddr())
				}
				return nil, ccDropMarker, nil
			}
			if icc != 0 {
				return nil, types.CompletionCode(icc), nil
			}
		}
		resp, cc, err = next.Handle(ctx, hctx, req)
		if netfn == netfnApp && (cmd == cmdActivatePayload || cmd == cmdDeactivatePayload) &&
			cc == ccOK && err == nil && hctx != nil && hctx.Session != nil {
			s.setSOL(hctx.Session.GetAddr(), cmd == cmdActivatePayload)
		}
		return resp, cc, err
	})
}

// completionCode maps a Machine error to the IPMI completion code: the one
// place errors become wire codes.
func completionCode(err error) uint8 {
	switch {
	case err == nil:
		return ccOK
	case errors.Is(err, context.DeadlineExceeded):
		return ccTimeout
	default:
		return ccUnspecified
	}
}

func (s *Server) getDeviceID(context.Context, []byte) ([]byte, uint8) {
	info := s.bmc.Info
	resp := []byte{
		info.DeviceID,
		info.DeviceRevision & 0x0f, // no device SDRs
		info.FirmwareMajor & 0x7f,  // device available
		info.FirmwareMinor,
		info.IPMIVersion,
		info.AdditionalDeviceSupport,
		byte(info.ManufacturerID), byte(info.ManufacturerID >> 8), byte(info.ManufacturerID >> 16),
		byte(info.ProductID), byte(info.ProductID >> 8),
		0, 0, 0, 0, // auxiliary firmware revision
	}
	return resp, ccOK
}

// bmcReset acknowledges Cold/Warm Reset. The virtual BMC has no firmware to
// restart: state stays, and the session that asked is closed shortly after
// the reply, as a real reset would (ipmitool does not close it itself).
func (s *Server) bmcReset(_ context.Context, hctx *handlers.HandlerContext, _ []byte) ([]byte, types.CompletionCode, error) {
	s.log().Info("bmc reset requested", "event", "bmc-reset")
	// The dispatcher holds the session's ProcMu until the reply is sent:
	// taking it orders the close after the reply.
	switch {
	case hctx != nil && hctx.Session != nil:
		sess := hctx.Session
		go func() {
			sess.ProcMu.Lock()
			defer sess.ProcMu.Unlock()
			_ = s.bmc.Sessions.Close(sess.BMCID)
		}()
	case hctx != nil && hctx.V15Session != nil:
		sess := hctx.V15Session
		go func() {
			sess.ProcMu.Lock()
			defer sess.ProcMu.Unlock()
			_ = s.bmc.V15Sessions.Close(sess.SessionID)
		}()
	}
	return nil, ccOK, nil
}

func (s *Server) getSelfTest(context.Context, []byte) ([]byte, uint8) {
	return []byte{0x55, 0x00}, ccOK // no error
}

func (s *Server) getGUID(context.Context, []byte) ([]byte, uint8) {
	g := s.bmc.GUID
	return g[:], ccOK
}

func (s *Server) getChassisStatus(ctx context.Context, _ []byte) ([]byte, uint8) {
	ctx, cancel := context.WithTimeout(ctx, machineTimeout)
	defer cancel()
	on, err := s.machine.PowerState(ctx)
	if err != nil {
		s.log().Warn("power state", "err", err)
		return nil, completionCode(err)
	}
	var b1 byte = 0x01 << 5 // power restore policy: previous
	if on {
		b1 |= 0x01
	}
	return []byte{b1, 0x10 /* last power event via IPMI */, 0x40 /* identify supported */, 0x00}, ccOK
}

func (s *Server) chassisControl(ctx context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 1 {
		return nil, ccLengthInvalid
	}
	a := PowerAction(req[0] & 0x0f)
	if req[0]&0xf0 != 0 || a > SoftShutdown {
		return nil, ccInvalidField
	}
	ctx, cancel := context.WithTimeout(ctx, machineTimeout)
	defer cancel()
	if err := s.control(ctx, a); err != nil {
		s.log().Warn("chassis control", "event", a.String(), "err", err)
		return nil, completionCode(err)
	}
	s.metrics.powerActions.Inc()
	s.sel.RecordControl(s.cfg.Now(), a)
	s.log().Info("chassis control", "event", a.String())
	s.record(events.BMCChassisControl, a.String())
	return nil, ccOK
}

// Boot option parameter selectors (IPMI v2.0 table 28-14).
const (
	bootParamSetInProgress = 0
	bootParamValidBitClear = 3
	bootParamInfoAck       = 4
	bootParamFlags         = 5
)

func (s *Server) setBootOptions(ctx context.Context, req []byte) ([]byte, uint8) {
	if len(req) < 1 {
		return nil, ccLengthInvalid
	}
	param, data := req[0]&0x7f, req[1:]
	switch param {
	case bootParamSetInProgress:
		if len(data) != 1 {
			return nil, ccLengthInvalid
		}
		if data[0]&0x03 == 0x03 {
			return nil, ccInvalidField
		}
		s.bootMu.Lock()
		s.bootParam.setInProgress = data[0] & 0x03
		s.bootMu.Unlock()
	case bootParamValidBitClear:
		if len(data) != 1 {
			return nil, ccLengthInvalid
		}
		s.bootMu.Lock()
		s.bootParam.validBitClear = data[0] & 0x1f
		s.bootMu.Unlock()
	case bootParamInfoAck:
		if len(data) != 2 {
			return nil, ccLengthInvalid
		}
		// Byte 1 is a write mask for byte 2 (IPMI v2.0 table 28-14).
		s.bootMu.Lock()
		s.bootParam.ack[0] = data[0]
		s.bootParam.ack[1] = s.bootParam.ack[1]&^data[0] | data[1]&data[0]
		s.bootMu.Unlock()
	case bootParamFlags:
		if len(data) != 5 {
			return nil, ccLengthInvalid
		}
		var flags [5]byte
		copy(flags[:], data)
		ctx, cancel := context.WithTimeout(ctx, machineTimeout)
		defer cancel()
		if err := s.setBootFlags(ctx, flags); err != nil {
			s.log().Warn("set boot flags", "err", err)
			return nil, completionCode(err)
		}
		s.log().Info("boot flags set", "event", "boot-flags", "state", fmt.Sprintf("% x", flags[:]))
		s.record(events.BMCSetBootOptions, fmt.Sprintf("flags % x", flags[:]))
	default:
		return nil, ccParamNotSupported
	}
	return nil, ccOK
}

func (s *Server) getBootOptions(ctx context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 3 {
		return nil, ccLengthInvalid
	}
	param := req[0] & 0x7f
	resp := []byte{0x01, param} // parameter version 1; parameter valid
	s.bootMu.Lock()
	p := s.bootParam
	s.bootMu.Unlock()
	switch param {
	case bootParamSetInProgress:
		resp = append(resp, p.setInProgress)
	case bootParamValidBitClear:
		resp = append(resp, p.validBitClear)
	case bootParamInfoAck:
		resp = append(resp, p.ack[0], p.ack[1])
	case bootParamFlags:
		ctx, cancel := context.WithTimeout(ctx, machineTimeout)
		defer cancel()
		flags, err := s.machine.BootFlags(ctx)
		if err != nil {
			s.log().Warn("get boot flags", "err", err)
			return nil, completionCode(err)
		}
		resp = append(resp, flags[:]...)
	default:
		return nil, ccParamNotSupported
	}
	return resp, ccOK
}

func (s *Server) getSensorReading(ctx context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 1 {
		return nil, ccLengthInvalid
	}
	sn, ok := s.sdr.sensor(req[0])
	if !ok {
		return nil, ccNotPresent
	}
	ctx, cancel := context.WithTimeout(ctx, machineTimeout)
	defer cancel()
	on, err := s.machine.PowerState(ctx)
	if err != nil {
		return nil, completionCode(err)
	}
	raw, status := sn.reading(on)
	return []byte{raw, 0xc0 /* events and scanning enabled */, status | 0xc0, 0x80}, ccOK
}

func (s *Server) getSensorThresholds(_ context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 1 {
		return nil, ccLengthInvalid
	}
	sn, ok := s.sdr.sensor(req[0])
	if !ok {
		return nil, ccNotPresent
	}
	resp := []byte{sn.readable}
	for i, t := range sn.thresholds {
		if sn.readable&(1<<i) == 0 {
			t = 0
		}
		resp = append(resp, t)
	}
	return resp, ccOK
}

func (s *Server) getSensorHysteresis(_ context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 2 {
		return nil, ccLengthInvalid
	}
	if _, ok := s.sdr.sensor(req[0]); !ok {
		return nil, ccNotPresent
	}
	return []byte{1, 1}, ccOK
}

func (s *Server) getSELInfo(context.Context, []byte) ([]byte, uint8) {
	in := s.sel.info()
	resp := make([]byte, 14)
	resp[0] = 0x51 // SEL version 1.5 (IPMI 2.0)
	binary.LittleEndian.PutUint16(resp[1:3], uint16(in.count))
	binary.LittleEndian.PutUint16(resp[3:5], uint16(min(in.free, 0xfffe)))
	binary.LittleEndian.PutUint32(resp[5:9], in.lastAdd)
	binary.LittleEndian.PutUint32(resp[9:13], in.lastErase)
	resp[13] = 0x02 | 0x01 // Reserve SEL and Get SEL Allocation Info supported
	return resp, ccOK
}

func (s *Server) getSELAllocInfo(context.Context, []byte) ([]byte, uint8) {
	in := s.sel.info()
	resp := make([]byte, 9)
	binary.LittleEndian.PutUint16(resp[0:2], uint16(s.sel.capacity))
	binary.LittleEndian.PutUint16(resp[2:4], 16)
	binary.LittleEndian.PutUint16(resp[4:6], uint16(in.free/16))
	binary.LittleEndian.PutUint16(resp[6:8], uint16(in.free/16))
	resp[8] = 1 // maximum record size in allocation units
	return resp, ccOK
}

func (s *Server) reserveSEL(context.Context, []byte) ([]byte, uint8) {
	id := s.sel.reserve()
	return []byte{byte(id), byte(id >> 8)}, ccOK
}

func (s *Server) getSELEntry(_ context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 6 {
		return nil, ccLengthInvalid
	}
	resv := binary.LittleEndian.Uint16(req[0:2])
	id := binary.LittleEndian.Uint16(req[2:4])
	off, n := int(req[4]), int(req[5])
	if off != 0 && !s.sel.validReservation(resv) {
		return nil, ccInvalidReservation
	}
	e, next, ok := s.sel.get(id)
	if !ok {
		return nil, ccNotPresent
	}
	if off > len(e) {
		return nil, ccInvalidField
	}
	end := len(e)
	if n != 0xff && off+n < end {
		end = off + n
	}
	resp := []byte{byte(next), byte(next >> 8)}
	resp = append(resp, e[off:end]...)
	return resp, ccOK
}

func (s *Server) addSELEntry(_ context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 16 {
		return nil, ccLengthInvalid
	}
	id := s.sel.addRaw(s.cfg.Now(), req)
	return []byte{byte(id), byte(id >> 8)}, ccOK
}

func (s *Server) clearSEL(_ context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 6 {
		return nil, ccLengthInvalid
	}
	if !s.sel.validReservation(binary.LittleEndian.Uint16(req[0:2])) {
		return nil, ccInvalidReservation
	}
	if req[2] != 'C' || req[3] != 'L' || req[4] != 'R' {
		return nil, ccInvalidField
	}
	switch req[5] {
	case 0xaa:
		s.sel.clear(s.cfg.Now())
		s.log().Info("sel cleared", "event", "sel-clear")
	case 0x00: // get erasure status
	default:
		return nil, ccInvalidField
	}
	return []byte{0x01}, ccOK // erasure completed
}

func (s *Server) getSELTime(context.Context, []byte) ([]byte, uint8) {
	t := s.sel.time(s.cfg.Now())
	return binary.LittleEndian.AppendUint32(nil, t), ccOK
}

func (s *Server) setSELTime(_ context.Context, req []byte) ([]byte, uint8) {
	if len(req) != 4 {
		return nil, ccLengthInvalid
	}
	s.sel.setTime(s.cfg.Now(), binary.LittleEndian.Uint32(req))
	return nil, ccOK
}

// String names a Chassis Control action as ipmitool does.
func (a PowerAction) String() string {
	switch a {
	case PowerDown:
		return "off"
	case PowerUp:
		return "on"
	case PowerCycle:
		return "cycle"
	case HardReset:
		return "reset"
	case DiagnosticInterrupt:
		return "diag"
	case SoftShutdown:
		return "soft"
	default:
		return fmt.Sprintf("action-%d", uint8(a))
	}
}

// record tells the Recorder what a command did to the machine.
func (s *Server) record(kind events.Kind, detail string) {
	if s.cfg.Recorder != nil {
		s.cfg.Recorder.Record(events.Event{Kind: kind, Detail: detail, Who: s.who()})
	}
}
