package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/tftp"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// srcFault is the timeline source of every injected fault.
const srcFault = "fault"

// fault asks the bed's fault set whether op of layer on node must fail; a
// hit is recorded in node's timeline as fault.<layer>.<action>.
func (b *bed) fault(node string, layer fault.Layer, op string) (fault.Hit, bool) {
	h, ok := b.faults.Match(node, layer, op)
	if !ok {
		return h, false
	}
	detail := fmt.Sprintf("rule %s op %s", h.RuleID, op)
	if h.Arg != "" {
		detail += " arg " + h.Arg
	}
	if h.Delay > 0 {
		detail += " delay " + h.Delay.String()
	}
	if b.tl != nil {
		b.tl.Record(node, srcFault, "fault."+string(layer)+"."+h.Action, detail)
	}
	return h, true
}

// ipmiFault is the BMC's Intercept answer for node's netfn/cmd (layer ipmi,
// op "0xNN/0xNN"): "drop" sends no reply, "delay" (or any rule's Delay)
// answers late, "cc" answers with the completion code in Arg.
func (b *bed) ipmiFault(node string, netfn, cmd uint8) (cc uint8, drop bool, delay time.Duration) {
	h, ok := b.fault(node, fault.IPMI, fmt.Sprintf("0x%02x/0x%02x", netfn, cmd))
	if !ok {
		return 0, false, 0
	}
	switch h.Action {
	case "drop":
		return 0, true, h.Delay
	case "cc":
		v, err := h.ArgInt()
		if err != nil || v <= 0 || v > 0xff {
			v = 0xff // unspecified error
		}
		return uint8(v), false, h.Delay
	}
	return 0, false, h.Delay
}

