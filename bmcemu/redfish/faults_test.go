package redfish

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// recorder keeps the events a fault.RuleInjector records.
type recorder struct {
	mu sync.Mutex
	ev []events.Event
}

func (r *recorder) Record(e events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev = append(r.ev, e)
}

func (r *recorder) kinds() []events.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Kind
	for _, e := range r.ev {
		out = append(out, e.Kind)
	}
	return out
}

// ruleInjector is the testbed's Injector over rules, recording its hits.
func ruleInjector(t *testing.T, rules ...fault.Rule) (*fault.RuleInjector, *recorder) {
	t.Helper()
	set := fault.NewSet()
	for _, r := range rules {
		if _, err := set.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	return fault.NewInjector(fault.InjectorConfig{Rules: set, Recorder: rec}), rec
}

func count(kinds []events.Kind, k events.Kind) int {
	n := 0
	for _, x := range kinds {
		if x == k {
			n++
		}
	}
	return n
}

// TestFaultPowerOnConflict: after a ForceOff that the rule hits, a Reset
// that would power the system on (On, ForceOn) gets 409 with an iDRAC-like
// message for Arg seconds of the service's clock, then succeeds; the fault
// is recorded once, at the power-off; requests in between are not asked
// about it.
func TestFaultPowerOnConflict(t *testing.T) {
	in, rec := ruleInjector(t, fault.Rule{Layer: fault.Redfish, Action: "power-on-conflict", Arg: "30", Count: 1})
	b := startBed(t, bedOptions{plain: true, faults: in})
	reset := func(rt string) (int, map[string]any) {
		st, _, body := b.do(t, "POST", b.sysPath(0)+"/Actions/ComputerSystem.Reset", "basic", map[string]any{"ResetType": rt})
		return st, body
	}
	if st, body := reset("On"); st != http.StatusNoContent {
		t.Fatalf("On before any power-off: %d %v", st, body)
	}
	if n := count(rec.kinds(), "fault.redfish.power-on-conflict"); n != 0 {
		t.Errorf("fault recorded %d times before a power-off", n)
	}
	if st, body := reset("ForceOff"); st != http.StatusNoContent {
		t.Fatalf("ForceOff: %d %v", st, body)
	}
	for _, rt := range []string{"On", "ForceOn"} {
		st, body := reset(rt)
		checkError(t, rt+" right after ForceOff", st, http.StatusConflict, body)
		if msg := fmt.Sprint(body); !strings.Contains(msg, "powering off") || !strings.Contains(msg, "retry") {
			t.Errorf("%s: message %v", rt, msg)
		}
	}
	if on, _ := b.machines[0].PowerState(t.Context()); on {
		t.Error("the machine was powered on despite the 409")
	}
	b.clock.Advance(29 * time.Second)
	if st, _ := reset("On"); st != http.StatusConflict {
		t.Errorf("On 29 s after ForceOff: %d, want 409", st)
	}
	b.clock.Advance(2 * time.Second)
	if st, body := reset("On"); st != http.StatusNoContent {
		t.Errorf("On 31 s after ForceOff: %d %v", st, body)
	}
	if on, _ := b.machines[0].PowerState(t.Context()); !on {
		t.Error("the machine is off after the window")
	}
	// The rule fired once: the next power-off arms nothing.
	if st, body := reset("ForceOff"); st != http.StatusNoContent {
		t.Fatalf("second ForceOff: %d %v", st, body)
	}
	if st, body := reset("On"); st != http.StatusNoContent {
		t.Errorf("On after a second power-off (rule spent): %d %v", st, body)
	}
	if n := count(rec.kinds(), "fault.redfish.power-on-conflict"); n != 1 {
		t.Errorf("fault recorded %d times, want once: %v", n, rec.kinds())
	}
	if !strings.Contains(fmt.Sprint(b.kinds()), string(events.BMCRedfishReset)) {
		t.Error("no reset events")
	}
}

// TestFaultTaskFail: the task the rule hits ends in Exception with the
// rule's message and changes nothing; the next one is carried out.
func TestFaultTaskFail(t *testing.T) {
	img := imageServer(t, map[string]string{"/bmc-3.0.bin": "x"})
	in, rec := ruleInjector(t, fault.Rule{Layer: fault.Redfish, Action: "task-fail", Arg: "flash chip on fire", Count: 1})
	b := startBed(t, bedOptions{plain: true, faults: in, firmwareReboot: time.Millisecond})
	if _, _, _ = b.do(t, "GET", b.sysPath(0), "basic", nil); count(rec.kinds(), "fault.redfish.task-fail") != 0 {
		t.Error("task-fail fired at a GET")
	}
	monitor := b.simpleUpdate(t, map[string]any{"ImageURI": img.URL + "/bmc-3.0.bin"})
	st, body := b.waitMonitor(t, monitor, 0)
	if st != http.StatusOK || body["TaskState"] != "Exception" {
		t.Errorf("monitor of the failed task: %d %v, want 200 with the Task in Exception", st, body)
	}
	task := b.taskOf(t, monitor)
	if task["TaskState"] != "Exception" || !strings.Contains(fmt.Sprint(task["Messages"]), "flash chip on fire") {
		t.Errorf("failed task: %v", task)
	}
	if bmc, _ := b.versions(t, 0); bmc != firmwareVersion {
		t.Errorf("BMC version %q after a failed task", bmc)
	}
	if n := count(rec.kinds(), "fault.redfish.task-fail"); n != 1 {
		t.Errorf("task-fail recorded %d times", n)
	}
	monitor = b.simpleUpdate(t, map[string]any{"ImageURI": img.URL + "/bmc-3.0.bin"})
	if st, task := b.waitMonitor(t, monitor, time.Millisecond); st != 200 || task["TaskState"] != "Completed" {
		t.Errorf("the next task: %d %v", st, task)
	}
	if bmc, _ := b.versions(t, 0); bmc != "3.0" {
		t.Errorf("BMC version %q after the next task", bmc)
	}
}

// TestFaultSessionExpire: the first request with the session's token
// finds it expired: 401, the session gone; basic auth is not affected and
// a new login works.
func TestFaultSessionExpire(t *testing.T) {
	in, rec := ruleInjector(t, fault.Rule{Layer: fault.Redfish, Action: "session-expire", Count: 1})
	b := startBed(t, bedOptions{plain: true, faults: in})
	login := func() (string, string) {
		st, hdr, body := b.do(t, "POST", sessionsPath, "", map[string]any{"UserName": testUser, "Password": testPass})
		if st != http.StatusCreated {
			t.Fatalf("login: %d %v", st, body)
		}
		return hdr.Get("X-Auth-Token"), hdr.Get("Location")
	}
	if st, _, _ := b.do(t, "GET", b.sysPath(0), "basic", nil); st != 200 {
		t.Errorf("basic auth: %d", st)
	}
	tok, loc := login()
	st, _, body := b.do(t, "GET", b.sysPath(0), tok, nil)
	checkError(t, "request with a session the fault expires", st, http.StatusUnauthorized, body)
	st, _, body = b.do(t, "GET", "/redfish/v1/", tok, nil)
	if st != 200 {
		t.Errorf("service root (public): %d", st)
	}
	st, _, body = b.do(t, "GET", loc, tok, nil)
	checkError(t, "the expired token again", st, http.StatusUnauthorized, body)
	if st, _, _ := b.do(t, "GET", loc, "basic", nil); st != 404 {
		t.Errorf("the expired session still exists: %d", st)
	}
	tok, _ = login()
	if st, _, body := b.do(t, "GET", b.sysPath(0), tok, nil); st != 200 {
		t.Errorf("a new session after the rule's one hit: %d %v", st, body)
	}
	if n := count(rec.kinds(), "fault.redfish.session-expire"); n != 1 {
		t.Errorf("session-expire recorded %d times", n)
	}
}

// TestFaultPowerOnConflictKinds: a GracefulShutdown opens the window as a
// ForceOff does, and every Reset that would power the system on from off
// (PushPowerButton, PowerCycle, ForceRestart, GracefulRestart) is refused
// in it; a power-on Reset never opens one.
func TestFaultPowerOnConflictKinds(t *testing.T) {
	in, rec := ruleInjector(t, fault.Rule{Layer: fault.Redfish, Action: "power-on-conflict"})
	b := startBed(t, bedOptions{plain: true, faults: in})
	reset := func(rt string) int {
		st, _, _ := b.do(t, "POST", b.sysPath(0)+"/Actions/ComputerSystem.Reset", "basic", map[string]any{"ResetType": rt})
		return st
	}
	if st := reset("On"); st != http.StatusNoContent {
		t.Fatalf("On: %d", st)
	}
	if st := reset("GracefulShutdown"); st != http.StatusNoContent {
		t.Fatalf("GracefulShutdown: %d", st)
	}
	for _, rt := range []string{"PushPowerButton", "PowerCycle", "ForceRestart", "GracefulRestart", "On"} {
		if st := reset(rt); st != http.StatusConflict {
			t.Errorf("%s within the default 5 s: %d, want 409", rt, st)
		}
	}
	b.clock.Advance(5 * time.Second)
	if st := reset("PushPowerButton"); st != http.StatusNoContent {
		t.Errorf("PushPowerButton after 5 s: %d", st)
	}
	if n := count(rec.kinds(), "fault.redfish.power-on-conflict"); n != 1 {
		t.Errorf("recorded %d times, want once (one power-off)", n)
	}
}

// TestFaultDropBootOverride: a PATCH of the boot override the rule hits is
// answered 200 but keeps nothing (the machine's flags and the override
// read back unchanged), recorded as fault.redfish.drop-boot-override and
// as a bmc.redfish.boot event saying so; the next PATCH is kept. A rule of
// another action is never asked at that moment.
func TestFaultDropBootOverride(t *testing.T) {
	in, rec := ruleInjector(t, fault.Rule{Layer: fault.Redfish, Action: "drop-boot-override", Count: 1})
	b := startBed(t, bedOptions{plain: true, faults: in})
	override := func() (string, string) {
		_, _, body := b.do(t, "GET", b.sysPath(0), "basic", nil)
		boot, _ := body["Boot"].(map[string]any)
		return fmt.Sprint(boot["BootSourceOverrideTarget"]), fmt.Sprint(boot["BootSourceOverrideEnabled"])
	}
	patch := map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once"}}
	if st, _, body := b.do(t, "PATCH", b.sysPath(0), "basic", patch); st != http.StatusOK && st != http.StatusNoContent {
		t.Fatalf("PATCH: %d %v", st, body)
	}
	if tgt, en := override(); tgt == "Cd" || en == "Once" {
		t.Errorf("a dropped override reads %s %s", tgt, en)
	}
	if n := count(rec.kinds(), "fault.redfish.drop-boot-override"); n != 1 {
		t.Errorf("drop-boot-override recorded %d times", n)
	}
	if d := b.details(events.BMCRedfishBoot); len(d) != 1 || !strings.Contains(d[0], "target Cd acknowledged, not kept") {
		t.Errorf("boot events %q", d)
	}
	if st, _, body := b.do(t, "PATCH", b.sysPath(0), "basic", patch); st != http.StatusOK && st != http.StatusNoContent {
		t.Fatalf("PATCH: %d %v", st, body)
	}
	if tgt, en := override(); tgt != "Cd" || en != "Once" {
		t.Errorf("the next override reads %s %s, want Cd Once", tgt, en)
	}
}
