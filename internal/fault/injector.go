package fault

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/metrics"
)

// Injector is what a server asks at its dispatch point: must this request
// (op of layer, from the node who names) fail, and how? The server carries
// the Hit's action out itself; the actions of each layer are the
// catalog's (Catalog). Implementations are safe for concurrent use.
//
// A nil Injector means no faults: servers hold OrNone(cfg.Faults).
type Injector interface {
	Inject(layer Layer, who events.Who, op string) (Hit, bool)
}

// Resolver says which node a key (machine or node name, node UUID, MAC,
// IP, IQN, SMBIOS UUID) belongs to. *events.Timeline is one.
type Resolver interface {
	Lookup(key string) (events.Identity, bool)
}

// None is the Injector of no faults.
type None struct{}

// Inject never hits.
func (None) Inject(Layer, events.Who, string) (Hit, bool) { return Hit{}, false }

// OrNone returns in, or None when in is nil.
func OrNone(in Injector) Injector {
	if in == nil {
		return None{}
	}
	return in
}

// Tag returns an Injector that fills the keys a request's Who leaves empty
// from who, as events.Tag does for a Recorder: a component that serves
// one machine (its BMC, its ramdisk) asks through Tag(in, events.Who{Machine:
// name}). Tag of a nil Injector is nil.
func Tag(in Injector, who events.Who) Injector {
	if in == nil {
		return nil
	}
	return tagged{in: in, who: who}
}

type tagged struct {
	in  Injector
	who events.Who
}

func (t tagged) Inject(layer Layer, who events.Who, op string) (Hit, bool) {
	return t.in.Inject(layer, who.Or(t.who), op)
}

// InjectorConfig configures a RuleInjector.
type InjectorConfig struct {
	// Rules are the faults in force. nil: none.
	Rules *Set
	// Resolver finds the node a request's keys belong to. nil: a Who
	// names its node only by its own Machine, NodeName and Node keys.
	Resolver Resolver
	// Recorder receives each hit as an event of the catalog's kind
	// ("fault.<layer>.<action>") for the node's timeline. nil: none.
	Recorder events.Recorder
	// Registerer receives metalbed_fault_fired_total{layer,action}, one
	// count per hit (the catalog's layers and actions: a bounded set).
	// nil: not exported. (A registry already holding that name with
	// another type leaves the counter unexported.)
	Registerer prometheus.Registerer
}

// RuleInjector is the Injector over a Set: it resolves the requester to a
// node, matches the rules addressed to that node (by machine name, node
// name or node UUID) and records each hit.
type RuleInjector struct {
	cfg   InjectorConfig
	rec   events.Recorder
	fired *prometheus.CounterVec // layer, action
}

var _ Injector = (*RuleInjector)(nil)

// NewInjector returns the Injector of cfg.
func NewInjector(cfg InjectorConfig) *RuleInjector {
	r := &metrics.Registry{Reg: cfg.Registerer}
	fired := r.CounterVec("fault", "fired_total", "Injected faults that hit a request, by layer and action.", "layer", "action")
	return &RuleInjector{cfg: cfg, rec: events.OrDiscard(cfg.Recorder), fired: fired}
}

// Inject resolves who to one node, asks the rules about op of layer on
// it, and records a hit in its timeline.
//
// With a Resolver, the first of who's keys it knows, strongest first as
// the timeline ranks them (machine name, MAC, node UUID, node name, SMBIOS
// UUID, IQN, IP), names the node: a name the request carries (an HTTP
// path's machine folder) outweighs the address it came from, which may be
// a shared one (the conductor's). A request none of whose keys the
// Resolver knows is nobody's and is never hit, even by a rule for every
// node.
func (in *RuleInjector) Inject(layer Layer, who events.Who, op string) (Hit, bool) {
	if in == nil || in.cfg.Rules == nil {
		return Hit{}, false
	}
	id, ok := in.resolve(who)
	if !ok {
		return Hit{}, false
	}
	h, ok := in.cfg.Rules.MatchAny([]string{id.Machine, id.NodeName, id.Node}, layer, op)
	if !ok {
		return h, false
	}
	if in.fired != nil {
		in.fired.WithLabelValues(string(h.Layer), h.Action).Inc()
	}
	detail := fmt.Sprintf("rule %s op %s", h.RuleID, op)
	if h.Arg != "" {
		detail += " arg " + h.Arg
	}
	if h.Delay > 0 {
		detail += " delay " + h.Delay.String()
	}
	// Only the node's names: the request's addresses are the server's to
	// record, and a fault must not tie them to a node.
	in.rec.Record(events.Event{Kind: h.Kind, Detail: detail,
		Who: events.Who{Machine: id.Machine, NodeName: id.NodeName, Node: id.Node}})
	return h, true
}

// resolve finds the node who names.
func (in *RuleInjector) resolve(who events.Who) (events.Identity, bool) {
	if in.cfg.Resolver == nil {
		id := events.Identity{Machine: who.Machine, NodeName: who.NodeName, Node: who.Node}
		return id, id.Name() != ""
	}
	for _, k := range []string{who.Machine, who.MAC, who.Node, who.NodeName, who.MachineUUID, who.IQN, who.IP} {
		if k == "" {
			continue
		}
		if id, ok := in.cfg.Resolver.Lookup(k); ok && id.Name() != "" {
			return id, true
		}
	}
	return events.Identity{}, false
}
