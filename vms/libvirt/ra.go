package libvirt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// ServeRA sends IPv6 router advertisements on the provisioner's interface
// until ctx ends: one at once, one in answer to every router solicitation,
// and one every interval (default 10s). Each says "no IPv6 service here":
// router lifetime 0, no prefix, neither managed nor other-config. Firmware
// that configures IPv6 alongside DHCPv4 (iPXE's ifconf) then finishes at
// once instead of soliciting for about 16 s before it boots.
func (n *Network) ServeRA(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	var (
		c   *icmp.PacketConn
		ifi *net.Interface
	)
	err := n.Do(func() (err error) {
		if ifi, err = net.InterfaceByName(n.Iface); err != nil {
			return err
		}
		c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	})
	if err != nil {
		return fmt.Errorf("network %s: router adverts: %w", n.cfg.Name, err)
	}
	defer c.Close()
	p := c.IPv6PacketConn()
	allRouters := &net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: n.Iface}
	allNodes := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: n.Iface}
	var filt ipv6.ICMPFilter
	filt.SetAll(true)
	filt.Accept(ipv6.ICMPTypeRouterSolicitation)
	for _, step := range []error{
		p.SetMulticastInterface(ifi),
		p.SetMulticastHopLimit(255), // NDP messages must arrive with hop limit 255
		p.SetHopLimit(255),
		p.SetICMPFilter(&filt),
		p.JoinGroup(ifi, allRouters),
	} {
		if step != nil {
			return fmt.Errorf("network %s: router adverts: %w", n.cfg.Name, step)
		}
	}
	ra, err := routerAdvert(ifi.HardwareAddr)
	if err != nil {
		return err
	}
	send := func() error {
		_, err := p.WriteTo(ra, nil, allNodes)
		return err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			send()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	buf := make([]byte, 1500)
	for {
		k, _, _, err := p.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("network %s: router adverts: %w", n.cfg.Name, err)
		}
		if k > 0 && buf[0] == byte(ipv6.ICMPTypeRouterSolicitation) {
			send()
		}
	}
}

// routerAdvert is an RFC 4861 router advertisement with router lifetime 0,
// no flags and a source link-layer address option; the kernel fills in the
// checksum.
func routerAdvert(mac net.HardwareAddr) ([]byte, error) {
	body := make([]byte, 12, 20)
	body[0] = 64 // cur hop limit
	// body[1] flags 0: no DHCPv6; body[2:4] router lifetime 0: not a router;
	// reachable time and retrans timer 0: unspecified.
	binary.BigEndian.PutUint16(body[2:4], 0)
	if len(mac) == 6 {
		body = append(body, 1, 1) // source link-layer address, 8 bytes
		body = append(body, mac...)
	}
	m := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: body}}
	return m.Marshal(nil)
}
