package fault

import (
	"strings"
	"testing"
)

// TestCheckArg: an Arg the layer could not read is refused when the rule
// is added, with a message naming the layer, the action and what the arg
// should be; what the layers read (and "" for the default) is taken.
func TestCheckArg(t *testing.T) {
	for _, c := range []struct {
		layer       Layer
		action, arg string
		want        string // "" = accepted; else a part of the error
	}{
		{IPMI, "cc", "0xc3", ""},
		{IPMI, "cc", "195", ""},
		{IPMI, "cc", "", ""},
		{IPMI, "cc", "zz", `fault ipmi cc: arg "zz": want a completion code from 0x1 to 0xff`},
		{IPMI, "cc", "0x100", "completion code"},
		{IPMI, "cc", "0", "completion code"},
		{IPMI, "drop", "x", "takes no arg"},
		{Redfish, "status", "503", ""},
		{Redfish, "status", "abc", `fault redfish status: arg "abc": want an HTTP error status from 400 to 599`},
		{Redfish, "status", "200", "HTTP error status"},
		{Redfish, "eject-during-boot", "0", ""},
		{Redfish, "eject-during-boot", "two", `fault redfish eject-during-boot: arg "two": want a number of reads, an integer of at least 0`},
		{HTTP, "status", "404", ""},
		{HTTP, "status", "4o4", "HTTP error status"},
		{HTTP, "truncate", "4096", ""},
		{HTTP, "truncate", "-1", "byte count"},
		{HTTP, "corrupt", "half", "byte offset"},
		{TFTP, "stall", "65536", ""},
		{TFTP, "stall", "64k", "byte count"},
		{TFTP, "slow", "200us", ""},
		{TFTP, "slow", "200", "positive duration"},
		{DHCP, "wrong-next-server", "192.0.2.9", ""},
		{DHCP, "wrong-next-server", "nowhere", "IPv4"},
		{ISCSI, "reset-after", "1048576", ""},
		{ISCSI, "reset-after", "1MiB", "byte count"},
		{Disk, "too-small", "536870912", ""},
		{Disk, "too-small", "0", "byte count"},
		{Ramdisk, "error", "disk on fire", ""},
		{Agent, "command-failed", "anything at all", ""},
		{Conductor, "kill", "now", "takes no arg"},
		{IPMI, "nope", "", "no action"},
	} {
		err := CheckArg(c.layer, c.action, c.arg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s %q: %v, want accepted", c.layer, c.action, c.arg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s %q: %v, want an error with %q", c.layer, c.action, c.arg, err, c.want)
		}
		// Set.Add refuses what CheckArg refuses: the API and the CLI agree.
		_, aerr := NewSet().Add(Rule{Layer: c.layer, Action: c.action, Arg: c.arg})
		if (aerr == nil) != (err == nil) {
			t.Errorf("%s %s %q: Add %v, CheckArg %v", c.layer, c.action, c.arg, aerr, err)
		}
	}
	// Every layer with a check is in the catalog, each check names a
	// catalog action that takes an arg.
	for layer, checks := range argChecks {
		for action := range checks {
			spec, err := Find(layer, action)
			if err != nil || spec.Arg == "" {
				t.Errorf("argChecks[%s][%s]: %v %+v", layer, action, err, spec)
			}
		}
	}
}

// TestLayersFromCatalog: Layers names every layer of the catalog once.
func TestLayersFromCatalog(t *testing.T) {
	got := map[Layer]int{}
	for _, l := range Layers() {
		got[l]++
	}
	for _, s := range Catalog() {
		if got[s.Layer] != 1 {
			t.Errorf("layer %s listed %d times in %v", s.Layer, got[s.Layer], Layers())
		}
	}
}
