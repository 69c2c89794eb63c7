package iscsitarget

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"strconv"
	"strings"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// Login status classes and details (RFC 7143 11.13.5).
const (
	loginSuccess            = 0x0000
	loginAuthFailure        = 0x0201
	loginForbidden          = 0x0202
	loginNotFound           = 0x0203
	loginUnsupportedVersion = 0x0205
	loginTooManyConns       = 0x0206
	loginMissingParam       = 0x0207
	loginUnsupportedType    = 0x0209
	loginNoSession          = 0x020a
	loginInvalidRequest     = 0x020b
	loginTargetError        = 0x0300
)

// loginError ends a login with a status; it is sent, not logged as ours.
type loginError struct {
	status uint16
	why    string
}

func (e *loginError) Error() string { return fmt.Sprintf("login status 0x%04x: %s", e.status, e.why) }

func refuse(status uint16, format string, a ...any) error {
	return &loginError{status, fmt.Sprintf(format, a...)}
}

// Our side of the operational parameters.
const (
	ourMaxRecvDataSegmentLength = 256 << 10
	ourMaxBurstLength           = 1 << 20
	ourFirstBurstLength         = 256 << 10
	ourDefaultTime2Wait         = 2
	ourDefaultTime2Retain       = 20
)

// params are the negotiated operational parameters of a session.
type params struct {
	headerDigest, dataDigest bool
	maxSendDataSegmentLength uint32 // the initiator's MaxRecvDataSegmentLength
	maxBurstLength           uint32
	firstBurstLength         uint32
	initialR2T               bool
	immediateData            bool
}

func defaultParams() params {
	return params{
		maxSendDataSegmentLength: pdu.DefaultMaxRecvDataSegmentLength,
		maxBurstLength:           262144,
		firstBurstLength:         65536,
		initialR2T:               true,
		immediateData:            true,
	}
}

type chapState int

const (
	chapNone chapState = iota
	chapWantAlgorithm
	chapWantResponse
	chapDone
)

// login carries the state of one login phase.
type login struct {
	first       bool
	isid        [6]byte
	tsih        uint16
	cid         uint16
	itt         uint32
	initiator   string
	sessionType string
	authDone    bool
	chap        chapState
	chapID      byte
	chapChal    []byte
	p           params
	statSN      uint32
	sentTPGT    bool
	sentMRDSL   bool
}

// doLogin runs the login phase on c; it returns once the connection is in
// full feature phase, or an error after answering the initiator.
func (c *conn) doLogin() error {
	t := c.t
	deadline := time.Now().Add(t.cfg.LoginTimeout)
	c.nc.SetDeadline(deadline)
	defer c.nc.SetDeadline(time.Time{})

	l := &login{first: true, p: defaultParams()}
	var text []byte
	for {
		var p pdu.PDU
		if err := pdu.ReadInto(c.br, &p, pdu.Options{}, nil); err != nil {
			return fmt.Errorf("read login: %w", err)
		}
		if p.Opcode() != pdu.OpLoginReq {
			return fmt.Errorf("%v during login", p.Opcode())
		}
		if len(text)+len(p.Data) > 64<<10 {
			return c.loginFail(l, &p, refuse(loginInvalidRequest, "login text too long"))
		}
		text = append(text, p.Data...)
		if l.first {
			l.isid, l.tsih, l.cid, l.itt = p.ISID(), p.TSIH(), p.CID(), p.ITT()
			l.statSN = p.ExpStatSN()
			if p.VersionMin() > 0 {
				return c.loginFail(l, &p, refuse(loginUnsupportedVersion, "version %d..%d", p.VersionMin(), p.VersionMax()))
			}
		}
		if p.Continue() {
			// Ask for the rest of the text (RFC 7143 6.3).
			var r pdu.PDU
			c.loginHeader(l, &p, &r)
			if err := c.writeLogin(&r); err != nil {
				return err
			}
			continue
		}
		kvs, err := pdu.ParseText(text)
		text = nil
		if err != nil {
			return c.loginFail(l, &p, refuse(loginInvalidRequest, "%v", err))
		}
		done, err := c.loginStep(l, &p, kvs)
		if err != nil {
			return c.loginFail(l, &p, err)
		}
		if done {
			return nil
		}
	}
}

func (c *conn) loginHeader(l *login, req, r *pdu.PDU) {
	r.SetOpcode(pdu.OpLoginResp)
	r.SetISID(l.isid)
	r.SetTSIH(0)
	r.SetITT(req.ITT())
	r.SetStatSN(l.statSN)
	r.SetExpCmdSN(req.CmdSN())
	r.SetMaxCmdSN(req.CmdSN() + uint32(c.t.cfg.QueueDepth) - 1)
	r.SetVersionMax(0)
	r.SetVersionActive(0)
	r.SetCSG(req.CSG())
	r.SetNSG(req.CSG())
}

