package dhcp

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: each offer is counted by kind, without the MAC.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _ := newTestServer(t, func(c *Config) { c.Registerer = reg })
	for range 2 {
		if _, _, ok := s.handle(discover(t, macKnown, withArch(0)), fromZero); !ok {
			t.Fatal("no offer")
		}
	}
	if got := testutil.ToFloat64(s.msgs.WithLabelValues("offer")); got != 2 {
		t.Errorf("offers %v, want 2", got)
	}
	if n := testutil.CollectAndCount(reg, "metalbed_dhcp_messages_total"); n != 1 {
		t.Errorf("%d series, want 1 (kind offer)", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
