package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

// consoleBuffer is how much output an attached reader may fall behind
// before its oldest bytes are dropped: a slow SOL client never stalls the
// machine.
const consoleBuffer = 64 << 10

// Console log rotation: console.log becomes console.log.1 once it passes
// Config.ConsoleLogMax bytes (default DefaultConsoleLogMax), and
// ConsoleLogKeep older files are kept, as timeline.jsonl is rotated
// (events.OpenLog).
const (
	DefaultConsoleLogMax = 8 << 20
	ConsoleLogKeep       = 2
)

// console is a machine's serial port: an append-only log file rotated by
// size plus live fan-out to attached readers. Writes from attached clients
// are keystrokes.
type console struct {
	path string // console.log: open while output flows, closed when idle
	max  int64  // rotation size

	mu      sync.Mutex
	file    *events.Log // nil while idle
	idle    *time.Timer // closes file after consoleIdle without output
	conns   map[*consoleConn]struct{}
	closed  bool
	input   chan []byte // keystrokes for the program running on the machine
	fileErr error       // first log write error, reported once by Write
}

func newConsole(path string, max int64) *console {
	return &console{path: path, max: max}
}

// in is the keystroke FIFO, made on first use (an idle machine of a large
// fleet never needs one); a full FIFO drops input.
func (c *console) in() chan []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.input == nil {
		c.input = make(chan []byte, 16) // keystroke bursts
	}
	return c.input
}

// Write appends p to the log and to every attached reader.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, errors.New("console closed")
	}
	err := c.appendLocked(p)
	for cc := range c.conns {
		cc.push(p)
	}
	if err != nil {
		return 0, fmt.Errorf("console log: %w", err)
	}
	return len(p), nil
}

// consoleIdle is how long the log stays open after the last output: a
// booting machine writes many lines without reopening the file, an idle
// fleet of thousands holds no descriptors.
const consoleIdle = 2 * time.Second

// appendLocked writes p to the log file, opening it if needed and arming
// the idle close. c.mu is held.
func (c *console) appendLocked(p []byte) error {
	if c.file == nil {
		f, err := events.OpenLog(c.path, c.max, ConsoleLogKeep)
		if err != nil {
			return err
		}
		c.file = f
		if c.idle == nil {
			c.idle = time.AfterFunc(consoleIdle, c.closeIdle)
		}
	}
	c.idle.Reset(consoleIdle)
	_, err := c.file.Write(p)
	return err
}

// closeIdle closes the log file after consoleIdle without output.
func (c *console) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeFileLocked()
}

func (c *console) closeFileLocked() {
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
}

// printf writes a formatted line; errors are dropped since the console is
// best effort for the program printing, like a real UART with no cable.
func (c *console) printf(format string, a ...any) {
	fmt.Fprintf(c, format, a...)
}

// keystrokes is input typed by an attached client: it is echoed, as a
// terminal in canonical mode would, and handed to the running program.
func (c *console) keystrokes(p []byte) {
	echo := bytes.ReplaceAll(p, []byte("\r"), []byte("\r\n"))
	c.Write(echo)
	in := append([]byte(nil), p...)
	select {
	case c.in() <- in:
	default: // nobody reads: like a UART FIFO overrun, input is lost
	}
}

func (c *console) attach(ctx context.Context) (*consoleConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("console closed")
	}
	cc := &consoleConn{c: c, notify: make(chan struct{}, 1), done: make(chan struct{})}
	if c.conns == nil {
		c.conns = map[*consoleConn]struct{}{}
	}
	c.conns[cc] = struct{}{}
	stop := context.AfterFunc(ctx, func() { cc.Close() })
	cc.mu.Lock()
	cc.stop = stop
	cc.mu.Unlock()
	return cc, nil
}

func (c *console) close() {
	c.mu.Lock()
	c.closed = true
	if c.idle != nil {
		c.idle.Stop()
	}
	c.closeFileLocked()
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for cc := range conns {
		cc.shut()
	}
}

// consoleConn is one attached client.
type consoleConn struct {
	c      *console
	notify chan struct{}

	mu     sync.Mutex
	stop   func() bool // ends the context watch
	buf    bytes.Buffer
	done   chan struct{}
	closed bool
}

func (cc *consoleConn) push(p []byte) {
	cc.mu.Lock()
	cc.buf.Write(p)
	if over := cc.buf.Len() - consoleBuffer; over > 0 {
		cc.buf.Next(over)
	}
	cc.mu.Unlock()
	select {
	case cc.notify <- struct{}{}:
	default:
	}
}

// Read returns console output written since the client attached; io.EOF
// once detached.
func (cc *consoleConn) Read(p []byte) (int, error) {
	for {
		cc.mu.Lock()
		if cc.buf.Len() > 0 {
			n, _ := cc.buf.Read(p)
			cc.mu.Unlock()
			return n, nil
		}
		closed := cc.closed
		cc.mu.Unlock()
		if closed {
			return 0, io.EOF
		}
		select {
		case <-cc.notify:
		case <-cc.done:
		}
	}
}

// Write sends keystrokes to the machine.
func (cc *consoleConn) Write(p []byte) (int, error) {
	cc.mu.Lock()
	closed := cc.closed
	cc.mu.Unlock()
	if closed {
		return 0, io.ErrClosedPipe
	}
	cc.c.keystrokes(p)
	return len(p), nil
}

// Close detaches the client.
func (cc *consoleConn) Close() error {
	cc.c.mu.Lock()
	delete(cc.c.conns, cc)
	cc.c.mu.Unlock()
	cc.shut()
	return nil
}

func (cc *consoleConn) shut() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return
	}
	cc.closed = true
	close(cc.done)
	if cc.stop != nil {
		cc.stop()
	}
}
