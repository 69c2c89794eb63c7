package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sys/unix"
)

// NetworkConfig describes a boot network.
type NetworkConfig struct {
	// Name makes the device names: namespace "mb-NAME", bridge
	// "mbbr-NAME", veth "mbh-NAME" (bridge port) and "mbn-NAME" (in the
	// namespace). Lower-case letters and digits, at most 10. Required.
	Name string
	// Addr is the provisioner's address and prefix in the namespace, e.g.
	// 10.233.7.1/24. Required.
	Addr netip.Prefix
	// IP is the iproute2 `ip` program; default "ip" from PATH.
	IP string
}

// Network is a bridge the VMs' NICs join and the namespace holding the
// provisioner's end of it (see the package documentation).
type Network struct {
	cfg    NetworkConfig
	NS     string // network namespace name, under /run/netns
	Bridge string // bridge in the root namespace, for <interface type='bridge'>
	Iface  string // the provisioner's interface inside NS
	host   string // the veth end on the bridge
}

var netNameRE = regexp.MustCompile(`^[a-z0-9]{1,10}$`)

// CreateNetwork removes what a previous run with the same name left, then
// creates the namespace, the bridge and the veth pair. It needs root
// (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2.
func CreateNetwork(ctx context.Context, cfg NetworkConfig) (*Network, error) {
	if !netNameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("network name %q: want 1-10 lower-case letters and digits", cfg.Name)
	}
	if !cfg.Addr.IsValid() || !cfg.Addr.Addr().Is4() {
		return nil, fmt.Errorf("network %s: address %v: want an IPv4 prefix such as 10.233.7.1/24", cfg.Name, cfg.Addr)
	}
	if cfg.IP == "" {
		cfg.IP = "ip"
	}
	n := &Network{
		cfg:    cfg,
		NS:     "mb-" + cfg.Name,
		Bridge: "mbbr-" + cfg.Name,
		Iface:  "mbn-" + cfg.Name,
		host:   "mbh-" + cfg.Name,
	}
	n.remove(ctx) // a stale run's leftovers
	steps := [][]string{
		{"netns", "add", n.NS},
		{"link", "add", n.Bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"link", "add", n.host, "type", "veth", "peer", "name", n.Iface, "netns", n.NS},
	}
	for _, s := range steps {
		if err := n.ip(ctx, s...); err != nil {
			n.remove(ctx)
			return nil, err
		}
	}
	// The root-namespace devices carry no address of either family: the
	// host takes no part in the boot network.
	for _, dev := range []string{n.Bridge, n.host} {
		if err := disableIPv6(dev); err != nil {
			n.remove(ctx)
			return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
		}
	}
	steps = [][]string{
		{"link", "set", n.host, "master", n.Bridge, "up"},
		{"link", "set", n.Bridge, "up"},
		{"-n", n.NS, "link", "set", "lo", "up"},
		{"-n", n.NS, "addr", "add", cfg.Addr.String(), "dev", n.Iface},
		{"-n", n.NS, "link", "set", n.Iface, "up"},
	}
	for _, s := range steps {
		if err := n.ip(ctx, s...); err != nil {
			n.remove(ctx)
			return nil, err
		}
	}
	return n, nil
}

// Addr is the provisioner's address on the network.
func (n *Network) Addr() netip.Addr { return n.cfg.Addr.Addr() }

// Prefix is the network's subnet.
func (n *Network) Prefix() netip.Prefix { return n.cfg.Addr.Masked() }

// Close removes the namespace, the veth pair and the bridge. Sockets opened
// in the namespace keep working until closed, on a link that is gone.
func (n *Network) Close() error {
	return n.remove(context.Background())
}

// remove deletes the devices and the namespace, whichever exist.
func (n *Network) remove(ctx context.Context) error {
	var errs []error
	if linkExists(n.host) {
		errs = append(errs, n.ip(ctx, "link", "del", n.host))
	}
	if linkExists(n.Bridge) {
		errs = append(errs, n.ip(ctx, "link", "del", n.Bridge))
	}
	if _, err := os.Stat(filepath.Join("/run/netns", n.NS)); err == nil {
		errs = append(errs, n.ip(ctx, "netns", "del", n.NS))
	}
	return errors.Join(errs...)
}

func (n *Network) ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, n.cfg.IP, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(dev string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", dev))
	return err == nil
}

func disableIPv6(dev string) error {
	p := filepath.Join("/proc/sys/net/ipv6/conf", dev, "disable_ipv6")
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("disable IPv6 on %s: %w", dev, err)
	}
	return nil
}

// Do runs fn on an OS thread that has joined the network's namespace.
// Sockets fn creates belong to the namespace for life. The thread is
// discarded afterwards, never returned to the Go scheduler.
func (n *Network) Do(fn func() error) error {
	return inNamespace(n.NS, fn)
}

// NamespaceDialer dials from inside the named network namespace (under
// /run/netns, e.g. a boot network's "mb-NAME" another process created):
// for a client on the host that talks to a server listening there, such
// as a provisioner run with `ip netns exec`. Each connection keeps the
// namespace for life. Needs CAP_SYS_ADMIN.
func NamespaceDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNamespace(ns, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// inNamespace runs fn on an OS thread that has joined network namespace ns
// (see Network.Do); fn's error is returned as is.
func inNamespace(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// ListenPacket opens a packet socket inside the namespace (see
// net.ListenPacket), e.g. ("udp4", "10.233.7.1:69").
func (n *Network) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Listen opens a stream listener inside the namespace (see net.Listen).
func (n *Network) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenDHCP opens the DHCP server's socket inside the namespace: UDP port
// 67 on all addresses, bound to the provisioner's interface, broadcast on,
// so it hears clients without an address and can answer them.
func (n *Network) ListenDHCP() (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = server4.NewIPv4UDPConn(n.Iface, &net.UDPAddr{IP: net.IPv4zero, Port: 67})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("network %s: dhcp socket: %w", n.cfg.Name, err)
	}
	return c, nil
}

// Command is a command that runs inside the network's namespace
// (`ip netns exec`), e.g. `metalbed netboot serve`: every socket the
// program opens, also one per TFTP transfer, belongs to the namespace.
func (n *Network) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, n.cfg.IP, append([]string{"netns", "exec", n.NS, name}, args...)...)
}

// DialContext connects from inside the namespace (see net.Dialer), e.g. to
// a VM's ramdisk. The connection keeps the namespace for life.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return NamespaceDialer(n.NS)(ctx, network, addr)
}
