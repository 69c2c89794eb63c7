package dhcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// LeaseState is where a lease stands.
type LeaseState string

// Lease states.
const (
	LeaseOffered  LeaseState = "offered"  // reserved at the offer, not yet requested
	LeaseBound    LeaseState = "bound"    // acked
	LeaseReleased LeaseState = "released" // released by the client; the MAC keeps the address while it is free
)

// Lease binds one MAC to one address.
type Lease struct {
	MAC     string     `json:"mac"` // net.HardwareAddr.String()
	IP      netip.Addr `json:"ip"`
	State   LeaseState `json:"state"`
	Expires time.Time  `json:"expires"`
}

// leaseFile is the on-disk form.
type leaseFile struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

// leaseTable is the set of leases; one address per MAC and one MAC per
// address. All methods are safe for concurrent use.
type leaseTable struct {
	mu       sync.Mutex
	pools    []Pool
	byMAC    map[string]*Lease
	byIP     map[netip.Addr]*Lease
	declined map[netip.Addr]time.Time // address -> not before
	next     map[int]netip.Addr       // pool index -> where the next scan starts
	gen      uint64                   // bumped on every change
	saved    uint64                   // gen last written
	saveMu   sync.Mutex               // serialises writers of the file
}

func newLeaseTable(pools []Pool) *leaseTable {
	return &leaseTable{
		pools:    pools,
		byMAC:    map[string]*Lease{},
		byIP:     map[netip.Addr]*Lease{},
		declined: map[netip.Addr]time.Time{},
		next:     map[int]netip.Addr{},
	}
}

// errPoolExhausted means no address is free in the pool.
var errPoolExhausted = errors.New("no free address in pool")

// lookup returns a copy of mac's lease.
func (t *leaseTable) lookup(mac net.HardwareAddr) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byMAC[mac.String()]
	if !ok {
		return Lease{}, false
	}
	return *l, true
}

// holder returns the MAC holding ip, "" when none.
func (t *leaseTable) holder(ip netip.Addr) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.byIP[ip]; ok {
		return l.MAC
	}
	return ""
}

// reserve gives mac an address at the offer: fixed when want is valid,
// else its previous address if still in pool, else the first free one.
// The returned lease is marked offered (or kept bound if it already was).
func (t *leaseTable) reserve(mac net.HardwareAddr, pool int, want netip.Addr, now time.Time, hold time.Duration) (Lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := mac.String()
	p := t.pools[pool]
	cur := t.byMAC[key]
	if want.IsValid() {
		if cur == nil || cur.IP != want {
			t.bind(key, want)
			cur = t.byMAC[key]
			cur.State = LeaseOffered
			cur.Expires = now.Add(hold)
		}
	} else if cur == nil || !inRange(p, cur.IP) || t.isDeclined(cur.IP, now) {
		ip, err := t.free(pool, now)
		if err != nil {
			return Lease{}, err
		}
		t.bind(key, ip)
		cur = t.byMAC[key]
		cur.State = LeaseOffered
		cur.Expires = now.Add(hold)
	}
	if cur.State != LeaseBound || cur.Expires.Before(now) {
		cur.State = LeaseOffered
		cur.Expires = now.Add(hold)
	}
	t.gen++
	return *cur, nil
}

// ack binds mac to ip until now+d. It fails when another MAC holds ip.
func (t *leaseTable) ack(mac net.HardwareAddr, ip netip.Addr, now time.Time, d time.Duration) (Lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := mac.String()
	if l, ok := t.byIP[ip]; ok && l.MAC != key {
		if l.State == LeaseBound && l.Expires.After(now) || l.State == LeaseOffered && l.Expires.After(now) {
			return Lease{}, fmt.Errorf("%s is leased to %s", ip, l.MAC)
		}
	}
	if t.isDeclined(ip, now) {
		return Lease{}, fmt.Errorf("%s was declined", ip)
	}
	t.bind(key, ip)
	l := t.byMAC[key]
	l.State = LeaseBound
	l.Expires = now.Add(d)
	t.gen++
	return *l, nil
}

// release marks mac's lease of ip released.
func (t *leaseTable) release(mac net.HardwareAddr, ip netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byMAC[mac.String()]
	if !ok || (ip.IsValid() && l.IP != ip) {
		return false
	}
	l.State = LeaseReleased
	l.Expires = now
	t.gen++
	return true
}