func (c *conn) writeLogin(r *pdu.PDU) error {
	_, err := pdu.Write(c.nc, r, pdu.Options{})
	return err
}

// loginFail answers a login with an error status and returns the error.
func (c *conn) loginFail(l *login, req *pdu.PDU, err error) error {
	var le *loginError
	if !errors.As(err, &le) {
		le = &loginError{loginTargetError, err.Error()}
	}
	var r pdu.PDU
	c.loginHeader(l, req, &r)
	r.SetFlags(0)
	r.SetLoginStatus(byte(le.status>>8), byte(le.status))
	if werr := c.writeLogin(&r); werr != nil {
		return errors.Join(le, werr)
	}
	c.t.log.Warn("iscsi login refused", "ip", c.remote, "initiator", l.initiator, "err", le)
	c.t.metrics.logins.WithLabelValues("failure").Inc()
	return le
}

// loginStep handles one complete login request.
func (c *conn) loginStep(l *login, req *pdu.PDU, kvs []pdu.KV) (bool, error) {
	t := c.t
	csg, nsg, transit := req.CSG(), req.NSG(), req.Transit()
	if csg == 2 || csg == pdu.StageFullFeature {
		return false, refuse(loginInvalidRequest, "current stage %d", csg)
	}
	if transit && (nsg <= csg || nsg == 2) {
		return false, refuse(loginInvalidRequest, "transit from stage %d to %d", csg, nsg)
	}
	if l.first {
		l.first = false
		var ok bool
		if l.initiator, ok = pdu.Lookup(kvs, "InitiatorName"); !ok || l.initiator == "" {
			return false, refuse(loginMissingParam, "no InitiatorName")
		}
		l.sessionType = "Normal"
		if v, ok := pdu.Lookup(kvs, "SessionType"); ok {
			l.sessionType = v
		}
		switch l.sessionType {
		case "Normal":
			name, ok := pdu.Lookup(kvs, "TargetName")
			if !ok {
				return false, refuse(loginMissingParam, "no TargetName")
			}
			if name != t.cfg.IQN {
				return false, refuse(loginNotFound, "target %q", name)
			}
		case "Discovery":
		default:
			return false, refuse(loginUnsupportedType, "session type %q", l.sessionType)
		}
		if t.refuseLogin() {
			return false, refuse(loginForbidden, "refused by an injected fault")
		}
		if l.tsih != 0 {
			if t.sessionExists(l.tsih) {
				return false, refuse(loginTooManyConns, "session 0x%04x has its connection (MaxConnections=1)", l.tsih)
			}
			return false, refuse(loginNoSession, "no session 0x%04x", l.tsih)
		}
		c.initiator = l.initiator
		c.isid = l.isid
	}

	var resp []pdu.KV
	if csg == pdu.StageSecurity {
		r, err := c.security(l, kvs)
		if err != nil {
			return false, err
		}
		resp = append(resp, r...)
	} else if !l.authDone {
		if t.cfg.CHAP.Username != "" {
			return false, refuse(loginAuthFailure, "operational stage without CHAP")
		}
		l.authDone = true
	}
	ops, err := negotiate(&l.p, kvs, csg)
	if err != nil {
		return false, err
	}
	resp = append(resp, ops...)
	if l.sessionType == "Normal" && !l.sentTPGT {
		l.sentTPGT = true
		resp = append(resp, pdu.KV{Key: "TargetPortalGroupTag", Value: "1"})
	}
	if csg == pdu.StageOperational || (transit && nsg != pdu.StageSecurity) {
		if !l.sentMRDSL {
			resp = append(resp, pdu.KV{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(ourMaxRecvDataSegmentLength)})
			l.sentMRDSL = true
		}
	}

	var r pdu.PDU
	c.loginHeader(l, req, &r)
	canTransit := transit && l.authDone
	if canTransit {
		r.SetTransit(true)
		r.SetNSG(nsg)
	}
	full := canTransit && nsg == pdu.StageFullFeature
	if full {
		c.p = l.p
		c.discovery = l.sessionType == "Discovery"
		if c.discovery {
			r.SetTSIH(t.newTSIH())
		} else {
			r.SetTSIH(t.addSession(c))
		}
	}
	r.Data = pdu.EncodeText(resp)
	if err := c.writeLogin(&r); err != nil {
		return false, err
	}
	l.statSN++
	if full {
		c.statSN = l.statSN
		c.expCmdSN = req.CmdSN()
		c.maxCmdSN = req.CmdSN() + uint32(t.cfg.QueueDepth) - 1
		t.log.Info("iscsi login", "ip", c.remote, "initiator", l.initiator, "session", l.sessionType,
			"header_digest", c.p.headerDigest, "data_digest", c.p.dataDigest)
		t.metrics.logins.WithLabelValues("success").Inc()
		t.rec.Record(events.Event{Kind: events.ISCSILogin, Detail: fmt.Sprintf("initiator=%s session=%s", l.initiator, l.sessionType),
			Who: events.Who{IQN: t.cfg.IQN, IP: remoteIP(c.remote)}})
	}
	return full, nil
}

