package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

func kinds(es []Entry) string {
	var ks []string
	for _, e := range es {
		ks = append(ks, string(e.Kind))
	}
	return strings.Join(ks, ",")
}

// A node enrolled by hand under another name than its machine's: its
// conductor events (by UUID and name), its DHCP/TFTP (by MAC and IP) and
// its machine's events end up in one timeline, found by every key.
func TestHandEnrolledNodeHasOneTimeline(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Learn(Identity{Machine: "node-0", MachineUUID: "4C4C4544-0000", MACs: []string{"52:54:00:AA:BB:01"}})
	tl.Record(Event{Kind: MachineUp, Who: Who{Machine: "node-0"}})
	tl.Record(Event{Kind: ConductorState, Detail: "enroll", Who: Who{Node: "uuid-7", NodeName: "web-7"}})
	tl.Record(Event{Kind: PortCreated, Who: Who{Node: "uuid-7", MAC: "52:54:00:aa:bb:01"}})
	tl.Record(Event{Kind: DHCPAck, Detail: "127.1.0.10", Who: Who{MAC: "52:54:00:aa:bb:01", IP: "127.1.0.10"}})
	tl.Record(Event{Kind: TFTPFile, Detail: "pxelinux.0", Who: Who{IP: "127.1.0.10"}})
	tl.Record(Event{Kind: ISCSILogin, Who: Who{Machine: "node-0", IQN: "iqn.2008-10.org.openstack:uuid-7"}})
	tl.Record(Event{Kind: ConductorActive, Who: Who{Node: "uuid-7"}})

	want := "machine.up,conductor.state,api.port_created,dhcp.ack,tftp.file,iscsi.login,conductor.active"
	for _, key := range []string{"node-0", "web-7", "uuid-7", "UUID-7", "52:54:00:AA:BB:01", "127.1.0.10", "4c4c4544-0000", "iqn.2008-10.org.openstack:uuid-7"} {
		if got := kinds(tl.Node(key)); got != want {
			t.Errorf("Node(%q) = %s, want %s", key, got, want)
		}
	}
	if n := tl.Nodes(); len(n) != 1 || n[0] != "node-0" {
		t.Errorf("Nodes() = %v, want [node-0]", n)
	}
	id, ok := tl.Lookup("127.1.0.10")
	if !ok || id.Machine != "node-0" || id.Node != "uuid-7" || id.NodeName != "web-7" {
		t.Errorf("Lookup = %+v, %v", id, ok)
	}
	for _, e := range tl.Node("web-7") {
		if e.Node != "node-0" {
			t.Errorf("entry %+v not shown as node-0", e)
		}
	}
}

// Requests from addresses nobody claimed (a TFTP flood of random names)
// create no timeline: they are counted.
func TestUnknownKeysAreCountedNotKept(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Learn(Identity{Machine: "node-0", MACs: []string{"aa"}})
	for i := range 20000 {
		tl.Record(Event{Kind: TFTPError, Detail: fmt.Sprintf("/x/%d", i), Who: Who{IP: fmt.Sprintf("127.9.%d.%d", i/250, i%250), MAC: ""}})
	}
	tl.Record(Event{Kind: DHCPOffer, Who: Who{MAC: "bb"}})
	if n := tl.Nodes(); len(n) != 0 {
		t.Errorf("Nodes() = %v, want none", n)
	}
	if got := tl.Unmatched(); got != 20001 {
		t.Errorf("Unmatched() = %d, want 20001", got)
	}
	if len(tl.index) != 2 {
		t.Errorf("index has %d keys, want 2 (machine and MAC)", len(tl.index))
	}
}

// A lease that moves to another machine takes its IP with it.
func TestAddressesMoveBetweenMachines(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Learn(Identity{Machine: "a", MACs: []string{"m1"}})
	tl.Learn(Identity{Machine: "b", MACs: []string{"m2"}})
	tl.Record(Event{Kind: DHCPAck, Who: Who{MAC: "m1", IP: "127.1.0.10"}})
	tl.Record(Event{Kind: DHCPAck, Who: Who{MAC: "m2", IP: "127.1.0.10"}})
	tl.Record(Event{Kind: TFTPFile, Who: Who{IP: "127.1.0.10"}})
	if got := kinds(tl.Node("a")); got != "dhcp.ack" {
		t.Errorf("a = %s", got)
	}
	if got := kinds(tl.Node("b")); got != "dhcp.ack,tftp.file" {
		t.Errorf("b = %s", got)
	}
	if id, _ := tl.Lookup("a"); len(id.IPs) != 0 {
		t.Errorf("a still has %v", id.IPs)
	}
}

