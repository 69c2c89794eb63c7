// Package fault is metalbed's one fault-injection mechanism. A Rule names a
// node, a layer and an operation, and says what goes wrong (an action with
// an argument), how often (count, skip-first, probability) and how late
// (delay). Every server holds one Injector in its Config (Faults) and asks
// it at the place it dispatches a request — the IPMI netfn/cmd table, the
// iSCSI login, connect and write paths, the TFTP read request, an HTTP
// route, the DHCP reply decision — naming the requester by the keys it
// knows (events.Who), then carries the hit's action out itself. The
// actions each layer carries out are the catalog's (Catalog); each hit is
// recorded in the node's timeline as the catalog's typed kind. A fault is
// a row here, not a special case in a protocol.
//
// Reproducibility: each rule draws from its own random source seeded by
// Rule.Seed, so the same rules and the same sequence of requests give the
// same failures, run after run.
package fault

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

// Layer is where a fault is injected.
type Layer string

// The layers metalbed can break.
const (
	IPMI      Layer = "ipmi"
	DHCP      Layer = "dhcp"
	TFTP      Layer = "tftp"
	HTTP      Layer = "http"
	ISCSI     Layer = "iscsi"
	Ramdisk   Layer = "ramdisk"
	Agent     Layer = "agent"
	Disk      Layer = "disk"
	Conductor Layer = "conductor"
	Redfish   Layer = "redfish"
)

var layers = []Layer{IPMI, DHCP, TFTP, HTTP, ISCSI, Ramdisk, Agent, Disk, Conductor, Redfish}

// Rule is one fault.
type Rule struct {
	ID    string `json:"id"`
	Node  string `json:"node,omitempty"` // "" or "*": every node
	Layer Layer  `json:"layer"`
	// Op narrows the rule to one operation of the layer ("power-on",
	// "0x00/0x02", "login", "write", "pass_deploy_info", a file name …);
	// "" or "*" matches every operation.
	Op string `json:"op,omitempty"`
	// Action is what goes wrong; its meaning belongs to the layer, and
	// Add accepts only the catalog's actions of Layer ("drop", "delay",
	// "cc", "error", "reset-after", "missing" …).
	Action string `json:"action"`
	// Arg parameterises the action (a completion code, a byte count, a message).
	Arg string `json:"arg,omitempty"`
	// Count is how many times the rule fires; 0 means without limit.
	Count int `json:"count,omitempty"`
	// Skip lets the first Skip matching requests through untouched.
	Skip int `json:"skip,omitempty"`
	// Probability in (0,1] that a matching request is hit; 0 means 1.
	Probability float64 `json:"probability,omitempty"`
	// Delay is added before the action (alone it makes a slow peer).
	Delay time.Duration `json:"delay,omitempty"`
	// Seed seeds this rule's random source; the same seed, the same hits.
	Seed uint64 `json:"seed"`

	// Fired counts hits so far (read-only; set by the Set).
	Fired int `json:"fired"`
}

// Hit is a fault to carry out now.
type Hit struct {
	RuleID string
	Layer  Layer
	Op     string // the op asked about
	Action string
	Arg    string
	Delay  time.Duration
	Kind   events.Kind // the catalog's kind for (Layer, Action): what the timeline records
}

// ArgInt parses Arg as an integer (decimal or 0x hex).
func (h Hit) ArgInt() (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(h.Arg), 0, 64)
}

// Set holds the active rules. The zero value is not usable; call NewSet.
// A nil *Set matches nothing, so servers can hold one unconditionally.
type Set struct {
	mu     sync.Mutex
	rules  []*entry
	nextID int
}

type entry struct {
	rule    Rule
	rng     *rand.Rand
	matched int
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{} }

// ErrNotFound is returned by Remove for an unknown rule ID.
var ErrNotFound = errors.New("no such fault rule")

