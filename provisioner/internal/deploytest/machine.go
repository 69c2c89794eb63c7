// Package deploytest is what the deploy interfaces' end-to-end tests share
// (baremetal-operator's fixture/testbmc, for metalbed): simulated machines
// behind one fake BMC (power and management interfaces), a Bed that runs
// the real provisioner (store, conductor, API, the pxe or ipxe boot
// interface and a deploy interface) on 127.0.0.1:0, a client for its API,
// the agent's side of the API (lookup, heartbeat) and a recorder of the
// conductor's calls to agents.
//
// What a machine runs when it boots the deploy ramdisk is a Ramdisk the
// test gives: the real ramdisk and agent live under vms/, which only
// tests may import, never this package. Only tests import it.
package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// DiskSize is every machine's sparse disk: root_gb 1 plus an ESP fit.
const DiskSize = 2 << 30

// Ramdisk runs what a machine boots from its PXE config's deploy label,
// given the label's kernel command line, until ctx ends.
type Ramdisk func(ctx context.Context, m *Machine, cmdline string) error

// Faults are misbehaviours a Ramdisk reads from its machine.
type Faults struct {
	// Silent: the machine boots the deploy label but runs no ramdisk
	// (callback timeouts, tests playing the ramdisk themselves).
	Silent bool
	// NoDisk: the ramdisk finds no disk.
	NoDisk bool
	// BootloaderErr fails the ramdisk's bootloader install.
	BootloaderErr error
	// DeafToPowerOff: a power off asked of the machine's OS never happens.
	DeafToPowerOff bool
}

// Machine is one simulated server as the provisioner reaches it: power and
// a boot device kept by its BMC, a sparse disk, and, when it boots the
// deploy label over PXE, the test's Ramdisk on its own 127.x address.
type Machine struct {
	t          testing.TB
	ip         net.IP
	disk       *os.File
	configRoot string
	ramdisk    Ramdisk

	mu       sync.Mutex
	nodeUUID string
	faults   Faults
	power    provisioner.PowerState
	bootDev  drivers.BootDevice
	flags    [5]byte // IPMI boot option parameter 5, as a BMC stores it
	cancel   context.CancelFunc
	done     chan struct{}
	booted   []string // what each power on booted
	softOffs int
	console  bytes.Buffer
	runErr   []error
}

// NewMachine makes a powered-off machine whose firmware reads PXE configs
// under configRoot and boots the deploy label into ramdisk.
func NewMachine(t testing.TB, configRoot string, ramdisk Ramdisk) *Machine {
	f, err := os.Create(filepath.Join(t.TempDir(), "disk0.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(DiskSize); err != nil {
		t.Fatal(err)
	}
	m := &Machine{
		t: t, disk: f, configRoot: configRoot, ramdisk: ramdisk, power: provisioner.PowerOff,
		ip: net.IPv4(127, byte(64+rand.IntN(64)), byte(rand.IntN(250)+1), byte(rand.IntN(250)+1)),
	}
	t.Cleanup(func() {
		m.stop()
		f.Close()
	})
	return m
}

// IP is the machine's address; its ramdisk listens there.
func (m *Machine) IP() net.IP { return m.ip }

// MAC is its PXE port's address.
func (m *Machine) MAC() string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", m.ip[13], m.ip[14], m.ip[15])
}

// Disk is the machine's disk.
func (m *Machine) Disk() *os.File { return m.disk }

// TempDir is a directory for the machine's ramdisk, removed with the test.
func (m *Machine) TempDir() string { return m.t.TempDir() }

// NodeUUID is the node the machine is enrolled as.
func (m *Machine) NodeUUID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodeUUID
}

// SetFaults makes the machine misbehave from its next boot on.
func (m *Machine) SetFaults(f Faults) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = f
}

// Faults returns what SetFaults set.
func (m *Machine) Faults() Faults {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.faults
}

