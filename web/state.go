package web

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

// nodeState is what the fleet view shows of a node, folded from its
// timeline: the event stream is the only source, so a replay shows the
// same as a live testbed did.
type nodeState struct {
	Name           string
	Machine        Machine
	Power          string // "power on", "power off", "" unknown
	BootDevice     string // what the machine last booted from
	Provision      string
	Target         string
	LastError      string
	LastEvent      events.Entry
	Faults         int // faults that fired on it
	UUID, NodeName string
}

// fold applies the node's entries, oldest first.
func fold(st *nodeState, es []events.Entry) {
	for _, e := range es {
		apply(st, e)
	}
}

func apply(st *nodeState, e events.Entry) {
	st.LastEvent = e
	if e.Who.Node != "" {
		st.UUID = e.Who.Node
	}
	if e.Who.NodeName != "" {
		st.NodeName = e.Who.NodeName
	}
	switch e.Kind {
	case events.MachinePowerOn, events.MachineReset:
		st.Power = "power on"
	case events.MachinePowerOff:
		st.Power = "power off"
	case events.MachineBoot:
		st.BootDevice = e.Detail
	case events.ConductorState:
		state, target, _ := strings.Cut(e.Detail, " → ")
		st.Provision, st.Target = state, target
		if target != "" && !strings.HasSuffix(state, "failed") {
			st.LastError = "" // Ironic clears last_error when a new action starts
		}
	case events.ConductorFailed:
		_, msg, ok := strings.Cut(e.Detail, ": ")
		if !ok {
			msg = e.Detail
		}
		st.LastError = msg
	default:
		if e.Kind.IsFault() {
			st.Faults++
		}
	}
}

// fleet is every machine of the inventory and every node of the
// timeline, by name; only, when not nil, keeps just those names (a live
// update folds only the nodes it touched).
func (s *Server) fleet(only map[string]bool) []*nodeState {
	tl := s.timeline()
	byName := map[string]*nodeState{}
	var out []*nodeState
	add := func(st *nodeState) {
		byName[st.Name] = st
		out = append(out, st)
	}
	for _, m := range s.cfg.Machines() {
		if only == nil || only[m.Name] {
			add(&nodeState{Name: m.Name, Machine: m})
		}
	}
	if tl != nil {
		names := tl.Nodes()
		if only != nil {
			names = names[:0:0]
			for n := range only {
				names = append(names, n)
			}
		}
		for _, n := range names {
			es := tl.Node(n)
			if len(es) == 0 {
				continue
			}
			st := byName[n]
			if st == nil {
				st = &nodeState{Name: n}
				add(st)
			}
			fold(st, es)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// node is one node's state and entries; ok false when neither the
// inventory nor the timeline knows it.
func (s *Server) node(name string) (*nodeState, []events.Entry, bool) {
	st := &nodeState{Name: name}
	found := false
	for _, m := range s.cfg.Machines() {
		if m.Name == name {
			st.Machine, found = m, true
		}
	}
	var es []events.Entry
	if tl := s.timeline(); tl != nil {
		es = tl.Node(name)
		if id, ok := tl.Lookup(name); ok {
			found = true
			st.UUID, st.NodeName = id.Node, id.NodeName
			if id.Name() != name {
				st.Name = id.Name()
			}
		}
	}
	fold(st, es)
	return st, es, found
}

// lane is one layer's row of the swimlane.
type lane struct {
	ID, Label string
}

// lanes are the layers top to bottom, as a deploy walks down and up them.
var lanes = []lane{
	{"conductor", "Conductor"},
	{"bmc", "BMC"},
	{"machine", "Machine"},
	{"dhcp", "DHCP"},
	{"boot", "TFTP / HTTP"},
	{"ramdisk", "Ramdisk / agent"},
	{"iscsi", "iSCSI"},
	{"fault", "Faults"},
}

// laneOf maps an entry's Source to its lane.
func laneOf(k events.Kind) string {
	switch src := k.Source(); src {
	case "conductor", "api":
		return "conductor"
	case "bmc":
		return "bmc"
	case "machine", "instance":
		return "machine"
	case "dhcp":
		return "dhcp"
	case "tftp", "http":
		return "boot"
	case "ramdisk", "agent":
		return "ramdisk"
	case "iscsi":
		return "iscsi"
	case "fault":
		return "fault"
	default:
		return "machine"
	}
}

// phase is one provision state the node rested in, from the conductor's
// state entries.
type phase struct {
	State, Target string
	Start, End    time.Time
	Open          bool // still the current state
}

func (p phase) Duration() time.Duration { return p.End.Sub(p.Start) }

func (p phase) Label() string {
	if p.Target != "" {
		return p.State + " → " + p.Target
	}
	return p.State
}

// phases cuts es at each conductor.state entry; the last phase ends at end.
func phases(es []events.Entry, end time.Time) []phase {
	var ps []phase
	for _, e := range es {
		if e.Kind != events.ConductorState {
			continue
		}
		state, target, _ := strings.Cut(e.Detail, " → ")
		if n := len(ps); n > 0 {
			ps[n-1].End, ps[n-1].Open = e.Time, false
		}
		ps = append(ps, phase{State: state, Target: target, Start: e.Time, End: end, Open: true})
	}
	return ps
}

// tone is a state's colour class and icon: colour never stands alone.
func tone(provision string) (class, icon string) {
	switch {
	case provision == "":
		return "none", "·"
	case strings.HasSuffix(provision, "failed") || provision == "error":
		return "bad", "✖"
	case provision == "active":
		return "good", "✔"
	case provision == "available", provision == "manageable", provision == "enroll":
		return "idle", "○"
	}
	return "busy", "⟳"
}

// readPower asks the machine for its power state, when it can be asked:
// the event stream says nothing of a machine that has not changed since
// the testbed started.
func readPower(ctx context.Context, st *nodeState) {
	if st.Machine.Power == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	on, err := st.Machine.Power(ctx)
	switch {
	case err != nil:
	case on:
		st.Power = "power on"
	default:
		st.Power = "power off"
	}
}
