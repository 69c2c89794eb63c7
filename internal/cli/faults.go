package cli

// The fault commands: HTTP clients of the fault endpoint of a running
// `metalbed up` (testbed/faultapi.go).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/testbed"
)

// runFaultAdd adds a fault rule to a running `metalbed up`.
func runFaultAdd(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("fault add", s)
	base := faultEndpointFlags(fs)
	var r fault.Rule
	var layer string
	fs.StringVar(&r.Node, "node", "", "machine name the fault hits (default: every node)")
	fs.StringVar(&layer, "layer", "", "where the fault is injected: "+layerList())
	fs.StringVar(&r.Op, "op", "", "operation of the layer (IPMI \"0x00/0x02\", iSCSI \"login\", a file name …; default: every one)")
	fs.StringVar(&r.Action, "action", "", "what goes wrong (see the table above)")
	fs.StringVar(&r.Arg, "arg", "", "the action's argument (a completion code, a byte count, a message)")
	fs.IntVar(&r.Count, "count", 0, "how many times the fault fires (0: without limit)")
	fs.IntVar(&r.Skip, "skip", 0, "let this many matching requests through first")
	fs.Float64Var(&r.Probability, "probability", 0, "chance a matching request is hit, 0 < p <= 1 (0: always)")
	fs.DurationVar(&r.Delay, "delay", 0, "added before the action")
	fs.Uint64Var(&r.Seed, "seed", 0, "seed of the rule's random source (the same seed, the same failures)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: metalbed fault add --layer LAYER --action ACTION [flags]\n\n"+
			"Adds a fault rule to a running `metalbed up`; each hit is recorded in the\n"+
			"node's timeline as fault.<layer>.<action>. The faults:\n\n")
		printFaultKinds(fs.Output())
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if layer == "" || r.Action == "" {
		return usageError("fault add: --layer and --action are required")
	}
	// What the fault endpoint refuses (400) is refused here first, but
	// for the node, which only the running testbed knows.
	if err := fault.CheckArg(fault.Layer(layer), r.Action, r.Arg); err != nil {
		return usageError("fault add: %v", err)
	}
	r.Layer = fault.Layer(layer)
	u, err := base()
	if err != nil {
		return err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var added fault.Rule
	if err := faultCall(ctx, http.MethodPost, u+"/v1/faults", body, &added); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "fault %s added\n", added.ID)
	return nil
}

// runFaultList prints the fault rules of a running `metalbed up`.
func runFaultList(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("fault list", s)
	base := faultEndpointFlags(fs)
	asJSON := fs.Bool("json", false, "print the rules as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := base()
	if err != nil {
		return err
	}
	var doc testbed.FaultsDoc
	if err := faultCall(ctx, http.MethodGet, u+"/v1/faults", nil, &doc); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNODE\tLAYER\tOP\tACTION\tARG\tCOUNT\tSKIP\tPROBABILITY\tDELAY\tSEED\tFIRED")
	for _, r := range doc.Faults {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\n", r.ID, orStar(r.Node), r.Layer, orStar(r.Op),
			r.Action, r.Arg, r.Count, r.Skip, strconv.FormatFloat(r.Probability, 'g', -1, 64), r.Delay, r.Seed, r.Fired)
	}
	return tw.Flush()
}

// runFaultClear removes fault rules from a running `metalbed up`: every
// one, a node's (--node), or those named as arguments (IDs from `metalbed
// fault list`).
func runFaultClear(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("fault clear", s)
	base := faultEndpointFlags(fs)
	node := fs.String("node", "", "remove only this node's rules")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: metalbed fault clear [ID...] [flags]\n\n"+
			"Removes the fault rules named by ID (as fault list shows them), or\n"+
			"without IDs every rule (--node NAME: only that node's).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	ids, err := parseArgsAndFlags(fs, args)
	if err != nil {
		return err
	}
	if len(ids) > 0 && *node != "" {
		return usageError("fault clear: give IDs or --node, not both")
	}
	u, err := base()
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		// Every ID is tried; the error names those not removed.
		var errs []error
		for _, id := range ids {
			if err := faultCall(ctx, http.MethodDelete, u+"/v1/faults/"+url.PathEscape(id), nil, nil); err != nil {
				errs = append(errs, fmt.Errorf("fault %s: %w", id, err))
				continue
			}
			fmt.Fprintf(s.Out, "fault %s cleared\n", id)
		}
		return errors.Join(errs...)
	}
	q := ""
	if *node != "" {
		q = "?node=" + url.QueryEscape(*node)
	}
	if err := faultCall(ctx, http.MethodDelete, u+"/v1/faults"+q, nil, nil); err != nil {
		return err
	}
	if *node != "" {
		fmt.Fprintf(s.Out, "faults of %s cleared\n", *node)
	} else {
		fmt.Fprintln(s.Out, "faults cleared")
	}
	return nil
}

// layerList names the fault layers, from the catalog.
func layerList() string {
	ls := fault.Layers()
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = string(l)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func orStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

// faultEndpointFlags adds --url and --state-dir and returns how to find the
// running `metalbed up`'s timeline endpoint, as `metalbed timeline` does.
func faultEndpointFlags(fs *flag.FlagSet) func() (string, error) {
	stateDir := fs.String("state-dir", "", "state directory `DIR` of the running metalbed up (default as up's)")
	endpoint := fs.String("url", "", "timeline endpoint `URL` of metalbed up, e.g. http://127.0.0.1:6386 (default: the \"timeline\" of inventory.json)")
	return func() (string, error) {
		if *endpoint != "" {
			return strings.TrimRight(*endpoint, "/"), nil
		}
		dir := *stateDir
		if dir == "" {
			d, err := defaultStateDir()
			if err != nil {
				return "", err
			}
			dir = d
		}
		b, err := os.ReadFile(filepath.Join(dir, testbed.InventoryFile))
		if err != nil {
			return "", fmt.Errorf("no running `metalbed up` found: %w", err)
		}
		var inv testbed.Inventory
		if err := json.Unmarshal(b, &inv); err != nil {
			return "", fmt.Errorf("%s: %w", testbed.InventoryFile, err)
		}
		if inv.Timeline == "" {
			return "", errors.New("this `metalbed up` runs without a timeline and fault endpoint (--timeline-addr \"\")")
		}
		return strings.TrimRight(inv.Timeline, "/"), nil
	}
}

// faultCall sends one request to the fault endpoint and decodes the answer
// into out (when not nil).
func faultCall(ctx context.Context, method, u string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		msg := "fault endpoint " + u + ": " + resp.Status
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusBadRequest {
			// The endpoint refused what was asked: a usage error, as
			// when the CLI refuses it itself.
			return usageError("%s", msg)
		}
		return errors.New(msg)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	return nil
}

// printFaultKinds writes the fault catalog for `metalbed fault add -h`.
func printFaultKinds(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  LAYER\tOP\tACTION\tARG\tWHAT HAPPENS")
	for _, k := range fault.Catalog() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", k.Layer, k.Op, k.Action, k.Arg, k.What)
	}
	tw.Flush()
}
