package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Simulated machines lease loopback addresses, and each one's ramdisk
// binds fixed ports (iSCSI 3260, the agent's 9999, the notice port 10000)
// on its lease: two testbeds leasing the same addresses break each other.
// So every running testbed holds a range of 127.0.0.0/8 of its own in a
// host-wide registry: a directory of claim files, each flock'd by the
// process that holds it, so a holder that dies (even by SIGKILL) frees its
// range. A testbed that is not told a range takes a block of its own,
// 127.N.0.10-127.N.255.250 (N = 1 … 254; 127.1 is the one metalbed always
// used), and keeps it across restarts (identity.go).

// blockRegistryDir is where the registry lives unless a test says
// otherwise: the same directory for every user of the host.
func blockRegistryDir() string { return filepath.Join(os.TempDir(), "metalbed-blocks") }

// addrRange is an inclusive range of IPv4 addresses.
type addrRange struct{ first, last netip.Addr }

// parseRange parses FIRST-LAST (IPv4, FIRST <= LAST).
func parseRange(s string) (addrRange, error) {
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return addrRange{}, fmt.Errorf("%q: want FIRST-LAST", s)
	}
	var r addrRange
	var err error
	if r.first, err = netip.ParseAddr(strings.TrimSpace(first)); err != nil {
		return addrRange{}, fmt.Errorf("%q: %w", s, err)
	}
	if r.last, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil {
		return addrRange{}, fmt.Errorf("%q: %w", s, err)
	}
	if !r.first.Is4() || !r.last.Is4() || r.last.Less(r.first) {
		return addrRange{}, fmt.Errorf("%q: want two IPv4 addresses, the first no greater than the last", s)
	}
	return r, nil
}

func (r addrRange) String() string { return r.first.String() + "-" + r.last.String() }

func (r addrRange) overlaps(o addrRange) bool {
	return r.first.Compare(o.last) <= 0 && o.first.Compare(r.last) <= 0
}

// blockN is block n of the registry: 127.n.0.10-127.n.255.250.
func blockN(n int) addrRange {
	return addrRange{netip.AddrFrom4([4]byte{127, byte(n), 0, 10}), netip.AddrFrom4([4]byte{127, byte(n), 255, 250})}
}

// claimInfo is what a claim file says about its holder, for the message
// of a testbed refused its range.
type claimInfo struct {
	Range    string `json:"range"`
	StateDir string `json:"state_dir"`
	PID      int    `json:"pid"`
}

// blockRegistry is the host-wide registry of loopback ranges in dir.
type blockRegistry struct{ dir string }

// blockClaim is a range a testbed holds until release.
type blockClaim struct {
	rng addrRange
	f   *os.File
}

// release gives the range back (its file stays, unlocked: the next
// registry user removes it).
func (c *blockClaim) release() {
	if c != nil && c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

// errRangeHeld is wrapped by claim when another testbed holds an
// overlapping range.
var errRangeHeld = errors.New("held by another running testbed")

// claim takes rng for the testbed in stateDir, unless a running testbed
// holds a range overlapping it.
func (r blockRegistry) claim(rng addrRange, stateDir string) (*blockClaim, error) {
	return r.locked(func(held []heldClaim) (*blockClaim, error) {
		for _, h := range held {
			if h.rng.overlaps(rng) {
				return nil, fmt.Errorf("%s overlaps %s, %w (state dir %s, pid %d)", rng, h.rng, errRangeHeld, h.info.StateDir, h.info.PID)
			}
		}
		return r.take(rng, stateDir)
	})
}

// locked runs take under the registry's lock with the claims running
// testbeds hold.
func (r blockRegistry) locked(take func(held []heldClaim) (*blockClaim, error)) (*blockClaim, error) {
	unlock, err := r.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	held, err := r.held()
	if err != nil {
		return nil, err
	}
	return take(held)
}

// claimGiven is claim of a range a user gave as Provisioner.DHCPRange
// (`--dhcp-range`): refused with an *AddrError naming that field.
func (r blockRegistry) claimGiven(rng addrRange, stateDir string) (*blockClaim, error) {
	c, err := r.claim(rng, stateDir)
	if err != nil {
		return nil, addrError("Provisioner.DHCPRange", rng.String(), fmt.Errorf("DHCP range %w", err))
	}
	return c, nil
}

// claimFree takes a free block for the testbed in stateDir: prefer (the
// one it had before) when no running testbed overlaps it, else the
// lowest free block.
func (r blockRegistry) claimFree(prefer *addrRange, stateDir string) (*blockClaim, error) {
	return r.locked(func(held []heldClaim) (*blockClaim, error) {
		free := func(rng addrRange) bool {
			for _, h := range held {
				if h.rng.overlaps(rng) {
					return false
				}
			}
			return true
		}
		if prefer != nil && free(*prefer) {
			return r.take(*prefer, stateDir)
		}
		for n := 1; n <= 254; n++ {
			if b := blockN(n); free(b) {
				return r.take(b, stateDir)
			}
		}
		return nil, fmt.Errorf("no free loopback block: 254 running testbeds hold them all (see %s)", r.dir)
	})
}

// lock serializes the registry's users on the host (one holds it for
// the milliseconds a claim takes).
func (r blockRegistry) lock() (unlock func(), err error) {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("address block registry: %w", err)
	}
	// Every user of the host registers here: world-writable and sticky,
	// as /tmp is (best effort: someone else may own it).
	os.Chmod(r.dir, 0o777|os.ModeSticky)
	f, err := openShared(filepath.Join(r.dir, ".registry"))
	if err != nil {
		return nil, fmt.Errorf("address block registry: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("address block registry: %w", err)
	}
	return func() { f.Close() }, nil
}

// openShared opens (or creates) a registry file that every user of the
// host may lock: read-write when allowed, else read-only (flock needs
// no more).
func openShared(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if errors.Is(err, fs.ErrPermission) {
		return os.Open(path)
	}
	if err == nil {
		f.Chmod(0o666)
	}
	return f, err
}

type heldClaim struct {
	rng  addrRange
	info claimInfo
}

// held lists the ranges running testbeds hold and removes the files of
// those whose holder is gone. The caller holds the registry lock.
func (r blockRegistry) held() ([]heldClaim, error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("address block registry: %w", err)
	}
	var held []heldClaim
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".claim")
		if !ok {
			continue
		}
		rng, err := parseRange(name)
		if err != nil {
			continue // not ours
		}
		path := filepath.Join(r.dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			continue // removed meanwhile
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			os.Remove(path) // its holder is gone
			f.Close()
			continue
		}
		var info claimInfo
		if b, rerr := io.ReadAll(io.LimitReader(f, 4096)); rerr == nil {
			json.Unmarshal(b, &info)
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("address block registry %s: %w", path, err)
		}
		held = append(held, heldClaim{rng: rng, info: info})
	}
	return held, nil
}

