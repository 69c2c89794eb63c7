package tftp

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: a transfer and a refused name are counted by result, the
// bytes sent and the transfers' durations with them.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, kernel := startWith(t, 100_000, func(c *Config) { c.Registerer = reg })
	if _, err := receive(t, f, "deploy_kernel", 2e9); err != nil {
		t.Fatal(err)
	}
	f.waitEvent(t, "deploy_kernel", "the kernel")
	if _, err := receive(t, f, "no-such-file", 2e9); err == nil {
		t.Fatal("a missing file was sent")
	}
	f.waitEvent(t, "no-such-file", "the missing file")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"metalbed_tftp_transfers_total/success": 1,
		"metalbed_tftp_transfers_total/failure": 1,
		"metalbed_tftp_sent_bytes_total":        float64(len(kernel)),
		"metalbed_tftp_transfer_seconds":        2,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, got[key], want, got)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
