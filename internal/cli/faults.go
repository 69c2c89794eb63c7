package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// newInjector is the one fault.Injector every server of the bed asks at
// its dispatch point: the bed's rules, the bed as the resolver of
// requesters (Lookup), each hit recorded in the node's timeline.
func (b *bed) newInjector() fault.Injector {
	return fault.NewInjector(fault.InjectorConfig{
		Rules:    b.faults,
		Resolver: b,
		// b.tl is made after the servers' configs (prepare); a nil
		// timeline records nothing.
		Recorder: events.RecorderFunc(func(e events.Event) { b.tl.Record(e) }),
	})
}

// Lookup resolves a key a server knows a requester by (machine or node
// name, node UUID, MAC, IP, IQN) to the node, for the Injector: the
// timeline's identity registry, and for a client IP it has not tied to a
// node yet, the DHCP lease's MAC.
func (b *bed) Lookup(key string) (events.Identity, bool) {
	if b.tl == nil {
		return events.Identity{}, false
	}
	if id, ok := b.tl.Lookup(key); ok {
		return id, true
	}
	if ip, err := netip.ParseAddr(key); err == nil && b.boot.dhcp != nil {
		if mac, ok := b.boot.dhcp.MACOf(ip); ok {
			return b.tl.Lookup(mac.String())
		}
	}
	return events.Identity{}, false
}

// fault asks the bed's Injector whether op of layer on the node named
// node must fail: the conductor's kill (faults_agent.go).
func (b *bed) fault(node string, layer fault.Layer, op string) (fault.Hit, bool) {
	return b.inject.Inject(layer, events.Who{NodeName: node}, op)
}

// faultHandler serves the fault rules of `metalbed up` beside the timeline:
//
//	GET    /v1/faults        the rules, with how often each has fired
//	POST   /v1/faults        add one rule (a JSON fault.Rule); 201 with the rule
//	DELETE /v1/faults        remove every rule (?node=NAME: only that node's)
//	DELETE /v1/faults/{id}   remove one rule
//
// GET also names the HTTP boot server layer http breaks (its URL and the
// directory it serves), where a <machine>/ folder holds files fetched for
// that machine.
func faultHandler(set *fault.Set, httpBoot httpBootInfo, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, faultsDoc{Faults: set.List(), HTTPBoot: httpBoot})
	})
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		var rule fault.Rule
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rule); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "fault rule: " + err.Error()})
			return
		}
		added, err := set.Add(rule)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, added)
	})
	mux.HandleFunc("DELETE /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		set.Clear(r.URL.Query().Get("node"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /v1/faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := set.Remove(r.PathValue("id")); err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// faultsDoc is the body of GET /v1/faults.
type faultsDoc struct {
	Faults   []fault.Rule `json:"faults"`
	HTTPBoot httpBootInfo `json:"http_boot"`
}

// httpBootInfo is where the HTTP boot server is.
type httpBootInfo struct {
	URL  string `json:"url,omitempty"`
	Root string `json:"root,omitempty"`
}

// runFaultAdd adds a fault rule to a running `metalbed up`.
func runFaultAdd(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("fault add", s)
	base := faultEndpointFlags(fs)
	var r fault.Rule
	var layer string
	fs.StringVar(&r.Node, "node", "", "machine name the fault hits (default: every node)")
	fs.StringVar(&layer, "layer", "", "ipmi, dhcp, tftp, http, iscsi, ramdisk, agent, disk or conductor")
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
		return usageError("metalbed fault add: --layer and --action are required")
	}
	if _, err := fault.Find(fault.Layer(layer), r.Action); err != nil {
		return usageError("metalbed fault add: %v", err)
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
	var doc faultsDoc
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
// one, a node's (--node), or those named as arguments.
func runFaultClear(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("fault clear", s)
	base := faultEndpointFlags(fs)
	node := fs.String("node", "", "remove only this node's rules")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := base()
	if err != nil {
		return err
	}
	if ids := fs.Args(); len(ids) > 0 {
		for _, id := range ids {
			if err := faultCall(ctx, http.MethodDelete, u+"/v1/faults/"+id, nil, nil); err != nil {
				return err
			}
		}
		return nil
	}
	q := ""
	if *node != "" {
		q = "?node=" + *node
	}
	return faultCall(ctx, http.MethodDelete, u+"/v1/faults"+q, nil, nil)
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
	stateDir := fs.String("state-dir", "", "state directory of the running `metalbed up` (default as up's)")
	endpoint := fs.String("url", "", "timeline endpoint of `metalbed up`, e.g. http://127.0.0.1:6386 (default: the \"timeline\" of inventory.json)")
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
		b, err := os.ReadFile(filepath.Join(dir, inventoryFile))
		if err != nil {
			return "", fmt.Errorf("no running `metalbed up` with a provisioner found: %w", err)
		}
		var inv inventory
		if err := json.Unmarshal(b, &inv); err != nil {
			return "", fmt.Errorf("%s: %w", inventoryFile, err)
		}
		if inv.Timeline == "" {
			return "", errors.New("this `metalbed up` runs without the provisioner: no fault endpoint")
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
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("faults: %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	return nil
}

// machineNamed is the machine a MAC belongs to; "" when unknown.
func (b *bed) machineNamed(mac string) string {
	if v, ok := b.machineOf.Load(mac); ok {
		return v.(string)
	}
	return ""
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
