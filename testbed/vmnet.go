package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// The boot servers' ports inside a real-VM boot network: the standard
// ones, since the namespace is metalbed's own.
const (
	vmTFTPPort = 69
	vmHTTPPort = 8080
	vmAPIPort  = 6385
)

// listenVMNet opens the boot servers' sockets inside the real VMs' boot
// network: DHCP on the namespace's interface (port 67, broadcast), TFTP
// answering from its one socket (a per-transfer socket would open outside
// the namespace), HTTP, and the API's second listener for ramdisks,
// proxied to the API on loopback. The DHCP pool is the network's
// .100-.250.
func (b *bed) listenVMNet() error {
	nw := b.vmNet
	server := nw.Addr()
	pool, err := vmPool(nw.Prefix(), server)
	if err != nil {
		return err
	}
	if b.dhcpConn, err = nw.ListenDHCP(); err != nil {
		return err
	}
	if b.tftpConn, err = nw.ListenPacket("udp4", netip.AddrPortFrom(server, vmTFTPPort).String()); err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	if b.httpLn, err = nw.Listen("tcp4", netip.AddrPortFrom(server, vmHTTPPort).String()); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	if b.vmAPILn, err = nw.Listen("tcp4", netip.AddrPortFrom(server, vmAPIPort).String()); err != nil {
		return fmt.Errorf("provisioner API in the boot network: %w", err)
	}
	b.boot = service.BootServers{DHCPConn: b.dhcpConn, TFTPConn: b.tftpConn, HTTPListener: b.httpLn,
		DHCPServerIP: server, DHCPRange: pool.First.String() + "-" + pool.Last.String(), DHCPSubnet: pool.Subnet,
		TFTPSinglePort: true}
	return nil
}

// vmPool is the DHCP pool of a boot network: .100-.250 of a /24 (or the
// same offsets of a larger prefix), never the server's own address.
func vmPool(prefix netip.Prefix, server netip.Addr) (dhcp.Pool, error) {
	if prefix.Bits() > 24 {
		return dhcp.Pool{}, fmt.Errorf("boot network %s: want a /24 or larger", prefix)
	}
	base := prefix.Masked().Addr().As4()
	first, last := base, base
	first[3], last[3] = 100, 250
	p := dhcp.Pool{Subnet: prefix.Masked(), First: netip.AddrFrom4(first), Last: netip.AddrFrom4(last)}
	if s := server.As4(); s[3] >= 100 && s[3] <= 250 && s[2] == base[2] {
		return dhcp.Pool{}, fmt.Errorf("boot network %s: the server address %s lies in the pool %s-%s", prefix, server, p.First, p.Last)
	}
	return p, nil
}

// ramdiskAPIURL is the API as ramdisks and agents reach it: inside the
// boot network for real VMs, else the loopback API.
func (b *bed) ramdiskAPIURL() string {
	if b.vmAPILn != nil {
		return "http://" + b.vmAPILn.Addr().String()
	}
	return b.apiURL()
}

// appendParams is pxe_append_params: real VMs' kernels also write to the
// serial console, which is what their console log records; "" (Ironic's
// default) for simulated machines.
func (b *bed) appendParams() string {
	if b.vmNet != nil {
		return "nofb nomodeset vga=normal console=ttyS0,115200"
	}
	return ""
}

// dialContext is how the conductor reaches ramdisks, agents and image
// URLs: from inside the boot network for its addresses, else as usual.
// nil for simulated machines (the packages' default dialers).
func (b *bed) dialContext() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if b.vmNet == nil {
		return nil
	}
	return bootNetDial(b.vmNet)
}