// Inspect reads the machine's disk as the tests check it.
func (m *Machine) Inspect(t testing.TB) *disk.Inspection {
	t.Helper()
	in, err := disk.Inspect(m.disk, DiskSize)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// stop ends a running ramdisk and waits for it.
func (m *Machine) stop() {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.cancel, m.done = nil, nil
	m.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// PowerState is what the BMC reports.
func (m *Machine) PowerState() provisioner.PowerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.power
}

// PowerOn boots the machine (again, when it is on: a reset) from its boot
// device; a one-time boot device is used up.
func (m *Machine) PowerOn() {
	m.stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.power = provisioner.PowerOn
	dev := m.bootDev
	if !dev.Persistent {
		m.bootDev = drivers.BootDevice{}
		m.flags = [5]byte{}
	}
	switch dev.Device {
	case "pxe":
		m.pxeBoot()
	case "disk":
		m.booted = append(m.booted, "disk")
	default:
		m.booted = append(m.booted, "nothing")
	}
}

// PowerOnIfOff powers the machine on unless it is on.
func (m *Machine) PowerOnIfOff() {
	if m.PowerState() != provisioner.PowerOn {
		m.PowerOn()
	}
}

// PowerOff cuts the power.
func (m *Machine) PowerOff() {
	m.stop()
	m.mu.Lock()
	m.power = provisioner.PowerOff
	m.mu.Unlock()
}

// PowerOffFromOS is the machine's OS powering it off (the agent's
// standby.power_off): called from its Ramdisk, it ends the Ramdisk's
// context without waiting for it. A machine DeafToPowerOff ignores it.
func (m *Machine) PowerOffFromOS() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.faults.DeafToPowerOff {
		return
	}
	m.power = provisioner.PowerOff
	m.softOffs++
	if m.cancel != nil {
		m.cancel()
	}
}

// SoftOffs counts the power offs the machine's OS did.
func (m *Machine) SoftOffs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.softOffs
}

// BootDevice is the device the BMC boots next.
func (m *Machine) BootDevice() drivers.BootDevice {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bootDev
}

// SetBootDevice sets it.
func (m *Machine) SetBootDevice(dev drivers.BootDevice) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bootDev = dev
}

// BootFlags is IPMI's boot option parameter 5 as the BMC stores it.
func (m *Machine) BootFlags() [5]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flags
}

// SetBootFlags stores parameter 5 and the boot device it selects.
func (m *Machine) SetBootFlags(f [5]byte, dev drivers.BootDevice) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flags = f
	m.bootDev = dev
}

// pxeBoot reads the config the firmware would fetch and boots its default
// label. Called with m.mu held.
func (m *Machine) pxeBoot() {
	cfg, err := os.ReadFile(filepath.Join(m.configRoot, m.nodeUUID, "config"))
	if err != nil {
		m.booted = append(m.booted, "pxe: no config")
		return
	}
	label, kernel, appendLine := DefaultLabel(string(cfg))
	if label != "deploy" {
		m.booted = append(m.booted, fmt.Sprintf("pxe %s %s %s", label, kernel, appendLine))
		return
	}
	m.booted = append(m.booted, "pxe deploy")
	if m.faults.Silent || m.ramdisk == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.cancel, m.done = cancel, done
	go func() {
		defer close(done)
		if err := m.ramdisk(ctx, m, appendLine); err != nil && ctx.Err() == nil {
			m.mu.Lock()
			m.runErr = append(m.runErr, err)
			m.mu.Unlock()
		}
	}()
}

// Console is where a Ramdisk writes its console.
func (m *Machine) Console() *ConsoleWriter { return &ConsoleWriter{m} }

// ConsoleWriter appends to a machine's console log.
type ConsoleWriter struct{ m *Machine }

// Write appends p. A Ramdisk runs in its own goroutine, never under the
// machine's lock, so taking it here cannot deadlock.
func (c *ConsoleWriter) Write(p []byte) (int, error) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	return c.m.console.Write(p)
}

// ConsoleText is what the ramdisk printed.
func (m *Machine) ConsoleText() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.console.String()
}

// Booted lists what each power on booted: "pxe deploy", "pxe boot …"
// (the instance's label), "disk", "nothing".
func (m *Machine) Booted() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.booted...)
}

// LastBoot is the last of Booted, "" before the first.
func (m *Machine) LastBoot() string {
	b := m.Booted()
	if len(b) == 0 {
		return ""
	}
	return b[len(b)-1]
}

func (m *Machine) dump() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("boots %q, ramdisk errors %v, console:\n%s", m.booted, m.runErr, m.console.String())
}

