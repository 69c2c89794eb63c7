package fault

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMatchByNodeLayerOp(t *testing.T) {
	s := NewSet()
	if _, err := s.Add(Rule{Node: "node-1", Layer: IPMI, Op: "0x00/0x02", Action: "cc", Arg: "0xc0"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		node  string
		layer Layer
		op    string
		want  bool
	}{
		{"node-1", IPMI, "0x00/0x02", true},
		{"NODE-1", IPMI, "0x00/0x02", true},
		{"node-0", IPMI, "0x00/0x02", false},
		{"node-1", IPMI, "0x00/0x01", false},
		{"node-1", DHCP, "0x00/0x02", false},
	}
	for _, c := range cases {
		h, ok := s.Match(c.node, c.layer, c.op)
		if ok != c.want {
			t.Errorf("Match(%s,%s,%s) = %v, want %v", c.node, c.layer, c.op, ok, c.want)
		}
		if ok {
			if v, err := h.ArgInt(); err != nil || v != 0xc0 {
				t.Errorf("ArgInt = %v, %v", v, err)
			}
		}
	}
}

func TestCountAndSkip(t *testing.T) {
	s := NewSet()
	r, err := s.Add(Rule{Layer: ISCSI, Op: "write", Action: "medium-error", Count: 2, Skip: 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for range 5 {
		_, ok := s.Match("any", ISCSI, "write")
		got = append(got, ok)
	}
	if want := []bool{false, true, true, false, false}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hits = %v, want %v", got, want)
	}
	if l := s.List(); len(l) != 1 || l[0].ID != r.ID || l[0].Fired != 2 {
		t.Errorf("List = %+v", l)
	}
}

func TestSameSeedSameFailures(t *testing.T) {
	run := func(seed uint64) []bool {
		s := NewSet()
		if _, err := s.Add(Rule{Layer: TFTP, Action: "missing", Probability: 0.3, Seed: seed}); err != nil {
			t.Fatal(err)
		}
		var hits []bool
		for range 200 {
			_, ok := s.Match("n", TFTP, "pxelinux.0")
			hits = append(hits, ok)
		}
		return hits
	}
	a, b, c := run(42), run(42), run(43)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("the same seed gave different failures")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Error("different seeds gave identical sequences (rng not seeded?)")
	}
	n := 0
	for _, h := range a {
		if h {
			n++
		}
	}
	if n < 30 || n > 90 { // 200 × 0.3 = 60; far outside means probability is ignored
		t.Errorf("%d hits of 200 at p=0.3", n)
	}
}

func TestFirstMatchingRuleWinsAndDelayCarried(t *testing.T) {
	s := NewSet()
	s.Add(Rule{ID: "slow", Layer: HTTP, Action: "corrupt", Delay: 2 * time.Second, Count: 1})
	s.Add(Rule{ID: "404", Layer: HTTP, Action: "status", Arg: "404"})
	h, _ := s.Match("n", HTTP, "/image")
	if h.RuleID != "slow" || h.Delay != 2*time.Second {
		t.Errorf("first hit = %+v", h)
	}
	h, _ = s.Match("n", HTTP, "/image")
	if h.RuleID != "404" {
		t.Errorf("second hit = %+v, want rule 404 once 'slow' is spent", h)
	}
}

func TestValidationAndRemove(t *testing.T) {
	s := NewSet()
	bad := []Rule{
		{Layer: "smtp", Action: "drop"},
		{Layer: IPMI},
		{Layer: IPMI, Action: "drop", Count: -1},
		{Layer: IPMI, Action: "drop", Probability: 1.5},
		{Layer: IPMI, Action: "drop", Delay: -time.Second},
		{Layer: IPMI, Action: "missing"}, // a TFTP action
	}
	for _, r := range bad {
		if _, err := s.Add(r); err == nil {
			t.Errorf("Add(%+v) accepted", r)
		}
	}
	s.Add(Rule{ID: "a", Node: "node-0", Layer: DHCP, Action: "no-offer"})
	s.Add(Rule{ID: "b", Node: "node-1", Layer: DHCP, Action: "no-offer"})
	if _, err := s.Add(Rule{ID: "a", Layer: DHCP, Action: "no-offer"}); err == nil {
		t.Error("duplicate ID accepted")
	}
	if err := s.Remove("zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove(zz) = %v", err)
	}
	s.Clear("node-0")
	if l := s.List(); len(l) != 1 || l[0].ID != "b" {
		t.Errorf("after Clear(node-0): %+v", l)
	}
	s.Clear("")
	if len(s.List()) != 0 {
		t.Error("Clear(\"\") left rules")
	}
	var nilSet *Set
	if _, ok := nilSet.Match("n", IPMI, "x"); ok {
		t.Error("nil set matched")
	}
}

