// Package events is metalbed's one event stream: every component (BMC,
// DHCP, TFTP, HTTP, iSCSI, ramdisk, agent, conductor, machine) records typed
// events through a Recorder injected in its Config, and a Timeline keeps one
// ordered record per node for a person (or the dashboard) to see where a
// deploy went wrong.
//
// Components know a node by different keys: the BMC and the firmware by
// machine name, DHCP by MAC, TFTP and HTTP by the client's IP, the iSCSI
// target by its IQN, the conductor by node UUID and name. Each event carries
// the keys its recorder knows (Who); an event that carries several ties them
// together, so the Timeline's identity registry learns, as the events come,
// which MAC, IP, IQN, node UUID and node name belong to which machine: a
// node enrolled by hand under any name has its whole timeline. Only events
// carrying a node UUID or a machine name create an identity; an event known
// only by an address nobody has claimed (a TFTP read from a stranger) is
// counted, not kept.
package events

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Who names a node by the keys a recorder knows it by. Any one key
// resolves the node; an event carrying several ties them together.
type Who struct {
	Node        string `json:"node_uuid,omitempty"`    // the provisioner's node UUID
	NodeName    string `json:"node_name,omitempty"`    // the provisioner's node name
	Machine     string `json:"machine,omitempty"`      // the testbed's machine name
	MachineUUID string `json:"machine_uuid,omitempty"` // the machine's SMBIOS UUID
	MAC         string `json:"mac,omitempty"`
	IP          string `json:"ip,omitempty"`
	IQN         string `json:"iqn,omitempty"`
}

// Event is one thing that happened to one node.
type Event struct {
	Time   time.Time // zero: now
	Kind   Kind
	Detail string
	Who
}

// Recorder receives events. Record must not block for long: it is called
// on servers' and conductor tasks' goroutines.
type Recorder interface {
	Record(Event)
}

// RecorderFunc is a function as a Recorder.
type RecorderFunc func(Event)

// Record calls f(e).
func (f RecorderFunc) Record(e Event) { f(e) }

// Discard is a Recorder that drops every event: the default of components
// whose Config has none.
type Discard struct{}

// Record drops e.
func (Discard) Record(Event) {}

// OrDiscard returns r, or Discard when r is nil.
func OrDiscard(r Recorder) Recorder {
	if r == nil {
		return Discard{}
	}
	return r
}

// Tag returns a Recorder that fills the keys an event leaves empty from
// who: a component that serves one machine (its BMC, its ramdisk's iSCSI
// target) records through Tag(r, Who{Machine: name}).
func Tag(r Recorder, who Who) Recorder { return tagged{r: OrDiscard(r), who: who} }

type tagged struct {
	r   Recorder
	who Who
}

func (t tagged) Record(e Event) {
	e.Who = e.Who.Or(t.who)
	t.r.Record(e)
}

// Or returns w with each empty key filled from d.
func (w Who) Or(d Who) Who {
	or := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return Who{
		Node:        or(w.Node, d.Node),
		NodeName:    or(w.NodeName, d.NodeName),
		Machine:     or(w.Machine, d.Machine),
		MachineUUID: or(w.MachineUUID, d.MachineUUID),
		MAC:         or(w.MAC, d.MAC),
		IP:          or(w.IP, d.IP),
		IQN:         or(w.IQN, d.IQN),
	}
}

