package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/tftp"
)

// listFlag is a repeatable flag; each value may also hold a comma list
// (so METALBED_HOST="mac1,mac2" works).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// runNetbootServe runs the provisioner's DHCP, TFTP and HTTP boot servers
// on their own, for a lab network or to boot a machine by hand.
func runNetbootServe(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("netboot serve", s)
	tftpRoot := fs.String("tftp-root", "", "directory served over TFTP (\"\" = no TFTP server)")
	tftpAddr := fs.String("tftp-addr", "127.0.0.1:69", "TFTP listen address (port 69 needs root)")
	httpRoot := fs.String("http-root", "", "directory served over HTTP (\"\" = no HTTP server)")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "HTTP listen address")
	dhcpAddr := fs.String("dhcp-addr", "", "DHCP listen address, e.g. 0.0.0.0:67 (port 67 needs root); \"\" = no DHCP server")
	dhcpIface := fs.String("dhcp-iface", "", "bind the DHCP socket to this interface (needed for broadcast replies on a real link)")
	serverIP := fs.String("server-ip", "", "this server's address on the boot network (default: host of --dhcp-addr)")
	rangeFlag := fs.String("range", "", "dynamic range FIRST-LAST, e.g. 192.0.2.100-192.0.2.199 (required with --dhcp-addr)")
	subnet := fs.String("subnet", "", "boot network, e.g. 192.0.2.0/24 (default: the /24 holding --range)")
	router := fs.String("router", "", "default gateway sent as option 3 (default none)")
	nextServer := fs.String("next-server", "", "TFTP server sent as siaddr/option 66 (default --server-ip)")
	leaseTime := fs.Duration("lease-time", time.Hour, "DHCP lease time")
	leaseFile := fs.String("lease-file", "", "file the leases persist in (\"\" = memory only)")
	biosBoot := fs.String("bios-boot", "pxelinux.0", "boot file for BIOS PXE clients (arch 0)")
	uefiBoot := fs.String("uefi-boot", "ipxe.efi", "boot file for x86-64 UEFI clients (arch 7, 9)")
	ipxeScript := fs.String("ipxe-script", "", "URL given to iPXE clients, e.g. http://192.0.2.1:8080/boot.ipxe")
	answerUnknown := fs.Bool("answer-unknown", false, "answer MACs not listed with --host")
	var hostMACs listFlag
	fs.Var(&hostMACs, "host", "MAC address to answer (repeatable or comma-separated)")
	verbose := fs.Bool("verbose", false, "log every packet")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tftpRoot == "" && *httpRoot == "" && *dhcpAddr == "" {
		return usageError("nothing to serve: give --dhcp-addr, --tftp-root or --http-root")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: level}))

	var bs bootServers
	defer bs.close()
	if *dhcpAddr != "" {
		cfg, err := netbootDHCPConfig(*dhcpAddr, *serverIP, *rangeFlag, *subnet, *router, *nextServer, *ipxeScript, *biosBoot, *uefiBoot, hostMACs, *answerUnknown)
		if err != nil {
			return err
		}
		cfg.LeaseTime, cfg.LeaseFile, cfg.Logger = *leaseTime, *leaseFile, log
		if err := bs.listenDHCP(cfg, *dhcpAddr, *dhcpIface); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "dhcp  %s  server %s  range %s-%s  %d host(s)\n", bs.dhcpConn.LocalAddr(), cfg.ServerIP, cfg.First, cfg.Last, len(hostMACs))
	}
	if *tftpRoot != "" {
		if err := bs.listenTFTP(tftp.Config{Root: *tftpRoot, Logger: log}, *tftpAddr); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "tftp  %s  root %s\n", bs.tftpConn.LocalAddr(), *tftpRoot)
	}
	if *httpRoot != "" {
		if err := bs.listenHTTP(httpboot.Config{Root: *httpRoot, Logger: log}, *httpAddr); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "http  %s/  root %s\n", bs.httpURL(), *httpRoot)
	}
	return bs.serve(ctx)
}

// bootServers are the provisioner's DHCP, TFTP and HTTP boot servers with
// their sockets: `netboot serve` runs the ones it is given, `up` and `demo`
// all three beside the provisioner.
type bootServers struct {
	dhcp     *dhcp.Server
	dhcpConn net.PacketConn
	tftp     *tftp.Server
	tftpConn net.PacketConn
	http     *httpboot.Server
	httpLn   net.Listener
}

// listenDHCP builds the DHCP server and opens its socket.
func (b *bootServers) listenDHCP(cfg dhcp.Config, addr, iface string) error {
	srv, err := dhcp.New(cfg)
	if err != nil {
		return err
	}
	conn, err := listenDHCP(addr, iface)
	if err != nil {
		return err
	}
	b.dhcp, b.dhcpConn = srv, conn
	return nil
}

