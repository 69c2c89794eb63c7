package initiator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

type sessionType string

const (
	sessionNormal    sessionType = "Normal"
	sessionDiscovery sessionType = "Discovery"
)

// params are the operational parameters the login settled on.
type params struct {
	headerDigest      bool
	dataDigest        bool
	targetMRDSL       uint32 // largest data segment the target accepts from us
	maxBurst          uint32
	firstBurst        uint32
	immediateData     bool
	initialR2T        bool
	maxOutstandingR2T uint32
	errorRecovery     uint64
}

// defaultParams are RFC 7143's defaults, what holds for any key the target does not answer.
func defaultParams() params {
	return params{
		targetMRDSL:       pdu.DefaultMaxRecvDataSegmentLength,
		maxBurst:          262144,
		firstBurst:        65536,
		immediateData:     true,
		initialR2T:        true,
		maxOutstandingR2T: 1,
	}
}

// LoginError is a Login Response with a status class other than success or redirection.
type LoginError struct {
	Target string
	Class  byte
	Detail byte
}

var loginStatusText = map[uint16]string{
	0x0200: "initiator error",
	0x0201: "authentication failure",
	0x0202: "authorization failure",
	0x0203: "target not found",
	0x0204: "target removed",
	0x0205: "unsupported version",
	0x0206: "too many connections",
	0x0207: "missing parameter",
	0x0208: "cannot include connection in session",
	0x0209: "session type not supported",
	0x020a: "session does not exist",
	0x020b: "invalid request during login",
	0x0300: "target error",
	0x0301: "service unavailable",
	0x0302: "out of resources",
}

func (e *LoginError) Error() string {
	code := uint16(e.Class)<<8 | uint16(e.Detail)
	text, ok := loginStatusText[code]
	if !ok {
		text = "login refused"
	}
	return fmt.Sprintf("login to %s: %s (status 0x%04x)", e.Target, text, code)
}

// AuthFailed reports whether err is a login refused for authentication or authorization.
func AuthFailed(err error) bool {
	var le *LoginError
	return errors.As(err, &le) && le.Class == 2 && (le.Detail == 1 || le.Detail == 2)
}

// connect dials and logs in, following redirections.
func connect(ctx context.Context, cfg Config, st sessionType) (*Session, error) {
	addr := cfg.Addr
	for redirects := 0; ; redirects++ {
		s, redirect, err := loginOnce(ctx, cfg, st, addr)
		if err != nil {
			return nil, err
		}
		if redirect == "" {
			return s, nil
		}
		if redirects == maxRedirects {
			return nil, fmt.Errorf("login to %s: more than %d redirections (last to %s)", loginName(cfg, st), maxRedirects, redirect)
		}
		cfg.Logger.Info("iscsi login redirected", "target", loginName(cfg, st), "from", addr, "to", redirect)
		addr = redirect
	}
}

func loginName(cfg Config, st sessionType) string {
	if st == sessionDiscovery {
		return "discovery session at " + cfg.Addr
	}
	return cfg.TargetIQN
}

