package testbed

// Every fault seam of the testbed: how the rules of the fault set
// (internal/fault) translate into each layer's hooks, from the BMC to the
// conductor.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/tftp"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

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
	b.recordFault(node, "fault."+string(layer)+"."+h.Action, detail)
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
	if mac, ok := b.svc.LeaseMAC(remote.Addr()); ok {
		return b.machineNamed(mac.String())
	}
	return ""
}

// faultyHosts is the DHCP server's hosts (BootServers.DHCPHosts): layer
// dhcp in front of next.
func (b *bed) faultyHosts(next dhcp.HostSource) dhcp.HostSource {
	return faultyHosts{b: b, next: next}
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

// Agent faults (layer agent), asked by the agent in a machine's deploy
// ramdisk (kernel.Config.AgentFault):
//
//	op lookup                      action lookup-404      the lookup is answered 404; the agent retries
//	op heartbeat                   action heartbeat-stop  the heartbeat is not sent
//	op <extension>.<command>       action busy            the command is refused with 409 Agent is busy
//	op <extension>.<command>       action command-failed  the command ends FAILED, Arg its error
//
// Each hit is recorded in the machine's timeline as fault.agent.<action>.
func (b *bed) agentFault(machine, op string) (action, arg string) {
	h, ok := b.fault(machine, fault.Agent, op)
	if !ok {
		return "", ""
	}
	if h.Delay > 0 {
		time.Sleep(h.Delay) // the agent's own goroutine: a slow agent
	}
	return h.Action, h.Arg
}

// Conductor faults (layer conductor), action kill: the conductor stops at
// once, as if its process died (tasks in flight are abandoned, nodes keep
// their state and reservation), and a new one starts on the same database
// and API address, recovering the nodes as Ironic's conductor does on
// start (a node left in "deploying" fails with "The deploying state can't
// be resumed by conductor …"; one in "wait call-back" waits on). The op is
// the node's conductor milestone at which to die ("prepare", "power on",
// "write_image", "image written", "bootloader", "power off", "reboot" …),
// or "now" (checked once a second). The restart is recorded in every
// node's timeline as conductor.restart.
const conductorKill = "kill"

// conductorFault asks layer conductor about op for the node with UUID
// uuid and kills the conductor on a hit.
func (b *bed) conductorFault(uuid, op string) {
	name, ok := b.nodeName.Load(uuid)
	if !ok {
		return
	}
	if h, ok := b.fault(name.(string), fault.Conductor, op); ok && h.Action == conductorKill {
		b.killConductor()
	}
}

// killConductor stops the running conductor without waiting (it is called
// from the conductor's own tasks); serveProvisioner (provisioner.go)
// restarts it.
func (b *bed) killConductor() {
	b.killMu.Lock()
	kill := b.kill
	b.killMu.Unlock()
	if kill != nil {
		kill()
	}
}
