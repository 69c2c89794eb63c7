package testbed

// The testbed's one event stream: the timeline every component records
// into (each through the events.Recorder in its Config), its log, and the
// events the testbed itself turns into timeline entries: the boot servers'
// observations, the machines' power, boots and console milestones.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/tftp"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// openTimeline opens the timeline and its log (timeline.jsonl in the
// provisioner's state directory, rotated by size), reading the history a
// previous run left there back in first.
func (b *bed) openTimeline() error {
	path := filepath.Join(b.dir, events.LogName)
	history, err := events.ReadLog(path)
	if err != nil {
		return err
	}
	log, err := events.OpenLog(path, 0, 0)
	if err != nil {
		return err
	}
	b.tlLog = log
	b.tl.Replay(history)
	b.tl.SetSink(log)
	return nil
}

func (b *bed) closeTimeline() {
	if b.tlLog != nil {
		b.tlLog.Close()
		b.tlLog = nil
	}
}

// dhcpKinds are the timeline kinds of the DHCP server's answers.
var dhcpKinds = map[dhcp.EventKind]events.Kind{
	dhcp.EventOffer: events.DHCPOffer, dhcp.EventAck: events.DHCPAck, dhcp.EventNak: events.DHCPNak,
	dhcp.EventRelease: events.DHCPRelease, dhcp.EventDecline: events.DHCPDecline, dhcp.EventInform: events.DHCPInform,
}

// dhcpEvent records a DHCP answer; an ack ties its IP to the MAC's node.
func (b *bed) dhcpEvent(e dhcp.Event) {
	detail := e.IP.String()
	if e.BootFile != "" {
		detail += " boot " + e.BootFile
	}
	who := events.Who{MAC: e.MAC.String()}
	if e.Kind == dhcp.EventAck && e.IP.IsValid() {
		who.IP = e.IP.String()
	}
	b.tl.Record(events.Event{Time: e.Time, Kind: dhcpKinds[e.Kind], Detail: detail, Who: who})
}

