package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/metalbed/metalbed/vms/sim"
)

// IdentityFile, in the state directory, holds what keeps a testbed apart
// from the others on the host and the same across its restarts: its ID
// (mixed into its machines' MACs and SMBIOS UUIDs) and the loopback block
// it leases from (blocks.go).
const IdentityFile = "testbed.json"

// identity is IdentityFile.
type identity struct {
	// ID is random, made on the first start. "" marks a state directory
	// made before testbed IDs: its machines keep the MACs and UUIDs
	// derived from their names alone, which its provisioner's ports know.
	ID string `json:"id"`
	// DHCPRange is the block the testbed took when not told a range; it
	// asks for it again on the next start.
	DHCPRange string `json:"dhcp_range,omitempty"`
}

// loadIdentity reads dir's IdentityFile, making it on the first start.
// The caller holds dir's lock.
func loadIdentity(dir string) (identity, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var id identity
		if err := json.Unmarshal(b, &id); err != nil {
			return identity{}, fmt.Errorf("%s: %w (remove it to give the testbed new MACs and UUIDs)", path, err)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return identity{}, fmt.Errorf("testbed identity: %w", err)
	}
	var id identity
	legacy, err := usedBefore(dir)
	if err != nil {
		return identity{}, err
	}
	if !legacy {
		var r [8]byte
		rand.Read(r[:])
		id.ID = hex.EncodeToString(r[:])
	}
	return id, id.save(dir)
}

// usedBefore reports whether dir holds the state of an earlier metalbed:
// the provisioner's, or a machine's disk.
func usedBefore(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, "provisioner")); err == nil {
		return true, nil
	}
	disks, err := filepath.Glob(filepath.Join(dir, "*", "disk.img"))
	if err != nil {
		return false, fmt.Errorf("testbed identity: %w", err)
	}
	return len(disks) > 0, nil
}

// save writes id atomically.
func (id identity) save(dir string) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+IdentityFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("testbed identity: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, IdentityFile)); err != nil {
		return fmt.Errorf("testbed identity: %w", err)
	}
	return nil
}

// withIdentity gives every machine without MACs Machine.NICs addresses
// derived from the testbed ID (sim.MACIn), steering clear of every MAC
// given, and every machine its SMBIOS UUID (sim.UUIDIn). It returns a
// copy; ms is unchanged.
func withIdentity(ms []Machine, id string) []Machine {
	out := make([]Machine, len(ms))
	used := map[string]bool{}
	for i, m := range ms {
		out[i] = m
		for _, mac := range m.MACs {
			used[mac.String()] = true
		}
	}
	for i := range out {
		m := &out[i]
		m.uuid = sim.UUIDIn(id, m.Name)
		if len(m.MACs) > 0 {
			continue
		}
		nics := max(m.NICs, 1)
		m.MACs = make([]net.HardwareAddr, nics)
		for n := range nics {
			mac := sim.MACIn(id, m.Name, n, 0)
			for salt := 1; used[mac.String()]; salt++ {
				mac = sim.MACIn(id, m.Name, n, salt)
			}
			used[mac.String()] = true
			m.MACs[n] = mac
		}
	}
	return out
}

// claimLeases takes the DHCP range of simulated machines in the host's
// registry: Provisioner.DHCPRange when set, else the block this state dir
// had before, else a free one (remembered in IdentityFile).
func (t *Testbed) claimLeases(id identity) (*blockClaim, error) {
	dir := t.cfg.StateDir
	if s := t.cfg.Provisioner.DHCPRange; s != "" {
		rng, err := parseRange(s)
		if err != nil {
			return nil, configError("DHCP range %v", err)
		}
		return t.blocks.claimGiven(rng, dir)
	}
	var prefer *addrRange
	if r, err := parseRange(id.DHCPRange); err == nil {
		prefer = &r
	}
	c, err := t.blocks.claimFree(prefer, dir)
	if err != nil {
		return nil, err
	}
	if got := c.rng.String(); got != id.DHCPRange {
		if prefer != nil {
			t.log.Warn("the DHCP range of this state dir is held by another testbed: leasing from another block", "had", id.DHCPRange, "now", got)
		}
		id.DHCPRange = got
		if err := id.save(dir); err != nil {
			c.release()
			return nil, err
		}
	}
	return c, nil
}

// AddrError is an address of the Config that cannot be had: a port
// another program listens on, a DHCP range another running testbed holds.
// Field names the Config field ("Provisioner.APIAddr", "Redfish.Addr",
// "Machine.BMCPort" …) so that a command line can name its flag.
type AddrError struct {
	Field, Addr string
	Err         error
}

func (e *AddrError) Error() string { return e.Err.Error() }
func (e *AddrError) Unwrap() error { return e.Err }

func addrError(field, addr string, err error) error {
	return &AddrError{Field: field, Addr: addr, Err: err}
}