// DefaultLabel parses a PXE config, pxelinux or iPXE script: its default
// label, that label's kernel and its kernel command line (iPXE settings
// such as ${ip}, which a real ROM expands, left out).
func DefaultLabel(cfg string) (label, kernel, appendLine string) {
	if strings.HasPrefix(cfg, "#!ipxe") {
		return ipxeDefault(cfg)
	}
	cur := ""
	for _, line := range strings.Split(cfg, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToLower(f[0]) {
		case "default":
			label = f[1]
		case "label":
			cur = f[1]
		case "kernel":
			if cur == label {
				kernel = f[1]
			}
		case "append":
			if cur == label {
				appendLine = strings.Join(f[1:], " ")
			}
		}
	}
	return label, kernel, appendLine
}

// ipxeDefault follows an iPXE script's first goto to its kernel line.
func ipxeDefault(script string) (label, kernel, appendLine string) {
	lines := strings.Split(script, "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "goto ") {
			label = strings.TrimPrefix(l, "goto ")
			break
		}
	}
	in := false
	for _, l := range lines {
		if strings.HasPrefix(l, ":") {
			in = l == ":"+label
			continue
		}
		if in && strings.HasPrefix(l, "kernel ") {
			l, _, _ = strings.Cut(l, " || ")
			f := strings.Fields(l)[1:]
			var params []string
			for _, w := range f[1:] {
				if !strings.Contains(w, "${") {
					params = append(params, w)
				}
			}
			if label == "boot_partition" {
				label = "boot"
			}
			return label, f[0], strings.Join(params, " ")
		}
	}
	return label, "", ""
}

// BMC is the fake BMC over every machine of a Bed, by node: the power
// and management interfaces of the Bed's hardware type.
type BMC struct {
	mu       sync.Mutex
	machines map[string]*Machine
}

var (
	_ drivers.PowerInterface      = (*BMC)(nil)
	_ drivers.ManagementInterface = (*BMC)(nil)
)

// Attach makes m the machine of node uuid.
func (b *BMC) Attach(uuid string, m *Machine) {
	m.mu.Lock()
	m.nodeUUID = uuid
	m.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.machines == nil {
		b.machines = map[string]*Machine{}
	}
	b.machines[uuid] = m
}

// Machine returns node uuid's machine, nil if none.
func (b *BMC) Machine(uuid string) *Machine {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.machines[uuid]
}

func (b *BMC) get(node *provisioner.Node) (*Machine, error) {
	if m := b.Machine(node.UUID); m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("no machine for node %s", node.UUID)
}

// Validate accepts any node.
func (b *BMC) Validate(context.Context, *provisioner.Node) error { return nil }

// GetPowerState reads the machine's power.
func (b *BMC) GetPowerState(_ context.Context, node *provisioner.Node) (provisioner.PowerState, error) {
	m, err := b.get(node)
	if err != nil {
		return "", err
	}
	return m.PowerState(), nil
}

// SetPowerState powers the machine on (if off) or off.
func (b *BMC) SetPowerState(_ context.Context, node *provisioner.Node, target provisioner.PowerState) error {
	m, err := b.get(node)
	if err != nil {
		return err
	}
	switch target {
	case provisioner.PowerOn:
		m.PowerOnIfOff()
	case provisioner.PowerOff, provisioner.SoftPowerOff:
		m.PowerOff()
	default:
		return fmt.Errorf("power %s", target)
	}
	return nil
}

// Reboot resets the machine.
func (b *BMC) Reboot(_ context.Context, node *provisioner.Node, _ bool) error {
	m, err := b.get(node)
	if err != nil {
		return err
	}
	m.PowerOn()
	return nil
}

// SupportedBootDevices are pxe and disk.
func (b *BMC) SupportedBootDevices(context.Context, *provisioner.Node) ([]string, error) {
	return []string{"pxe", "disk"}, nil
}

// GetBootDevice reads the machine's boot device.
func (b *BMC) GetBootDevice(_ context.Context, node *provisioner.Node) (drivers.BootDevice, error) {
	m, err := b.get(node)
	if err != nil {
		return drivers.BootDevice{}, err
	}
	return m.BootDevice(), nil
}

// SetBootDevice sets it.
func (b *BMC) SetBootDevice(_ context.Context, node *provisioner.Node, dev drivers.BootDevice) error {
	m, err := b.get(node)
	if err != nil {
		return err
	}
	m.SetBootDevice(dev)
	return nil
}