// tftpEvent records a TFTP transfer under the client's IP: only a client
// whose lease tied it to a node gets an entry; others are counted.
func (b *bed) tftpEvent(e tftp.Event) {
	kind, detail := events.TFTPFile, fmt.Sprintf("%s %d bytes", e.File, e.Bytes)
	if e.Err != nil {
		kind, detail = events.TFTPError, fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	b.tl.Record(events.Event{Time: e.Time, Kind: kind, Detail: detail, Who: events.Who{IP: e.Remote.Addr().String()}})
}

// httpEvent records an HTTP boot request under the client's IP.
func (b *bed) httpEvent(e httpboot.Event) {
	kind := events.HTTPFile
	if e.Status >= 400 {
		kind = events.HTTPError
	}
	b.tl.Record(events.Event{Time: e.Time, Kind: kind, Who: events.Who{IP: e.Remote.Addr().String()},
		Detail: fmt.Sprintf("%s %s %d %d bytes", e.Method, e.Path, e.Status, e.Bytes)})
}

// recordRestart records a conductor restart in every node's timeline.
func (b *bed) recordRestart(n int) {
	for _, name := range b.tl.Nodes() {
		id, ok := b.tl.Lookup(name)
		if !ok || id.Node == "" {
			continue
		}
		b.tl.Record(events.Event{Kind: events.ConductorRestart, Who: events.Who{Node: id.Node, Machine: id.Machine},
			Detail: fmt.Sprintf("killed by a fault, restarted on the same database (restart %d)", n)})
	}
}

// machineKinds are the timeline kinds of a machine's events.
var machineKinds = map[vms.EventKind]events.Kind{
	vms.EventPowerOn: events.MachinePowerOn, vms.EventPowerOff: events.MachinePowerOff, vms.EventReset: events.MachineReset,
	vms.EventBoot: events.MachineBoot, vms.EventBootFail: events.MachineBootFailed,
}

// consoleKinds are the timeline kinds of the console lines a machine's
// firmware reports (vms.EventConsole), by their first word.
var consoleKinds = map[string]events.Kind{
	"dhcp": events.MachineDHCP, "nbp": events.MachineNBP, "kernel": events.MachineKernel,
	"loader": events.MachineLoader, "NMI": events.MachineNMI,
}

// watchMachine registers a machine's name, SMBIOS UUID and MACs in the
// timeline's identity registry and records its events: power, boots, the
// firmware's console milestones, "instance booted", and a real VM's
// ramdisk and agent steps read off its serial console.
func (b *bed) watchMachine(m fleetMachine) (cancel func()) {
	return watchMachine(b.tl, m, "BMC and provisioner wired")
}

// watchMachine registers m in tl and records its events there (see
// bed.watchMachine); wired says what the machine is wired to, for its
// first entry.
func watchMachine(tl *events.Timeline, m fleetMachine, wired string) (cancel func()) {
	name := m.Name()
	id := events.Identity{Machine: name, MachineUUID: sim.FormatUUID(m.UUID())}
	for _, nic := range m.NICs() {
		id.MACs = append(id.MACs, nic.MAC.String())
	}
	tl.Learn(id)
	tl.Record(events.Event{Kind: events.MachineUp, Detail: fmt.Sprintf("%s, %s", m.BootMode(), wired), Who: events.Who{Machine: name}})
	return m.Subscribe(func(ev vms.Event) {
		kind, detail := machineKinds[ev.Kind], ev.Detail
		if ev.Kind == vms.EventConsole {
			kind, detail = consoleEvent(detail)
		}
		if kind == "" {
			return
		}
		tl.Record(events.Event{Time: ev.Time, Kind: kind, Detail: detail, Who: events.Who{Machine: name}})
	})
}

// consoleEvent maps a console line a machine reported to its timeline kind
// and detail; "" for a line that names no kind metalbed records.
func consoleEvent(line string) (events.Kind, string) {
	switch {
	case strings.HasPrefix(line, "milestone "):
		// A real VM's ramdisk or agent step, read off its serial console
		// (a simulated machine's ramdisk records its steps directly).
		word, detail, _ := strings.Cut(strings.TrimPrefix(line, "milestone "), " ")
		if k, ok := events.ParseKind(word); ok {
			return k, detail
		}
		return "", ""
	case strings.HasPrefix(line, "instance booted"):
		return events.InstanceBooted, strings.TrimSpace(strings.TrimPrefix(line, "instance booted"))
	}
	word, rest, _ := strings.Cut(line, " ")
	if k, ok := consoleKinds[word]; ok {
		return k, rest
	}
	return events.MachineConsole, line
}

// timelineHandler serves the per-node timeline:
//
//	GET /v1/nodes/{node}/timeline   one node's entries, oldest first; node
//	                                is its machine's or node's name, its node
//	                                or SMBIOS UUID, a MAC, an IP or an IQN
//	GET /v1/timeline                the names of the nodes with entries, and
//	                                how many events named no known node
func timelineHandler(tl *events.Timeline) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes/{node}/timeline", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("node")
		es := tl.Node(key)
		if len(es) == 0 {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no timeline for node %q", key)})
			return
		}
		writeJSON(w, http.StatusOK, TimelineDoc{Node: es[0].Node, Entries: es})
	})
	mux.HandleFunc("GET /v1/timeline", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, TimelineIndex{Nodes: tl.Nodes(), Unmatched: tl.Unmatched()})
	})
	return mux
}

// TimelineDoc is the body of GET /v1/nodes/{node}/timeline.
type TimelineDoc struct {
	Node    string         `json:"node"`
	Entries []events.Entry `json:"entries"`
}

// TimelineIndex is the body of GET /v1/timeline.
type TimelineIndex struct {
	Nodes []string `json:"nodes"`
	// Unmatched counts the events none of whose keys named a known node
	// (requests from strangers): counted, never given a timeline.
	Unmatched uint64 `json:"unmatched"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// enroll enrolls the machines through the API (see enroll): the
// conductor records each node as it is created, the API each port, so the
// timeline ties node UUIDs and names to the machines by their MACs.
func (b *bed) enroll(ctx context.Context, specs []enrollSpec) (map[string]string, error) {
	return enroll(ctx, b.client(), specs)
}
