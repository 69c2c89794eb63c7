package testbed

// The testbed's faults: one fault.Injector over the fault set, asked by
// every server at its dispatch point (each server carries out its layer's
// actions itself), resolving requesters through the timeline's identity
// registry and recording each hit in the node's timeline.

import (
	"net/netip"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// newInjector is the one fault.Injector every server of the bed asks.
func (b *bed) newInjector() fault.Injector {
	return fault.NewInjector(fault.InjectorConfig{Rules: b.faults, Resolver: b, Recorder: b.tl, Registerer: b.reg})
}

// Lookup resolves a key a server knows a requester by (machine or node
// name, node UUID, MAC, IP, IQN) to the node, for the Injector: the
// timeline's identity registry, and for a client IP it has not tied to a
// node yet (a lease answered before the DHCP event was recorded), the DHCP
// lease's MAC.
func (b *bed) Lookup(key string) (events.Identity, bool) {
	if id, ok := b.tl.Lookup(key); ok {
		return id, true
	}
	if ip, err := netip.ParseAddr(key); err == nil && b.svc != nil {
		if mac, ok := b.svc.LeaseMAC(ip); ok {
			return b.tl.Lookup(mac.String())
		}
	}
	return events.Identity{}, false
}
