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
//
// Only the setup step a client is at is kept, per client address: any
// other datagram from that address (its next step, a command in its
// session, Close Session) ends it. Clients' first requests are alike byte
// for byte (ipmitool and go-ipmi both send a fixed console session ID and
// message tag in Open Session), and a later client may be given the same
// source port: it must get a session of its own, not the answer that
// opened a session its predecessor used and closed.
type replay struct {
	mu      sync.Mutex
	clients map[string]*setupStep // client address -> the setup request it sent last
}

// setupStep is one client's latest setup request and, once sent, its
// answer.
type setupStep struct {
	req   string
	since time.Time // when req was admitted
	reply []byte    // nil while it is being answered
	at    time.Time // when reply was sent
}

const (
	// replayFor is how long an answer is kept for a resent request: longer
	// than any client's retries (ipmitool: 4 resends, 1 s apart by
	// default).
	replayFor = 30 * time.Second
	// answeringFor is how long a resent request waits for the answer to
	// its first copy before it is let through as a request of its own:
	// go-ipmi drops some requests without answering.
	answeringFor = 10 * time.Second
)

// isSetupRequest reports whether an RMCP+ payload type is a session-setup
// request; its reply has the next type.
func isSetupRequest(t uint8) bool {
	return t == payloadOpenReq || t == payloadRAKP1 || t == payloadRAKP3
}

// resent reports whether pkt, from addr, repeats the setup request addr
// sent last and that is answered or being answered; it returns the answer
// to send again (nil: none yet, the first answer serves both).
func (r *replay) resent(addr net.Addr, pkt []byte) ([]byte, bool) {
	h, err := parseHeader(pkt)
	setup := err == nil && h.rmcpPlus && isSetupRequest(h.payloadType)
	a := addrString(addr)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !setup {
		if len(r.clients) > 0 {
			delete(r.clients, a) // the client has moved on
		}
		return nil, false
	}
	now := time.Now()
	if st := r.clients[a]; st != nil && st.req == string(pkt) {
		if st.reply != nil && now.Sub(st.at) < replayFor {
			return st.reply, true
		}
		if st.reply == nil && now.Sub(st.since) < answeringFor {
			return nil, true
		}
	}
	if r.clients == nil {
		r.clients = map[string]*setupStep{}
	}
	for k, st := range r.clients {
		if now.Sub(st.since) >= replayFor && (st.reply == nil || now.Sub(st.at) >= replayFor) {
			delete(r.clients, k) // abandoned setups
		}
	}
	r.clients[a] = &setupStep{req: string(pkt), since: now}
	return nil, false
}

// sent records b as the answer to addr's setup request being answered when
// b is a setup reply.
func (r *replay) sent(addr net.Addr, b []byte) {
	h, err := parseHeader(b)
	if err != nil || !h.rmcpPlus || h.payloadType == 0 || !isSetupRequest(h.payloadType-1) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.clients[addrString(addr)]; st != nil && st.reply == nil {
		st.reply, st.at = append([]byte(nil), b...), time.Now()
	}
}
