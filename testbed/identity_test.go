package testbed

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// run serves tb until stop is called; stop waits for Serve to return.
func run(t *testing.T, tb *Testbed) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tb.Serve(ctx) }()
	select {
	case <-tb.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Serve ended before Ready: %v", err)
	case <-time.After(5 * time.Minute): // the deploy ramdisk is built first
		cancel()
		t.Fatal("not ready")
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// timelineKinds reads a node's timeline through the provisioner API (the
// metalbed extension GET /v1/nodes/{node}/timeline) and returns its kinds
// and the provision states it went through.
func timelineKinds(t *testing.T, api, node string) (kinds map[events.Kind]int, states []string) {
	t.Helper()
	var doc TimelineDoc
	if err := NewClient(api).Do(t.Context(), "GET", "/v1/nodes/"+url.PathEscape(node)+"/timeline", nil, &doc); err != nil {
		t.Fatalf("timeline of %s: %v", node, err)
	}
	kinds = map[events.Kind]int{}
	for _, e := range doc.Entries {
		kinds[e.Kind]++
		if e.Kind == events.ConductorState {
			states = append(states, e.Detail)
		}
	}
	return kinds, states
}

// TestHandEnrolledNodeTimeline: a node enrolled through the API under a
// name of its own (not its machine's) and deployed has its whole timeline
// — the machine's DHCP and TFTP, the ramdisk, the iSCSI target's login,
// every provision state — by its name and by its UUID, and again after
// the testbed restarts on the same state directory.
func TestHandEnrolledNodeTimeline(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys a machine")
	}
	dir := t.TempDir()
	nodes := DemoNodes(false)[:1] // iSCSI deploy, netboot, BIOS
	cfg := Config{StateDir: dir, Machines: DemoMachines(nodes, false), Provisioner: free()}
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, tb)
	b := tb.provisioner()
	specs := tb.fleet.enrollSpecs(b, "", "", nil)
	specs[0].name = "web-7" // the machine is node-0
	uuids, err := b.enroll(t.Context(), specs)
	if err != nil {
		t.Fatal(err)
	}
	uuid := uuids["web-7"]
	img, err := tb.BuildDemoImage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if r := demoDeploy(ctx, NewClient(tb.APIURL()), tb.Timeline(), "node-0", uuid, nodes[0], img, nil); r.Err != nil {
		t.Fatalf("deploy: %v", r.Err)
	}

	check := func(when string) {
		t.Helper()
		for _, key := range []string{"web-7", uuid} {
			kinds, states := timelineKinds(t, tb.APIURL(), key)
			for _, k := range []events.Kind{events.MachineUp, events.BMCChassisControl, events.DHCPAck, events.RamdiskUp,
				events.ISCSILogin, events.ConductorISCSILogin, events.ConductorImageWritten, events.ConductorActive, events.InstanceBooted} {
				if kinds[k] == 0 {
					t.Errorf("%s: timeline of %s lacks %s: %v", when, key, k, kinds)
				}
			}
			if kinds[events.TFTPFile]+kinds[events.HTTPFile] == 0 {
				t.Errorf("%s: timeline of %s has no boot file fetched: %v", when, key, kinds)
			}
			got := strings.Join(states, ", ")
			for _, want := range []string{"enroll", "manageable", "available", "deploying → active", "wait call-back → active", "active"} {
				if !strings.Contains(", "+got+", ", ", "+want+", ") {
					t.Errorf("%s: timeline of %s lacks state %q: %s", when, key, want, got)
				}
			}
		}
	}
	check("running")
	stop()

	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, again)
	tb = again
	check("after a restart")
}

// TestTFTPFloodAddsNoTimelineKeys: 20 000 TFTP reads of random names from
// an address no machine leased give no node a timeline; they are counted.
func TestTFTPFloodAddsNoTimelineKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deploy ramdisk")
	}
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: free()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, tb)
	before := tb.Timeline().Nodes()
	server := tb.provisioner().tftpConn.LocalAddr().String()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		t.Fatal(err)
	}
	const reads = 20000
	buf := make([]byte, 1500)
	for i := range reads {
		rrq := fmt.Appendf([]byte{0, 1}, "nobody-%d/%x\x00octet\x00", i, i*7919)
		if _, err := c.WriteTo(rrq, to); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadFrom(buf); err != nil {
			t.Fatalf("read %d: no answer: %v", i, err)
		}
		if buf[1] != 5 {
			t.Fatalf("read %d: opcode %d, want ERROR", i, buf[1])
		}
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return tb.Timeline().Unmatched() >= reads },
		"unmatched %d, want %d", tb.Timeline().Unmatched(), reads)
	if after := tb.Timeline().Nodes(); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("nodes with a timeline: before %v, after %v", before, after)
	}
	var idx TimelineIndex
	if err := NewClient(tb.TimelineURL()).Do(t.Context(), "GET", "/v1/timeline", nil, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Nodes) != 1 || idx.Unmatched < reads {
		t.Errorf("GET /v1/timeline = %+v", idx)
	}
}
