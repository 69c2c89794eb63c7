package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/testbed"
)

// TestPhaseTableFits: the demo's summary table keeps every line within
// 120 runes, with every phase reached, times past 100 s (real VMs), the
// longest deploy descriptions the demo has and a failure with a long
// error, which gets a line of its own.
func TestPhaseTableFits(t *testing.T) {
	tl := events.New(events.Config{})
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var results []testbed.DemoResult
	var nodes []testbed.DemoNode
	nodes = append(nodes, testbed.DemoNodes(false)...)
	nodes = append(nodes, testbed.DemoNodes(true)...)
	for i, n := range nodes {
		name := fmt.Sprintf("node-%d", i)
		tl.Learn(events.Identity{Machine: name})
		for j, p := range demoPhases {
			for _, k := range p.kinds {
				at := start.Add(time.Duration(j*(i+1)*37) * time.Second / 3)
				tl.Record(events.Event{Time: at, Kind: k, Detail: "x", Who: events.Who{Machine: name}})
			}
		}
		r := testbed.DemoResult{Name: name, What: n.What, DeployStart: start}
		if i == 1 {
			r.Err = errors.New(strings.Repeat("the instance did not boot ", 10))
		}
		results = append(results, r)
	}
	var out bytes.Buffer
	printPhaseTable(&out, tl, results)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 120 {
			t.Errorf("%d runes, more than 120: %q", n, l)
		}
	}
	if len(lines) != 1+len(results)+1+2 {
		t.Fatalf("want a head, a row per node, the failure and two notes; got:\n%s", out.String())
	}
	for _, what := range []string{"iSCSI, netboot, bios, VM", "agent, Redfish CD, bios", "789.3", "node-1 FAILED: the instance"} {
		if !strings.Contains(out.String(), what) {
			t.Errorf("table lacks %q:\n%s", what, out.String())
		}
	}
}
