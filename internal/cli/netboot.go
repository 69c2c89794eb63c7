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
// on their own, each configured by its flags, for a lab network or to boot
// a machine by hand (a provisioner runs them itself: service.BootServers).
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

	var ls listeners
	defer ls.close()
	// Every socket is open before any server starts.
	var serve []func(context.Context) error
	if *dhcpAddr != "" {
		cfg, err := netbootDHCPConfig(*dhcpAddr, *serverIP, *rangeFlag, *subnet, *router, *nextServer, *ipxeScript, *biosBoot, *uefiBoot, hostMACs, *answerUnknown)
		if err != nil {
			return err
		}
		cfg.LeaseTime, cfg.LeaseFile, cfg.Logger = *leaseTime, *leaseFile, log
		srv, err := dhcp.New(cfg)
		if err != nil {
			return err
		}
		conn, err := listenDHCP(*dhcpAddr, *dhcpIface)
		if err != nil {
			return err
		}
		ls = append(ls, conn)
		serve = append(serve, func(ctx context.Context) error { return srv.Serve(ctx, conn) })
		fmt.Fprintf(s.Out, "dhcp  %s  server %s  range %s-%s  %d host(s)\n", conn.LocalAddr(), cfg.ServerIP, cfg.First, cfg.Last, len(hostMACs))
	}
	if *tftpRoot != "" {
		srv, err := tftp.New(tftp.Config{Root: *tftpRoot, Logger: log})
		if err != nil {
			return err
		}
		conn, err := ls.listenPacket(*tftpAddr)
		if err != nil {
			return fmt.Errorf("tftp: listen %s: %w", *tftpAddr, err)
		}
		serve = append(serve, func(ctx context.Context) error { return srv.Serve(ctx, conn) })
		fmt.Fprintf(s.Out, "tftp  %s  root %s\n", conn.LocalAddr(), *tftpRoot)
	}
	if *httpRoot != "" {
		srv, err := httpboot.New(httpboot.Config{Root: *httpRoot, Logger: log})
		if err != nil {
			return err
		}
		ln, err := ls.listen("tcp4", *httpAddr)
		if err != nil {
			return fmt.Errorf("http: listen %s: %w", *httpAddr, err)
		}
		serve = append(serve, func(ctx context.Context) error { return srv.Serve(ctx, ln) })
		fmt.Fprintf(s.Out, "http  http://%s/  root %s\n", ln.Addr(), *httpRoot)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, f := range serve {
		g.Go(func() error { return f(gctx) })
	}
	return g.Wait()
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
