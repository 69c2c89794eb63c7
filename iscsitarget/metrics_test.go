package iscsitarget

import (
	"crypto/rand"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metalbed/metalbed/iscsitarget/internal/scsi"
)

// TestMetrics: two targets on one Registerer add into the same counters:
// logins by result, commands by status, bytes written and read.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	tg, addr := startTarget(t, Config{Registerer: reg})
	_, addr2 := startTarget(t, Config{Registerer: reg})
	if _, err := dial(t, addr, loginOpts{iqn: "iqn.2026-11.org.metalbed.test:other"}); err == nil {
		t.Fatal("login to an unknown IQN accepted")
	}
	c, err := dial(t, addr, loginOpts{iqn: tg.IQN()})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8*512)
	rand.Read(data)
	if r := c.command(1, cdb16(scsi.OpWrite16, 0, 8), data, 0); r.status != 0 {
		t.Fatalf("WRITE(16) status %d", r.status)
	}
	if r := c.command(1, cdb16(scsi.OpRead16, 0, 8), nil, uint32(len(data))); r.status != 0 {
		t.Fatalf("READ(16) status %d", r.status)
	}
	if r := c.command(1, cdb16(scsi.OpRead16, 1<<40, 1), nil, 512); r.status == 0 {
		t.Fatal("READ(16) past the end succeeded")
	}
	c.logout()
	c2, err := dial(t, addr2, loginOpts{iqn: tg.IQN()})
	if err != nil {
		t.Fatal(err)
	}
	c2.logout()
	m := tg.metrics
	for _, w := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"logins success", m.logins.WithLabelValues("success"), 2},
		{"logins failure", m.logins.WithLabelValues("failure"), 1},
		{"commands good", m.commands.WithLabelValues("good"), 2},
		{"commands check_condition", m.commands.WithLabelValues("check_condition"), 1},
		{"written bytes", m.written, float64(len(data))},
		{"read bytes", m.read, float64(len(data))},
	} {
		if got := testutil.ToFloat64(w.c); got != w.want {
			t.Errorf("%s = %v, want %v", w.name, got, w.want)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
