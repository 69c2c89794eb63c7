package redfish

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

// maxSessions bounds open sessions; the least recently used goes first.
const maxSessions = 1024

// sessions are the service's login sessions. An account is a
// username/password pair of one or more systems; it sees those systems.
type sessions struct {
	srv *Server
	// accounts are the distinct username/password pairs of the systems
	// (usually far fewer than systems: a fleet often shares one).
	accounts []account

	mu      sync.Mutex
	byToken map[string]*loginSession
	byID    map[string]*loginSession
}

// account is one username/password pair.
type account struct{ user, pass string }

type loginSession struct {
	id, token, user, pass string
	lastUsed              time.Time
}

// principal is who a request is authenticated as.
type principal struct {
	user, pass string
	session    *loginSession // nil for basic auth
}

func newSessions(s *Server) *sessions {
	a := &sessions{srv: s, byToken: map[string]*loginSession{}, byID: map[string]*loginSession{}}
	seen := map[account]bool{}
	for _, sys := range s.systems {
		acc := account{sys.user, sys.pass}
		if !seen[acc] {
			seen[acc] = true
			a.accounts = append(a.accounts, acc)
		}
	}
	return a
}

// valid reports whether user/pass is the account of at least one system.
// It compares with every distinct account, not every system: basic auth
// asks on each request, and 10 000 systems sharing one account made that
// the most expensive part of a GET.
func (a *sessions) valid(user, pass string) bool {
	ok := false
	for _, acc := range a.accounts {
		if subtle.ConstantTimeCompare([]byte(user), []byte(acc.user)) == 1 &&
			subtle.ConstantTimeCompare([]byte(pass), []byte(acc.pass)) == 1 {
			ok = true
		}
	}
	return ok
}

// authenticate finds who sent r: an X-Auth-Token of a live session, or
// HTTP basic credentials.
func (a *sessions) authenticate(r *http.Request) (principal, error) {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		now := a.srv.cfg.Now()
		a.mu.Lock()
		defer a.mu.Unlock()
		ls, ok := a.byToken[tok]
		if !ok {
			return principal{}, errUnauthorized()
		}
		if now.Sub(ls.lastUsed) > a.srv.cfg.SessionTimeout {
			a.dropLocked(ls)
			return principal{}, errUnauthorized()
		}
		ls.lastUsed = now
		return principal{user: ls.user, pass: ls.pass, session: ls}, nil
	}
	if u, p, ok := r.BasicAuth(); ok && a.valid(u, p) {
		return principal{user: u, pass: p}, nil
	}
	return principal{}, errUnauthorized()
}

// create opens a session for user/pass.
func (a *sessions) create(user, pass string) (*loginSession, error) {
	if !a.valid(user, pass) {
		return nil, errUnauthorized()
	}
	ls := &loginSession{id: randomHex(8), token: randomHex(24), user: user, pass: pass, lastUsed: a.srv.cfg.Now()}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	if len(a.byID) >= maxSessions {
		var oldest *loginSession
		for _, s := range a.byID {
			if oldest == nil || s.lastUsed.Before(oldest.lastUsed) {
				oldest = s
			}
		}
		a.dropLocked(oldest)
	}
	a.byToken[ls.token] = ls
	a.byID[ls.id] = ls
	a.recordFor(ls, "login "+ls.id)
	return ls, nil
}

// get returns the session id visible to p.
func (a *sessions) get(p principal, id string) (*loginSession, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ls, ok := a.byID[id]
	if !ok || ls.user != p.user || ls.pass != p.pass {
		return nil, false
	}
	return ls, true
}

// list returns the ids of p's sessions.
func (a *sessions) list(p principal) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	var ids []string
	for id, ls := range a.byID {
		if ls.user == p.user && ls.pass == p.pass {
			ids = append(ids, id)
		}
	}
	return ids
}

// remove logs session id out.
func (a *sessions) remove(p principal, id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ls, ok := a.byID[id]
	if !ok || ls.user != p.user || ls.pass != p.pass {
		return false
	}
	a.dropLocked(ls)
	a.recordFor(ls, "logout "+id)
	return true
}

func (a *sessions) expireLocked() {
	now := a.srv.cfg.Now()
	for _, ls := range a.byID {
		if now.Sub(ls.lastUsed) > a.srv.cfg.SessionTimeout {
			a.dropLocked(ls)
		}
	}
}

func (a *sessions) dropLocked(ls *loginSession) {
	delete(a.byToken, ls.token)
	delete(a.byID, ls.id)
}

// recordFor records a session event on the timeline of every system of
// the account.
func (a *sessions) recordFor(ls *loginSession, detail string) {
	for _, sys := range a.srv.systems {
		if sys.user == ls.user && sys.pass == ls.pass {
			a.srv.record(sys, events.BMCRedfishSessions, detail)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
