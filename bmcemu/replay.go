package bmcemu

import (
	"net"
	"sync"
	"time"
)

// replay makes session setup idempotent. A client resends an Open Session
// Request, RAKP 1 or RAKP 3 it got no answer to in time (ipmitool and
// go-ipmi after 1 s); go-ipmi's BMC would run it again — a second session
// for the same console, a new BMC random number for the same RAKP 1 — and
// the answer already on its way would no longer fit: on a host answering
// slowly (hundreds of machines deploying at once) sessions then fail at
// RAKP 3. A request the BMC has answered, byte for byte the same, gets the
// same answer again instead, as a retransmission should.
type replay struct {
	mu      sync.Mutex
	pending map[string]string   // client address -> its setup request awaiting the reply
	answers map[string]answered // client address + request -> the reply sent
}

type answered struct {
	reply []byte
	at    time.Time
}

// replayFor is how long an answer is kept for a resent request: longer
// than any client's retries (ipmitool: 4 resends, 1 s apart by default).
const replayFor = 30 * time.Second

// isSetupRequest reports whether an RMCP+ payload type is a session-setup
// request; its reply has the next type.
func isSetupRequest(t uint8) bool {
	return t == payloadOpenReq || t == payloadRAKP1 || t == payloadRAKP3
}

// resent reports whether pkt is a setup request from addr already answered
// or being answered, and returns the answer to send again (nil: none yet).
func (r *replay) resent(addr net.Addr, pkt []byte) ([]byte, bool) {
	h, err := parseHeader(pkt)
	if err != nil || !h.rmcpPlus || !isSetupRequest(h.payloadType) {
		return nil, false
	}
	key := addrString(addr) + "\x00" + string(pkt)
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.answers[key]; ok && time.Since(a.at) < replayFor {
		return a.reply, true
	}
	if r.pending[addrString(addr)] == key {
		return nil, true // the same request is being answered: that answer serves both
	}
	if r.pending == nil {
		r.pending, r.answers = map[string]string{}, map[string]answered{}
	}
	r.pending[addrString(addr)] = key
	return nil, false
}

// sent records b as the answer to addr's pending setup request when it is
// a setup reply.
func (r *replay) sent(addr net.Addr, b []byte) {
	h, err := parseHeader(b)
	if err != nil || !h.rmcpPlus || h.payloadType == 0 || !isSetupRequest(h.payloadType-1) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key, ok := r.pending[addrString(addr)]
	if !ok {
		return
	}
	delete(r.pending, addrString(addr))
	now := time.Now()
	for k, a := range r.answers {
		if now.Sub(a.at) >= replayFor {
			delete(r.answers, k)
		}
	}
	r.answers[key] = answered{reply: append([]byte(nil), b...), at: now}
}