// Entry is one recorded event as the timeline keeps, stores and serves it.
type Entry struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`   // the node's display name: machine, else node name, else UUID
	Key    string    `json:"key"`    // the first key it was recorded under
	Source string    `json:"source"` // bmc, dhcp, tftp, http, iscsi, ramdisk, agent, conductor, machine, …
	Kind   Kind      `json:"kind"`
	Detail string    `json:"detail,omitempty"`
	Who
}

// Identity is everything the registry knows of one node.
type Identity struct {
	Node        string   `json:"node_uuid,omitempty"`
	NodeName    string   `json:"node_name,omitempty"`
	Machine     string   `json:"machine,omitempty"`
	MachineUUID string   `json:"machine_uuid,omitempty"`
	MACs        []string `json:"macs,omitempty"`
	IPs         []string `json:"ips,omitempty"`
	IQNs        []string `json:"iqns,omitempty"`
}

// Name is the identity's display name: the machine's, else the node's
// name, else its UUID.
func (id Identity) Name() string {
	switch {
	case id.Machine != "":
		return id.Machine
	case id.NodeName != "":
		return id.NodeName
	}
	return id.Node
}

// Config configures a Timeline.
type Config struct {
	// PerNode caps the entries kept per node in memory; the oldest are
	// dropped. Default 4096.
	PerNode int
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Sink, when set, receives every kept entry as one JSON line (a
	// durable log; see OpenLog for one rotated by size).
	Sink io.Writer
}

// Timeline holds the identity registry and the per-node records. It is a
// Recorder and safe for concurrent use.
type Timeline struct {
	cfg Config

	mu        sync.Mutex
	index     map[string]*node // "u:" uuid, "n:" name, "m:" machine, "s:" SMBIOS UUID, "a:" MAC, "i:" IP, "q:" IQN
	nextID    int
	unmatched uint64
	subs      map[int]func(Entry)
	nextSub   int
	sinkErr   error
}

// node is one identity and its entries.
type node struct {
	id                          int
	uuid, name, machine, smbios string
	macs, ips, iqns             []string
	entries                     []Entry
}

// New returns an empty timeline.
func New(cfg Config) *Timeline {
	if cfg.PerNode <= 0 {
		cfg.PerNode = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Timeline{cfg: cfg, index: map[string]*node{}, subs: map[int]func(Entry){}}
}

// Record keeps e in the timeline of the node its keys resolve to, learning
// the ties between its keys, writes it to the sink and hands it to the
// subscribers. An event none of whose keys is known, and which names no
// node UUID or machine, is only counted (Unmatched).
func (t *Timeline) Record(e Event) {
	if t == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = t.cfg.Now()
	}
	t.mu.Lock()
	n := t.link(e.Who)
	if n == nil {
		t.unmatched++
		t.mu.Unlock()
		return
	}
	en := Entry{Time: e.Time, Node: n.display(), Key: e.Who.firstKey(), Source: e.Kind.Source(), Kind: e.Kind, Detail: e.Detail, Who: e.Who}
	t.keep(n, en)
	if t.cfg.Sink != nil && t.sinkErr == nil {
		t.sinkErr = writeLine(t.cfg.Sink, en)
	}
	subs := make([]func(Entry), 0, len(t.subs))
	for _, fn := range t.subs {
		subs = append(subs, fn)
	}
	t.mu.Unlock()
	for _, fn := range subs {
		fn(en)
	}
}

// Learn ties the keys of id together without recording an entry: the
// testbed registers each machine with its MACs and SMBIOS UUID at start.
func (t *Timeline) Learn(id Identity) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.link(Who{Node: id.Node, NodeName: id.NodeName, Machine: id.Machine, MachineUUID: id.MachineUUID})
	if n == nil {
		return
	}
	for _, k := range id.MACs {
		t.link(Who{Machine: n.machine, Node: n.uuid, MAC: k})
	}
	for _, k := range id.IPs {
		t.link(Who{Machine: n.machine, Node: n.uuid, IP: k})
	}
	for _, k := range id.IQNs {
		t.link(Who{Machine: n.machine, Node: n.uuid, IQN: k})
	}
}

// Replay puts entries read back from a log (ReadLog) into the timeline, in
// order, learning their ties, without writing them to the sink again or
// handing them to subscribers: `metalbed up` restarted on a state
// directory has its history back.
func (t *Timeline) Replay(entries []Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, en := range entries {
		n := t.link(en.Who)
		if n == nil {
			n = t.lookupLocked(en.Node)
		}
		if n == nil {
			continue
		}
		en.Node = n.display()
		t.keep(n, en)
	}
}

// Node returns the entries of the node key names (a node UUID or name, a
// machine name or SMBIOS UUID, a MAC, an IP or an IQN), oldest first; nil
// for an unknown key.
func (t *Timeline) Node(key string) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.lookupLocked(key)
	if n == nil {
		return nil
	}
	out := append([]Entry(nil), n.entries...)
	name := n.display() // entries kept before a merge showed another name
	for i := range out {
		out[i].Node = name
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Lookup returns what the registry knows of the node key names.
func (t *Timeline) Lookup(key string) (Identity, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.lookupLocked(key)
	if n == nil {
		return Identity{}, false
	}
	return Identity{Node: n.uuid, NodeName: n.name, Machine: n.machine, MachineUUID: n.smbios,
		MACs: append([]string(nil), n.macs...), IPs: append([]string(nil), n.ips...), IQNs: append([]string(nil), n.iqns...)}, true
}

// Nodes returns the display names of every node with entries, sorted.
func (t *Timeline) Nodes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var names []string
	for _, n := range t.nodesLocked() {
		if len(n.entries) > 0 {
			names = append(names, n.display())
		}
	}
	sort.Strings(names)
	return names
}

// Unmatched counts the events dropped because none of their keys named a
// known node.
func (t *Timeline) Unmatched() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unmatched
}

// Subscribe calls fn for every entry recorded from now on, until cancel:
// the live feed. fn runs on the recording goroutine and must not block.
func (t *Timeline) Subscribe(fn func(Entry)) (cancel func()) {
	t.mu.Lock()
	id := t.nextSub
	t.nextSub++
	t.subs[id] = fn
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.subs, id)
		t.mu.Unlock()
	}
}

// SetSink makes w the sink of the entries recorded from now on (the log a
// testbed opens once it has read its history back).
func (t *Timeline) SetSink(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg.Sink, t.sinkErr = w, nil
}

// SinkErr reports the first error writing to the sink; later entries are
// kept in memory only.
func (t *Timeline) SinkErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sinkErr
}

// keyed lists who's keys as index keys, strongest first.
func (w Who) keyed() []string {
	var ks []string
	add := func(prefix, v string) {
		if v = normKey(v); v != "" {
			ks = append(ks, prefix+v)
		}
	}
	add("m:", w.Machine)
	add("a:", w.MAC)
	add("u:", w.Node)
	add("n:", w.NodeName)
	add("s:", w.MachineUUID)
	add("q:", w.IQN)
	add("i:", w.IP)
	return ks
}

func (w Who) firstKey() string {
	for _, v := range []string{w.Node, w.Machine, w.MAC, w.IP, w.IQN, w.NodeName, w.MachineUUID} {
		if v != "" {
			return v
		}
	}
	return ""
}

// link resolves who to its node, creating one when who names a node UUID
// or a machine that is not known yet, and ties who's keys to it. It returns
// nil when no key is known and none may create a node.
//
// The node found through the strongest key (machine, MAC, node UUID, node
// name, SMBIOS UUID, IQN, IP) is the anchor. Another node found through
// another key merges into it, unless both are different machines: then only
// the addresses (MAC, IP, IQN) move to the anchor, as when a lease or a port
// moves. A node UUID or name tied to a machine replaces the one it had: a
// machine re-enrolled as a new node keeps one timeline.
func (t *Timeline) link(who Who) *node {
	keys := who.keyed()
	var anchor *node
	var others []*node
	for _, k := range keys {
		n := t.index[k]
		if n == nil || n == anchor || contains(others, n) {
			continue
		}
		if anchor == nil {
			anchor = n
		} else {
			others = append(others, n)
		}
	}
	if anchor == nil {
		if who.Node == "" && who.Machine == "" {
			return nil
		}
		t.nextID++
		anchor = &node{id: t.nextID}
	}
	for _, o := range others {
		if o.machine != "" && anchor.machine != "" && o.machine != anchor.machine {
			continue // addresses move below
		}
		t.merge(anchor, o)
	}
	t.setOne(anchor, &anchor.machine, "m:", who.Machine, false)
	t.setOne(anchor, &anchor.uuid, "u:", who.Node, true)
	t.setOne(anchor, &anchor.name, "n:", who.NodeName, true)
	t.setOne(anchor, &anchor.smbios, "s:", who.MachineUUID, false)
	t.setMany(anchor, &anchor.macs, "a:", who.MAC)
	t.setMany(anchor, &anchor.ips, "i:", who.IP)
	t.setMany(anchor, &anchor.iqns, "q:", who.IQN)
	return anchor
}

// setOne sets a single-valued key of n. replace: a new value replaces the
// old one (node UUID and name); otherwise the first value stays.
func (t *Timeline) setOne(n *node, field *string, prefix, v string, replace bool) {
	k := normKey(v)
	if k == "" || normKey(*field) == k {
		return
	}
	if holder := t.index[prefix+k]; holder != nil && holder != n {
		return // a different machine's: left as it is
	}
	if *field != "" {
		if !replace {
			return
		}
		delete(t.index, prefix+normKey(*field))
	}
	*field = v
	t.index[prefix+k] = n
}

// setMany adds an address to n, taking it from whichever node had it.
func (t *Timeline) setMany(n *node, field *[]string, prefix, v string) {
	k := normKey(v)
	if k == "" {
		return
	}
	if holder := t.index[prefix+k]; holder != nil && holder != n {
		switch prefix {
		case "a:":
			holder.macs = without(holder.macs, k)
		case "i:":
			holder.ips = without(holder.ips, k)
		case "q:":
			holder.iqns = without(holder.iqns, k)
		}
	}
	if t.index[prefix+k] != n {
		*field = append(*field, k)
	}
	t.index[prefix+k] = n
}

// merge moves o's keys and entries into n.
func (t *Timeline) merge(n, o *node) {
	for _, k := range o.keys() {
		if t.index[k] == o {
			t.index[k] = n
		}
	}
	if n.machine == "" {
		n.machine = o.machine
	}
	if n.smbios == "" {
		n.smbios = o.smbios
	}
	if n.uuid == "" {
		n.uuid = o.uuid
	} else if o.uuid != "" && o.uuid != n.uuid {
		delete(t.index, "u:"+normKey(o.uuid))
	}
	if n.name == "" {
		n.name = o.name
	} else if o.name != "" && o.name != n.name {
		delete(t.index, "n:"+normKey(o.name))
	}
	n.macs = union(n.macs, o.macs)
	n.ips = union(n.ips, o.ips)
	n.iqns = union(n.iqns, o.iqns)
	if len(o.entries) > 0 {
		merged := append(n.entries, o.entries...)
		sort.SliceStable(merged, func(i, j int) bool { return merged[i].Time.Before(merged[j].Time) })
		n.entries = t.trim(merged)
	}
	o.entries = nil
}

func (t *Timeline) keep(n *node, en Entry) {
	n.entries = t.trim(append(n.entries, en))
}

func (t *Timeline) lookupLocked(key string) *node {
	k := normKey(key)
	if k == "" {
		return nil
	}
	for _, p := range []string{"m:", "n:", "u:", "a:", "s:", "i:", "q:"} {
		if n := t.index[p+k]; n != nil {
			return n
		}
	}
	return nil
}

func (t *Timeline) nodesLocked() []*node {
	seen := map[*node]bool{}
	var out []*node
	for _, n := range t.index {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (t *Timeline) trim(es []Entry) []Entry {
	if over := len(es) - t.cfg.PerNode; over > 0 {
		es = append(es[:0:0], es[over:]...)
	}
	return es
}

// keys are n's index keys.
func (n *node) keys() []string {
	var ks []string
	for _, p := range []struct {
		prefix string
		vs     []string
	}{
		{"u:", []string{n.uuid}}, {"n:", []string{n.name}}, {"m:", []string{n.machine}}, {"s:", []string{n.smbios}},
		{"a:", n.macs}, {"i:", n.ips}, {"q:", n.iqns},
	} {
		for _, v := range p.vs {
			if k := normKey(v); k != "" {
				ks = append(ks, p.prefix+k)
			}
		}
	}
	return ks
}

func (n *node) display() string {
	return Identity{Node: n.uuid, NodeName: n.name, Machine: n.machine}.Name()
}

func contains(ns []*node, n *node) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

func without(s []string, v string) []string {
	out := s[:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func union(a, b []string) []string {
	for _, v := range b {
		found := false
		for _, x := range a {
			if x == v {
				found = true
				break
			}
		}
		if !found {
			a = append(a, v)
		}
	}
	return a
}

func normKey(k string) string { return strings.ToLower(strings.TrimSpace(k)) }

// WriteTable prints entries as an aligned table: elapsed time since the first
// entry, source, kind, detail.
func WriteTable(w io.Writer, entries []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\t+ELAPSED\tSOURCE\tEVENT\tDETAIL")
	var start time.Time
	for i, e := range entries {
		if i == 0 {
			start = e.Time
		}
		fmt.Fprintf(tw, "%s\t+%.3fs\t%s\t%s\t%s\n",
			e.Time.UTC().Format("15:04:05.000"), e.Time.Sub(start).Seconds(), e.Source, e.Kind, e.Detail)
	}
	return tw.Flush()
}