// security handles AuthMethod and the CHAP exchange (RFC 7143 12.1.3).
func (c *conn) security(l *login, kvs []pdu.KV) ([]pdu.KV, error) {
	cfg := c.t.cfg.CHAP
	var resp []pdu.KV
	if v, ok := pdu.Lookup(kvs, "AuthMethod"); ok && l.chap == chapNone && !l.authDone {
		want := "None"
		if cfg.Username != "" {
			want = "CHAP"
		}
		if _, ok := pdu.SelectFromList(v, want); !ok {
			return nil, refuse(loginAuthFailure, "AuthMethod %q, want %s", v, want)
		}
		resp = append(resp, pdu.KV{Key: "AuthMethod", Value: want})
		if want == "None" {
			l.authDone = true
		} else {
			l.chap = chapWantAlgorithm
		}
		return resp, nil
	}
	switch l.chap {
	case chapNone:
		if l.authDone {
			return nil, nil
		}
		if cfg.Username != "" {
			return nil, refuse(loginAuthFailure, "no AuthMethod offered, CHAP required")
		}
		l.authDone = true
		return nil, nil
	case chapWantAlgorithm:
		v, ok := pdu.Lookup(kvs, "CHAP_A")
		if !ok {
			return nil, refuse(loginAuthFailure, "no CHAP_A")
		}
		if _, ok := pdu.SelectFromList(v, "5"); !ok {
			return nil, refuse(loginAuthFailure, "CHAP_A %q has no MD5 (5)", v)
		}
		var b [17]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		l.chapID, l.chapChal = b[0], b[1:]
		l.chap = chapWantResponse
		return []pdu.KV{
			{Key: "CHAP_A", Value: "5"},
			{Key: "CHAP_I", Value: strconv.Itoa(int(l.chapID))},
			{Key: "CHAP_C", Value: "0x" + hex.EncodeToString(l.chapChal)},
		}, nil
	case chapWantResponse:
		name, _ := pdu.Lookup(kvs, "CHAP_N")
		rv, ok := pdu.Lookup(kvs, "CHAP_R")
		if !ok {
			return nil, refuse(loginAuthFailure, "no CHAP_R")
		}
		got, err := decodeBinary(rv)
		if err != nil {
			return nil, refuse(loginAuthFailure, "CHAP_R: %v", err)
		}
		want := chapResponse(l.chapID, cfg.Secret, l.chapChal)
		if subtle.ConstantTimeCompare([]byte(name), []byte(cfg.Username)) != 1 ||
			subtle.ConstantTimeCompare(got, want) != 1 {
			return nil, refuse(loginAuthFailure, "CHAP response for %q does not match", name)
		}
		l.chap = chapDone
		l.authDone = true
		ci, hasI := pdu.Lookup(kvs, "CHAP_I")
		cc, hasC := pdu.Lookup(kvs, "CHAP_C")
		if !hasI && !hasC {
			return nil, nil
		}
		if !hasI || !hasC {
			return nil, refuse(loginAuthFailure, "mutual CHAP needs CHAP_I and CHAP_C")
		}
		if cfg.MutualUsername == "" {
			return nil, refuse(loginAuthFailure, "initiator asks for mutual CHAP, none configured")
		}
		id, err := pdu.ParseNumberIn(ci, 0, 255)
		if err != nil {
			return nil, refuse(loginAuthFailure, "CHAP_I: %v", err)
		}
		chal, err := decodeBinary(cc)
		if err != nil || len(chal) == 0 || len(chal) > 1024 {
			return nil, refuse(loginAuthFailure, "CHAP_C %q", cc)
		}
		if bytes.Equal(chal, l.chapChal) {
			return nil, refuse(loginAuthFailure, "initiator reflected our challenge")
		}
		return []pdu.KV{
			{Key: "CHAP_N", Value: cfg.MutualUsername},
			{Key: "CHAP_R", Value: "0x" + hex.EncodeToString(chapResponse(byte(id), cfg.MutualSecret, chal))},
		}, nil
	}
	return resp, nil
}

