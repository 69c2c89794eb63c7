package ramdisk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// Machine is the real machine the ramdisk runs on as /init (PID 1) under a
// Linux kernel: disks from /sys/block, the NIC configured by DHCP (iPXE
// passes no ip=), and reset by reboot(2). NewMachine mounts what it needs.
type Machine struct {
	// IP is the address DHCP gave the boot NIC; the ramdisk listens on it.
	IP net.IP
	// Iface is the boot NIC's name (eth0).
	Iface string
	// Lease is the DHCP lease (siaddr is the boot server).
	Lease *nclient4.Lease

	mu   sync.Mutex
	devs map[string]*os.File
}

// MachineConfig configures NewMachine.
type MachineConfig struct {
	// MAC picks the boot NIC (BOOTIF=); nil => the first NIC that is not
	// loopback.
	MAC net.HardwareAddr
	// NICWait bounds the wait for the NIC to appear and for a lease;
	// default 2 min.
	NICWait time.Duration
	Console io.Writer // nil => discard
	Logger  *slog.Logger
}

// Mount mounts /proc, /sys and /dev (devtmpfs) as an init must before it
// can see its hardware. Already-mounted file systems are not an error.
func Mount() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	return nil
}

// NewMachine brings up loopback and the boot NIC and configures it by DHCP.
func NewMachine(ctx context.Context, cfg MachineConfig) (*Machine, error) {
	if cfg.NICWait == 0 {
		cfg.NICWait = 2 * time.Minute
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.NICWait)
	defer cancel()
	if err := ifUp("lo"); err != nil {
		return nil, err
	}
	if err := setAddr("lo", net.IPv4(127, 0, 0, 1), net.CIDRMask(8, 32)); err != nil {
		return nil, err
	}
	var iface string
	for {
		var err error
		if iface, err = bootNIC(cfg.MAC); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("find the boot NIC: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := ifUp(iface); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Console, "metalbed-ramdisk: DHCP on %s\n", iface)
	var lease *nclient4.Lease
	for attempt := 1; ; attempt++ {
		c, err := nclient4.New(iface, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(2))
		if err == nil {
			lease, err = c.Request(ctx)
			c.Close()
		}
		if err == nil {
			break
		}
		cfg.Logger.Warn("dhcp failed", "attempt", attempt, "err", err)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dhcp on %s: %w", iface, err)
		}
	}
	ack := lease.ACK
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	if err := setAddr(iface, ack.YourIPAddr, mask); err != nil {
		return nil, err
	}
	ones, _ := mask.Size()
	fmt.Fprintf(cfg.Console, "metalbed-ramdisk: %s is %s/%d (server %s)\n", iface, ack.YourIPAddr, ones, ack.ServerIPAddr)
	return &Machine{IP: ack.YourIPAddr, Iface: iface, Lease: lease, devs: map[string]*os.File{}}, nil
}

// bootNIC is the NIC with mac, or the first NIC that is not loopback.
func bootNIC(mac net.HardwareAddr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 || len(i.HardwareAddr) != 6 {
			continue
		}
		if mac == nil || i.HardwareAddr.String() == mac.String() {
			return i.Name, nil
		}
	}
	return "", errors.New("no ethernet interface yet")
}

func ifUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

func setAddr(name string, ip net.IP, mask net.IPMask) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	for _, s := range []struct {
		req uint
		v   []byte
	}{{unix.SIOCSIFADDR, ip.To4()}, {unix.SIOCSIFNETMASK, net.IP(mask).To4()}} {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(s.v); err != nil {
			return fmt.Errorf("address %v for %s: %w", s.v, name, err)
		}
		if err := unix.IoctlIfreq(fd, s.req, ifr); err != nil {
			return fmt.Errorf("set address %s/%s on %s: %w", ip, mask, name, err)
		}
	}
	return nil
}

// Disks lists /sys/block (loop, ram and zram devices and optical drives
// left out, as ironic-python-agent lists only lsblk's TYPE "disk": an
// empty virtual CD tray is no disk, nor is the virtual media the ramdisk
// booted from); each disk's Dev is /dev/<name> opened read-write once.
func (m *Machine) Disks(context.Context) ([]Disk, error) {
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || optical(n) {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var disks []Disk
	for _, n := range names {
		d, err := m.disk(n)
		if err != nil {
			return nil, err
		}
		if d.SizeBytes > 0 {
			disks = append(disks, d)
		}
	}
	return disks, nil
}

// optical reports whether /sys/block/name is a CD/DVD drive: sr*, or a
// SCSI device of type 5 (TYPE_ROM).
func optical(name string) bool {
	if strings.HasPrefix(name, "sr") {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "device", "type"))
	return err == nil && strings.TrimSpace(string(b)) == "5"
}

func (m *Machine) disk(sysName string) (Disk, error) {
	sys := filepath.Join("/sys/block", sysName)
	read := func(rel string) string {
		b, _ := os.ReadFile(filepath.Join(sys, rel))
		return strings.TrimSpace(string(b))
	}
	sectors, _ := strconv.ParseInt(read("size"), 10, 64)
	// cciss!c0d0 in sysfs is /dev/cciss/c0d0.
	name := strings.ReplaceAll(sysName, "!", "/")
	d := Disk{
		Name:       name,
		SizeBytes:  sectors * 512,
		Model:      read("device/model"),
		Vendor:     read("device/vendor"),
		Serial:     firstNonEmpty(read("serial"), read("device/serial")),
		WWN:        read("device/wwid"),
		Rotational: read("queue/rotational") == "1",
	}
	if d.SizeBytes == 0 {
		return d, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.devs[name]
	if !ok {
		var err error
		if f, err = os.OpenFile(filepath.Join("/dev", name), os.O_RDWR, 0); err != nil {
			return Disk{}, fmt.Errorf("open disk %s: %w", name, err)
		}
		m.devs[name] = f
	}
	d.Dev = blockFile{File: f, size: d.SizeBytes}
	return d, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// blockFile is an open block device of a known size.
type blockFile struct {
	*os.File
	size int64
}

func (b blockFile) Size() int64 { return b.size }

// Sync flushes writes to the device (the iSCSI target's SYNCHRONIZE CACHE).
func (b blockFile) Sync() error { return b.File.Sync() }

// Listen opens a TCP listener on the NIC's address.
func (m *Machine) Listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp4", net.JoinHostPort(m.IP.String(), strconv.Itoa(port)))
}

// Reboot syncs the disks and restarts the machine; it does not return
// unless reboot(2) fails.
func (m *Machine) Reboot(context.Context) error {
	m.syncDisks()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	select {}
}

// PowerOff syncs the disks and powers the machine off.
func (m *Machine) PowerOff() error {
	m.syncDisks()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	select {}
}

func (m *Machine) syncDisks() {
	m.mu.Lock()
	for _, f := range m.devs {
		f.Sync()
	}
	m.mu.Unlock()
	unix.Sync()
}