// TestFixedOps: an action asked at one moment (Spec.Fixed) gets that op
// when the rule names none, refuses another, and is the only action asked
// there: a rule for every op of the layer is neither hit nor counted at
// that moment, and the fixed rule is never hit at another op.
func TestFixedOps(t *testing.T) {
	s := NewSet()
	wide, err := s.Add(Rule{ID: "wide", Layer: Redfish, Action: "status", Arg: "503", Skip: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Add(Rule{ID: "conflict", Layer: Redfish, Action: "power-on-conflict", Arg: "5", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Op != "power-off" {
		t.Errorf("fixed rule op %q, want power-off", r.Op)
	}
	if _, err := s.Add(Rule{Layer: Redfish, Op: "GET", Action: "task-fail"}); err == nil {
		t.Error("task-fail at op GET accepted")
	}
	if _, err := s.Add(Rule{Layer: Redfish, Op: "session", Action: "status"}); err == nil {
		t.Error("status at session-expire's op accepted")
	}
	if h, ok := s.Match("n", Redfish, "power-off"); !ok || h.RuleID != "conflict" || h.Kind != "fault.redfish.power-on-conflict" {
		t.Errorf("power-off: %+v %v, want the conflict rule", h, ok)
	}
	if h, ok := s.Match("n", Redfish, "power-off"); ok {
		t.Errorf("power-off after the one hit: %+v (the wide rule must not match there)", h)
	}
	// The wide rule's Skip 1 is consumed by the first GET only.
	if _, ok := s.Match("n", Redfish, "GET"); ok {
		t.Error("first GET hit despite skip 1")
	}
	if h, ok := s.Match("n", Redfish, "GET"); !ok || h.RuleID != wide.ID {
		t.Errorf("second GET: %+v %v", h, ok)
	}
}

// TestRedfishActionOps: layer redfish asks about an action's POST as
// "POST <action>"; a rule's op matches it whole, by method or by action,
// and no other layer splits ops that way.
func TestRedfishActionOps(t *testing.T) {
	const op = "POST VirtualMedia.InsertMedia"
	for _, c := range []struct {
		layer   Layer
		ruleOp  string
		askedOp string
		want    bool
	}{
		{Redfish, "VirtualMedia.InsertMedia", op, true},
		{Redfish, "POST", op, true},
		{Redfish, op, op, true},
		{Redfish, "", op, true},
		{Redfish, "VirtualMedia.EjectMedia", op, false},
		{Redfish, "GET", op, false},
		{Redfish, "VirtualMedia.InsertMedia", "POST", false},
		{HTTP, "a", "a b", false},
	} {
		s := NewSet()
		action := "status"
		if _, err := s.Add(Rule{Layer: c.layer, Op: c.ruleOp, Action: action}); err != nil {
			t.Fatal(err)
		}
		if _, hit := s.Match("n", c.layer, c.askedOp); hit != c.want {
			t.Errorf("layer %s rule op %q asked %q: hit %v, want %v", c.layer, c.ruleOp, c.askedOp, hit, c.want)
		}
	}
}