// chapResponse is MD5(id || secret || challenge) (RFC 1994).
func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// decodeBinary decodes a binary-value: 0x hex or 0b base64.
func decodeBinary(v string) ([]byte, error) {
	switch {
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X"):
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		return hex.DecodeString(s)
	case strings.HasPrefix(v, "0b") || strings.HasPrefix(v, "0B"):
		return base64.StdEncoding.DecodeString(v[2:])
	}
	return nil, fmt.Errorf("%q is not 0x hex or 0b base64", v)
}

// negotiate answers the operational keys of one login request.
func negotiate(p *params, kvs []pdu.KV, stage byte) ([]pdu.KV, error) {
	var resp []pdu.KV
	answer := func(k, v string) { resp = append(resp, pdu.KV{Key: k, Value: v}) }
	num := func(v string, lo, hi uint64) (uint32, bool) {
		n, err := pdu.ParseNumberIn(v, lo, hi)
		return uint32(n), err == nil
	}
	boolean := func(v string) (bool, bool) {
		b, err := pdu.ParseBool(v)
		return b, err == nil
	}
	for _, kv := range kvs {
		k, v := kv.Key, kv.Value
		switch k {
		case "InitiatorName", "InitiatorAlias", "SessionType", "TargetName":
			// declarative, handled by the caller
		case "AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R":
			if stage != pdu.StageSecurity {
				return nil, refuse(loginInvalidRequest, "%s outside the security stage", k)
			}
		case "HeaderDigest", "DataDigest":
			sel, ok := pdu.SelectFromList(v, "CRC32C", "None")
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			if k == "HeaderDigest" {
				p.headerDigest = sel == "CRC32C"
			} else {
				p.dataDigest = sel == "CRC32C"
			}
			answer(k, sel)
		case "MaxConnections":
			if _, ok := num(v, 1, 65535); !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			answer(k, "1")
		case "InitialR2T":
			b, ok := boolean(v)
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			p.initialR2T = pdu.NegotiateOr(false, b)
			answer(k, pdu.FormatBool(p.initialR2T))
		case "ImmediateData":
			b, ok := boolean(v)
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			p.immediateData = pdu.NegotiateAnd(true, b)
			answer(k, pdu.FormatBool(p.immediateData))
		case "MaxRecvDataSegmentLength":
			n, ok := num(v, 512, pdu.MaxDataSegmentLength)
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			p.maxSendDataSegmentLength = n
		case "MaxBurstLength":
			n, ok := num(v, 512, pdu.MaxDataSegmentLength)
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			p.maxBurstLength = min(n, ourMaxBurstLength)
			answer(k, strconv.Itoa(int(p.maxBurstLength)))
		case "FirstBurstLength":
			n, ok := num(v, 512, pdu.MaxDataSegmentLength)
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			p.firstBurstLength = min(n, ourFirstBurstLength)
			answer(k, strconv.Itoa(int(p.firstBurstLength)))
		case "DefaultTime2Wait":
			n, ok := num(v, 0, 3600)
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			answer(k, strconv.Itoa(int(max(n, ourDefaultTime2Wait))))
		case "DefaultTime2Retain":
			n, ok := num(v, 0, 3600)
			if !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			answer(k, strconv.Itoa(int(min(n, ourDefaultTime2Retain))))
		case "MaxOutstandingR2T":
			if _, ok := num(v, 1, 65535); !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			answer(k, "1")
		case "DataPDUInOrder", "DataSequenceInOrder":
			if _, ok := boolean(v); !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			answer(k, "Yes")
		case "ErrorRecoveryLevel":
			if _, ok := num(v, 0, 2); !ok {
				answer(k, pdu.ValueReject)
				continue
			}
			answer(k, "0")
		case "IFMarker", "OFMarker":
			answer(k, "No")
		case "IFMarkInt", "OFMarkInt":
			answer(k, pdu.ValueIrrelevant)
		case "TargetAlias", "TargetAddress", "TargetPortalGroupTag":
			return nil, refuse(loginInvalidRequest, "initiator sent target key %s", k)
		default:
			answer(k, pdu.ValueNotUnderstood)
		}
	}
	if p.firstBurstLength > p.maxBurstLength {
		p.firstBurstLength = p.maxBurstLength
	}
	return resp, nil
}
