package fault

// Argument checks: a rule's Arg is refused when the layer could not read
// it, so a typo is an error when the rule is added (by `metalbed fault
// add` and by POST /v1/faults alike) rather than a silent fallback to the
// layer's default when the fault fires. The catalog (catalog.go) says
// what each action's Arg means; argChecks says how the layer parses it.

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// argCheck checks one action's non-empty Arg; an empty Arg always means
// the action's default.
type argCheck func(arg string) error

// argChecks are the parsers of the actions whose Arg is not free text,
// by layer and action; each mirrors how the layer reads Hit.Arg.
var argChecks = map[Layer]map[string]argCheck{
	IPMI:    {"cc": intIn("a completion code", 0x01, 0xff)},
	DHCP:    {"wrong-next-server": ipv4},
	TFTP:    {"stall": intIn("a byte count", 1, 1<<62), "slow": positiveDuration},
	HTTP:    {"status": intIn("an HTTP error status", 400, 599), "truncate": intIn("a byte count", 0, 1<<62), "corrupt": intIn("a byte offset", 0, 1<<62)},
	ISCSI:   {"reset-after": intIn("a byte count", 1, 1<<62)},
	Disk:    {"too-small": intIn("a byte count", 1, 1<<62)},
	Redfish: {"status": intIn("an HTTP error status", 400, 599), "power-on-conflict": intIn("a number of seconds", 0, 86400), "eject-during-boot": intIn("a number of reads", 0, 1<<62)},
}

// CheckArg reports whether arg is an argument action of layer takes: none
// for an action whose catalog row names no Arg, a number, address or
// duration the layer can read for one that does, any text for a message.
func CheckArg(layer Layer, action, arg string) error {
	spec, err := Find(layer, action)
	if err != nil {
		return err
	}
	if arg == "" {
		return nil
	}
	if spec.Arg == "" {
		return fmt.Errorf("fault %s %s takes no arg (got %q)", layer, action, arg)
	}
	check := argChecks[layer][action]
	if check == nil {
		return nil
	}
	if err := check(arg); err != nil {
		return fmt.Errorf("fault %s %s: arg %q: %v (arg: %s)", layer, action, arg, err, spec.Arg)
	}
	return nil
}

// Layers returns every layer, in the order the catalog lists them.
func Layers() []Layer {
	var out []Layer
	seen := map[Layer]bool{}
	for _, s := range catalog {
		if !seen[s.Layer] {
			seen[s.Layer] = true
			out = append(out, s.Layer)
		}
	}
	for _, l := range layers {
		if !seen[l] {
			out = append(out, l)
		}
	}
	return out
}

// intIn accepts an integer (decimal or 0x hex, as Hit.ArgInt reads it)
// from lo to hi.
func intIn(what string, lo, hi int64) argCheck {
	return func(arg string) error {
		v, err := strconv.ParseInt(strings.TrimSpace(arg), 0, 64)
		if err != nil || v < lo || v > hi {
			if hi >= 1<<62 {
				return fmt.Errorf("want %s, an integer of at least %d", what, lo)
			}
			if lo <= 0xff && hi <= 0xff {
				return fmt.Errorf("want %s from %#x to %#x", what, lo, hi)
			}
			return fmt.Errorf("want %s from %d to %d", what, lo, hi)
		}
		return nil
	}
}

func ipv4(arg string) error {
	ip, err := netip.ParseAddr(arg)
	if err != nil || !ip.Is4() {
		return fmt.Errorf("want an IPv4 address")
	}
	return nil
}

func positiveDuration(arg string) error {
	d, err := time.ParseDuration(arg)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive duration such as 2ms")
	}
	return nil
}
