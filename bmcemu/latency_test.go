package bmcemu

import (
	"context"
	"testing"
	"time"
)

// TestLatency: a BMC with a 100 ms latency (vms/timing's BMCLatency)
// answers a Get Chassis Status no sooner than 100 ms after the request
// (a lower bound: a loaded host only adds to it), and answers it right.
func TestLatency(t *testing.T) {
	_, port := startBMC(t, newTestMachine(), func(c *Config) { c.Latency = 100 * time.Millisecond })
	c, err := goClient(t, port, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.GetChassisStatus(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("Get Chassis Status answered in %v, under the BMC's 100ms latency", took)
	}
}