// listenTFTP builds the TFTP server and opens its socket.
func (b *bootServers) listenTFTP(cfg tftp.Config, addr string) error {
	srv, err := tftp.New(cfg)
	if err != nil {
		return err
	}
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return fmt.Errorf("tftp: listen %s: %w", addr, err)
	}
	b.tftp, b.tftpConn = srv, conn
	return nil
}

// listenHTTP builds the HTTP boot server and opens its listener.
func (b *bootServers) listenHTTP(cfg httpboot.Config, addr string) error {
	srv, err := httpboot.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", addr, err)
	}
	b.http, b.httpLn = srv, ln
	return nil
}

// httpURL is the HTTP boot server's base URL, without a trailing slash.
func (b *bootServers) httpURL() string { return "http://" + b.httpLn.Addr().String() }

// tftpPort is the TFTP server's UDP port.
func (b *bootServers) tftpPort() int { return b.tftpConn.LocalAddr().(*net.UDPAddr).Port }

// serve runs the servers that were opened until ctx ends; the first that
// fails stops the others.
func (b *bootServers) serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if b.dhcp != nil {
		g.Go(func() error { return b.dhcp.Serve(ctx, b.dhcpConn) })
	}
	if b.tftp != nil {
		g.Go(func() error { return b.tftp.Serve(ctx, b.tftpConn) })
	}
	if b.http != nil {
		g.Go(func() error { return b.http.Serve(ctx, b.httpLn) })
	}
	return g.Wait()
}

// close closes the sockets (Serve closes them too when ctx ends; closing
// twice is harmless).
func (b *bootServers) close() {
	if b.dhcpConn != nil {
		b.dhcpConn.Close()
	}
	if b.tftpConn != nil {
		b.tftpConn.Close()
	}
	if b.httpLn != nil {
		b.httpLn.Close()
	}
}

// netbootDHCPConfig builds the DHCP server's Config from flags.
func netbootDHCPConfig(addr, serverIP, rng, subnet, router, nextServer, ipxeScript, biosBoot, uefiBoot string, macs []string, answerUnknown bool) (dhcp.Config, error) {
	var cfg dhcp.Config
	if serverIP == "" {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || ap.Addr().IsUnspecified() {
			return cfg, usageError("--server-ip is required when --dhcp-addr %q names no address", addr)
		}
		serverIP = ap.Addr().String()
	}
	var err error
	if cfg.ServerIP, err = netip.ParseAddr(serverIP); err != nil {
		return cfg, usageError("--server-ip: %v", err)
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return cfg, usageError("--range must be FIRST-LAST, got %q", rng)
	}
	if cfg.First, err = netip.ParseAddr(strings.TrimSpace(first)); err != nil {
		return cfg, usageError("--range: %v", err)
	}
	if cfg.Last, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil {
		return cfg, usageError("--range: %v", err)
	}
	if subnet == "" {
		cfg.Subnet, err = cfg.First.Prefix(24)
	} else {
		cfg.Subnet, err = netip.ParsePrefix(subnet)
	}
	if err != nil {
		return cfg, usageError("--subnet: %v", err)
	}
	if router != "" {
		if cfg.Router, err = netip.ParseAddr(router); err != nil {
			return cfg, usageError("--router: %v", err)
		}
	}
	if nextServer != "" {
		if cfg.NextServer, err = netip.ParseAddr(nextServer); err != nil {
			return cfg, usageError("--next-server: %v", err)
		}
	}
	boot := dhcp.Host{BIOSBootFile: biosBoot, UEFIBootFile: uefiBoot, IPXEScript: ipxeScript}
	hosts := &dhcp.StaticHosts{}
	for _, m := range macs {
		mac, err := net.ParseMAC(m)
		if err != nil {
			return cfg, usageError("--host: %v", err)
		}
		hosts.Set(mac, boot)
	}
	if len(macs) == 0 && !answerUnknown {
		return cfg, usageError("no --host given and --answer-unknown not set: the DHCP server would answer nobody")
	}
	cfg.Hosts = hosts
	cfg.AnswerUnknown = answerUnknown
	cfg.UnknownHost = boot
	return cfg, nil
}

// listenDHCP opens the DHCP server socket: bound to an interface (with
// SO_BROADCAST and SO_REUSEADDR) when iface is set, else a plain UDP socket.
func listenDHCP(addr, iface string) (net.PacketConn, error) {
	if iface == "" {
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return nil, fmt.Errorf("dhcp: listen %s: %w", addr, err)
		}
		return conn, nil
	}
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, usageError("--dhcp-addr: %v", err)
	}
	conn, err := server4.NewIPv4UDPConn(iface, ua)
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen %s on %s: %w", addr, iface, err)
	}
	return conn, nil
}
