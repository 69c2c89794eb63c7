package conductor

import (
	"testing"

	"github.com/metalbed/metalbed/provisioner"
)

var allStates = []provisioner.ProvisionState{
	provisioner.StateEnroll, provisioner.StateVerifying, provisioner.StateManageable, provisioner.StateAvailable,
	provisioner.StateDeploying, provisioner.StateWaitCallback, provisioner.StateActive, provisioner.StateDeployFailed,
	provisioner.StateDeleting, provisioner.StateCleaning, provisioner.StateCleanWait, provisioner.StateCleanFailed,
	provisioner.StateError, provisioner.StateInspecting, provisioner.StateInspectWait, provisioner.StateInspectFailed,
}

var allEvents = []Event{EventManage, EventProvide, EventDeploy, EventRebuild, EventDelete, EventClean,
	EventInspect, EventAbort, EventDone, EventFail, EventWait, EventResume}

// want is the state machine of protocol-notes.md written out edge by edge,
// independently of the table in fsm.go; every other (state, event) pair
// must be refused.
var want = map[provisioner.ProvisionState]map[Event]provisioner.ProvisionState{
	"enroll":         {"manage": "verifying"},
	"verifying":      {"done": "manageable", "fail": "enroll"},
	"manageable":     {"provide": "cleaning", "clean": "cleaning", "inspect": "inspecting"},
	"cleaning":       {"done": "available", "wait": "clean wait", "fail": "clean failed", "manage": "manageable"},
	"clean wait":     {"resume": "cleaning", "fail": "clean failed", "abort": "clean failed"},
	"clean failed":   {"manage": "manageable"},
	"inspecting":     {"done": "manageable", "wait": "inspect wait", "fail": "inspect failed"},
	"inspect wait":   {"done": "manageable", "fail": "inspect failed", "abort": "inspect failed", "resume": "inspecting"},
	"inspect failed": {"manage": "manageable", "inspect": "inspecting"},
	"available":      {"deploy": "deploying", "manage": "manageable"},
	"deploying":      {"wait": "wait call-back", "done": "active", "fail": "deploy failed"},
	"wait call-back": {"resume": "deploying", "fail": "deploy failed", "abort": "deploy failed"},
	"deploy failed":  {"deploy": "deploying", "rebuild": "deploying", "delete": "deleting"},
	"active":         {"rebuild": "deploying", "delete": "deleting"},
	"deleting":       {"clean": "cleaning", "fail": "error"},
	"error":          {"rebuild": "deploying", "delete": "deleting"},
}

func TestTransitionTable(t *testing.T) {
	edges := 0
	for _, s := range allStates {
		for _, e := range allEvents {
			to, ok := want[s][e]
			got, err := Next(s, e)
			switch {
			case ok && err != nil:
				t.Errorf("%q -%s-> refused, want %q", s, e, to)
			case ok && got != to:
				t.Errorf("%q -%s-> %q, want %q", s, e, got, to)
			case !ok && err == nil:
				t.Errorf("%q -%s-> %q accepted, want refusal", s, e, got)
			}
			if ok {
				edges++
			}
		}
	}
	if edges != len(transitions) {
		t.Errorf("table has %d edges, the state machine %d", len(transitions), edges)
	}
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		from, to provisioner.ProvisionState
		event    Event
		prev     provisioner.ProvisionState
		want     provisioner.ProvisionState
	}{
		{"enroll", "verifying", "manage", "", "manageable"},
		{"verifying", "manageable", "done", "manageable", ""},
		{"verifying", "enroll", "fail", "manageable", ""},
		{"manageable", "cleaning", "provide", "", "available"},
		{"manageable", "cleaning", "clean", "", "manageable"},
		{"cleaning", "clean wait", "wait", "manageable", "manageable"},
		{"clean wait", "cleaning", "resume", "available", "available"},
		{"cleaning", "clean failed", "fail", "manageable", "manageable"},
		{"cleaning", "available", "done", "available", ""},
		{"available", "deploying", "deploy", "", "active"},
		{"deploying", "wait call-back", "wait", "active", "active"},
		{"wait call-back", "deploy failed", "abort", "active", "active"},
		{"deploying", "active", "done", "active", ""},
		{"active", "deleting", "delete", "", "available"},
		{"deleting", "cleaning", "clean", "available", "available"},
		{"deleting", "error", "fail", "available", ""},
	} {
		if got := targetOf(tc.from, tc.to, tc.event, tc.prev); got != tc.want {
			t.Errorf("target of %q -%s-> %q = %q, want %q", tc.from, tc.event, tc.to, got, tc.want)
		}
	}
}