// iscsiFaults are node's ramdisk target faults: layer iscsi "refuse-login"
// (op "login"), "reset-after" Arg bytes (op "connect"), "medium-error"
// (op "write"), any rule's Delay before each response (op "response"); and
// layer disk "write-error" (op "write").
func (b *bed) iscsiFaults(node string) iscsitarget.Faults {
	return iscsitarget.Faults{
		RefuseLogin: func(string) bool {
			h, ok := b.fault(node, fault.ISCSI, "login")
			return ok && h.Action == "refuse-login"
		},
		DropAfterBytes: func() int64 {
			h, ok := b.fault(node, fault.ISCSI, "connect")
			if !ok || h.Action != "reset-after" {
				return 0
			}
			n, err := h.ArgInt()
			if err != nil || n <= 0 {
				n = 1
			}
			return n
		},
		WriteError: func(uint64, uint32) bool {
			if h, ok := b.fault(node, fault.ISCSI, "write"); ok && h.Action == "medium-error" {
				return true
			}
			h, ok := b.fault(node, fault.Disk, "write")
			return ok && h.Action == "write-error"
		},
	}
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
	if err := checkFaultKind(layer, r.Action); err != nil {
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

// ramdiskFault is the deploy ramdisk's fault seam (layer ramdisk): "error"
// makes pass_deploy_info carry Arg as the ramdisk's error, "no-callback"
// keeps the ramdisk from calling back.
func (b *bed) ramdiskFault(machine, op string) (action, arg string) {
	h, ok := b.fault(machine, fault.Ramdisk, op)
	if !ok {
		return "", ""
	}
	return h.Action, h.Arg
}

// bootloader installs the bootloader on machine's disk unless layer
// ramdisk "bootloader-failed" (op "bootloader") says it fails, with Arg as
// the error.
func (b *bed) bootloader(machine string) ramdisk.BootloaderInstaller {
	return func(ctx context.Context, disk ramdisk.Disk, bootMode string) error {
		if h, ok := b.fault(machine, fault.Ramdisk, "bootloader"); ok && h.Action == "bootloader-failed" {
			msg := h.Arg
			if msg == "" {
				msg = "injected fault: grub-install failed"
			}
			return errors.New(msg)
		}
		return ramdisk.InstallBootloader(ctx, disk, bootMode)
	}
}

// machineNamed is the machine a MAC belongs to; "" when unknown.
func (b *bed) machineNamed(mac string) string {
	if v, ok := b.machineOf.Load(mac); ok {
		return v.(string)
	}
	return ""
}

// peerMachine is the machine a TFTP or HTTP client is, by its DHCP lease;
// "" when unknown.
func (b *bed) peerMachine(remote netip.AddrPort) string {
	if mac, ok := b.boot.dhcp.MACOf(remote.Addr()); ok {
		return b.machineNamed(mac.String())
	}
	return ""
}

// faultyHosts puts layer dhcp in front of the bed's hosts: "no-offer"
// leaves the MAC unanswered (as if not enrolled), "wrong-next-server"
// sends next-server Arg (default 127.0.0.254, where nothing serves TFTP).
// The op is "lookup".
type faultyHosts struct {
	b    *bed
	next dhcp.HostSource
}

func (h faultyHosts) Lookup(mac net.HardwareAddr) (dhcp.Host, bool) {
	host, ok := h.next.Lookup(mac)
	if !ok {
		return host, false
	}
	name := h.b.machineNamed(mac.String())
	if name == "" {
		return host, true
	}
	f, hit := h.b.fault(name, fault.DHCP, "lookup")
	if !hit {
		return host, true
	}
	switch f.Action {
	case "no-offer":
		return dhcp.Host{}, false
	case "wrong-next-server":
		ip, err := netip.ParseAddr(f.Arg)
		if err != nil {
			ip = netip.MustParseAddr("127.0.0.254")
		}
		host.TFTPServer = ip
	}
	return host, true
}

// tftpFault is layer tftp (op: the file name): "missing" answers "file
// not found"; "stall" stops the transfer after Arg bytes (default 64 KiB)
// for the rule's Delay (default a minute), so the client times out
// mid-file; "slow" waits Arg (a duration, default 2ms) before every block,
// and the file still arrives whole. Any other action's Delay starts the
// transfer late.
func (b *bed) tftpFault(file string, remote netip.AddrPort) tftp.Fault {
	name := b.peerMachine(remote)
	if name == "" {
		return tftp.Fault{}
	}
	h, ok := b.fault(name, fault.TFTP, file)
	if !ok {
		return tftp.Fault{}
	}
	switch h.Action {
	case "missing":
		return tftp.Fault{Delay: h.Delay, Refuse: fmt.Errorf("%s: file not found", file)}
	case "stall":
		n, err := h.ArgInt()
		if err != nil || n <= 0 {
			n = 64 << 10
		}
		return tftp.Fault{StallAfter: n, StallFor: cmp.Or(h.Delay, time.Minute)}
	case "slow":
		d, err := time.ParseDuration(h.Arg)
		if err != nil || d <= 0 {
			d = 2 * time.Millisecond
		}
		return tftp.Fault{Delay: h.Delay, BlockDelay: d}
	}
	return tftp.Fault{Delay: h.Delay}
}

// httpFault is layer http (op: the path): "status" answers with the status
// in Arg (default 404); "truncate" sends Arg bytes (default half) of the
// body, then closes; "corrupt" flips the body's byte at Arg (default 0),
// a wrong checksum. Any Delay answers late. A request is a machine's by
// its client's DHCP lease (the PXE ROM), else by its path's first element
// naming the machine: the conductor downloading <machine>/<image> for it.
func (b *bed) httpFault(path string, remote netip.AddrPort) httpboot.Fault {
	name := b.peerMachine(remote)
	if name == "" {
		first, _, _ := strings.Cut(path, "/")
		if b.isMachine(first) {
			name = first
		}
	}
	if name == "" {
		return httpboot.Fault{}
	}
	h, ok := b.fault(name, fault.HTTP, path)
	if !ok {
		return httpboot.Fault{}
	}
	f := httpboot.Fault{Delay: h.Delay}
	switch h.Action {
	case "status":
		code, err := h.ArgInt()
		if err != nil || code < 400 || code > 599 {
			code = http.StatusNotFound
		}
		f.Status = int(code)
	case "truncate":
		n, _ := h.ArgInt()
		f.Truncate, f.TruncateAt = true, n
	case "corrupt":
		n, _ := h.ArgInt()
		f.Corrupt, f.CorruptAt = true, n
	}
	return f
}

// isMachine reports whether name is one of the bed's machines.
func (b *bed) isMachine(name string) bool {
	found := false
	if name == "" {
		return false
	}
	b.machineOf.Range(func(_, v any) bool {
		found = v.(string) == name
		return !found
	})
	return found
}

// diskSize is the size machine's disk reports to the deploy (the iSCSI
// target's capacity): layer disk "too-small" (op "size") reports Arg bytes
// (default 512 MiB) instead of size, fewer blocks than a 1 GiB root
// partition needs. A larger Arg than the disk is ignored.
func (b *bed) diskSize(machine string, size int64) int64 {
	h, ok := b.fault(machine, fault.Disk, "size")
	if !ok || h.Action != "too-small" {
		return size
	}
	n, err := h.ArgInt()
	if err != nil || n <= 0 {
		n = 512 << 20
	}
	return min(n, size)
}
