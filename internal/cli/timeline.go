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
	stateDir := fs.String("state-dir", "", "state directory of the running `metalbed up` (default as up's)")
	endpoint := fs.String("url", "", "timeline endpoint of `metalbed up`, e.g. http://127.0.0.1:6386 (default: the \"timeline\" of inventory.json)")
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
		return usageError("usage: metalbed timeline NODE [--json] (NODE: name, UUID or MAC)")
	}
	base := *endpoint
	if base == "" {
		dir := *stateDir
		if dir == "" {
			d, err := defaultStateDir()
			if err != nil {
				return err
			}
			dir = d
		}
		b, err := os.ReadFile(filepath.Join(dir, testbed.InventoryFile))
		if err != nil {
			return fmt.Errorf("no running `metalbed up` with a provisioner found: %w", err)
		}
		var inv testbed.Inventory
		if err := json.Unmarshal(b, &inv); err != nil {
			return fmt.Errorf("%s: %w", testbed.InventoryFile, err)
		}
		if inv.Timeline == "" {
			return errors.New("this `metalbed up` runs without the provisioner: no timeline")
		}
		base = inv.Timeline
	}
	doc, err := fetchTimeline(ctx, base, node)
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
