package fault

import (
	"fmt"
	"strings"

	"github.com/metalbed/metalbed/internal/events"
)

// Spec is one fault a layer carries out: the op it is asked at, the
// action, what Arg means for it, what happens, and the kind a hit is
// recorded as in the node's timeline.
type Spec struct {
	Layer  Layer
	Op     string // the op the layer asks with, for people ("0xNN/0xNN", "file name" …)
	Action string
	Arg    string // what Rule.Arg means ("" when unused)
	What   string // what happens
	Kind   events.Kind
	// Fixed says Op is the one op the layer asks this action at (a
	// moment, not a request: "power-off", "task", "session"). A rule of
	// the action matches only there (Add fills an empty Op with it), and a
	// rule of another action never does, so a rule for every op of the
	// layer cannot fire, and be recorded, where its action means nothing.
	Fixed bool
}

// catalog is every (layer, action) pair metalbed carries out; the servers
// implement each row at their dispatch point. Its kinds are what the
// features assert: a value never changes.
var catalog = [...]Spec{
	{IPMI, "0xNN/0xNN (netfn/cmd)", "drop", "", "no reply", "fault.ipmi.drop", false},
	{IPMI, "0xNN/0xNN", "delay", "", "late reply: answer after --delay (ipmitool retries, then takes it)", "fault.ipmi.delay", false},
	{IPMI, "0xNN/0xNN", "cc", "completion code, e.g. 0xc0, 0xc3, 0xd2", "answer with that completion code", "fault.ipmi.cc", false},
	{IPMI, "power", "ignore", "", "power command acknowledged, not carried out", "fault.ipmi.ignore", false},
	{IPMI, "boot-flags", "forget-bootflags", "", "boot flags acknowledged, not kept", "fault.ipmi.forget-bootflags", false},
	{DHCP, "lookup", "no-offer", "", "the PXE ROM gets no offer", "fault.dhcp.no-offer", false},
	{DHCP, "lookup", "wrong-next-server", "IP (default 127.0.0.254)", "offer names a TFTP server that is not there", "fault.dhcp.wrong-next-server", false},
	{TFTP, "file name", "missing", "", "file not found", "fault.tftp.missing", false},
	{TFTP, "file name", "stall", "bytes (default 65536)", "transfer stops after Arg bytes for --delay (default 1m): the client times out", "fault.tftp.stall", false},
	{TFTP, "file name", "slow", "duration per block (default 2ms)", "every block late; the file still arrives", "fault.tftp.slow", false},
	{HTTP, "path", "status", "status (default 404)", "answer with that HTTP status", "fault.http.status", false},
	{HTTP, "path", "truncate", "bytes (default half the file)", "send only Arg bytes of the body, then close", "fault.http.truncate", false},
	{HTTP, "path", "corrupt", "byte offset (default 0)", "flip one byte of the body: a wrong checksum", "fault.http.corrupt", false},
	{ISCSI, "login", "refuse-login", "", "login answered with authorization failure", "fault.iscsi.refuse-login", false},
	{ISCSI, "connect", "reset-after", "bytes", "connection reset after Arg bytes", "fault.iscsi.reset-after", false},
	{ISCSI, "write", "medium-error", "", "WRITE answered with MEDIUM ERROR", "fault.iscsi.medium-error", false},
	{Ramdisk, "pass_deploy_info", "error", "message", "the ramdisk reports that error", "fault.ramdisk.error", false},
	{Ramdisk, "pass_deploy_info", "no-callback", "", "the ramdisk never calls back (call-back timeout)", "fault.ramdisk.no-callback", false},
	{Ramdisk, "bootloader", "bootloader-failed", "message", "bootloader install FAILED", "fault.ramdisk.bootloader-failed", false},
	{Agent, "lookup", "lookup-404", "", "the lookup is answered 404; the agent retries", "fault.agent.lookup-404", false},
	{Agent, "heartbeat", "heartbeat-stop", "", "the heartbeat is not sent", "fault.agent.heartbeat-stop", false},
	{Agent, "<extension>.<command>", "busy", "", "the command is refused with 409 Agent is busy", "fault.agent.busy", false},
	{Agent, "<extension>.<command>", "command-failed", "message", "the command ends FAILED with Arg as its error", "fault.agent.command-failed", false},
	{Disk, "write", "write-error", "", "WRITE fails with a write error", "fault.disk.write-error", false},
	{Disk, "size", "too-small", "bytes (default 536870912)", "the disk reports fewer blocks than the deploy needs", "fault.disk.too-small", false},
	{Redfish, "HTTP method (GET, PATCH, POST, DELETE) or action (VirtualMedia.InsertMedia, VirtualMedia.EjectMedia, ComputerSystem.Reset …)", "status", "HTTP status (default 500)", "a request to the machine's resources answered with that status and a Redfish error body", "fault.redfish.status", false},
	{Redfish, "HTTP method or action", "delay", "", "the request answered after --delay", "fault.redfish.delay", false},
	{Redfish, "boot-override", "drop-boot-override", "", "a PATCH of the system's Boot override the rule hits is answered 200 but not kept: the next boot follows the boot order", "fault.redfish.drop-boot-override", true},
	{Redfish, "power-off", "power-on-conflict", "seconds (default 5)", "as an iDRAC does: a ForceOff or GracefulShutdown the rule hits (the fault fires and is recorded there) makes every Reset that would power the system on (On, ForceOn …) answer 409 Conflict for Arg seconds", "fault.redfish.power-on-conflict", true},
	{Redfish, "task", "task-fail", "message (default \"injected failure\")", "a task of the machine the rule hits (a SimpleUpdate; --count 1: the next one) ends in Exception with Arg in its message, changing nothing", "fault.redfish.task-fail", true},
	{Redfish, "session", "session-expire", "", "a request with a session token of the machine's account the rule hits finds the session expired: 401, the session removed (sushy logs in again)", "fault.redfish.session-expire", true},
	{Redfish, "vmedia-boot", "eject-during-boot", "reads (default 1)", "the medium of a simulated machine's boot from its virtual CD or USB stick that the rule hits (the fault fires and is recorded when the boot starts) is ejected after the firmware's first Arg reads of it, as when a BMC's virtual media session drops: the boot fails with a read error", "fault.redfish.eject-during-boot", true},
	{Conductor, "milestone (\"prepare\", \"write_image\" …) or \"now\"", "kill", "", "the conductor dies and restarts on the same database", "fault.conductor.kill", false},
}

