// Package httpserve gives every HTTP server of metalbed the same guards
// against clients that hold connections without using them: a bound on
// reading a request's headers, on a keep-alive connection's idle time, and
// on each write of a response (a client that stops reading is cut off once
// a write has waited StallTimeout, while a long download that keeps moving
// runs as long as it needs, unlike with http.Server's WriteTimeout, which
// bounds the whole response).
package httpserve

import (
	"bufio"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// The defaults Server uses.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 2 * time.Minute
	StallTimeout      = time.Minute
)

// Options tune Server; zero fields take the defaults above.
type Options struct {
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	StallTimeout      time.Duration
	// BaseContext is the context of every request (http.Server's).
	BaseContext context.Context
	// ErrorLog is http.Server's ErrorLog (nil: the log package's).
	ErrorLog *log.Logger
}

// Server is an http.Server serving h with the guards (see the package
// documentation). The caller sets anything else it needs on it.
func Server(h http.Handler, o Options) *http.Server {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = ReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = IdleTimeout
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = StallTimeout
	}
	s := &http.Server{Handler: StallGuard(h, o.StallTimeout), ReadHeaderTimeout: o.ReadHeaderTimeout, IdleTimeout: o.IdleTimeout, ErrorLog: o.ErrorLog}
	if o.BaseContext != nil {
		s.BaseContext = func(net.Listener) context.Context { return o.BaseContext }
	}
	return s
}

// StallGuard serves h with a write deadline of d renewed before each
// write and flush of the response: a client that stops reading makes the
// pending write fail after d, which the handler sees as an error; once it
// returns, the connection is closed (http.ErrAbortHandler). A single write
// (or a chunk of readFromChunk bytes of a file) must go out within d: at
// the default StallTimeout, a client must take at least 1 MiB a minute.
func StallGuard(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := &guarded{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
		h.ServeHTTP(g, r)
		if g.failed {
			// The client stopped reading: drop the connection rather
			// than let the server finish the response into it.
			panic(http.ErrAbortHandler)
		}
		g.arm() // for what the server writes after the handler
	})
}

// guarded is a ResponseWriter whose writes each get a fresh deadline.
type guarded struct {
	http.ResponseWriter
	rc     *http.ResponseController
	d      time.Duration
	failed bool // a write or flush failed
}

// note records a failed write.
func (g *guarded) note(err error) error {
	if err != nil {
		g.failed = true
	}
	return err
}

// arm sets the deadline of the next write. A writer that cannot take
// deadlines (a test recorder) is written without.
func (g *guarded) arm() {
	_ = g.rc.SetWriteDeadline(time.Now().Add(g.d))
}

func (g *guarded) Write(p []byte) (int, error) {
	g.arm()
	n, err := g.ResponseWriter.Write(p)
	return n, g.note(err)
}

// readFromChunk is how much of a ReadFrom one deadline covers: large
// enough for sendfile to pay, small enough that a stalled client is seen
// within about one StallTimeout.
const readFromChunk = 1 << 20

// ReadFrom keeps the server's sendfile path (http.ServeContent copies
// through it) in chunks, each with a fresh deadline.
func (g *guarded) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := g.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{g}, src)
	}
	var total int64
	for {
		g.arm()
		n, err := rf.ReadFrom(&io.LimitedReader{R: src, N: readFromChunk})
		total += n
		if err != nil || n < readFromChunk {
			return total, g.note(err)
		}
	}
}

// Flush sends what is buffered within the deadline (server-sent events
// flush after each event).
func (g *guarded) Flush() {
	g.arm()
	_ = g.note(g.rc.Flush())
}

// Hijack hands the connection over without a deadline left on it.
func (g *guarded) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := g.rc.Hijack()
	if err == nil {
		_ = c.SetWriteDeadline(time.Time{})
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (g *guarded) Unwrap() http.ResponseWriter { return g.ResponseWriter }
