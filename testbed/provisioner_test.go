package testbed

import (
	"testing"
	"time"
)

func TestCheckInterval(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{0, 10 * time.Second},                // the conductor's default timeout
		{10 * time.Minute, 10 * time.Second}, // Ironic's check interval
		{20 * time.Second, 2 * time.Second},
		{500 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := checkInterval(c.timeout); got != c.want {
			t.Errorf("checkInterval(%s) = %s, want %s", c.timeout, got, c.want)
		}
	}
}