func loginOnce(ctx context.Context, cfg Config, st sessionType, addr string) (s *Session, redirect string, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := cfg.DialContext(ctx, addr)
	if err != nil {
		return nil, "", fmt.Errorf("login to %s: dial %s: %w", loginName(cfg, st), addr, err)
	}
	// Unblock reads and writes when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err == nil {
			err = fmt.Errorf("login to %s: %w", loginName(cfg, st), ctx.Err())
		}
		if err != nil || redirect != "" {
			conn.Close()
			s = nil
			return
		}
		conn.SetDeadline(time.Time{})
	}()
	s = newSession(cfg, conn)
	l := &login{s: s, cfg: cfg, st: st, params: defaultParams()}
	if _, err := rand.Read(s.isid[1:]); err != nil {
		return nil, "", err
	}
	s.isid[0] = 0x80 // random ISID format (RFC 7143 11.12.5)
	redirect, err = l.run()
	if err != nil {
		if ctx.Err() != nil && isTimeout(err) {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		var le *LoginError
		if errors.As(err, &le) {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("login to %s: %w", loginName(cfg, st), err)
	}
	if redirect != "" {
		return nil, redirect, nil
	}
	s.params = l.params
	s.tsih = l.tsih
	s.send = pdu.Options{HeaderDigest: l.params.headerDigest, DataDigest: l.params.dataDigest}
	s.recv = pdu.Options{HeaderDigest: l.params.headerDigest, DataDigest: l.params.dataDigest,
		MaxDataSegmentLength: ourMaxRecvDataSegmentLength}
	s.cmdSN, s.expStatSN = l.cmdSN, l.expStatSN
	s.expCmdSN, s.maxCmdSN = l.expCmdSN, l.maxCmdSN
	cfg.Logger.Info("iscsi login", "target", loginName(cfg, st), "addr", addr, "tsih", s.tsih,
		"header_digest", l.params.headerDigest, "data_digest", l.params.dataDigest,
		"max_burst", l.params.maxBurst, "first_burst", l.params.firstBurst,
		"immediate_data", l.params.immediateData, "initial_r2t", l.params.initialR2T,
		"target_mrdsl", l.params.targetMRDSL)
	return s, "", nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// login is the state of one login exchange (RFC 7143 section 6.3).
type login struct {
	s         *Session
	cfg       Config
	st        sessionType
	params    params
	csg       byte
	cmdSN     uint32
	expStatSN uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	tsih      uint16
	first     bool // a response has been received
}

func (l *login) run() (redirect string, err error) {
	l.cmdSN = 1
	keys := []pdu.KV{
		{Key: "InitiatorName", Value: l.cfg.InitiatorIQN},
		{Key: "SessionType", Value: string(l.st)},
	}
	if l.st == sessionNormal {
		keys = append(keys, pdu.KV{Key: "TargetName", Value: l.cfg.TargetIQN})
	}
	l.csg = pdu.StageSecurity
	var resp *pdu.PDU
	var kvs []pdu.KV
	if l.cfg.CHAP.enabled() {
		resp, kvs, redirect, err = l.chap(keys)
	} else {
		keys = append(keys, pdu.KV{Key: "AuthMethod", Value: "None"})
		resp, kvs, redirect, err = l.exchange(keys, true, pdu.StageOperational)
		if err == nil && redirect == "" {
			if am, ok := pdu.Lookup(kvs, "AuthMethod"); ok && am != "None" {
				return "", fmt.Errorf("target wants AuthMethod=%s; configure CHAP", am)
			}
		}
	}
	if err != nil || redirect != "" {
		return redirect, err
	}
	// Stay in security until the target transits (it may want more rounds).
	for !resp.Transit() {
		if resp, kvs, redirect, err = l.exchange(nil, true, pdu.StageOperational); err != nil || redirect != "" {
			return redirect, err
		}
	}
	l.csg = resp.NSG()
	if l.csg == pdu.StageOperational {
		offered := l.operationalKeys()
		resp, kvs, redirect, err = l.exchange(offered, true, pdu.StageFullFeature)
		for {
			if err != nil || redirect != "" {
				return redirect, err
			}
			answers, aerr := l.applyOperational(kvs, offered)
			if aerr != nil {
				return "", aerr
			}
			if resp.Transit() && resp.NSG() == pdu.StageFullFeature && len(answers) == 0 {
				break
			}
			resp, kvs, redirect, err = l.exchange(answers, true, pdu.StageFullFeature)
		}
	}
	if resp.NSG() != pdu.StageFullFeature {
		return "", fmt.Errorf("target ended login in stage %d, not full feature", resp.NSG())
	}
	if l.st == sessionNormal && l.tsih == 0 {
		return "", errors.New("target gave no TSIH for the new session")
	}
	return "", nil
}

// chap runs the CHAP rounds of the security stage and returns the response that carried
// (or will lead to) the transit.
func (l *login) chap(keys []pdu.KV) (*pdu.PDU, []pdu.KV, string, error) {
	keys = append(keys, pdu.KV{Key: "AuthMethod", Value: "CHAP,None"})
	resp, kvs, redirect, err := l.exchange(keys, false, 0)
	if err != nil || redirect != "" {
		return nil, nil, redirect, err
	}
	am, _ := pdu.Lookup(kvs, "AuthMethod")
	if am != "CHAP" {
		if am == "None" && resp.Transit() {
			// The target does not authenticate initiators; mutual CHAP cannot be honoured.
			if l.cfg.MutualCHAP.enabled() {
				return nil, nil, "", errors.New("mutual CHAP configured but the target chose AuthMethod=None")
			}
			l.cfg.Logger.Warn("iscsi target accepted login without CHAP", "target", l.cfg.TargetIQN)
			return resp, kvs, "", nil
		}
		return nil, nil, "", fmt.Errorf("target refused CHAP (AuthMethod=%q)", am)
	}
	resp, kvs, redirect, err = l.exchange([]pdu.KV{{Key: "CHAP_A", Value: "5"}}, false, 0)
	if err != nil || redirect != "" {
		return nil, nil, redirect, err
	}
	if a, _ := pdu.Lookup(kvs, "CHAP_A"); a != "5" {
		return nil, nil, "", fmt.Errorf("target chose CHAP_A=%q, only 5 (MD5) is supported", a)
	}
	id, okI := pdu.Lookup(kvs, "CHAP_I")
	chal, okC := pdu.Lookup(kvs, "CHAP_C")
	if !okI || !okC {
		return nil, nil, "", errors.New("target sent no CHAP_I/CHAP_C challenge")
	}
	var ours []byte
	var ourID [1]byte
	if l.cfg.MutualCHAP.enabled() {
		ours = make([]byte, 16)
		if _, err := rand.Read(ours); err != nil {
			return nil, nil, "", err
		}
		if _, err := rand.Read(ourID[:]); err != nil {
			return nil, nil, "", err
		}
	}
	name, r, err := chapAnswer(l.cfg.CHAP, id, chal, ours)
	if err != nil {
		return nil, nil, "", err
	}
	answer := []pdu.KV{{Key: "CHAP_N", Value: name}, {Key: "CHAP_R", Value: r}}
	if ours != nil {
		answer = append(answer, pdu.KV{Key: "CHAP_I", Value: strconv.Itoa(int(ourID[0]))},
			pdu.KV{Key: "CHAP_C", Value: encodeHex(ours)})
	}
	resp, kvs, redirect, err = l.exchange(answer, true, pdu.StageOperational)
	if err != nil || redirect != "" {
		return nil, nil, redirect, err
	}
	if ours != nil {
		n, okN := pdu.Lookup(kvs, "CHAP_N")
		r, okR := pdu.Lookup(kvs, "CHAP_R")
		if !okN || !okR {
			return nil, nil, "", errors.New("mutual CHAP: target sent no CHAP_N/CHAP_R")
		}
		if err := chapVerify(l.cfg.MutualCHAP, ourID[0], ours, n, r); err != nil {
			return nil, nil, "", err
		}
	}
	return resp, kvs, "", nil
}

func (l *login) operationalKeys() []pdu.KV {
	digest := func(on bool) string {
		if on {
			return "CRC32C,None"
		}
		return "None"
	}
	keys := []pdu.KV{
		{Key: "HeaderDigest", Value: digest(l.cfg.HeaderDigest)},
		{Key: "DataDigest", Value: digest(l.cfg.DataDigest)},
		{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(ourMaxRecvDataSegmentLength)},
	}
	if l.st == sessionDiscovery {
		return keys
	}
	return append(keys,
		pdu.KV{Key: "MaxConnections", Value: "1"},
		pdu.KV{Key: "InitialR2T", Value: "No"},
		pdu.KV{Key: "ImmediateData", Value: "Yes"},
		pdu.KV{Key: "MaxBurstLength", Value: strconv.Itoa(ourMaxBurstLength)},
		pdu.KV{Key: "FirstBurstLength", Value: strconv.Itoa(ourFirstBurstLength)},
		pdu.KV{Key: "DefaultTime2Wait", Value: "0"},
		pdu.KV{Key: "DefaultTime2Retain", Value: "0"},
		pdu.KV{Key: "MaxOutstandingR2T", Value: "4"},
		pdu.KV{Key: "DataPDUInOrder", Value: "Yes"},
		pdu.KV{Key: "DataSequenceInOrder", Value: "Yes"},
		pdu.KV{Key: "ErrorRecoveryLevel", Value: "0"},
	)
}

// applyOperational records the target's answers and declarations, and returns our answers
// to any key the target proposed itself.
func (l *login) applyOperational(kvs, offered []pdu.KV) ([]pdu.KV, error) {
	var answers []pdu.KV
	p := &l.params
	for _, kv := range kvs {
		_, weOffered := pdu.Lookup(offered, kv.Key)
		v := kv.Value
		special := v == pdu.ValueReject || v == pdu.ValueIrrelevant || v == pdu.ValueNotUnderstood
		if special && weOffered {
			l.cfg.Logger.Debug("iscsi login key not accepted", "key", kv.Key, "value", v)
			continue
		}
		var err error
		switch kv.Key {
		case "HeaderDigest", "DataDigest":
			var on bool
			switch v {
			case "CRC32C":
				on = true
			case "None":
			default:
				if weOffered {
					return nil, fmt.Errorf("%s=%q: not a digest we offered", kv.Key, v)
				}
				v = "None"
			}
			if on && !weOffered {
				// The target proposes; we only take CRC32C when configured to.
				want := l.cfg.HeaderDigest
				if kv.Key == "DataDigest" {
					want = l.cfg.DataDigest
				}
				if sel, ok := pdu.SelectFromList(v, "CRC32C", "None"); ok && (want || sel == "None") {
					v = sel
				} else if !want {
					v = "None"
					on = false
				}
			}
			if kv.Key == "HeaderDigest" {
				p.headerDigest = on
			} else {
				p.dataDigest = on
			}
			if !weOffered {
				answers = append(answers, pdu.KV{Key: kv.Key, Value: v})
			}
		case "MaxRecvDataSegmentLength":
			var n uint64
			if n, err = pdu.ParseNumberIn(v, 512, pdu.MaxDataSegmentLength); err == nil {
				p.targetMRDSL = uint32(n)
			}
		case "MaxBurstLength", "FirstBurstLength":
			var n uint64
			if n, err = pdu.ParseNumberIn(v, 512, pdu.MaxDataSegmentLength); err == nil {
				ours := uint64(ourMaxBurstLength)
				if kv.Key == "FirstBurstLength" {
					ours = ourFirstBurstLength
				}
				n = min(n, ours)
				if kv.Key == "MaxBurstLength" {
					p.maxBurst = uint32(n)
				} else {
					p.firstBurst = uint32(n)
				}
				if !weOffered {
					answers = append(answers, pdu.KV{Key: kv.Key, Value: strconv.FormatUint(n, 10)})
				}
			}
		case "ImmediateData", "InitialR2T", "DataPDUInOrder", "DataSequenceInOrder":
			var b bool
			if b, err = pdu.ParseBool(v); err == nil {
				switch kv.Key {
				case "ImmediateData":
					p.immediateData = b
				case "InitialR2T":
					p.initialR2T = b
				case "DataPDUInOrder", "DataSequenceInOrder":
					b = true // OR with our Yes
				}
				if !weOffered {
					answers = append(answers, pdu.KV{Key: kv.Key, Value: pdu.FormatBool(b)})
				}
			}
		case "MaxOutstandingR2T":
			var n uint64
			if n, err = pdu.ParseNumberIn(v, 1, 65535); err == nil {
				p.maxOutstandingR2T = uint32(min(n, 4))
				if !weOffered {
					answers = append(answers, pdu.KV{Key: kv.Key, Value: strconv.FormatUint(min(n, 4), 10)})
				}
			}
		case "ErrorRecoveryLevel":
			var n uint64
			if n, err = pdu.ParseNumberIn(v, 0, 2); err == nil {
				if !weOffered {
					answers = append(answers, pdu.KV{Key: kv.Key, Value: "0"})
				} else if n != 0 {
					err = fmt.Errorf("target answered %d to our 0", n)
				}
			}
		case "MaxConnections", "DefaultTime2Wait", "DefaultTime2Retain":
			var n uint64
			if n, err = pdu.ParseNumberIn(v, 0, 65535); err == nil && !weOffered {
				if kv.Key == "MaxConnections" {
					n = 1
				}
				answers = append(answers, pdu.KV{Key: kv.Key, Value: strconv.FormatUint(n, 10)})
			}
		case "IFMarker", "OFMarker":
			if !weOffered {
				answers = append(answers, pdu.KV{Key: kv.Key, Value: "No"})
			}
		case "TargetAlias", "TargetPortalGroupTag", "TargetAddress", "TargetName":
			// Declarations; nothing to answer.
		default:
			if !weOffered && !special {
				answers = append(answers, pdu.KV{Key: kv.Key, Value: pdu.ValueNotUnderstood})
			}
		}
		if err != nil {
			return nil, fmt.Errorf("login key %s: %w", kv.Key, err)
		}
	}
	if p.firstBurst > p.maxBurst {
		p.firstBurst = p.maxBurst
	}
	return answers, nil
}

// exchange sends one Login Request (splitting nothing: our keys fit in one PDU) and reads the
// whole answer, asking for more while the target sets the C bit.
func (l *login) exchange(keys []pdu.KV, transit bool, nsg byte) (*pdu.PDU, []pdu.KV, string, error) {
	data := pdu.EncodeText(keys)
	var text []byte
	for {
		req := &pdu.PDU{Data: data}
		req.SetOpcode(pdu.OpLoginReq)
		req.SetImmediate(true)
		if transit {
			req.SetTransit(true)
			req.SetNSG(nsg)
		}
		req.SetCSG(l.csg)
		req.SetISID(l.s.isid)
		req.SetTSIH(0)
		req.SetITT(0)
		req.SetCID(0)
		req.SetCmdSN(l.cmdSN)
		req.SetExpStatSN(l.expStatSN)
		if _, err := pdu.Write(l.s.conn, req, pdu.Options{}); err != nil {
			return nil, nil, "", fmt.Errorf("send login request: %w", err)
		}
		resp, err := pdu.Read(l.s.conn, pdu.Options{MaxDataSegmentLength: ourMaxRecvDataSegmentLength})
		if err != nil {
			return nil, nil, "", fmt.Errorf("read login response: %w", err)
		}
		switch resp.Opcode() {
		case pdu.OpLoginResp:
		case pdu.OpReject:
			return nil, nil, "", fmt.Errorf("target rejected the login request (reason 0x%02x)", resp.RejectReason())
		default:
			return nil, nil, "", fmt.Errorf("got %v during login", resp.Opcode())
		}
		if resp.VersionActive() != 0 {
			return nil, nil, "", fmt.Errorf("target speaks iSCSI version %d, not 0", resp.VersionActive())
		}
		l.expStatSN = resp.StatSN() + 1
		l.expCmdSN, l.maxCmdSN = resp.ExpCmdSN(), resp.MaxCmdSN()
		l.tsih = resp.TSIH()
		switch resp.StatusClass() {
		case 0:
		case 1:
			kvs, _ := pdu.ParseText(resp.Data)
			addr, ok := pdu.Lookup(kvs, "TargetAddress")
			if !ok {
				return nil, nil, "", fmt.Errorf("redirection (status 0x01%02x) without TargetAddress", resp.StatusDetail())
			}
			return nil, nil, redirectAddr(addr), nil
		default:
			name := l.cfg.TargetIQN
			if l.st == sessionDiscovery {
				name = "discovery session at " + l.cfg.Addr
			}
			return nil, nil, "", &LoginError{Target: name, Class: resp.StatusClass(), Detail: resp.StatusDetail()}
		}
		text = append(text, resp.Data...)
		if len(text) > 64<<10 {
			return nil, nil, "", errors.New("login response text longer than 64 KiB")
		}
		if !resp.Continue() {
			kvs, err := pdu.ParseText(text)
			if err != nil {
				return nil, nil, "", fmt.Errorf("login response: %w", err)
			}
			if transit && resp.Transit() && resp.NSG() > nsg {
				return nil, nil, "", fmt.Errorf("target moved to stage %d beyond the %d we asked", resp.NSG(), nsg)
			}
			l.cfg.Logger.Debug("iscsi login response", "csg", resp.CSG(), "nsg", resp.NSG(), "transit", resp.Transit(), "keys", kvs)
			return resp, kvs, "", nil
		}
		// More text follows: ask for it with an empty request in the same stage.
		data, transit = nil, false
	}
}

// redirectAddr turns a TargetAddress value "host[:port][,tpgt]" into a dialable address.
func redirectAddr(v string) string {
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return withDefaultPort(strings.Trim(v, " "))
}
