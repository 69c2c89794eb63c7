package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// topology is the YAML file given to --config. Top-level settings mirror
// the flags of `metalbed up` (a flag or METALBED_<FLAG> wins over them).
//
//	nodes: 3                  # machines in all; listed ones first, then node-<i>
//	bmc_base_port: 6230
//	bmc_address: 127.0.0.1
//	bmc_per_ip: false
//	defaults:                 # for every machine
//	  nics: 1
//	  disk_size: 10GiB
//	  boot_mode: bios         # or uefi
//	  power_delay: 0s
//	  bmc: {username: admin, password: password}
//	machines:
//	  - name: node-0
//	    macs: ["52:54:00:12:34:56"]  # pinned; default: derived from the testbed ID
//	    disk_size: 20GiB
//	    boot_mode: uefi
//	    bmc: {address: 127.0.0.1, port: 6240, username: root, password: calvin}
type topology struct {
	Nodes       *int          `yaml:"nodes"`
	StateDir    string        `yaml:"state_dir"`
	BMCBasePort *int          `yaml:"bmc_base_port"`
	BMCAddress  string        `yaml:"bmc_address"`
	BMCPerIP    *bool         `yaml:"bmc_per_ip"`
	Defaults    machineSpec   `yaml:"defaults"`
	Machines    []machineSpec `yaml:"machines"`

	path  string
	lines []int // line of each machine entry, for errors
}

type machineSpec struct {
	Name       string    `yaml:"name"`
	MACs       []string  `yaml:"macs"`
	NICs       int       `yaml:"nics"`
	DiskSize   byteSize  `yaml:"disk_size"`
	BootMode   string    `yaml:"boot_mode"`
	PowerDelay *duration `yaml:"power_delay"`
	BMC        bmcSpec   `yaml:"bmc"`
}

