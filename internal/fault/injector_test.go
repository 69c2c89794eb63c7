package fault

import (
	"strings"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/internal/events"
)

// recorded collects events.
type recorded struct {
	mu sync.Mutex
	ev []events.Event
}

func (r *recorded) Record(e events.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

// timeline is a Resolver knowing one node by all its keys, as
// *events.Timeline learns them.
func timeline(t *testing.T) *events.Timeline {
	t.Helper()
	tl := events.New(events.Config{})
	tl.Learn(events.Identity{Machine: "node-1", MACs: []string{"52:54:00:00:00:01"}})
	tl.Record(events.Event{Kind: events.PortCreated, Who: events.Who{Node: "1be26c0b-03f2-4d2b-8b3a-1f0e2d3c4b5a", NodeName: "rack1-u7", MAC: "52:54:00:00:00:01"}})
	tl.Record(events.Event{Kind: events.DHCPAck, Who: events.Who{MAC: "52:54:00:00:00:01", IP: "127.0.0.42"}})
	tl.Record(events.Event{Kind: events.ISCSILogin, Who: events.Who{Machine: "node-1", IQN: "iqn.2008-10.org.openstack:node-1"}})
	return tl
}

// TestInjectorResolves: a rule addressed to a node by its machine name,
// its node name or its node UUID hits requests that name it by any key
// the resolver knows; other nodes and unknown keys are not hit.
func TestInjectorResolves(t *testing.T) {
	tl := timeline(t)
	whos := map[string]events.Who{
		"machine": {Machine: "node-1"},
		"uuid":    {Node: "1be26c0b-03f2-4d2b-8b3a-1f0e2d3c4b5a"},
		"name":    {NodeName: "rack1-u7"},
		"mac":     {MAC: "52:54:00:00:00:01"},
		"ip":      {IP: "127.0.0.42"},
		"iqn":     {IQN: "iqn.2008-10.org.openstack:node-1"},
	}
	for _, ruleNode := range []string{"node-1", "rack1-u7", "1BE26C0B-03F2-4D2B-8B3A-1F0E2D3C4B5A", ""} {
		for key, who := range whos {
			set := NewSet()
			if _, err := set.Add(Rule{Node: ruleNode, Layer: TFTP, Action: "slow"}); err != nil {
				t.Fatal(err)
			}
			in := NewInjector(InjectorConfig{Rules: set, Resolver: tl})
			if _, ok := in.Inject(TFTP, who, "pxelinux.0"); !ok {
				t.Errorf("rule for %q: request by %s (%+v) not hit", ruleNode, key, who)
			}
		}
	}
	set := NewSet()
	set.Add(Rule{Layer: TFTP, Action: "slow"}) // every node
	set.Add(Rule{Node: "node-2", Layer: DHCP, Action: "no-offer"})
	in := NewInjector(InjectorConfig{Rules: set, Resolver: tl})
	for _, who := range []events.Who{{IP: "127.0.0.99"}, {MAC: "52:54:00:00:00:99"}, {Machine: "stranger"}, {}} {
		if h, ok := in.Inject(TFTP, who, "pxelinux.0"); ok {
			t.Errorf("unknown requester %+v hit: %+v", who, h)
		}
	}
	if h, ok := in.Inject(DHCP, events.Who{MAC: "52:54:00:00:00:01"}, "lookup"); ok {
		t.Errorf("node-2's rule hit node-1: %+v", h)
	}
}

// TestInjectorNameFirst: a node name the request carries (the HTTP path's
// machine folder) names its node before the address it came from; a name
// the resolver does not know leaves the address to name it.
func TestInjectorNameFirst(t *testing.T) {
	tl := timeline(t)
	tl.Learn(events.Identity{Machine: "node-2"})
	set := NewSet()
	set.Add(Rule{Node: "node-2", Layer: HTTP, Action: "status"})
	set.Add(Rule{Node: "node-1", Layer: HTTP, Action: "corrupt"})
	in := NewInjector(InjectorConfig{Rules: set, Resolver: tl})
	if h, ok := in.Inject(HTTP, events.Who{IP: "127.0.0.42", Machine: "node-2"}, "node-2/img"); !ok || h.Action != "status" {
		t.Errorf("node-2's folder fetched from node-1's address: %+v, %v; want node-2's rule", h, ok)
	}
	if h, ok := in.Inject(HTTP, events.Who{IP: "127.0.0.42", Machine: "pxelinux.cfg"}, "pxelinux.cfg/x"); !ok || h.Action != "corrupt" {
		t.Errorf("unknown folder from node-1's address: %+v, %v; want node-1's rule", h, ok)
	}
}

// TestInjectorRecordsTypedKinds: each hit is recorded once, as the
// catalog's kind, under the node's names only (never the request's
// addresses), with the rule, op, arg and delay in its detail; misses are
// not recorded.
func TestInjectorRecordsTypedKinds(t *testing.T) {
	tl := timeline(t)
	var rec recorded
	set := NewSet()
	opOf := func(s Spec) string {
		if s.Fixed {
			return s.Op
		}
		return "op-" + s.Action
	}
	// An arg each action takes (CheckArg): "" for those that take none.
	argOf := func(s Spec) string {
		for _, a := range []string{"7", "503", "192.0.2.7", "7ms"} {
			if CheckArg(s.Layer, s.Action, a) == nil {
				return a
			}
		}
		return ""
	}
	for _, s := range Catalog() {
		if _, err := set.Add(Rule{Node: "node-1", Layer: s.Layer, Op: opOf(s), Action: s.Action, Arg: argOf(s), Count: 1}); err != nil {
			t.Fatal(err)
		}
	}
	in := NewInjector(InjectorConfig{Rules: set, Resolver: tl, Recorder: &rec})
	for _, s := range Catalog() {
		h, ok := in.Inject(s.Layer, events.Who{IP: "127.0.0.42"}, opOf(s))
		if !ok || h.Kind != s.Kind || h.Action != s.Action || h.Layer != s.Layer || h.Op != opOf(s) {
			t.Errorf("%s/%s: hit %+v, %v", s.Layer, s.Action, h, ok)
		}
		if _, ok := in.Inject(s.Layer, events.Who{IP: "127.0.0.42"}, opOf(s)); ok {
			t.Errorf("%s/%s: count 1 fired twice", s.Layer, s.Action)
		}
	}
	if len(rec.ev) != len(Catalog()) {
		t.Fatalf("%d events for %d hits", len(rec.ev), len(Catalog()))
	}
	for i, s := range Catalog() {
		e := rec.ev[i]
		if e.Kind != s.Kind || e.Machine != "node-1" || e.IP != "" || e.MAC != "" {
			t.Errorf("event %d = %+v, want kind %s for machine node-1 without addresses", i, e, s.Kind)
		}
		if arg := argOf(s); !strings.Contains(e.Detail, "op "+opOf(s)) || (arg != "") != strings.Contains(e.Detail, " arg "+arg) {
			t.Errorf("event %d detail %q", i, e.Detail)
		}
	}
	// Through the real timeline: the hit lands in the node's timeline.
	set.Add(Rule{Node: "rack1-u7", Layer: TFTP, Action: "missing"})
	in = NewInjector(InjectorConfig{Rules: set, Resolver: tl, Recorder: tl})
	in.Inject(TFTP, events.Who{IP: "127.0.0.42"}, "pxelinux.0")
	es := tl.Node("node-1")
	if last := es[len(es)-1]; last.Kind != "fault.tftp.missing" || last.Source != "fault" {
		t.Errorf("last timeline entry %+v", last)
	}
}

// TestInjectorWithoutResolver: a Who's own names name its node.
func TestInjectorWithoutResolver(t *testing.T) {
	set := NewSet()
	set.Add(Rule{Node: "node-1", Layer: IPMI, Action: "drop"})
	in := NewInjector(InjectorConfig{Rules: set})
	if _, ok := in.Inject(IPMI, events.Who{Machine: "node-1"}, "0x00/0x02"); !ok {
		t.Error("machine name not hit")
	}
	if _, ok := in.Inject(IPMI, events.Who{MAC: "52:54:00:00:00:01"}, "0x00/0x02"); ok {
		t.Error("a bare MAC hit without a resolver")
	}
}

// TestNilInjector: nil means no faults, through OrNone and Tag; a
// RuleInjector without rules hits nothing.
func TestNilInjector(t *testing.T) {
	if Tag(nil, events.Who{Machine: "m"}) != nil {
		t.Error("Tag(nil) is not nil")
	}
	if _, ok := OrNone(nil).Inject(IPMI, events.Who{Machine: "m"}, "x"); ok {
		t.Error("OrNone(nil) hit")
	}
	var in *RuleInjector
	if _, ok := in.Inject(IPMI, events.Who{Machine: "m"}, "x"); ok {
		t.Error("nil *RuleInjector hit")
	}
	if _, ok := NewInjector(InjectorConfig{}).Inject(IPMI, events.Who{Machine: "m"}, "x"); ok {
		t.Error("injector without rules hit")
	}
}

// TestTagFills: Tag fills the keys a request leaves empty and keeps the
// ones it sets.
func TestTagFills(t *testing.T) {
	var got events.Who
	in := Tag(injectorFunc(func(_ Layer, who events.Who, _ string) (Hit, bool) { got = who; return Hit{}, false }),
		events.Who{Machine: "node-1", IQN: "iqn.x"})
	in.Inject(ISCSI, events.Who{IQN: "iqn.y", IP: "127.0.0.5"}, "login")
	if got != (events.Who{Machine: "node-1", IQN: "iqn.y", IP: "127.0.0.5"}) {
		t.Errorf("tagged who = %+v", got)
	}
}

type injectorFunc func(Layer, events.Who, string) (Hit, bool)

func (f injectorFunc) Inject(l Layer, w events.Who, op string) (Hit, bool) { return f(l, w, op) }

// TestCatalog: every row's kind is fault.<layer>.<action>, pairs are
// unique, Find accepts each and refuses others naming the layer's
// actions in order, and Add validates against it.
func TestCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Catalog() {
		if want := "fault." + string(s.Layer) + "." + s.Action; string(s.Kind) != want || !s.Kind.IsFault() || s.Kind.Source() != "fault" {
			t.Errorf("%s/%s: kind %q, want %q", s.Layer, s.Action, s.Kind, want)
		}
		if seen[string(s.Kind)] {
			t.Errorf("%s listed twice", s.Kind)
		}
		seen[string(s.Kind)] = true
		if got, err := Find(s.Layer, s.Action); err != nil || got != s {
			t.Errorf("Find(%s, %s) = %+v, %v", s.Layer, s.Action, got, err)
		}
	}
	for _, l := range layers {
		if _, err := Find(l, "nope"); err == nil || !strings.Contains(err.Error(), "want one of") {
			t.Errorf("Find(%s, nope) = %v", l, err)
		}
	}
	if _, err := Find(TFTP, "nope"); err == nil || !strings.Contains(err.Error(), "missing, stall, slow") {
		t.Errorf("Find(tftp, nope) = %v", err)
	}
	if _, err := NewSet().Add(Rule{Layer: HTTP, Action: "nope"}); err == nil || !strings.Contains(err.Error(), "status, truncate, corrupt") {
		t.Errorf("Add(http/nope) = %v", err)
	}
}
