package bmcemu

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSELFollowOnce: however many protocols follow a machine, each of its
// events is one record, for as long as one of them still follows it.
func TestSELFollowOnce(t *testing.T) {
	sel := NewSEL(0)
	m := newTestMachine()
	clock := func() time.Time { return time.Unix(1767268800, 0) }
	stopIPMI := sel.Follow(m, clock)
	stopRedfish := sel.Follow(m, clock)
	ctx := context.Background()
	m.Control(ctx, PowerUp) // power on, boot
	if n := len(sel.Entries()); n != 2 {
		t.Fatalf("%d records for power on and boot with two followers, want 2", n)
	}
	stopIPMI()
	stopIPMI() // a second stop is a no-op
	m.Control(ctx, PowerDown)
	if n := len(sel.Entries()); n != 3 {
		t.Fatalf("%d records after power off with one follower left, want 3", n)
	}
	stopRedfish()
	m.Control(ctx, PowerUp)
	if n := len(sel.Entries()); n != 3 {
		t.Errorf("%d records after every follower stopped, want 3", n)
	}
	m.mu.Lock()
	subs := len(m.subs)
	m.mu.Unlock()
	if subs != 0 {
		t.Errorf("%d subscriptions left on the machine", subs)
	}
	// A new follower subscribes again.
	defer sel.Follow(m, clock)()
	m.Control(ctx, PowerDown)
	if n := len(sel.Entries()); n != 4 {
		t.Errorf("%d records after following again, want 4", n)
	}
}

// TestSELExported: Add assigns IDs and the SEL's time, the SEL wraps when
// full, Clear empties it.
func TestSELExported(t *testing.T) {
	sel := NewSEL(3)
	now := time.Unix(1767268800, 0)
	var rec SELRecord
	copy(rec[2:], []byte{0x02, 0, 0, 0, 0, 0x20, 0x00, 0x04, 0x01, 0x02, 0x01, 0x59, 0x61, 0x5f})
	for i := range 4 {
		if id := sel.Add(now.Add(time.Duration(i)*time.Second), rec); id != uint16(i+1) {
			t.Errorf("record %d got ID %d", i, id)
		}
	}
	es := sel.Entries()
	if len(es) != 3 || es[0].ID() != 2 || es[2].ID() != 4 || sel.Capacity() != 3 {
		t.Fatalf("after 4 adds to a SEL of 3: %d records, first %d", len(es), es[0].ID())
	}
	if got := es[2].Time(); !got.Equal(now.Add(3 * time.Second)) {
		t.Errorf("timestamp %v", got)
	}
	if th, high, ok := es[0].Threshold(); !ok || th != UpperCritical || !high || es[0].SensorTypeName() != "Temperature" ||
		es[0].Description() != "Upper Critical going high" || es[0].SensorNumber() != 2 || es[0].GeneratorID() != 0x20 {
		t.Errorf("decoded %v %v %v %q %q", th, high, ok, es[0].SensorTypeName(), es[0].Description())
	}
	es[0][10] = 0xff // Entries is a copy
	if sel.Entries()[0][10] != 0x01 {
		t.Error("Entries shares the SEL's records")
	}
	sel.Clear(now)
	if len(sel.Entries()) != 0 {
		t.Error("Clear left records")
	}
}

// TestSharedSELCountedOnce: a SEL given in Config is the BMC's, and every
// record written to it counts once in sel_entries_total, whoever writes it.
func TestSharedSELCountedOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	sel := NewSEL(0)
	m := newTestMachine()
	_, port := startBMC(t, m, func(c *Config) { c.Registerer = reg; c.SEL = sel })
	defer sel.Follow(m, time.Now)() // another protocol serving the machine
	ipmi := newIpmitool(t, port, ipmitoolModes[0], "password")
	ipmi.must("power", "on")                 // power on, boot, button
	sel.RecordControl(time.Now(), HardReset) // as the Redfish service records its reset
	mustContain(t, ipmi.must("sel", "list"), "Reset Button pressed")
	if n := len(sel.Entries()); n != 4 {
		t.Errorf("%d records, want 4", n)
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "metalbed_bmc_sel_entries_total")); got != 4 {
		t.Errorf("sel_entries_total %v, want 4", got)
	}
}
