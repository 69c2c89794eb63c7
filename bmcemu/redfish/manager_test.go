package redfish

import (
	"testing"
	"time"
)

// TestManagerDateTime: a Manager's DateTime is settable, runs on from
// where it was set, shows in the zone DateTimeLocalOffset names, and bad
// values are refused without changing it.
func TestManagerDateTime(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, machines: 2})
	mgr := "/redfish/v1/Managers/" + b.machines[0].hw.UUID
	st, h, _ := b.do(t, "GET", mgr, "basic", nil)
	if st != 200 {
		t.Fatalf("GET manager: %d", st)
	}
	if st, _, e := b.do(t, "PATCH", mgr, "basic", map[string]string{"DateTime": "2030-05-06T07:08:09+00:00"}, "If-Match", `"stale"`); st != 412 {
		t.Errorf("PATCH with a stale ETag: %d %v", st, e)
	}
	st, _, m := b.do(t, "PATCH", mgr, "basic", map[string]string{"DateTime": "2030-05-06T07:08:09+00:00", "DateTimeLocalOffset": "+02:00"}, "If-Match", h.Get("ETag"))
	if st != 200 || m["DateTime"] != "2030-05-06T09:08:09+02:00" || m["DateTimeLocalOffset"] != "+02:00" {
		t.Fatalf("PATCH DateTime: %d %v", st, m)
	}
	b.clock.Advance(90 * time.Second)
	if _, _, m := b.do(t, "GET", mgr, "basic", nil); m["DateTime"] != "2030-05-06T09:09:39+02:00" {
		t.Errorf("90 s later: %v", m["DateTime"])
	}
	for _, bad := range []map[string]string{
		{"DateTime": "tomorrow"},
		{"DateTimeLocalOffset": "+25:00"},
		{"DateTime": "2031-01-01T00:00:00Z", "DateTimeLocalOffset": "CET"},
	} {
		if st, _, e := b.do(t, "PATCH", mgr, "basic", bad); st != 400 {
			t.Errorf("PATCH %v: %d %v", bad, st, e)
		}
	}
	if _, _, m := b.do(t, "GET", mgr, "basic", nil); m["DateTime"] != "2030-05-06T09:09:39+02:00" {
		t.Errorf("after refused PATCHes: %v", m["DateTime"])
	}
	// Another machine's Manager keeps the service's clock.
	if _, _, m := b.do(t, "GET", "/redfish/v1/Managers/"+b.machines[1].hw.UUID, "basic", nil); m["DateTime"] == "2030-05-06T09:09:39+02:00" {
		t.Errorf("node-1's manager moved with node-0's: %v", m["DateTime"])
	}
}