// Add validates r, assigns an ID when empty, and activates it.
func (s *Set) Add(r Rule) (Rule, error) {
	if err := r.validate(); err != nil {
		return Rule{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec, _ := Find(r.Layer, r.Action); spec.Fixed {
		r.Op = spec.Op
	}
	if r.ID == "" {
		s.nextID++
		r.ID = fmt.Sprintf("f%d", s.nextID)
	}
	for _, e := range s.rules {
		if e.rule.ID == r.ID {
			return Rule{}, fmt.Errorf("fault rule %q already exists", r.ID)
		}
	}
	r.Fired = 0
	s.rules = append(s.rules, &entry{rule: r, rng: rand.New(rand.NewPCG(r.Seed, 0x6d6574616c626564))})
	return r, nil
}

func (r Rule) validate() error {
	if !validLayer(r.Layer) {
		return fmt.Errorf("fault layer %q: want one of %v", r.Layer, layers)
	}
	if strings.TrimSpace(r.Action) == "" {
		return errors.New("fault rule needs an action")
	}
	spec, err := Find(r.Layer, r.Action)
	if err != nil {
		return err
	}
	if err := CheckArg(r.Layer, r.Action, r.Arg); err != nil {
		return err
	}
	anyOp := r.Op == "" || r.Op == "*"
	if spec.Fixed && !anyOp && !strings.EqualFold(r.Op, spec.Op) {
		return fmt.Errorf("layer %s asks about %s only at op %q, not %q", r.Layer, r.Action, spec.Op, r.Op)
	}
	if other, ok := fixedOp(r.Layer, r.Op); ok && !spec.Fixed {
		return fmt.Errorf("layer %s op %q is action %s's alone", r.Layer, r.Op, other.Action)
	}
	if r.Count < 0 || r.Skip < 0 {
		return errors.New("fault count and skip must not be negative")
	}
	if r.Probability < 0 || r.Probability > 1 {
		return fmt.Errorf("fault probability %v: want 0 < p <= 1", r.Probability)
	}
	if r.Delay < 0 {
		return errors.New("fault delay must not be negative")
	}
	return nil
}

func validLayer(l Layer) bool {
	for _, x := range layers {
		if l == x {
			return true
		}
	}
	return false
}

// Remove deletes one rule.
func (s *Set) Remove(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.rules {
		if e.rule.ID == id {
			s.rules = append(s.rules[:i], s.rules[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrNotFound, id)
}

// Clear deletes every rule, or only those of one node when node != "".
func (s *Set) Clear(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.rules[:0]
	for _, e := range s.rules {
		if node != "" && e.rule.Node != node {
			kept = append(kept, e)
		}
	}
	s.rules = kept
}

// List returns the rules, sorted by ID, with their Fired counts.
func (s *Set) List() []Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Rule, 0, len(s.rules))
	for _, e := range s.rules {
		out = append(out, e.rule)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Match asks whether a request to op of layer on node must fail, and how.
// The first rule (in insertion order) that matches and fires wins; rules
// that match but do not fire (skip, probability) still consume their turn,
// so the outcome depends only on the rules and the sequence of requests.
func (s *Set) Match(node string, layer Layer, op string) (Hit, bool) {
	return s.MatchAny([]string{node}, layer, op)
}

// MatchAny is Match for a node known by several names (its machine name,
// node name and node UUID): a rule whose Node is any of them matches.
func (s *Set) MatchAny(names []string, layer Layer, op string) (Hit, bool) {
	if s == nil {
		return Hit{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.rules {
		r := &e.rule
		if r.Layer != layer || !wildAny(r.Node, names) || !opMatches(layer, r.Op, op) {
			continue
		}
		if _, fixed := fixedOp(layer, op); fixed && !strings.EqualFold(r.Op, op) {
			continue // a moment only its own action's rules are asked at
		}
		if r.Count > 0 && r.Fired >= r.Count {
			continue
		}
		e.matched++
		if e.matched <= r.Skip {
			continue
		}
		if r.Probability > 0 && r.Probability < 1 && e.rng.Float64() >= r.Probability {
			continue
		}
		r.Fired++
		spec, _ := Find(r.Layer, r.Action) // validated by Add
		return Hit{RuleID: r.ID, Layer: r.Layer, Op: op, Action: r.Action, Arg: r.Arg, Delay: r.Delay, Kind: spec.Kind}, true
	}
	return Hit{}, false
}

func wildAny(pattern string, vs []string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	for _, v := range vs {
		if v != "" && strings.EqualFold(pattern, v) {
			return true
		}
	}
	return false
}

// opMatches reports whether a rule's op pattern matches op. Layer redfish
// asks about an action's POST as "POST <action>" ("POST
// VirtualMedia.InsertMedia"): a rule's op matches it whole, by its method
// alone ("POST") or by its action alone ("VirtualMedia.InsertMedia").
func opMatches(layer Layer, pattern, op string) bool {
	if wild(pattern, op) {
		return true
	}
	method, action, ok := strings.Cut(op, " ")
	return layer == Redfish && ok && (strings.EqualFold(pattern, method) || strings.EqualFold(pattern, action))
}

func wild(pattern, v string) bool {
	return pattern == "" || pattern == "*" || strings.EqualFold(pattern, v)
}
