package pxe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// DHCPConfig is one DHCP exchange of a booted OS bringing up its NIC (the
// ramdisk's udhcpc/dhclient after a boot from virtual media): no PXE
// options, so the server hands out an address and no boot file.
type DHCPConfig struct {
	// Server is where requests go (see ROM.DHCPServer); Client the
	// address the socket binds (see ROM.DHCPClient; default "0.0.0.0:68").
	Server, Client string
	MAC            net.HardwareAddr
	// Timeout is the first wait, doubled per retry (default 2 s); Tries
	// bounds the rounds (default 4).
	Timeout time.Duration
	Tries   int
}

// DHCP runs one DORA exchange as an OS's DHCP client.
func DHCP(ctx context.Context, cfg DHCPConfig) (Lease, error) {
	if cfg.Server == "" {
		return Lease{}, errors.New("dhcp: no server address")
	}
	if cfg.Client == "" {
		cfg.Client = "0.0.0.0:68"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Tries == 0 {
		cfg.Tries = 4
	}
	server, err := net.ResolveUDPAddr("udp4", cfg.Server)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp: server %q: %w", cfg.Server, err)
	}
	local, err := net.ResolveUDPAddr("udp4", cfg.Client)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp: client address %q: %w", cfg.Client, err)
	}
	c := &dhcpClient{mac: cfg.MAC, plain: true, server: server, local: local, timeout: cfg.Timeout, tries: cfg.Tries}
	l, err := c.exchange(ctx)
	if errors.Is(err, errNoOffer) {
		err = errors.New("no DHCP offers were received")
	}
	return l, err
}

// Lease is what the DHCP exchange gave the NIC.
type Lease struct {
	IP         net.IP
	Netmask    net.IPMask
	Router     net.IP
	ServerID   net.IP // the DHCP server that acknowledged
	NextServer net.IP // siaddr, or option 66 when it holds an address
	BootFile   string // option 67, else the file field
}

// String prints a lease the way a PXE ROM shows it.
func (l Lease) String() string {
	return fmt.Sprintf("IP %s next-server %s file %q", l.IP, l.NextServer, l.BootFile)
}

// dhcpClient runs one DORA exchange for one NIC as a PXE client: option 60
// PXEClient, 93 client architecture, 94 network interface identifier, 97
// machine UUID, and — when the ROM is iPXE — option 77 user class "iPXE".
type dhcpClient struct {
	mac     net.HardwareAddr
	uuid    [16]byte
	arch    iana.Arch
	ipxe    bool
	plain   bool         // an OS's client (the ramdisk's): no PXE options
	server  *net.UDPAddr // where requests go
	local   *net.UDPAddr // where the socket binds before there is a lease
	timeout time.Duration
	tries   int
}

var errNoOffer = errors.New("PXE-E51: No DHCP or proxyDHCP offers were received")

func (c *dhcpClient) modifiers() []dhcpv4.Modifier {
	if c.plain {
		return []dhcpv4.Modifier{
			dhcpv4.WithBroadcast(true),
			dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
				dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName),
		}
	}
	uuidOpt := append([]byte{0}, c.uuid[:]...)
	class := fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", uint16(c.arch))
	mods := []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true), // no address yet: a real client asks for broadcast replies
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(class)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(c.arch)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuidOpt),
		dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionVendorSpecificInformation,
			dhcpv4.OptionClassIdentifier, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName,
		),
	}
	if c.ipxe {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	}
	return mods
}

// exchange runs DISCOVER/OFFER/REQUEST/ACK, retrying with the ROM's backoff.
func (c *dhcpClient) exchange(ctx context.Context) (Lease, error) {
	conn, err := net.ListenUDP("udp4", c.local)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp socket on %s: %w", c.local, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	var lastErr error = errNoOffer
	wait := c.timeout
	for try := 0; try < c.tries; try++ {
		if ctx.Err() != nil {
			return Lease{}, ctx.Err()
		}
		lease, err := c.once(conn, wait)
		if err == nil {
			return lease, nil
		}
		if ctx.Err() != nil {
			return Lease{}, ctx.Err()
		}
		lastErr = err
		wait *= 2
	}
	return Lease{}, lastErr
}

func (c *dhcpClient) once(conn *net.UDPConn, wait time.Duration) (Lease, error) {
	discover, err := dhcpv4.NewDiscovery(c.mac, c.modifiers()...)
	if err != nil {
		return Lease{}, err
	}
	offer, err := c.roundTrip(conn, discover, dhcpv4.MessageTypeOffer, wait)
	if err != nil {
		return Lease{}, errNoOffer
	}
	request, err := dhcpv4.NewRequestFromOffer(offer, c.modifiers()...)
	if err != nil {
		return Lease{}, err
	}
	ack, err := c.roundTrip(conn, request, dhcpv4.MessageTypeAck, wait)
	if err != nil {
		return Lease{}, fmt.Errorf("PXE-E52: no DHCPACK for offered %s: %w", offer.YourIPAddr, err)
	}
	return leaseFrom(ack), nil
}

var errNak = errors.New("DHCPNAK")

// roundTrip sends msg and waits for a reply of type want with msg's xid.
func (c *dhcpClient) roundTrip(conn *net.UDPConn, msg *dhcpv4.DHCPv4, want dhcpv4.MessageType, wait time.Duration) (*dhcpv4.DHCPv4, error) {
	if _, err := conn.WriteToUDP(msg.ToBytes(), c.server); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for {
		if err := conn.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return nil, err
		}
		reply, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || reply.TransactionID != msg.TransactionID || reply.OpCode != dhcpv4.OpcodeBootReply {
			continue // not ours
		}
		switch reply.MessageType() {
		case want:
			return reply, nil
		case dhcpv4.MessageTypeNak:
			return nil, errNak
		}
	}
}

func leaseFrom(ack *dhcpv4.DHCPv4) Lease {
	l := Lease{
		IP:         ack.YourIPAddr,
		Netmask:    ack.SubnetMask(),
		ServerID:   ack.ServerIdentifier(),
		NextServer: ack.ServerIPAddr,
		BootFile:   ack.BootFileNameOption(),
	}
	if routers := ack.Router(); len(routers) > 0 {
		l.Router = routers[0]
	}
	if l.BootFile == "" {
		l.BootFile = ack.BootFileName
	}
	if l.NextServer == nil || l.NextServer.IsUnspecified() {
		if ip := net.ParseIP(ack.TFTPServerName()); ip != nil {
			l.NextServer = ip
		} else {
			l.NextServer = l.ServerID
		}
	}
	return l
}
