package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/testbed"
)

// runTimeline prints one node's timeline from a running `metalbed up`.
func runTimeline(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("timeline", s)
	asJSON := fs.Bool("json", false, "print the entries as JSON")
	stateDir := fs.String("state-dir", "", "state directory `DIR` of the running metalbed up (default as up's)")
	endpoint := fs.String("url", "", "timeline endpoint `URL` of metalbed up, e.g. http://127.0.0.1:6386 (default: the \"timeline\" of inventory.json)")
	// The node comes first (`metalbed timeline node-0 --json`); flags may
	// follow it.
	var node string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		node, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if node == "" {
		return usageError("metalbed timeline NODE [--json] (NODE: name, UUID or MAC)")
	}
	doc, err := readTimeline(ctx, *endpoint, *stateDir, node)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	fmt.Fprintf(s.Out, "timeline of %s (%d entries)\n", doc.Node, len(doc.Entries))
	return events.WriteTable(s.Out, doc.Entries)
}

// readTimeline reads node's timeline from the running `metalbed up` at
// endpoint (default: the "timeline" of DIR's inventory.json), or, when
// nothing answers there, from DIR/provisioner/timeline.jsonl: the history
// of a testbed that has stopped.
func readTimeline(ctx context.Context, endpoint, stateDir, node string) (*testbed.TimelineDoc, error) {
	if endpoint != "" {
		return fetchTimeline(ctx, endpoint, node)
	}
	dir := stateDir
	if dir == "" {
		d, err := defaultStateDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	var inv testbed.Inventory
	if b, err := os.ReadFile(filepath.Join(dir, testbed.InventoryFile)); err == nil && json.Unmarshal(b, &inv) == nil && inv.Timeline != "" {
		doc, err := fetchTimeline(ctx, inv.Timeline, node)
		var unreachable *url.Error
		if !errors.As(err, &unreachable) {
			return doc, err // an answer, or the running testbed's error
		}
	}
	log := filepath.Join(dir, "provisioner", events.LogName)
	entries, err := events.ReadLog(log)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("no running `metalbed up` on %s and no timeline in %s", dir, log)
	}
	tl := events.New(events.Config{PerNode: len(entries)})
	tl.Replay(entries)
	es := tl.Node(node)
	if len(es) == 0 {
		return nil, fmt.Errorf("no timeline for node %q in %s", node, log)
	}
	return &testbed.TimelineDoc{Node: es[0].Node, Entries: es}, nil
}

// fetchTimeline reads one node's timeline from base.
func fetchTimeline(ctx context.Context, base, node string) (*testbed.TimelineDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := strings.TrimRight(base, "/") + "/v1/nodes/" + url.PathEscape(node) + "/timeline"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("timeline: %s", resp.Status)
	}
	var doc testbed.TimelineDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	return &doc, nil
}
