// Package faulttest is the fake fault.Injector the servers' tests share:
// real rules (so actions, args, delays, counts and kinds are the
// catalog's), every request taken as one node's, and every question kept.
package faulttest

import (
	"sync"
	"testing"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// Node is the name every request resolves to.
const Node = "node-0"

// Ask is one question a server asked.
type Ask struct {
	Layer fault.Layer
	Who   events.Who
	Op    string
	Hit   bool
}

// Injector answers from its rules as if every request were Node's.
type Injector struct {
	rules *fault.Set
	mu    sync.Mutex
	asked []Ask
}

var _ fault.Injector = (*Injector)(nil)

// New returns an Injector over rules; an invalid rule fails t.
func New(t testing.TB, rules ...fault.Rule) *Injector {
	t.Helper()
	in := &Injector{rules: fault.NewSet()}
	for _, r := range rules {
		if _, err := in.rules.Add(r); err != nil {
			t.Fatalf("fault rule %+v: %v", r, err)
		}
	}
	return in
}

// Inject implements fault.Injector.
func (in *Injector) Inject(layer fault.Layer, who events.Who, op string) (fault.Hit, bool) {
	h, ok := in.rules.Match(Node, layer, op)
	in.mu.Lock()
	in.asked = append(in.asked, Ask{Layer: layer, Who: who, Op: op, Hit: ok})
	in.mu.Unlock()
	return h, ok
}

// Asked returns the questions asked so far, oldest first.
func (in *Injector) Asked() []Ask {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Ask(nil), in.asked...)
}

// Hits returns the questions that were hit.
func (in *Injector) Hits() []Ask {
	var out []Ask
	for _, a := range in.Asked() {
		if a.Hit {
			out = append(out, a)
		}
	}
	return out
}

// Rules returns the rules with their fired counts.
func (in *Injector) Rules() []fault.Rule { return in.rules.List() }
