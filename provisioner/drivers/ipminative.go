package drivers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/command/transport"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/metalbed/metalbed/provisioner"
)

// nativeClient talks RMCP+ (lanplus) in process through go-ipmi.
//
// It opens one session per BMC operation (one status poll, one power
// command, one boot device write with its parameter sequence) and closes it
// right after, as ipmitool does for Ironic. A cached session would save four
// round trips per command but would hold one of the few session slots BMCs
// have (often 4–10 per user) between conductor tasks, keep go-ipmi's
// keepalive goroutine running, and go stale across BMC resets and the
// power cycles we cause; on loopback or a LAN the handshake costs
// milliseconds, far below the seconds Ironic's pacing already spends.
type nativeClient struct{}

// cipherSuites are offered in this order when the node does not set
// ipmi_cipher_suite: 17 (HMAC-SHA256, AES-CBC-128), then 3 (HMAC-SHA1,
// AES-CBC-128) when the BMC refuses 17.
var nativeCipherSuites = []types.CipherSuiteID{types.CipherSuiteID17, types.CipherSuiteID3}

func privLevel(name string) types.PrivilegeLevel {
	switch name {
	case "CALLBACK":
		return types.PrivilegeLevelCallback
	case "USER":
		return types.PrivilegeLevelUser
	case "OPERATOR":
		return types.PrivilegeLevelOperator
	}
	return types.PrivilegeLevelAdministrator
}

// session opens a lanplus session, runs fn and closes the session; the
// whole of it is bounded by timeout.
func (n nativeClient) session(ctx context.Context, info ipmiInfo, timeout time.Duration, fn func(ctx context.Context, c *client.Client) error) (err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return n.open(ctx, info, fn)
}

// open opens a lanplus session, runs fn for as long as it takes and
// closes the session.
func (nativeClient) open(ctx context.Context, info ipmiInfo, fn func(ctx context.Context, c *client.Client) error) error {
	port := info.Port
	if port == 0 {
		port = 623
	}
	c, err := client.NewClient(info.Address, port, info.Username, info.Password)
	if err != nil {
		return fmt.Errorf("%w (%w)", err, errPermanent)
	}
	// Our own dialer: go-ipmi leaves its socket open when Connect fails,
	// and formats host:port without brackets for IPv6.
	dialer := &sessionDialer{target: info.target()}
	defer dialer.close()
	c.WithUDPProxy(dialer)
	c.WithInterface(client.InterfaceLanplus).WithMaxPrivilegeLevel(privLevel(info.PrivLevel))
	// A request is resent after resendAfter without a reply (go-ipmi's
	// default, ipmitool's, is 1 s). A resent RAKP 1 makes a BMC draw a new
	// random number and the answer already on its way useless, so on a
	// host deploying hundreds of machines at once a 1 s wait turns slow
	// answers into failed sessions.
	c.WithTimeout(resendAfter)
	if info.CipherSuite >= 0 {
		c.WithCipherSuiteID(types.CipherSuiteID(info.CipherSuite))
	} else {
		c.WithCipherSuiteID(nativeCipherSuites...)
	}
	if err := c.Connect(ctx); err != nil {
		return fmt.Errorf("open RMCP+ session: %w", err)
	}
	defer func() {
		// A BMC that does not answer Close Session must not fail a command
		// that succeeded; the session times out on its side.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = c.Close(closeCtx)
	}()
	return fn(ctx, c)
}