type bmcSpec struct {
	Address  string `yaml:"address"`
	Port     *int   `yaml:"port"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// byteSize is a size in bytes, written as a number or with a unit
// (KiB, MiB, GiB, TiB; KB, MB, GB, TB; K, M, G, T are binary).
type byteSize int64

func (b *byteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = byteSize(v)
	return nil
}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 || v > (1<<50)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with a unit (GiB, MB, …)", s)
	}
	return v * mult, nil
}

// duration is a time.Duration written as "2s", "150ms".
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: duration %q: want e.g. 2s or 150ms", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

// loadTopology reads and strictly decodes a topology file: unknown fields
// and type errors are reported with the file and line.
func loadTopology(path string) (*topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError("config: %v", err)
	}
	return parseTopology(path, b)
}

func parseTopology(path string, b []byte) (*topology, error) {
	t := &topology{path: path}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(t); err != nil && !errors.Is(err, io.EOF) {
		return nil, usageError("config %s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil && len(root.Content) == 1 {
		doc := root.Content[0]
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == "machines" {
				for _, m := range doc.Content[i+1].Content {
					t.lines = append(t.lines, m.Line)
				}
			}
		}
	}
	d := t.Defaults
	if d.Name != "" || d.MACs != nil || d.BMC.Port != nil || d.BMC.Address != "" {
		return nil, t.errf(-1, "defaults may not set name, macs, bmc.port or bmc.address (they differ per machine)")
	}
	if t.Nodes != nil && (*t.Nodes < 0) {
		return nil, t.errf(-1, "nodes: %d", *t.Nodes)
	}
	return t, nil
}

// errf is a usage error naming the file and, for machine i >= 0, its line.
func (t *topology) errf(i int, format string, a ...any) error {
	where := t.path
	if i >= 0 && i < len(t.lines) {
		where = fmt.Sprintf("%s:%d", t.path, t.lines[i])
	}
	return usageError("config %s: %s", where, fmt.Sprintf(format, a...))
}

// nodePlan is one machine and its BMC, fully resolved.
type nodePlan struct {
	name       string
	macs       []net.HardwareAddr
	nics       int // without macs: how many the testbed derives
	diskBytes  int64
	bootMode   vms.BootMode
	powerDelay time.Duration
	addr       string
	port       int // 0 => ephemeral
	username   string
	password   string
}

// upSettings are the resolved top-level settings of `metalbed up`.
type upSettings struct {
	nodes      int
	basePort   int
	bmcAddress string
	bmcPerIP   bool
	username   string
	password   string
	powerDelay time.Duration
	diskBytes  int64
	bootMode   vms.BootMode
}

// perIPAddress is the loopback address of BMC i in one-IP-per-BMC mode:
// 127.0.1.1, 127.0.1.2, … counting on through 127.0.2.x and beyond.
func perIPAddress(i int) string {
	v := uint32(127)<<24 | uint32(1)<<8 | 1
	v += uint32(i)
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
}

// plan resolves the machines: the ones listed in the topology first, then
// node-<i> up to s.nodes, each with MACs, disk, boot mode and a BMC address.
func plan(s upSettings, t *topology) ([]nodePlan, error) {
	if t == nil {
		t = &topology{path: "(no config)"}
	}
	specs := append([]machineSpec(nil), t.Machines...)
	if s.nodes < len(specs) {
		return nil, usageError("--nodes %d is fewer than the %d machines listed in %s", s.nodes, len(specs), t.path)
	}
	taken := map[string]bool{}
	for i, m := range specs {
		if m.Name == "" {
			return nil, t.errf(i, "machine without a name")
		}
		if taken[m.Name] {
			return nil, t.errf(i, "duplicate machine name %q", m.Name)
		}
		taken[m.Name] = true
	}
	for i := 0; len(specs) < s.nodes; i++ {
		name := fmt.Sprintf("node-%d", i)
		if !taken[name] {
			specs = append(specs, machineSpec{Name: name})
			taken[name] = true
		}
	}
	d := t.Defaults
	plans := make([]nodePlan, len(specs))
	usedMAC := map[string]string{}
	usedAddr := map[string]string{}
	// Machines without a port of their own take base, base+1, … in order,
	// skipping ports listed machines claim.
	claimed := map[int]bool{}
	for _, m := range specs {
		if m.BMC.Port != nil && (m.BMC.Address == "" || m.BMC.Address == s.bmcAddress) {
			claimed[*m.BMC.Port] = true
		}
	}
	next := s.basePort
	for i, m := range specs {
		p := nodePlan{name: m.Name, diskBytes: s.diskBytes, bootMode: s.bootMode, powerDelay: s.powerDelay,
			addr: s.bmcAddress, username: s.username, password: s.password}
		switch {
		case s.bmcPerIP:
			p.addr, p.port = perIPAddress(i), 623
		case s.basePort != 0 && m.BMC.Port == nil:
			for claimed[next] {
				next++
			}
			p.port = next
			next++
		}
		// The topology's defaults were folded into s by the caller (a flag
		// wins over them); a machine's own entry wins over both.
		for _, spec := range []machineSpec{m} {
			if spec.DiskSize != 0 {
				p.diskBytes = int64(spec.DiskSize)
			}
			if spec.BootMode != "" {
				p.bootMode = vms.BootMode(spec.BootMode)
			}
			if spec.PowerDelay != nil {
				p.powerDelay = time.Duration(*spec.PowerDelay)
			}
			if spec.BMC.Address != "" {
				p.addr = spec.BMC.Address
			}
			if spec.BMC.Port != nil {
				p.port = *spec.BMC.Port
			}
			if spec.BMC.Username != "" {
				p.username = spec.BMC.Username
			}
			if spec.BMC.Password != "" {
				p.password = spec.BMC.Password
			}
		}
		if p.bootMode != vms.BIOS && p.bootMode != vms.UEFI {
			return nil, t.errf(i, "machine %s: boot_mode %q: want bios or uefi", m.Name, p.bootMode)
		}
		if p.diskBytes%512 != 0 {
			return nil, t.errf(i, "machine %s: disk size %d is not a multiple of 512", m.Name, p.diskBytes)
		}
		if net.ParseIP(p.addr) == nil {
			return nil, t.errf(i, "machine %s: BMC address %q is not an IP address", m.Name, p.addr)
		}
		if p.port < 0 || p.port > 65535 {
			return nil, t.errf(i, "machine %s: BMC port %d out of range", m.Name, p.port)
		}
		if p.port != 0 {
			key := net.JoinHostPort(p.addr, strconv.Itoa(p.port))
			if other, dup := usedAddr[key]; dup {
				return nil, t.errf(i, "machine %s: BMC address %s is also machine %s's", m.Name, key, other)
			}
			usedAddr[key] = m.Name
		}
		if len(p.password) == 0 || len(p.password) > 20 || len(p.username) > 16 {
			return nil, t.errf(i, "machine %s: BMC username must be at most 16 bytes and password 1 to 20", m.Name)
		}
		if m.MACs != nil && m.NICs != 0 && m.NICs != len(m.MACs) {
			return nil, t.errf(i, "machine %s: nics %d but %d macs", m.Name, m.NICs, len(m.MACs))
		}
		for _, s := range m.MACs {
			mac, err := sim.ParseMAC(s)
			if err != nil {
				return nil, t.errf(i, "machine %s: %v", m.Name, err)
			}
			if other, dup := usedMAC[mac.String()]; dup {
				return nil, t.errf(i, "machine %s: MAC %s is also machine %s's", m.Name, mac, other)
			}
			usedMAC[mac.String()] = m.Name
			p.macs = append(p.macs, mac)
		}
		plans[i] = p
	}
	// The testbed derives the MACs not listed from its ID (unique to
	// this state dir), steering clear of every listed one.
	for i, m := range specs {
		if len(plans[i].macs) > 0 {
			continue
		}
		nics := 1
		if d.NICs != 0 {
			nics = d.NICs
		}
		if m.NICs != 0 {
			nics = m.NICs
		}
		if nics < 1 || nics > 32 {
			return nil, t.errf(i, "machine %s: nics %d: want 1 to 32", m.Name, nics)
		}
		plans[i].nics = nics
	}
	return plans, nil
}