// bootNetDial dials addresses of boot network nw from inside its
// namespace, any other address as usual.
func bootNetDial(nw *libvirt.Network) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ap, err := netip.ParseAddrPort(addr); err == nil && nw.Prefix().Contains(ap.Addr().Unmap()) {
			return nw.DialContext(ctx, network, addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// vmHooks opens every machine as a VM on boot network nw, for a testbed
// without the provisioner: the BMCs record into rec (nil: nowhere) and ask
// faults (nil: none), and
// whoever provisions the VMs serves their DHCP and boot files from inside
// nw's namespace; the images the BMCs insert are fetched through
// bootNetDial.
func vmHooks(nw *libvirt.Network, rec events.Recorder, faults fault.Injector) func(name string) nodeHooks {
	dial := bootNetDial(nw)
	return func(string) nodeHooks {
		return nodeHooks{bmcEvents: rec, bmcFaults: faults, vm: func(p Machine, dir string) (fleetMachine, error) { return openVM(nw, dial, p, dir) }}
	}
}

// serveVMAPI relays connections to the API's boot-network listener to the
// API on loopback until ctx ends. The API learns each VM's address through
// apiPeer (b.vmPeers): a lookup pins the agent's callback_url to it.
func (b *bed) serveVMAPI(ctx context.Context) error {
	return relayTCP(ctx, b.vmAPILn, b.apiLn.Addr().String(), "provisioner API in the boot network", &b.vmPeers, b.log)
}

// relayTCP accepts connections on ln (a listener in a boot network) and
// relays each to target (a loopback address in the root namespace) until
// ctx ends; what names ln in errors and logs. peers, when not nil, maps
// each relayed connection's local address on the loopback side to the
// boot-network client it carries, while it lasts.
func relayTCP(ctx context.Context, ln net.Listener, target, what string, peers *sync.Map, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			var d net.Dialer
			up, err := d.DialContext(ctx, "tcp4", target)
			if err != nil {
				log.Warn(what+" relay", "err", err)
				return
			}
			defer up.Close()
			if peers != nil {
				peers.Store(up.LocalAddr().String(), c.RemoteAddr().String())
				defer peers.Delete(up.LocalAddr().String())
			}
			done := make(chan struct{})
			go func() {
				io.Copy(up, c)
				up.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			select {
			case <-done:
			case <-ctx.Done():
			}
		}()
	}
}

// apiPeer is the service's APIPeer: the VM behind a connection
// serveVMAPI relays, else the connection's own remote address.
func (b *bed) apiPeer(remoteAddr string) string {
	if vm, ok := b.vmPeers.Load(remoteAddr); ok {
		return vm.(string)
	}
	return remoteAddr
}

// realRamdisk locates the deploy kernel and ramdisk real VMs boot.
func realRamdisk(dir string) (kernel, initramfs string, err error) {
	kernel, initramfs = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs")
	for _, p := range []string{kernel, initramfs} {
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", "", configError("%s is missing: real VMs boot the ramdisk `metalbed ramdisk build --out %s` makes", p, dir)
			}
			return "", "", err
		}
	}
	return kernel, initramfs, nil
}

// openVM opens machine p as a libvirt VM on the boot network: its disk and
// serial log under dir/<name>/, its domain named metalbed-<network>-<name>;
// the images its BMC inserts as virtual media are fetched with dial (the
// HTTP boot server listens in the boot network).
func openVM(nw *libvirt.Network, dial func(ctx context.Context, network, addr string) (net.Conn, error), p Machine, dir string) (fleetMachine, error) {
	mdir := filepath.Join(dir, p.Name)
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	if len(p.MACs) == 0 {
		return nil, fmt.Errorf("machine %s: no NIC", p.Name)
	}
	m, err := libvirt.Open(libvirt.Config{
		Name: vmDomainName(nw, p.Name), MAC: p.MACs[0], Bridge: nw.Bridge,
		Disk: filepath.Join(mdir, "disk.img"), DiskBytes: p.DiskBytes,
		SerialLog: filepath.Join(mdir, "console.log"), BootMode: p.BootMode,
		Dial: dial,
	})
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	fm, ok := m.(fleetMachine)
	if !ok {
		m.Close()
		return nil, fmt.Errorf("machine %s: the libvirt machine lacks BootMode/ConsoleLog", p.Name)
	}
	vm := namedVM{fm, p.Name}
	if mm, ok := m.(vms.MediaMachine); ok {
		return mediaVM{vm, mm}, nil
	}
	return vm, nil
}

// namedVM is a VM known by its machine name (node-0), not its domain's.
type namedVM struct {
	fleetMachine
	name string
}

func (v namedVM) Name() string { return v.name }

// Remove closes the VM and undefines its domain (libvirt.Machine.Remove).
func (v namedVM) Remove() error {
	if r, ok := v.fleetMachine.(interface{ Remove() error }); ok {
		return r.Remove()
	}
	return v.Close()
}

// mediaVM is a namedVM with a virtual CD drive (libvirt.Machine's), which
// the machine's Redfish BMC inserts images into.
type mediaVM struct {
	namedVM
	media vms.MediaMachine
}

var _ vms.MediaMachine = mediaVM{}

func (v mediaVM) InsertMedia(ctx context.Context, dev vms.MediaDevice, imageURL string) error {
	return v.media.InsertMedia(ctx, dev, imageURL)
}

func (v mediaVM) EjectMedia(ctx context.Context, dev vms.MediaDevice) error {
	return v.media.EjectMedia(ctx, dev)
}

func (v mediaVM) Media(ctx context.Context, dev vms.MediaDevice) (string, error) {
	return v.media.Media(ctx, dev)
}

// vmDomainName names a machine's libvirt domain.
func vmDomainName(nw *libvirt.Network, name string) string {
	return "metalbed-" + nw.NS + "-" + name
}

// fleetMachine is what `up` needs of a machine, simulated or a VM.
type fleetMachine interface {
	vms.Machine
	BootMode() vms.BootMode
	ConsoleLog() string
}

// createBootNetwork creates the boot network of the bed whose state is in
// dir: named after dir (a second bed on another state dir gets its own),
// with the provisioner at addr.
func createBootNetwork(ctx context.Context, dir string, pfx netip.Prefix) (*libvirt.Network, error) {
	sum := sha256.Sum256([]byte(dir))
	nw, err := libvirt.CreateNetwork(ctx, libvirt.NetworkConfig{Name: "b" + hex.EncodeToString(sum[:])[:7], Addr: pfx})
	if err != nil {
		return nil, fmt.Errorf("boot network: %w", err)
	}
	return nw, nil
}