// decline forgets mac's binding to ip and keeps ip out of use for hold.
func (t *leaseTable) decline(mac net.HardwareAddr, ip netip.Addr, now time.Time, hold time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := mac.String()
	l, ok := t.byMAC[key]
	if !ok || l.IP != ip {
		return false
	}
	delete(t.byMAC, key)
	delete(t.byIP, ip)
	t.declined[ip] = now.Add(hold)
	t.gen++
	return true
}

// bind makes key hold ip, dropping key's old address and ip's old holder.
// t.mu must be held.
func (t *leaseTable) bind(key string, ip netip.Addr) {
	if old, ok := t.byIP[ip]; ok && old.MAC != key {
		delete(t.byMAC, old.MAC)
	}
	if old, ok := t.byMAC[key]; ok && old.IP != ip {
		delete(t.byIP, old.IP)
	}
	l, ok := t.byMAC[key]
	if !ok {
		l = &Lease{MAC: key}
		t.byMAC[key] = l
	}
	l.IP = ip
	t.byIP[ip] = l
}

func (t *leaseTable) isDeclined(ip netip.Addr, now time.Time) bool {
	until, ok := t.declined[ip]
	if !ok {
		return false
	}
	if now.After(until) {
		delete(t.declined, ip)
		return false
	}
	return true
}

// free finds an unheld address in pool, scanning round-robin; when none is
// unheld it reclaims the expired lease that expired first. t.mu is held.
func (t *leaseTable) free(pool int, now time.Time) (netip.Addr, error) {
	p := t.pools[pool]
	start := t.next[pool]
	if !inRange(p, start) {
		start = p.First
	}
	ip := start
	for {
		if _, held := t.byIP[ip]; !held && !t.isDeclined(ip, now) && !isSpecial(p, ip) {
			t.next[pool] = nextInRange(p, ip)
			return ip, nil
		}
		ip = nextInRange(p, ip)
		if ip == start {
			break
		}
	}
	var victim *Lease
	for _, l := range t.byIP {
		if !inRange(p, l.IP) || l.Expires.After(now) {
			continue
		}
		if victim == nil || l.Expires.Before(victim.Expires) {
			victim = l
		}
	}
	if victim == nil {
		return netip.Addr{}, fmt.Errorf("%s: %w", p.Subnet, errPoolExhausted)
	}
	delete(t.byMAC, victim.MAC)
	delete(t.byIP, victim.IP)
	return victim.IP, nil
}

func inRange(p Pool, ip netip.Addr) bool {
	return ip.IsValid() && !ip.Less(p.First) && !p.Last.Less(ip)
}

func nextInRange(p Pool, ip netip.Addr) netip.Addr {
	n := ip.Next()
	if !n.IsValid() || p.Last.Less(n) {
		return p.First
	}
	return n
}

// isSpecial reports the network and broadcast addresses of p's subnet and
// its router, which are never handed out.
func isSpecial(p Pool, ip netip.Addr) bool {
	if ip == p.Router {
		return true
	}
	if p.Subnet.Bits() >= 31 {
		return false
	}
	if ip == p.Subnet.Masked().Addr() {
		return true
	}
	return ip == broadcastOf(p.Subnet)
}

func broadcastOf(pfx netip.Prefix) netip.Addr {
	a := pfx.Masked().Addr().As4()
	bits := pfx.Bits()
	for i := 0; i < 4; i++ {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	return netip.AddrFrom4(a)
}

// snapshot copies the table, sorted by address.
func (t *leaseTable) snapshot() []Lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Lease, 0, len(t.byIP))
	for _, l := range t.byIP {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// save writes the table to path atomically (temp file, fsync, rename)
// unless nothing changed since the last save.
func (t *leaseTable) save(path string) error {
	t.saveMu.Lock()
	defer t.saveMu.Unlock()
	t.mu.Lock()
	gen := t.gen
	t.mu.Unlock()
	if gen == t.saved {
		return nil
	}
	b, err := json.MarshalIndent(leaseFile{Version: 1, Leases: t.snapshot()}, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	t.saved = gen
	return nil
}

// load reads path; a missing file is an empty table. Leases outside every
// pool (and not fixed) are still kept: a fixed-address host may own them.
func (t *leaseTable) load(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("parsing lease file %s: %w", path, err)
	}
	if f.Version != 1 {
		return fmt.Errorf("lease file %s: unsupported version %d", path, f.Version)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range f.Leases {
		mac, err := net.ParseMAC(l.MAC)
		if err != nil || !l.IP.Is4() {
			return fmt.Errorf("lease file %s: bad lease %+v", path, l)
		}
		t.bind(mac.String(), l.IP)
		cur := t.byMAC[mac.String()]
		cur.State = l.State
		cur.Expires = l.Expires
	}
	t.saved = t.gen
	return nil
}