// Catalog returns every fault metalbed carries out, in the order `metalbed
// fault add -h` lists them.
func Catalog() []Spec { return append([]Spec(nil), catalog[:]...) }

// fixedOp returns the row of layer whose Fixed op is op.
func fixedOp(layer Layer, op string) (Spec, bool) {
	for _, s := range catalog {
		if s.Layer == layer && s.Fixed && strings.EqualFold(s.Op, op) {
			return s, true
		}
	}
	return Spec{}, false
}

// Find returns the catalog's row for action of layer, or an error naming
// the layer's actions.
func Find(layer Layer, action string) (Spec, error) {
	var known []string
	for _, s := range catalog {
		if s.Layer != layer {
			continue
		}
		if s.Action == action {
			return s, nil
		}
		known = append(known, s.Action)
	}
	if len(known) == 0 {
		return Spec{}, fmt.Errorf("fault layer %q: want one of %v", layer, layers)
	}
	return Spec{}, fmt.Errorf("layer %s has no action %q: want one of %s", layer, action, strings.Join(known, ", "))
}

// conductorOps names the conductor's steps as layer conductor's ops: the
// deploy milestone at which a kill rule makes the conductor die.
var conductorOps = map[events.Kind]string{
	events.ConductorImageCached:    "image cached",
	events.ConductorPrepare:        "prepare",
	events.ConductorPowerOn:        "power on",
	events.ConductorPowerOff:       "power off",
	events.ConductorPassDeployInfo: "pass_deploy_info",
	events.ConductorISCSILogin:     "iscsi login",
	events.ConductorISCSILogout:    "iscsi logout",
	events.ConductorImageWritten:   "image written",
	events.ConductorWriteImage:     "write_image",
	events.ConductorAgentBusy:      "agent busy",
	events.ConductorBootloader:     "bootloader",
	events.ConductorNotify:         "notify",
	events.ConductorReboot:         "reboot",
	events.ConductorDiskWiped:      "disk wiped",
	events.ConductorActive:         "active",
	events.ConductorFailed:         "failed",
}

// ConductorOp is the op layer conductor is asked with when the conductor
// reaches the step kind records; false for a kind that is no such step.
func ConductorOp(kind events.Kind) (string, bool) {
	op, ok := conductorOps[kind]
	return op, ok
}

// OpNow is the op a conductor asks layer conductor with about each of its
// nodes once a second: a kill rule for "now" fires at the next ask.
const OpNow = "now"

// ActionKill is layer conductor's action: the conductor dies.
const ActionKill = "kill"
