package timing

import (
	"strings"
	"testing"
	"time"
)

// TestMachineFiguresAreSeeded: a machine's figures are the same for the
// same seed (a run replays), differ between machines and between seeds,
// stay within the profile's jitter, and a speed factor divides the
// durations and multiplies the disk rate.
func TestMachineFiguresAreSeeded(t *testing.T) {
	p := Profiles["server"]
	a, again := p.Machine("node-0", 7, 1), p.Machine("node-0", 7, 1)
	if a != again {
		t.Errorf("same seed, different figures: %v / %v", a, again)
	}
	if b := p.Machine("node-1", 7, 1); b == a {
		t.Errorf("node-0 and node-1 have the same figures %v", a)
	}
	if c := p.Machine("node-0", 8, 1); c == a {
		t.Errorf("seeds 7 and 8 give node-0 the same figures %v", a)
	}
	for i := range 200 {
		f := p.Machine("node-"+string(rune('a'+i%26))+strings.Repeat("x", i/26), uint64(i), 1)
		if lo, hi := time.Duration(float64(p.POST)*(1-p.Jitter)), time.Duration(float64(p.POST)*(1+p.Jitter)); f.POST < lo || f.POST > hi {
			t.Fatalf("POST %v outside [%v, %v]", f.POST, lo, hi)
		}
	}
	fast := p.Machine("node-0", 7, 10)
	if d := fast.POST - a.POST/10; d < -time.Microsecond || d > time.Microsecond {
		t.Errorf("speed 10: POST %v, want %v", fast.POST, a.POST/10)
	}
	if r := float64(fast.DiskWriteBytesPerSec) / float64(a.DiskWriteBytesPerSec); r < 9.99 || r > 10.01 {
		t.Errorf("speed 10: disk rate x%.3f, want x10", r)
	}
	if f := Profiles["fast"].Machine("node-0", 7, 3); !f.Zero() {
		t.Errorf("the fast profile slows something down: %v", f)
	}
}

func TestNamed(t *testing.T) {
	if p, err := Named("vm"); err != nil || p.Name != "vm" {
		t.Errorf("Named(vm) = %v, %v", p, err)
	}
	if _, err := Named("mainframe"); err == nil || !strings.Contains(err.Error(), "fast, server, vm") {
		t.Errorf("Named(mainframe): %v", err)
	}
}
