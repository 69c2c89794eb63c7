package cli

import (
	"flag"
	"math"

	"github.com/metalbed/metalbed/testbed"
	"github.com/metalbed/metalbed/vms/timing"
)

// timingFlags registers --timing, --speed and --timing-seed on fs; the
// returned func gives the testbed's Timing once fs is parsed (nil for the
// fast profile at speed 1: machines as fast as the host, as by default).
func timingFlags(fs *flag.FlagSet) func() (*testbed.Timing, error) {
	profile := fs.String("timing", "fast", "hardware pace of the simulated machines: fast (the host's), server (a rack server: ~60 s POST, link-up, a 400 MB/s disk, a 20 ms BMC), vm")
	speed := fs.Float64("speed", 1, "divide every --timing duration by this (and multiply the disk rate): 10 plays a server's minute of POST in 6 s")
	seed := fs.Uint64("timing-seed", 1, "seed of each machine's variation around the --timing profile: the same seed gives every machine the same figures again")
	return func() (*testbed.Timing, error) {
		p, err := timing.Named(*profile)
		if err != nil {
			return nil, usageError("--timing: %v", err)
		}
		if *speed <= 0 || math.IsInf(*speed, 0) || math.IsNaN(*speed) {
			return nil, usageError("--speed %v: want a positive factor (1: real time, 10: ten times faster)", *speed)
		}
		if p.Name == "fast" {
			return nil, nil
		}
		return &testbed.Timing{Profile: p, Speed: *speed, Seed: *seed}, nil
	}
}