// take creates and locks rng's claim file. The caller holds the registry
// lock and found rng free.
func (r blockRegistry) take(rng addrRange, stateDir string) (*blockClaim, error) {
	path := filepath.Join(r.dir, rng.String()+".claim")
	f, err := openShared(path)
	if err != nil {
		return nil, fmt.Errorf("address block registry: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("address block registry %s: %w", path, err)
	}
	b, _ := json.Marshal(claimInfo{Range: rng.String(), StateDir: stateDir, PID: os.Getpid()})
	if err := f.Truncate(0); err == nil {
		f.WriteAt(b, 0) // informative only: a read-only file stays blank
	}
	return &blockClaim{rng: rng, f: f}, nil
}

// LeaseBlockFile, in a provisioner's state directory, names the block a
// provisioner outside a testbed took (ClaimLeaseBlock), so that it asks
// for the same one when it starts again.
const LeaseBlockFile = "dhcp-range"

// LeaseBlock is a loopback DHCP range held in the host-wide registry by a
// provisioner that runs outside a testbed (`metalbed provisioner serve`):
// no testbed leases from it meanwhile, as from another testbed's block.
type LeaseBlock struct{ c *blockClaim }

// Range is the block, FIRST-LAST.
func (b *LeaseBlock) Range() string { return b.c.rng.String() }

// Release gives the block back; the holder's exit does as well.
func (b *LeaseBlock) Release() { b.c.release() }

// ClaimLeaseBlock takes the DHCP range of the provisioner whose state is
// in stateDir in the host's registry, as a testbed takes its own: rng
// (FIRST-LAST) when given, refused with an *AddrError for
// Provisioner.DHCPRange when a running testbed holds a range overlapping
// it; else a free block, the one stateDir held before when still free
// (remembered in LeaseBlockFile). A given range outside 127.0.0.0/8 (a
// real network's) is none of the registry's: nil, nil.
func ClaimLeaseBlock(rng, stateDir string) (*LeaseBlock, error) {
	reg := blockRegistry{dir: blockRegistryDir()}
	if rng != "" {
		r, err := parseRange(rng)
		if err != nil {
			return nil, configError("DHCP range %v", err)
		}
		if !r.first.IsLoopback() || !r.last.IsLoopback() {
			return nil, nil
		}
		c, err := reg.claimGiven(r, stateDir)
		if err != nil {
			return nil, err
		}
		return &LeaseBlock{c}, nil
	}
	path := filepath.Join(stateDir, LeaseBlockFile)
	had, _ := os.ReadFile(path)
	var prefer *addrRange
	if r, err := parseRange(strings.TrimSpace(string(had))); err == nil {
		prefer = &r
	}
	c, err := reg.claimFree(prefer, stateDir)
	if err != nil {
		return nil, err
	}
	if got := c.rng.String(); got != strings.TrimSpace(string(had)) {
		err := os.MkdirAll(stateDir, 0o755)
		if err == nil {
			err = os.WriteFile(path, []byte(got+"\n"), 0o644)
		}
		if err != nil {
			c.release()
			return nil, fmt.Errorf("DHCP range: %w", err)
		}
	}
	return &LeaseBlock{c}, nil
}
