// Package timing gives simulated machines and their BMCs the pace of real
// hardware, on request: a Profile names how long a power-on, the
// firmware's POST and a NIC's link negotiation take, how fast the disk
// writes and how slowly the BMC answers. Each machine gets its own figures,
// drawn around the profile's from a seed and the machine's name (the same
// seed gives the same figures, run after run), and divided by a speed
// factor, so a demo looks like a rack of servers and a scale test can
// compress it. The default profile, "fast", is all zeros: machines run as
// fast as the host lets them, as they always have.
package timing

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Profile is a kind of hardware's pace.
type Profile struct {
	Name string
	// PowerOn is the time from a power-on request until the firmware runs
	// (power supplies, BMC handing over).
	PowerOn time.Duration
	// POST is the firmware's self-test before it picks a boot device.
	POST time.Duration
	// LinkUp is a NIC's link negotiation before its PXE ROM sends the
	// first DHCPDISCOVER.
	LinkUp time.Duration
	// DiskWriteMBps is the disk's sustained write rate in MB/s (10^6
	// bytes); 0 is as fast as the host.
	DiskWriteMBps float64
	// BMCLatency is added to every answer of the machine's BMC.
	BMCLatency time.Duration
	// Jitter is how much each machine's figures differ from the
	// profile's: each is multiplied by a factor drawn uniformly from
	// [1-Jitter, 1+Jitter].
	Jitter float64
}

// Profiles are the profiles known by name.
var Profiles = map[string]Profile{
	// fast: the host's own pace (the default).
	"fast": {Name: "fast"},
	// server: a 1U rack server as measured in labs: a long POST (memory
	// training, option ROMs), a slow link, a SATA SSD, an IPMI BMC on a
	// small ARM core.
	"server": {Name: "server", PowerOn: 5 * time.Second, POST: 60 * time.Second, LinkUp: 3 * time.Second,
		DiskWriteMBps: 400, BMCLatency: 20 * time.Millisecond, Jitter: 0.2},
	// vm: a virtual machine behind a virtual BMC: a quick firmware, an
	// instant link, a virtio disk on shared storage.
	"vm": {Name: "vm", PowerOn: 500 * time.Millisecond, POST: 2 * time.Second, LinkUp: 100 * time.Millisecond,
		DiskWriteMBps: 1000, BMCLatency: 2 * time.Millisecond, Jitter: 0.1},
}

// Named is the profile called name.
func Named(name string) (Profile, error) {
	p, ok := Profiles[name]
	if !ok {
		names := make([]string, 0, len(Profiles))
		for n := range Profiles {
			names = append(names, n)
		}
		slices.Sort(names)
		return Profile{}, fmt.Errorf("timing profile %q: want one of %s", name, strings.Join(names, ", "))
	}
	return p, nil
}

// Figures are one machine's durations and rates under a profile.
type Figures struct {
	PowerOn, POST, LinkUp, BMCLatency time.Duration
	// DiskWriteBytesPerSec is 0 for no limit.
	DiskWriteBytesPerSec int64
}

// Zero reports whether f slows nothing down.
func (f Figures) Zero() bool { return f == Figures{} }

// String is the figures as the console prints them.
func (f Figures) String() string {
	rate := "unlimited"
	if f.DiskWriteBytesPerSec > 0 {
		rate = fmt.Sprintf("%.0f MB/s", float64(f.DiskWriteBytesPerSec)/1e6)
	}
	return fmt.Sprintf("power-on %s, POST %s, link-up %s, disk writes %s, BMC latency %s",
		f.PowerOn, f.POST, f.LinkUp, rate, f.BMCLatency)
}

// Machine is the figures of the machine called name: the profile's, each
// varied by Jitter with a source seeded by seed and name, then divided by
// speed (2 runs twice as fast; speed <= 0 is taken as 1). The disk rate is
// multiplied by speed.
func (p Profile) Machine(name string, seed uint64, speed float64) Figures {
	if speed <= 0 {
		speed = 1
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	vary := func() float64 { return 1 + p.Jitter*(2*r.Float64()-1) }
	dur := func(d time.Duration) time.Duration { return time.Duration(float64(d) * vary() / speed) }
	f := Figures{PowerOn: dur(p.PowerOn), POST: dur(p.POST), LinkUp: dur(p.LinkUp), BMCLatency: dur(p.BMCLatency)}
	if rate := p.DiskWriteMBps * vary() * speed; rate > 0 {
		f.DiskWriteBytesPerSec = int64(rate * 1e6)
	}
	return f
}