// sol activates the SOL payload (instance 1) and copies the console both
// ways between the BMC and rw until rw ends, ctx ends or the BMC
// deactivates it; the payload is deactivated after.
func (n nativeClient) sol(ctx context.Context, info ipmiInfo, rw io.ReadWriter) error {
	return n.open(ctx, info, func(ctx context.Context, c *client.Client) error {
		req := &transport.ActivatePayloadRequest{PayloadType: types.PayloadTypeSOL, PayloadInstance: 1}
		if _, err := c.ActivatePayload(ctx, req); err != nil {
			return fmt.Errorf("activate SOL: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_, _ = c.DeactivatePayload(dctx, &transport.DeactivatePayloadRequest{PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
		}()
		return c.SOLStream(ctx, rw, rw, nil)
	})
}

// resendAfter is how long a lanplus request waits for its reply before it
// is sent again (4 more times at most).
const resendAfter = 3 * time.Second

// sessionDialer dials the BMC for one session and closes what it dialed.
type sessionDialer struct {
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func (d *sessionDialer) Dial(network, _ string) (net.Conn, error) {
	c, err := net.Dial(network, d.target)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return &setupFilter{Conn: c}, nil
}

// setupFilter drops, during session setup, a datagram that cannot answer
// the step in progress. go-ipmi resends a setup request after a second
// without reply (as ipmitool does) and takes the next datagram as the
// answer: on a loaded host the late answer to the first Open Session
// request then arrives while RAKP 1 waits for RAKP 2, and the session
// fails ("unpacked data is too short (36/40)"). Outside setup every
// datagram passes: go-ipmi matches IPMI replies and SOL packets itself.
type setupFilter struct {
	net.Conn
	want atomic.Int32 // the RMCP+ payload type the reply must have; -1: any
}

func (f *setupFilter) Write(p []byte) (int, error) {
	want := int32(-1)
	switch payloadType(p) {
	case 0x10, 0x12, 0x14: // Open Session Request, RAKP 1, RAKP 3
		want = payloadType(p) + 1 // Open Session Response, RAKP 2, RAKP 4
	}
	f.want.Store(want)
	return f.Conn.Write(p)
}

func (f *setupFilter) Read(p []byte) (int, error) {
	for {
		n, err := f.Conn.Read(p)
		if err != nil {
			return n, err
		}
		if want := f.want.Load(); want < 0 || payloadType(p[:n]) == want {
			return n, nil
		}
	}
}

// payloadType is the payload type of an RMCP+ (IPMI v2.0) datagram: the
// RMCP header (version 06h, class 07h: IPMI), authentication type 06h, then
// the payload type in the low 6 bits; -1 for anything else.
func payloadType(b []byte) int32 {
	if len(b) < 6 || b[0] != 0x06 || b[3]&0x1f != 0x07 || b[4] != 0x06 {
		return -1
	}
	return int32(b[5] & 0x3f)
}

func (d *sessionDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

func (n nativeClient) powerStatus(ctx context.Context, info ipmiInfo, timeout time.Duration) (provisioner.PowerState, error) {
	var st provisioner.PowerState
	err := n.session(ctx, info, timeout, func(ctx context.Context, c *client.Client) error {
		res, err := c.GetChassisStatus(ctx)
		if err != nil {
			return fmt.Errorf("get chassis status: %w", err)
		}
		st = provisioner.PowerOff
		if res.PowerIsOn {
			st = provisioner.PowerOn
		}
		return nil
	})
	return st, err
}

func (n nativeClient) power(ctx context.Context, info ipmiInfo, action string, timeout time.Duration) error {
	var ctl chassis.ChassisControl
	switch action {
	case "on":
		ctl = chassis.ChassisControlPowerUp
	case "off":
		ctl = chassis.ChassisControlPowerDown
	case "soft":
		ctl = chassis.ChassisControlSoftShutdown
	default:
		return fmt.Errorf("power action %q (%w)", action, errPermanent)
	}
	return n.session(ctx, info, timeout, func(ctx context.Context, c *client.Client) error {
		if _, err := c.ChassisControl(ctx, ctl); err != nil {
			return fmt.Errorf("chassis control %s: %w", action, err)
		}
		return nil
	})
}

func (n nativeClient) raw(ctx context.Context, info ipmiInfo, netfn, cmd byte, data []byte, timeout time.Duration) ([]byte, error) {
	var out []byte
	err := n.session(ctx, info, timeout, func(ctx context.Context, c *client.Client) error {
		res, err := c.RawCommand(ctx, types.NetFn(netfn), cmd, data, "raw")
		if err != nil {
			return fmt.Errorf("raw 0x%02x 0x%02x: %w", netfn, cmd, err)
		}
		out = res.Response
		return nil
	})
	return out, err
}

// chassisBootdev writes the parameters "ipmitool chassis bootdev" writes,
// in its order: set in progress (param 0 = 1), boot info acknowledge
// (param 4 = 01 01), boot flags (param 5), commit write (param 0 = 2), set
// complete (param 0 = 0). Like ipmitool, only the boot flags must succeed;
// completion codes on the others are ignored (many BMCs lack them).
func (n nativeClient) chassisBootdev(ctx context.Context, info ipmiInfo, dev string, persistent bool, timeout time.Duration) error {
	code, ok := bootDeviceCode(dev)
	if !ok {
		return fmt.Errorf("boot device %q (%w)", dev, errPermanent)
	}
	flags := byte(0x80)
	if persistent {
		flags |= 0x40
	}
	return n.session(ctx, info, timeout, func(ctx context.Context, c *client.Client) error {
		set := func(data ...byte) error {
			_, err := c.RawCommand(ctx, types.NetFn(0x00), 0x08, data, "Set System Boot Options")
			return err
		}
		optional := func(err error) error {
			if _, isCC := types.IsResponseError(err); isCC {
				return nil
			}
			return err
		}
		if err := optional(set(0x00, 0x01)); err != nil {
			return fmt.Errorf("set boot param 0 (set in progress): %w", err)
		}
		if err := optional(set(0x04, 0x01, 0x01)); err != nil {
			return fmt.Errorf("set boot param 4 (acknowledge): %w", err)
		}
		if err := set(0x05, flags, code, 0x00, 0x00, 0x00); err != nil {
			_ = set(0x00, 0x00)
			return fmt.Errorf("set boot param 5 (boot flags): %w", err)
		}
		_ = set(0x00, 0x02)
		_ = set(0x00, 0x00)
		return nil
	})
}

func (n nativeClient) bootDevice(ctx context.Context, info ipmiInfo, timeout time.Duration) (BootDevice, error) {
	var bd BootDevice
	err := n.session(ctx, info, timeout, func(ctx context.Context, c *client.Client) error {
		res, err := c.RawCommand(ctx, types.NetFn(0x00), 0x09, []byte{0x05, 0x00, 0x00}, "Get System Boot Options")
		if err != nil {
			return fmt.Errorf("get boot param 5: %w", err)
		}
		bd, err = decodeBootParam5(res.Response)
		return err
	})
	return bd, err
}

func (n nativeClient) bmcReset(ctx context.Context, info ipmiInfo, warm bool, timeout time.Duration) error {
	cmd := byte(0x02)
	if warm {
		cmd = 0x03
	}
	_, err := n.raw(ctx, info, 0x06, cmd, nil, timeout)
	return err
}

var errShortBootParam = errors.New("short boot parameter 5 response")

// decodeBootParam5 reads a Get System Boot Options response for parameter
// 5 (version, selector, five flag bytes) with the meaning ipmitool's text
// gives Ironic: device from the selector bits of byte 2, persistent from
// bit 6 of byte 1, whether or not the valid bit is set.
func decodeBootParam5(resp []byte) (BootDevice, error) {
	if len(resp) < 4 {
		return BootDevice{}, fmt.Errorf("%w: % x", errShortBootParam, resp)
	}
	if resp[1]&0x7f != 0x05 {
		return BootDevice{}, fmt.Errorf("boot options response for parameter %d, want 5", resp[1]&0x7f)
	}
	var bd BootDevice
	sel := resp[3] & 0x3c
	for _, d := range bootDeviceCodes {
		if d.Code == sel {
			bd.Device = d.Name
		}
	}
	bd.Persistent = resp[2]&0x40 != 0
	return bd, nil
}
