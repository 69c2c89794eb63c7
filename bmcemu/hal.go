package bmcemu

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/types"
)

// halAdapter presents the Machine to go-ipmi's state machine. bmcemu's own
// handlers cover chassis, boot options, sensors and SEL, so only what go-ipmi
// itself consumes is real here: the console (SOL) and the SDR store.
type halAdapter struct {
	srv *Server
}

var _ hal.HAL = (*halAdapter)(nil)

func (h *halAdapter) Chassis() hal.ChassisHAL { return chassisHAL{h.srv} }
func (h *halAdapter) Sensors() hal.SensorHAL  { return nil }
func (h *halAdapter) Storage() hal.StorageHAL { return storageHAL{h.srv.sdr} }
func (h *halAdapter) Network() hal.NetworkHAL { return nil }
func (h *halAdapter) GPIO() hal.GPIOHAL       { return nil }
func (h *halAdapter) I2C() hal.I2CHAL         { return nil }
func (h *halAdapter) Console() hal.ConsoleHAL { return consoleHAL{h.srv} }
func (h *halAdapter) Close() error            { return nil }

type storageHAL struct{ sdr *sdrRepo }

func (s storageHAL) FRU() hal.FRUStore { return nil }
func (s storageHAL) SDR() hal.SDRStore { return s.sdr }

// chassisHAL backs go-ipmi's remaining chassis handlers (Get Chassis
// Capabilities, Chassis Identify) and its VM-protocol paths; the commands a
// client sees are answered by bmcemu's handlers.
type chassisHAL struct{ srv *Server }

func (c chassisHAL) PowerState(ctx context.Context) (bool, error) {
	return c.srv.machine.PowerState(ctx)
}
func (c chassisHAL) SetPower(ctx context.Context, on bool) error {
	if on {
		return c.srv.control(ctx, PowerUp)
	}
	return c.srv.control(ctx, PowerDown)
}
func (c chassisHAL) PowerCycle(ctx context.Context) error {
	return c.srv.control(ctx, PowerCycle)
}
func (c chassisHAL) ColdReset(ctx context.Context) error {
	return c.srv.control(ctx, HardReset)
}
func (c chassisHAL) WarmReset(ctx context.Context) error {
	return c.srv.control(ctx, SoftShutdown)
}
func (c chassisHAL) Identify(context.Context, uint8) error        { return nil }
func (c chassisHAL) IntrusionState(context.Context) (bool, error) { return false, hal.ErrNotSupported }
func (c chassisHAL) SetBootFlags(context.Context, *types.BootOptionParam_BootFlags) error {
	return hal.ErrNotSupported
}
func (c chassisHAL) GetBootFlags(context.Context) (*types.BootOptionParam_BootFlags, error) {
	return nil, hal.ErrNotSupported
}
func (c chassisHAL) SetBootInfoAcknowledge(context.Context, *types.BootOptionParam_BootInfoAcknowledge) error {
	return hal.ErrNotSupported
}
func (c chassisHAL) GetBootInfoAcknowledge(context.Context) (*types.BootOptionParam_BootInfoAcknowledge, error) {
	return nil, hal.ErrNotSupported
}

// consoleHAL attaches SOL to the Machine's serial console.
type consoleHAL struct{ srv *Server }

func (c consoleHAL) Open(ctx context.Context) (hal.ConsoleConn, error) {
	// The attachment lives as long as the SOL session, which ends with
	// Close at Deactivate Payload or session close — not with the request
	// that activated it (a Machine may detach when its ctx ends).
	rwc, err := c.srv.machine.AttachConsole(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	cc := &consoleConn{rwc: rwc}
	go cc.pump()
	c.srv.log().Info("sol attached", "event", "sol-activate")
	return cc, nil
}

// consoleBufferCap bounds console output buffered between SOL packets; a
// console nobody drains loses the oldest bytes, as a UART FIFO would.
const consoleBufferCap = 64 << 10

// consoleConn turns the Machine's blocking console stream into go-ipmi's
// non-blocking ReadAvailable.
type consoleConn struct {
	rwc io.ReadWriteCloser

	mu     sync.Mutex
	buf    []byte
	err    error
	closed bool
}

func (c *consoleConn) pump() {
	chunk := make([]byte, 4096)
	for {
		n, err := c.rwc.Read(chunk)
		c.mu.Lock()
		if n > 0 {
			c.buf = append(c.buf, chunk[:n]...)
			if over := len(c.buf) - consoleBufferCap; over > 0 {
				c.buf = append(c.buf[:0], c.buf[over:]...)
			}
		}
		if err != nil {
			if !c.closed {
				c.err = err
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

func (c *consoleConn) ReadAvailable(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		if c.err != nil && !errors.Is(c.err, io.EOF) {
			return 0, c.err
		}
		return 0, nil
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	if len(c.buf) == 0 {
		c.buf = nil
	}
	return n, nil
}

func (c *consoleConn) Write(p []byte) (int, error) { return c.rwc.Write(p) }

func (c *consoleConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.rwc.Close()
}

func (c *consoleConn) SendBreak(context.Context) error { return hal.ErrNotSupported }