// A machine re-enrolled as a new node keeps one timeline; the old UUID no
// longer resolves.
func TestReenrolledMachineKeepsItsTimeline(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Learn(Identity{Machine: "node-0", MACs: []string{"m"}})
	tl.Record(Event{Kind: PortCreated, Who: Who{Node: "u1", NodeName: "node-0", MAC: "m"}})
	tl.Record(Event{Kind: PortCreated, Who: Who{Node: "u2", NodeName: "node-0b", MAC: "m"}})
	if got := kinds(tl.Node("u2")); got != "api.port_created,api.port_created" {
		t.Errorf("u2 = %s", got)
	}
	if tl.Node("u1") != nil || tl.Node("node-0b") == nil {
		t.Errorf("u1 still resolves, or node-0b does not")
	}
}

func TestPerNodeCapDropsOldest(t *testing.T) {
	tl := New(Config{PerNode: 3, Now: clock()})
	for i := range 5 {
		tl.Record(Event{Kind: MachineConsole, Detail: fmt.Sprint(i), Who: Who{Machine: "n"}})
	}
	got := tl.Node("n")
	if len(got) != 3 || got[0].Detail != "2" || got[2].Detail != "4" {
		t.Fatalf("kept %+v, want details 2..4", got)
	}
}

func TestTagFillsKeys(t *testing.T) {
	tl := New(Config{Now: clock()})
	r := Tag(tl, Who{Machine: "node-1"})
	r.Record(Event{Kind: ISCSILogin, Who: Who{IQN: "iqn.x"}})
	if got := kinds(tl.Node("iqn.x")); got != "iscsi.login" {
		t.Errorf("by IQN: %s", got)
	}
	if got := tl.Node("node-1"); len(got) != 1 || got[0].Machine != "node-1" || got[0].Source != "iscsi" {
		t.Errorf("by machine: %+v", got)
	}
}

func TestSinkSubscribersAndReplayAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timeline.jsonl")
	log, err := OpenLog(path, 600, 3) // small: rotates every few lines
	if err != nil {
		t.Fatal(err)
	}
	tl := New(Config{Now: clock(), Sink: log})
	var seen []Entry
	cancel := tl.Subscribe(func(e Entry) { seen = append(seen, e) })
	tl.Learn(Identity{Machine: "node-0", MACs: []string{"aa"}})
	tl.Record(Event{Kind: ConductorState, Detail: "enroll", Who: Who{Node: "u", NodeName: "web"}})
	tl.Record(Event{Kind: PortCreated, Who: Who{Node: "u", MAC: "aa"}})
	cancel()
	for i := range 6 {
		tl.Record(Event{Kind: TFTPFile, Detail: fmt.Sprint("file ", i), Who: Who{MAC: "AA"}})
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[1].Node != "node-0" {
		t.Errorf("subscriber saw %+v", seen)
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Errorf("log did not rotate: %v", err)
	}

	// A restart: a new timeline knows nothing but the log.
	es, err := ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 8 {
		t.Fatalf("read back %d entries, want 8 (rotation kept them all)", len(es))
	}
	again := New(Config{})
	again.Replay(es)
	for _, key := range []string{"web", "u", "aa"} {
		if got := again.Node(key); len(got) != 8 || got[7].Detail != "file 5" {
			t.Errorf("after restart Node(%q) has %d entries", key, len(got))
		}
	}
}

func TestReadLogSkipsATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timeline.jsonl")
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(Entry{Kind: MachineUp, Who: Who{Machine: "m"}})
	b.WriteString(`{"time":"2026-`)
	os.WriteFile(path, b.Bytes(), 0o644)
	es, err := ReadLog(path)
	if err != nil || len(es) != 1 {
		t.Fatalf("ReadLog = %v, %v", es, err)
	}
	if es, err := ReadLog(filepath.Join(t.TempDir(), "none")); err != nil || len(es) != 0 {
		t.Errorf("missing log: %v, %v", es, err)
	}
}

func TestParseKind(t *testing.T) {
	if k, ok := ParseKind("ramdisk.up"); !ok || k != RamdiskUp || k.Source() != "ramdisk" {
		t.Errorf("ParseKind(ramdisk.up) = %q, %v", k, ok)
	}
	if _, ok := ParseKind("ramdisk.bogus"); ok {
		t.Error("ParseKind accepted an unknown kind")
	}
}

func TestWriteTable(t *testing.T) {
	tl := New(Config{Now: clock()})
	tl.Record(Event{Kind: DHCPAck, Detail: "10.0.0.5", Who: Who{Machine: "node-0"}})
	tl.Record(Event{Kind: ConductorState, Detail: "active", Who: Who{Machine: "node-0"}})
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
				tl.Record(Event{Kind: MachineConsole, Detail: fmt.Sprint(g), Who: Who{Machine: fmt.Sprintf("node-%d", i%4)}})
				if i%50 == 0 {
					tl.Learn(Identity{Machine: "node-0", MACs: []string{fmt.Sprintf("mac-%d", g)}})
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
