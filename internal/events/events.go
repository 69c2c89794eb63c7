// Package events is metalbed's per-node timeline: every component (BMC,
// DHCP, TFTP, HTTP, iSCSI, ramdisk, conductor) records milestones here and a
// person reads one ordered record per node to see where a deploy went wrong.
//
// Components know a node by different keys — the BMC by machine name, DHCP
// by MAC, the conductor by UUID. Alias ties those keys to one node, so an
// entry recorded under a MAC lands in that node's timeline.
package events

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Entry is one milestone of one node.
type Entry struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`   // canonical node name, filled by Record
	Key    string    `json:"key"`    // the key it was recorded under (MAC, UUID, name)
	Source string    `json:"source"` // bmc, dhcp, tftp, http, iscsi, ramdisk, conductor, machine
	Kind   string    `json:"kind"`   // e.g. "dhcp.ack", "tftp.file", "state"
	Detail string    `json:"detail,omitempty"`
}

// Config configures a Timeline.
type Config struct {
	// PerNode caps the entries kept per node; the oldest are dropped.
	// Default 4096.
	PerNode int
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Sink, when set, receives every entry as one JSON line (a durable log).
	Sink io.Writer
}

// Timeline holds the per-node records. It is safe for concurrent use.
type Timeline struct {
	cfg Config

	mu      sync.Mutex
	alias   map[string]string // lower-cased key -> canonical node
	entries map[string][]Entry
	subs    map[int]func(Entry)
	nextSub int
	sinkErr error
}

// New returns an empty timeline.
func New(cfg Config) *Timeline {
	if cfg.PerNode <= 0 {
		cfg.PerNode = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Timeline{
		cfg:     cfg,
		alias:   map[string]string{},
		entries: map[string][]Entry{},
		subs:    map[int]func(Entry){},
	}
}

// Alias makes key (a MAC, UUID, IP or other name) refer to node. Entries
// already recorded under key move to node's timeline.
func (t *Timeline) Alias(key, node string) {
	k := normKey(key)
	if k == "" || node == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	canon := t.resolveLocked(node)
	if k == normKey(canon) {
		return
	}
	t.alias[k] = canon
	if moved, ok := t.entries[k]; ok && k != canon {
		delete(t.entries, k)
		for i := range moved {
			moved[i].Node = canon
		}
		merged := append(t.entries[canon], moved...)
		sort.SliceStable(merged, func(i, j int) bool { return merged[i].Time.Before(merged[j].Time) })
		t.entries[canon] = t.trim(merged)
	}
}

// Record adds an entry under key. A zero Time is set to now.
func (t *Timeline) Record(key, source, kind, detail string) {
	t.Add(Entry{Key: key, Source: source, Kind: kind, Detail: detail})
}

// Recordf is Record with a formatted detail.
func (t *Timeline) Recordf(key, source, kind, format string, a ...any) {
	t.Record(key, source, kind, fmt.Sprintf(format, a...))
}

// Add records e, resolving e.Key to its node.
func (t *Timeline) Add(e Entry) {
	if t == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = t.cfg.Now()
	}
	t.mu.Lock()
	e.Node = t.resolveLocked(e.Key)
	t.entries[e.Node] = t.trim(append(t.entries[e.Node], e))
	subs := make([]func(Entry), 0, len(t.subs))
	for _, fn := range t.subs {
		subs = append(subs, fn)
	}
	if t.cfg.Sink != nil && t.sinkErr == nil {
		line, _ := json.Marshal(e) // Entry always marshals
		_, t.sinkErr = t.cfg.Sink.Write(append(line, '\n'))
	}
	t.mu.Unlock()
	for _, fn := range subs {
		fn(e)
	}
}

// Node returns the entries of the node key refers to, oldest first.
func (t *Timeline) Node(key string) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Entry(nil), t.entries[t.resolveLocked(key)]...)
}

// Nodes returns the canonical names of every node with entries, sorted.
func (t *Timeline) Nodes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Subscribe calls fn for every entry recorded from now on, until cancel.
// fn runs on the recording goroutine and must not block.
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

// SinkErr reports the first error writing to the sink; later entries are
// kept in memory only.
func (t *Timeline) SinkErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sinkErr
}

func (t *Timeline) resolveLocked(key string) string {
	k := normKey(key)
	// Follow alias chains (mac -> uuid -> name) with a bound against loops.
	for range 8 {
		next, ok := t.alias[k]
		if !ok {
			break
		}
		k = normKey(next)
		key = next
	}
	return key
}

func (t *Timeline) trim(es []Entry) []Entry {
	if over := len(es) - t.cfg.PerNode; over > 0 {
		es = append(es[:0:0], es[over:]...)
	}
	return es
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
