package testbed

// Every timeline and identity wiring of the testbed: which component
// records what into the per-node timeline, and how MACs, node UUIDs and
// machine UUIDs become aliases of a machine's name.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/tftp"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// The timeline's sources.
const (
	srcDHCP      = "dhcp"
	srcTFTP      = "tftp"
	srcHTTP      = "http"
	srcISCSI     = "iscsi"
	srcRamdisk   = "ramdisk"
	srcConductor = "conductor"
	srcMachine   = "machine"
	srcBMC       = "bmc"
	srcFault     = "fault"
)

// openTimeline opens the timeline and its log, timeline.jsonl in the
// provisioner's state directory.
func (b *bed) openTimeline() error {
	sink, err := os.OpenFile(filepath.Join(b.dir, "timeline.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("timeline log: %w", err)
	}
	b.tlSink = sink
	b.tl = events.New(events.Config{Sink: sink})
	return nil
}

func (b *bed) closeTimeline() {
	if b.tlSink != nil {
		b.tlSink.Close()
		b.tlSink = nil
	}
}

func (b *bed) dhcpEvent(e dhcp.Event) {
	detail := e.IP.String()
	if e.BootFile != "" {
		detail += " boot " + e.BootFile
	}
	b.tl.Add(events.Entry{Time: e.Time, Key: e.MAC.String(), Source: srcDHCP, Kind: "dhcp." + string(e.Kind), Detail: detail})
}

// peerKey names the node a TFTP or HTTP client is: its MAC from the DHCP
// leases, else the node UUID in the file's path, else its address.
func (b *bed) peerKey(remote netip.AddrPort, file string) string {
	if mac, ok := b.svc.LeaseMAC(remote.Addr()); ok {
		return mac.String()
	}
	name := strings.TrimPrefix(file, "/")
	if u, ok := strings.CutPrefix(name, "token-"); ok {
		return u
	}
	if i := strings.IndexByte(name, '/'); i > 0 {
		return name[:i]
	}
	return remote.Addr().String()
}

func (b *bed) tftpEvent(e tftp.Event) {
	kind, detail := "tftp.file", fmt.Sprintf("%s %d bytes", e.File, e.Bytes)
	if e.Err != nil {
		kind, detail = "tftp.error", fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	b.tl.Add(events.Entry{Time: e.Time, Key: b.peerKey(e.Remote, e.File), Source: srcTFTP, Kind: kind, Detail: detail})
}

func (b *bed) httpEvent(e httpboot.Event) {
	kind := "http.file"
	if e.Status >= 400 {
		kind = "http.error"
	}
	b.tl.Add(events.Entry{Time: e.Time, Key: b.peerKey(e.Remote, e.Path), Source: srcHTTP, Kind: kind,
		Detail: fmt.Sprintf("%s %s %d %d bytes", e.Method, e.Path, e.Status, e.Bytes)})
}

// recordMilestone is the conductor's Milestone hook: "iscsi login" ->
// "conductor.iscsi_login", as the other sources name their kinds.
func (b *bed) recordMilestone(node, kind, detail string) {
	b.tl.Record(node, srcConductor, "conductor."+strings.ReplaceAll(kind, " ", "_"), detail)
}

// recordRamdisk is the simulated kernel's Milestone hook: the deploy
// ramdisk's and the agent's steps.
func (b *bed) recordRamdisk(machine, kind, detail string) {
	b.tl.Record(machine, srcRamdisk, kind, detail)
}

// recordIPMI records the BMC commands that change the machine: the polls
// (chassis status, get boot options) would drown the rest.
func (b *bed) recordIPMI(name string, netfn, cmd uint8) {
	if netfn != 0x00 {
		return
	}
	switch cmd {
	case 0x02:
		b.tl.Record(name, srcBMC, "bmc.chassis_control", "")
	case 0x08:
		b.tl.Record(name, srcBMC, "bmc.set_boot_options", "")
	}
}

// recordRestart records a conductor restart in every known node's timeline.
func (b *bed) recordRestart(n int) {
	b.nodeName.Range(func(uuid, _ any) bool {
		b.tl.Record(uuid.(string), srcConductor, "conductor.restart", fmt.Sprintf("killed by a fault, restarted on the same database (restart %d)", n))
		return true
	})
}

// recordFault records a fault hit in node's timeline as
// fault.<layer>.<action>.
func (b *bed) recordFault(node, kind, detail string) {
	if b.tl != nil {
		b.tl.Record(node, srcFault, kind, detail)
	}
}

// enroll enrolls the machines through the API (see enroll) and ties each
// node's UUID to its machine's timeline at once.
func (b *bed) enroll(ctx context.Context, specs []enrollSpec) (map[string]string, error) {
	uuids, err := enroll(ctx, NewClient(b.apiURL()), specs)
	for name, uuid := range uuids {
		b.tl.Alias(uuid, name)
		b.nodeName.Store(uuid, name)
	}
	return uuids, err
}

// watchNodes follows the nodes through the API, once a second: it ties
// node UUIDs to machine names through the ports' MACs (the machines' MACs
// are aliases of their names), for nodes enrolled by Config.Enroll or by
// hand, so conductor entries (keyed by UUID) join the machine's timeline;
// and it records each provision state it sees change ("conductor.state"; a
// state that lasts less than the poll may be missed).
func (b *bed) watchNodes(ctx context.Context) error {
	select {
	case <-b.svc.Ready():
	case <-ctx.Done():
		return nil
	}
	c := NewClient(b.apiURL())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	aliased := map[string]bool{}
	states := map[string]string{}
	for {
		var ports struct {
			Ports []struct {
				Address  string `json:"address"`
				NodeUUID string `json:"node_uuid"`
			} `json:"ports"`
		}
		if err := c.Do(ctx, http.MethodGet, "/v1/ports/detail", nil, &ports); err == nil {
			for _, p := range ports.Ports {
				if k := p.NodeUUID + p.Address; !aliased[k] && p.NodeUUID != "" {
					aliased[k] = true
					b.tl.Alias(p.NodeUUID, p.Address) // resolves to the machine's name
					if name := b.machineNamed(p.Address); name != "" {
						b.nodeName.Store(p.NodeUUID, name)
					}
				}
			}
		}
		var nodes struct {
			Nodes []Node `json:"nodes"`
		}
		if err := c.Do(ctx, http.MethodGet, "/v1/nodes?fields=uuid,provision_state,target_provision_state", nil, &nodes); err == nil {
			for _, n := range nodes.Nodes {
				st := n.ProvisionState
				if n.TargetProvisionState != nil && *n.TargetProvisionState != "" {
					st += " → " + *n.TargetProvisionState
				}
				if states[n.UUID] != st {
					states[n.UUID] = st
					b.tl.Record(n.UUID, srcConductor, "conductor.state", st)
				}
				b.conductorFault(n.UUID, "now")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// loginLogger is the log of machine name's iSCSI target: its "iscsi
// login" records become timeline entries.
func (b *bed) loginLogger(name string) *slog.Logger {
	return slog.New(&loginRecorder{next: b.log.Handler(), tl: b.tl, key: name})
}

// loginRecorder passes log records on and turns the target's "iscsi login"
// records into timeline entries.
type loginRecorder struct {
	next slog.Handler
	tl   *events.Timeline
	key  string
}

func (h *loginRecorder) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *loginRecorder) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "iscsi login" || r.Message == "iscsi connection closed" {
		var detail []string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "initiator" || a.Key == "session" {
				detail = append(detail, a.Key+"="+a.Value.String())
			}
			return true
		})
		kind := "iscsi.login"
		if r.Message != "iscsi login" {
			kind = "iscsi.logout"
		}
		h.tl.Record(h.key, srcISCSI, kind, strings.Join(detail, " "))
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *loginRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &loginRecorder{next: h.next.WithAttrs(as), tl: h.tl, key: h.key}
}

func (h *loginRecorder) WithGroup(g string) slog.Handler {
	return &loginRecorder{next: h.next.WithGroup(g), tl: h.tl, key: h.key}
}

// watchMachine records a machine's events (power, boots, console
// milestones such as "instance booted") in its timeline and makes its MACs
// and SMBIOS UUID aliases of its name.
func (b *bed) watchMachine(m fleetMachine) (cancel func()) {
	name := m.Name()
	for _, nic := range m.NICs() {
		b.tl.Alias(nic.MAC.String(), name)
		b.machineOf.Store(nic.MAC.String(), name)
	}
	b.tl.Alias(sim.FormatUUID(m.UUID()), name)
	b.tl.Record(name, srcMachine, "machine.up", fmt.Sprintf("%s, BMC and provisioner wired", m.BootMode()))
	return m.Subscribe(func(ev vms.Event) {
		kind, detail, src := "machine."+string(ev.Kind), ev.Detail, srcMachine
		if ev.Kind == vms.EventConsole {
			switch {
			case strings.HasPrefix(detail, "ramdisk."):
				return // recorded through kernel.Config.Milestone
			case strings.HasPrefix(detail, "milestone "):
				// A real VM's ramdisk or agent step, read off its serial
				// console (a simulated one's come through Milestone).
				kind, detail, _ = strings.Cut(strings.TrimPrefix(detail, "milestone "), " ")
				src = srcRamdisk
			case strings.HasPrefix(detail, "instance booted"):
				kind, detail = "instance.booted", strings.TrimPrefix(detail, "instance booted ")
			default:
				word, rest, _ := strings.Cut(detail, " ")
				kind, detail = "machine."+word, rest
			}
		}
		b.tl.Add(events.Entry{Time: ev.Time, Key: name, Source: src, Kind: kind, Detail: detail})
	})
}

// timelineHandler serves the per-node timeline:
//
//	GET /v1/nodes/{node}/timeline   one node's entries, oldest first; node
//	                                is its name, UUID, a MAC or its machine UUID
//	GET /v1/timeline                the names of the nodes with entries
func timelineHandler(tl *events.Timeline) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes/{node}/timeline", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("node")
		es := tl.Node(key)
		if len(es) == 0 {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no timeline for node %q", key)})
			return
		}
		// Sources record when a step ended (a TFTP transfer) or began; show
		// them in time order.
		sort.SliceStable(es, func(i, j int) bool { return es[i].Time.Before(es[j].Time) })
		writeJSON(w, http.StatusOK, TimelineDoc{Node: es[0].Node, Entries: es})
	})
	mux.HandleFunc("GET /v1/timeline", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]string{"nodes": tl.Nodes()})
	})
	return mux
}

// TimelineDoc is the body of GET /v1/nodes/{node}/timeline.
type TimelineDoc struct {
	Node    string         `json:"node"`
	Entries []events.Entry `json:"entries"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
