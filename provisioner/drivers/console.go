package drivers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/metalbed/metalbed/provisioner"
)

// ConsoleInterface gives users a node's serial console (Ironic's console
// interfaces): Start makes it reachable and returns console_info, Stop
// ends it. A conductor starts the consoles of nodes whose console_enabled
// is set again when it starts.
type ConsoleInterface interface {
	Validate(ctx context.Context, node *provisioner.Node) error
	// Start serves the console (again, if it was) and returns
	// console_info ({"type", "url"}).
	Start(ctx context.Context, node *provisioner.Node) (map[string]any, error)
	// Stop ends the console; stopping one that is not served is no error.
	Stop(ctx context.Context, node *provisioner.Node) error
	// Info returns console_info of a served console, nil when none is.
	Info(node *provisioner.Node) map[string]any
}

// IPMIConsole is Ironic's ipmitool-socat console without socat: a TCP
// port (driver_info ipmi_terminal_port, else an ephemeral one) on
// ConsoleAddr where each connection, one at a time as socat's
// max-children=1, is bridged to the BMC's Serial-over-LAN — through
// `ipmitool sol activate` on a pseudo-terminal, or go-ipmi's SOL
// payload, whichever client the hardware type uses.
type IPMIConsole struct {
	core *ipmiCore

	mu      sync.Mutex
	servers map[string]*consoleServer // by node UUID
}

// Validate checks driver_info (the BMC's and ipmi_terminal_port).
func (c *IPMIConsole) Validate(_ context.Context, node *provisioner.Node) error {
	_, _, err := c.parse(node)
	return err
}

func (c *IPMIConsole) parse(node *provisioner.Node) (ipmiInfo, int, error) {
	info, err := c.core.info(node)
	if err != nil {
		return info, 0, err
	}
	port := 0
	if v, ok := node.DriverInfo["ipmi_terminal_port"]; ok && v != nil {
		if port, err = networkPort(v); err != nil {
			return info, 0, invalidf("ipmi_terminal_port \"%v\" is not a valid port.", v)
		}
	}
	return info, port, nil
}

// Start listens and serves the console until Stop.
func (c *IPMIConsole) Start(ctx context.Context, node *provisioner.Node) (map[string]any, error) {
	info, port, err := c.parse(node)
	if err != nil {
		return nil, err
	}
	if err := c.Stop(ctx, node); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.core.cfg.ConsoleAddr, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("console of node %s: %w", node.UUID, err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &consoleServer{ln: ln, cancel: cancel, done: make(chan struct{}), log: c.core.log.With("node", node.UUID),
		info: map[string]any{"type": "socat", "url": "tcp://" + ln.Addr().String()}}
	go s.serve(sctx, func(ctx context.Context, rw io.ReadWriter) error { return c.core.bmc.sol(ctx, info, rw) })
	c.mu.Lock()
	if c.servers == nil {
		c.servers = map[string]*consoleServer{}
	}
	c.servers[node.UUID] = s
	c.mu.Unlock()
	return s.info, nil
}

// Stop closes the node's console port and any session on it.
func (c *IPMIConsole) Stop(_ context.Context, node *provisioner.Node) error {
	c.mu.Lock()
	s := c.servers[node.UUID]
	delete(c.servers, node.UUID)
	c.mu.Unlock()
	if s != nil {
		s.stop()
	}
	return nil
}

// Info returns console_info while the console is served.
func (c *IPMIConsole) Info(node *provisioner.Node) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.servers[node.UUID]; s != nil {
		return s.info
	}
	return nil
}

// consoleServer is one node's console port.
type consoleServer struct {
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}
	info   map[string]any
	log    *slog.Logger
}

// serve accepts connections and bridges one at a time with sol; a second
// client while one is connected is told so and closed.
func (s *consoleServer) serve(ctx context.Context, sol func(context.Context, io.ReadWriter) error) {
	defer close(s.done)
	var busy sync.Mutex
	var sessions sync.WaitGroup
	defer sessions.Wait()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("console accept", "err", err)
			continue
		}
		if !busy.TryLock() {
			fmt.Fprintf(conn, "metalbed: the console is in use by another client\r\n")
			conn.Close()
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			defer busy.Unlock()
			defer conn.Close()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(cctx, func() { conn.Close() })
			defer stop()
			if err := sol(cctx, conn); err != nil && cctx.Err() == nil {
				s.log.Warn("console session", "err", err)
				fmt.Fprintf(conn, "\r\nmetalbed: console session ended: %v\r\n", err)
			}
		}()
	}
}

func (s *consoleServer) stop() {
	s.cancel()
	s.ln.Close()
	<-s.done
}
