package conductor

import (
	"fmt"

	"github.com/metalbed/metalbed/provisioner"
)

// Event is an Ironic state-machine event.
type Event string

// Ironic's event names (ironic/common/states.py).
const (
	EventManage  Event = "manage"
	EventProvide Event = "provide"
	EventDeploy  Event = "deploy"
	EventRebuild Event = "rebuild"
	EventDelete  Event = "delete"
	EventClean   Event = "clean"
	EventInspect Event = "inspect"
	EventAbort   Event = "abort"
	EventDone    Event = "done"
	EventFail    Event = "fail"
	EventWait    Event = "wait"
	EventResume  Event = "resume"
)

type edge struct {
	from  provisioner.ProvisionState
	event Event
}

// transitions is the whole provision state machine, one row per edge, as
// ../shared/docs/protocol-notes.md ("Provision state machine") states it,
// plus the two edges Ironic adds to finish manual cleaning (cleaning
// -manage-> manageable) and to take an available node back
// (available -manage-> manageable), and the edge current Ironic adds for
// agent inspection (inspect wait -resume-> inspecting, when the ramdisk
// posts its inventory). Nothing else changes provision_state.
var transitions = map[edge]provisioner.ProvisionState{
	{provisioner.StateEnroll, EventManage}:         provisioner.StateVerifying,
	{provisioner.StateVerifying, EventDone}:        provisioner.StateManageable,
	{provisioner.StateVerifying, EventFail}:        provisioner.StateEnroll,
	{provisioner.StateManageable, EventProvide}:    provisioner.StateCleaning,
	{provisioner.StateManageable, EventClean}:      provisioner.StateCleaning,
	{provisioner.StateManageable, EventInspect}:    provisioner.StateInspecting,
	{provisioner.StateCleaning, EventDone}:         provisioner.StateAvailable,
	{provisioner.StateCleaning, EventManage}:       provisioner.StateManageable,
	{provisioner.StateCleaning, EventWait}:         provisioner.StateCleanWait,
	{provisioner.StateCleaning, EventFail}:         provisioner.StateCleanFailed,
	{provisioner.StateCleanWait, EventResume}:      provisioner.StateCleaning,
	{provisioner.StateCleanWait, EventFail}:        provisioner.StateCleanFailed,
	{provisioner.StateCleanWait, EventAbort}:       provisioner.StateCleanFailed,
	{provisioner.StateCleanFailed, EventManage}:    provisioner.StateManageable,
	{provisioner.StateInspecting, EventDone}:       provisioner.StateManageable,
	{provisioner.StateInspecting, EventWait}:       provisioner.StateInspectWait,
	{provisioner.StateInspecting, EventFail}:       provisioner.StateInspectFailed,
	{provisioner.StateInspectWait, EventDone}:      provisioner.StateManageable,
	{provisioner.StateInspectWait, EventFail}:      provisioner.StateInspectFailed,
	{provisioner.StateInspectWait, EventAbort}:     provisioner.StateInspectFailed,
	{provisioner.StateInspectWait, EventResume}:    provisioner.StateInspecting,
	{provisioner.StateInspectFailed, EventManage}:  provisioner.StateManageable,
	{provisioner.StateInspectFailed, EventInspect}: provisioner.StateInspecting,
	{provisioner.StateAvailable, EventDeploy}:      provisioner.StateDeploying,
	{provisioner.StateAvailable, EventManage}:      provisioner.StateManageable,
	{provisioner.StateDeploying, EventWait}:        provisioner.StateWaitCallback,
	{provisioner.StateDeploying, EventDone}:        provisioner.StateActive,
	{provisioner.StateDeploying, EventFail}:        provisioner.StateDeployFailed,
	{provisioner.StateWaitCallback, EventResume}:   provisioner.StateDeploying,
	{provisioner.StateWaitCallback, EventFail}:     provisioner.StateDeployFailed,
	{provisioner.StateWaitCallback, EventAbort}:    provisioner.StateDeployFailed,
	{provisioner.StateDeployFailed, EventDeploy}:   provisioner.StateDeploying,
	{provisioner.StateDeployFailed, EventRebuild}:  provisioner.StateDeploying,
	{provisioner.StateDeployFailed, EventDelete}:   provisioner.StateDeleting,
	{provisioner.StateActive, EventRebuild}:        provisioner.StateDeploying,
	{provisioner.StateActive, EventDelete}:         provisioner.StateDeleting,
	{provisioner.StateDeleting, EventClean}:        provisioner.StateCleaning,
	{provisioner.StateDeleting, EventFail}:         provisioner.StateError,
	{provisioner.StateError, EventRebuild}:         provisioner.StateDeploying,
	{provisioner.StateError, EventDelete}:          provisioner.StateDeleting,
}

// targetOf is target_provision_state once a node entered to from from by
// event (the FSM "target" of each state, as Ironic shows it). prev is the
// node's target before the edge; manual cleaning keeps "manageable".
func targetOf(from, to provisioner.ProvisionState, event Event, prev provisioner.ProvisionState) provisioner.ProvisionState {
	switch to {
	case provisioner.StateVerifying, provisioner.StateInspecting, provisioner.StateInspectWait,
		provisioner.StateInspectFailed:
		return provisioner.StateManageable
	case provisioner.StateCleaning, provisioner.StateCleanWait, provisioner.StateCleanFailed:
		if from == provisioner.StateManageable && event == EventClean {
			return provisioner.StateManageable
		}
		if (from == provisioner.StateCleaning || from == provisioner.StateCleanWait) && prev != "" {
			return prev
		}
		return provisioner.StateAvailable
	case provisioner.StateDeploying, provisioner.StateWaitCallback, provisioner.StateDeployFailed:
		return provisioner.StateActive
	case provisioner.StateDeleting:
		return provisioner.StateAvailable
	}
	return ""
}

// Next returns the state event leads to from state, or an error when the
// machine has no such edge.
func Next(state provisioner.ProvisionState, event Event) (provisioner.ProvisionState, error) {
	to, ok := transitions[edge{state, event}]
	if !ok {
		return "", fmt.Errorf("no %q transition from %q", event, state)
	}
	return to, nil
}

// stuckStates are left behind by a conductor that died; on start they are
// failed (Ironic's STUCK_STATES_TREATED_AS_FAIL).
var stuckStates = []provisioner.ProvisionState{
	provisioner.StateDeploying, provisioner.StateCleaning, provisioner.StateVerifying,
	provisioner.StateInspecting, provisioner.StateDeleting,
}

// busy are the states a running task owns: the internal events (done,
// fail, wait, resume, and manage finishing a manual clean) move them, no API
// verb does.
var busy = []provisioner.ProvisionState{provisioner.StateVerifying, provisioner.StateCleaning,
	provisioner.StateDeploying, provisioner.StateDeleting, provisioner.StateInspecting}

// verbEvents maps the API's provision targets to events.
var verbEvents = map[string]Event{
	"manage": EventManage, "provide": EventProvide, "active": EventDeploy, "deploy": EventDeploy,
	"deleted": EventDelete, "undeploy": EventDelete, "rebuild": EventRebuild, "abort": EventAbort,
	"clean": EventClean, "inspect": EventInspect,
}
