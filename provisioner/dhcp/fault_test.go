package dhcp

import (
	"testing"

	"github.com/insomniacslk/dhcp/iana"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
)

// TestFaultNoOffer: "no-offer" leaves an enrolled MAC unanswered while it
// fires (count 1: the retry is answered); the server asks by MAC, op
// "lookup", and never about MACs it does not answer anyway.
func TestFaultNoOffer(t *testing.T) {
	in := faulttest.New(t, fault.Rule{Layer: fault.DHCP, Op: "lookup", Action: "no-offer", Count: 1})
	s, _ := newTestServer(t, func(c *Config) { c.Faults = in })
	if resp, _, ok := s.handle(discover(t, macKnown, withArch(iana.INTEL_X86PC)), fromZero); ok {
		t.Fatalf("faulted DISCOVER answered: %v", resp)
	}
	if _, _, ok := s.handle(discover(t, macKnown, withArch(iana.INTEL_X86PC)), fromZero); !ok {
		t.Fatal("second DISCOVER, after the fault's one hit, not answered")
	}
	if _, _, ok := s.handle(discover(t, macStray, withArch(iana.INTEL_X86PC)), fromZero); ok {
		t.Fatal("stray MAC answered")
	}
	asked := in.Asked()
	if len(asked) != 2 || asked[0].Op != "lookup" || asked[0].Who.MAC != macKnown.String() || !asked[0].Hit || asked[1].Hit {
		t.Errorf("asked %+v", asked)
	}
}

// TestFaultWrongNextServer: the offer names Arg as next-server (siaddr
// and option 66), 127.0.0.254 when Arg is not an address.
func TestFaultWrongNextServer(t *testing.T) {
	for arg, want := range map[string]string{"192.0.2.9": "192.0.2.9", "": "127.0.0.254"} {
		s, _ := newTestServer(t, func(c *Config) {
			c.Faults = faulttest.New(t, fault.Rule{Layer: fault.DHCP, Action: "wrong-next-server", Arg: arg})
		})
		resp, _, ok := s.handle(discover(t, macKnown, withArch(iana.INTEL_X86PC), withPXEClient(0)), fromZero)
		if !ok {
			t.Fatalf("arg %q: no offer", arg)
		}
		if got := resp.ServerIPAddr.String(); got != want {
			t.Errorf("arg %q: next-server %s, want %s", arg, got, want)
		}
		if got := resp.TFTPServerName(); got != want {
			t.Errorf("arg %q: option 66 %q, want %s", arg, got, want)
		}
	}
}
