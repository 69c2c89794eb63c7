package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// faultKind is one fault `metalbed up` carries out: the layer, the op it
// is asked at, the action and what Arg and Delay mean for it.
type faultKind struct {
	layer, op, action, arg, what string
}

// faultKinds lists the faults of the layers the testbed wires
// (testbed/faults.go, testbed/bmc.go); agent and conductor faults are
// listed by their own layers' help (testbed/faults.go) and are not checked
// here.
func faultKinds() []faultKind {
	return []faultKind{
		{"ipmi", "0xNN/0xNN (netfn/cmd)", "drop", "", "no reply"},
		{"ipmi", "0xNN/0xNN", "delay", "", "late reply: answer after --delay (ipmitool retries, then takes it)"},
		{"ipmi", "0xNN/0xNN", "cc", "completion code, e.g. 0xc0, 0xc3, 0xd2", "answer with that completion code"},
		{"ipmi", "power", "ignore", "", "power command acknowledged, not carried out"},
		{"ipmi", "boot-flags", "forget-bootflags", "", "boot flags acknowledged, not kept"},
		{"dhcp", "lookup", "no-offer", "", "the PXE ROM gets no offer"},
		{"dhcp", "lookup", "wrong-next-server", "IP (default 127.0.0.254)", "offer names a TFTP server that is not there"},
		{"tftp", "file name", "missing", "", "file not found"},
		{"tftp", "file name", "stall", "bytes (default 65536)", "transfer stops after Arg bytes for --delay (default 1m): the client times out"},
		{"tftp", "file name", "slow", "duration per block (default 2ms)", "every block late; the file still arrives"},
		{"http", "path", "status", "status (default 404)", "answer with that HTTP status"},
		{"http", "path", "truncate", "bytes (default half the file)", "send only Arg bytes of the body, then close"},
		{"http", "path", "corrupt", "byte offset (default 0)", "flip one byte of the body: a wrong checksum"},
		{"iscsi", "login", "refuse-login", "", "login answered with authorization failure"},
		{"iscsi", "connect", "reset-after", "bytes", "connection reset after Arg bytes"},
		{"iscsi", "write", "medium-error", "", "WRITE answered with MEDIUM ERROR"},
		{"ramdisk", "pass_deploy_info", "error", "message", "the ramdisk reports that error"},
		{"ramdisk", "pass_deploy_info", "no-callback", "", "the ramdisk never calls back (call-back timeout)"},
		{"ramdisk", "bootloader", "bootloader-failed", "message", "bootloader install FAILED"},
		{"disk", "write", "write-error", "", "WRITE fails with a write error"},
		{"disk", "size", "too-small", "bytes (default 536870912)", "the disk reports fewer blocks than the deploy needs"},
	}
}

// checkFaultKind refuses an action the layer does not know, for the layers
// listed in faultKinds.
func checkFaultKind(layer, action string) error {
	var known []string
	for _, k := range faultKinds() {
		if k.layer != layer {
			continue
		}
		if k.action == action {
			return nil
		}
		known = append(known, k.action)
	}
	if len(known) == 0 {
		return nil // a layer described elsewhere (agent, conductor)
	}
	return fmt.Errorf("layer %s has no action %q: want one of %s", layer, action, strings.Join(known, ", "))
}

// printFaultKinds writes the table of faults for `metalbed fault add -h`.
func printFaultKinds(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  LAYER\tOP\tACTION\tARG\tWHAT HAPPENS")
	for _, k := range faultKinds() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", k.layer, k.op, k.action, k.arg, k.what)
	}
	tw.Flush()
}
