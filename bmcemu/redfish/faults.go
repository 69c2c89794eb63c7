package redfish

// Layer redfish's faults asked at a moment rather than per request (see
// fault.Catalog, Spec.Fixed): each op below is asked only there, and only
// its own action's rules match it. A hit is recorded as the catalog's kind
// by the Injector when it fires.

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// The fixed ops of layer redfish and their actions.
const (
	opPowerOff = "power-off"     // after a Reset powered the system off
	opTask     = "task"          // a task is created
	opSession  = "session"       // a request came with a session token
	opBoot     = "boot-override" // a PATCH sets the Boot override's target

	actionPowerOnConflict = "power-on-conflict"
	actionTaskFail        = "task-fail"
	actionSessionExpire   = "session-expire"
	actionDropBoot        = "drop-boot-override"

	defaultConflictSeconds = 5
)

// ask asks the Injector about op on sys.
func (s *Server) ask(sys *system, op string) (fault.Hit, bool) {
	if s.cfg.Faults == nil {
		return fault.Hit{}, false
	}
	return s.cfg.Faults.Inject(fault.Redfish, events.Who{Machine: sys.hw.Name}, op)
}

// powerConflict is the window after a power-off in which "power-on-conflict"
// refuses to power the system on, as an iDRAC does while it is still
// powering the server off.
type powerConflict struct {
	mu     sync.Mutex
	until  time.Time
	ruleID string
}

// afterPowerAction arms the power-on conflict when a power-off action hits
// "power-on-conflict" (Arg seconds, default 5).
func (sys *system) afterPowerAction(a bmcemu.PowerAction) {
	if a != bmcemu.PowerDown && a != bmcemu.SoftShutdown {
		return
	}
	h, ok := sys.srv.ask(sys, opPowerOff)
	if !ok || h.Action != actionPowerOnConflict {
		return
	}
	secs, err := h.ArgInt()
	if err != nil || secs <= 0 {
		secs = defaultConflictSeconds
	}
	sys.conflict.mu.Lock()
	sys.conflict.until = sys.srv.cfg.Now().Add(time.Duration(secs) * time.Second)
	sys.conflict.ruleID = h.RuleID
	sys.conflict.mu.Unlock()
	sys.log().Info("power-on refused for a while (injected fault)", "event", actionPowerOnConflict, "seconds", secs)
}

// powerOnAllowed refuses a power-up inside an armed conflict window with
// 409 and an iDRAC-like message.
func (sys *system) powerOnAllowed(a bmcemu.PowerAction, rt string) error {
	if a != bmcemu.PowerUp {
		return nil
	}
	now := sys.srv.cfg.Now()
	sys.conflict.mu.Lock()
	left, rule := sys.conflict.until.Sub(now), sys.conflict.ruleID
	sys.conflict.mu.Unlock()
	if left <= 0 {
		return nil
	}
	sys.log().Info("power-on refused (injected fault)", "event", rt, "rule", rule)
	sys.srv.record(sys, events.BMCRedfishReset, rt+" refused: 409 Conflict, powering off (fault "+rule+")")
	return errConflict(fmt.Sprintf("Unable to perform the %s operation because the server is in the process of powering off. Wait for %d seconds and retry the operation.", rt, retrySeconds(left)))
}

// taskFault asks about a new task of sys: a "task-fail" hit is the error
// the task ends with.
func (s *Server) taskFault(sys *system) (error, bool) {
	h, ok := s.ask(sys, opTask)
	if !ok || h.Action != actionTaskFail {
		return nil, false
	}
	msg := h.Arg
	if msg == "" {
		msg = "injected failure"
	}
	return &apiError{http.StatusInternalServerError, "GeneralError", fmt.Sprintf("The task failed: %s (fault %s).", msg, h.RuleID)}, true
}

// sessionFault asks about a request authenticated by a session token: a
// "session-expire" hit ends the session, and the request gets 401. The
// machine asked about is the one the path names, else the first of the
// account's.
func (s *Server) sessionFault(q *request) error {
	ls := q.who.session
	if ls == nil || s.cfg.Faults == nil {
		return nil
	}
	sys := s.byID[strings.ToLower(q.r.PathValue("sys"))]
	if sys == nil || !sys.visibleTo(q.who) {
		sys = nil
		for _, x := range s.systems {
			if x.visibleTo(q.who) {
				sys = x
				break
			}
		}
	}
	if sys == nil {
		return nil
	}
	h, ok := s.ask(sys, opSession)
	if !ok || h.Action != actionSessionExpire {
		return nil
	}
	s.auth.expire(ls)
	s.log.Info("session expired early (injected fault)", "event", actionSessionExpire, "session", ls.id)
	s.record(sys, events.BMCRedfishSessions, "session "+ls.id+" expired (fault "+h.RuleID+")")
	return errUnauthorized()
}

// expire ends ls as a timeout would.
func (a *sessions) expire(ls *loginSession) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropLocked(ls)
}

// dropBootOverride asks about a PATCH setting the boot override to target
// on sys: a "drop-boot-override" hit answers the PATCH as done but keeps
// nothing, as a BMC that loses overrides does; the timeline shows it.
func (s *Server) dropBootOverride(sys *system, target string) bool {
	h, ok := s.ask(sys, opBoot)
	if !ok || h.Action != actionDropBoot {
		return false
	}
	sys.log().Info("boot override dropped (injected fault)", "event", actionDropBoot, "state", target)
	s.record(sys, events.BMCRedfishBoot, "target "+target+" acknowledged, not kept (fault "+h.RuleID+")")
	return true
}
