package bmcemu

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// pyghmi (pyghmi/ipmi/private/session.py) loses a reply that arrives before
// its calling thread has parked on the I/O thread: _io_wait queues the
// waiter only after sendto returns, while _IOWorker.run may already have
// read the reply; the caller then sleeps out its 0.5–1 s retry timer. A BMC
// answering in microseconds costs pyghmi 0.5–2 s per call (the ~1.6 s seen
// against go-ipmi's reference server; ipmi_sim shows the same); hardware
// BMCs answer in milliseconds and never hit it. The pacer closes the window
// without slowing other clients down:
//
//   - Replies outside a session (Get Channel Authentication Capabilities,
//     Open Session Response, RAKP 2 and 4, IPMI 1.5 challenge) are held back
//     Config.ReplyDelay and never sent twice: clients do not pair them with
//     requests (go-ipmi's client would take a stray copy of the auth
//     capabilities reply for the Open Session Response; pyghmi re-runs a
//     duplicated Open Session Response).
//   - Every in-session IPMI reply leaves at once and is sent once more after
//     Config.ResendAfter if the client has sent nothing since. A waiting
//     pyghmi wakes on the copy; clients that moved on never see one, and
//     clients that match replies to requests (pyghmi, ipmitool, go-ipmi all
//     pair by rqSeq and command) drop a stray copy.
type pacer struct {
	conn        net.PacketConn
	setupDelay  time.Duration
	resendAfter time.Duration
	stopped     atomic.Bool // Serve returned: the conn is the caller's again
	// quiet, when set, names clients whose replies are never re-sent
	// (those in a SOL session).
	quiet func(key string) bool

	mu          sync.Mutex
	lastInbound map[string]time.Time // remote address -> last datagram from it; nil until one
}

// pacerMaxClients bounds the per-address table; past it the table restarts
// (worst case: one resend more than needed).
const pacerMaxClients = 4096

func newPacer(conn net.PacketConn, setupDelay, resendAfter time.Duration) *pacer {
	return &pacer{conn: conn, setupDelay: setupDelay, resendAfter: resendAfter}
}

// received notes a datagram from addr.
func (p *pacer) received(addr net.Addr) {
	if p.resendAfter <= 0 || addr == nil {
		return
	}
	p.mu.Lock()
	if p.lastInbound == nil || len(p.lastInbound) >= pacerMaxClients {
		p.lastInbound = make(map[string]time.Time) // made on first use; bounded
	}
	p.lastInbound[addr.String()] = time.Now()
	p.mu.Unlock()
}

// send writes one reply with the pacing its kind calls for.
func (p *pacer) send(b []byte, addr net.Addr) (int, error) {
	h, err := parseHeader(b)
	switch {
	case err != nil || h.class != rmcpClassIPMI:
		return p.conn.WriteTo(b, addr)
	case h.sessionID == 0 || (h.rmcpPlus && h.payloadType >= payloadOpenReq):
		if p.setupDelay > 0 {
			time.Sleep(p.setupDelay)
		}
		return p.conn.WriteTo(b, addr)
	case h.rmcpPlus && h.payloadType == payloadSOL:
		return p.conn.WriteTo(b, addr) // SOL has its own acks and retries
	}
	sent := time.Now()
	n, werr := p.conn.WriteTo(b, addr)
	if werr == nil && p.resendAfter > 0 && addr != nil && (p.quiet == nil || !p.quiet(addr.String())) {
		cp := append([]byte(nil), b...)
		key := addr.String()
		time.AfterFunc(p.resendAfter, func() {
			p.mu.Lock()
			last, ok := p.lastInbound[key]
			quiet := ok && !last.After(sent)
			if quiet {
				delete(p.lastInbound, key)
			}
			p.mu.Unlock()
			if quiet && !p.stopped.Load() {
				_, _ = p.conn.WriteTo(cp, addr)
			}
		})
	}
	return n, werr
}

// stop ends resends: called when Serve returns.
func (p *pacer) stop() { p.stopped.Store(true) }
