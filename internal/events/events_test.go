package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock returns a Now func that advances one millisecond per call.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func TestAliasRoutesEntriesToOneNode(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Alias("52:54:00:AA:BB:01", "node-0")
	tl.Record("52:54:00:aa:bb:01", "dhcp", "dhcp.ack", "10.0.0.5")
	tl.Record("node-0", "bmc", "power", "on")

	got := tl.Node("node-0")
	if len(got) != 2 {
		t.Fatalf("node-0 has %d entries, want 2: %+v", len(got), got)
	}
	if got[0].Source != "dhcp" || got[0].Node != "node-0" || got[0].Key != "52:54:00:aa:bb:01" {
		t.Errorf("first entry = %+v", got[0])
	}
	if other := tl.Node("52:54:00:aa:bb:01"); len(other) != 2 {
		t.Errorf("lookup by alias returned %d entries, want 2", len(other))
	}
}

func TestLateAliasMergesInTimeOrder(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Record("node-1", "bmc", "power", "on")                // t1
	tl.Record("52:54:00:00:00:02", "dhcp", "dhcp.offer", "") // t2, unknown MAC so far
	tl.Record("node-1", "bmc", "bootdev", "pxe")             // t3
	tl.Alias("uuid-1", "node-1")
	tl.Alias("52:54:00:00:00:02", "uuid-1") // chain mac -> uuid -> name

	got := tl.Node("node-1")
	var kinds []string
	for _, e := range got {
		kinds = append(kinds, e.Kind)
		if e.Node != "node-1" {
			t.Errorf("entry %+v not renamed to node-1", e)
		}
	}
	if want := "power,dhcp.offer,bootdev"; strings.Join(kinds, ",") != want {
		t.Errorf("order = %v, want %s", kinds, want)
	}
	if n := tl.Nodes(); len(n) != 1 || n[0] != "node-1" {
		t.Errorf("Nodes() = %v, want [node-1]", n)
	}
}

func TestPerNodeCapDropsOldest(t *testing.T) {
	tl := New(Config{PerNode: 3, Now: clock()})
	for i := range 5 {
		tl.Record("n", "x", fmt.Sprint(i), "")
	}
	got := tl.Node("n")
	if len(got) != 3 || got[0].Kind != "2" || got[2].Kind != "4" {
		t.Fatalf("kept %+v, want kinds 2..4", got)
	}
}

func TestSinkGetsJSONLinesAndSubscribersSeeEntries(t *testing.T) {
	var sink bytes.Buffer
	tl := New(Config{Now: clock(), Sink: &sink})
	var seen []Entry
	cancel := tl.Subscribe(func(e Entry) { seen = append(seen, e) })
	tl.Alias("aa", "node-0")
	tl.Record("AA", "tftp", "tftp.file", "pxelinux.0")
	cancel()
	tl.Record("AA", "tftp", "tftp.file", "after cancel")

	if len(seen) != 1 || seen[0].Node != "node-0" {
		t.Errorf("subscriber saw %+v", seen)
	}
	lines := strings.Split(strings.TrimSpace(sink.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("sink has %d lines, want 2", len(lines))
	}
	var e Entry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e.Node != "node-0" || e.Detail != "pxelinux.0" || e.Time.IsZero() {
		t.Errorf("sink entry = %+v", e)
	}
}

func TestAliasLoopTerminates(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Alias("a", "b")
	tl.Alias("b", "a") // a pathological loop must not hang Record
	tl.Record("a", "x", "k", "")
	if len(tl.Nodes()) != 1 {
		t.Errorf("Nodes() = %v", tl.Nodes())
	}
}

func TestWriteTable(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Record("node-0", "dhcp", "dhcp.ack", "10.0.0.5")
	tl.Record("node-0", "conductor", "state", "active")
	var b bytes.Buffer
	if err := WriteTable(&b, tl.Node("node-0")); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"SOURCE", "+0.000s", "+0.001s", "dhcp.ack", "active"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestConcurrentRecord(t *testing.T) {
	tl := New(Config{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tl.Record(fmt.Sprintf("node-%d", i%4), "x", "k", fmt.Sprint(g))
				if i%50 == 0 {
					tl.Alias(fmt.Sprintf("mac-%d", g), "node-0")
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range tl.Nodes() {
		total += len(tl.Node(n))
	}
	if total != 1600 {
		t.Errorf("recorded %d entries, want 1600", total)
	}
}
