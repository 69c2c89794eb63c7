// Package httpboot is the provisioner's read-only HTTP file server for
// network boot: iPXE scripts, kernels, ramdisks and images. It serves a
// root directory no request can escape ("..", NUL bytes, backslashes and
// symlinks leading outside are refused) plus an optional Files hook for
// generated content, with Range requests (http.ServeContent) so iPXE and
// image downloads can resume.
package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/httpserve"
	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Files serves generated content. Open gets a cleaned, root-relative,
// slash-separated name and returns its bytes and size; an error wrapping
// fs.ErrNotExist falls through to Config.Root. If r is an io.Closer it is
// closed after the response. Open must be safe for concurrent use.
// (Same shape as tftp.Files: one type can serve both.)
type Files interface {
	Open(name string) (r io.ReaderAt, size int64, err error)
}

// Config configures a Server.
type Config struct {
	// Root is the directory served; "" serves only Files.
	Root string
	// Files, when set, is consulted before Root.
	Files Files
	// ReadHeaderTimeout bounds reading a request's headers; default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long, so idle
	// clients give their descriptors back; default 2 minutes.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long Serve waits for responses in flight
	// when ctx ends; default 5s.
	ShutdownTimeout time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Observer, when set, is called once per request when it ends; it
	// must not block.
	Observer func(Event)
	// Faults is asked before each GET or HEAD of a file (layer http, op
	// the cleaned, root-relative path) and breaks that answer: "status"
	// answers with the status in Arg (default 404); "truncate" sends Arg
	// bytes (default half) of the body, then closes; "corrupt" flips the
	// body's byte at Arg (default 0), a wrong checksum. Any hit's Delay
	// answers late. The request is asked about by its client's IP and,
	// for a path in a folder, by the folder's name as a machine name (the
	// Injector prefers it when it knows that machine): a <machine>/ folder
	// holds what is fetched for that machine (the conductor downloading
	// <machine>/<image>). nil: no faults.
	Faults fault.Injector
	// Registerer receives metalbed_httpboot_requests_total{method,code},
	// metalbed_httpboot_sent_bytes_total and
	// metalbed_httpboot_request_seconds. nil: none are exported.
	Registerer prometheus.Registerer
}

// answerFault is how one answer goes wrong; the zero value is none.
// Truncate and Corrupt apply to a whole-file GET (not HEAD, not a Range
// request).
type answerFault struct {
	// Delay is waited before answering.
	Delay time.Duration
	// Status, when not 0, answers with that status instead of the file.
	Status int
	// Truncate sends the file's full Content-Length but only its first
	// TruncateAt bytes (0: half the file), then closes the connection.
	Truncate   bool
	TruncateAt int64
	// Corrupt flips the byte at CorruptAt (past the end: the last byte)
	// in the body, so the file arrives whole but with a wrong checksum.
	Corrupt   bool
	CorruptAt int64
}

// answerFaultOf carries out the http layer's actions (fault.Catalog).
func answerFaultOf(h fault.Hit) answerFault {
	f := answerFault{Delay: h.Delay}
	switch h.Action {
	case "status":
		code, err := h.ArgInt()
		if err != nil || code < 400 || code > 599 {
			code = http.StatusNotFound
		}
		f.Status = int(code)
	case "truncate":
		n, _ := h.ArgInt()
		f.Truncate, f.TruncateAt = true, n
	case "corrupt":
		n, _ := h.ArgInt()
		f.Corrupt, f.CorruptAt = true, n
	}
	return f
}

// requester names the client of a request for path: its IP, and the
// machine whose folder path is in.
func requester(remote netip.AddrPort, path string) events.Who {
	who := events.Who{IP: remote.Addr().String()}
	folder, rest, ok := strings.Cut(path, "/")
	if !ok {
		return who
	}
	who.Machine = folder
	// A virtual media ISO, redfish/boot-<node uuid>.iso, is read by the
	// BMC (not from the node's address): it names its node.
	if id, iso := strings.CutPrefix(rest, "boot-"); folder == "redfish" && iso && strings.HasSuffix(id, ".iso") {
		who.Machine, who.Node = "", strings.TrimSuffix(id, ".iso")
	}
	return who
}

// corruptReader flips one byte of r, at off.
type corruptReader struct {
	r   io.ReaderAt
	off int64
}

func (c corruptReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	if c.off >= off && c.off < off+int64(n) {
		p[c.off-off] ^= 0xff
	}
	return n, err
}

// Event is one finished request.
type Event struct {
	Path     string // cleaned, root-relative; the raw URL path when refused
	Remote   netip.AddrPort
	Method   string
	Status   int
	Bytes    int64 // body bytes written
	Range    string
	Duration time.Duration
	Time     time.Time
}

// Server is a read-only HTTP boot file server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	faults fault.Injector
	// metrics
	requests *prometheus.CounterVec // method, code
	sent     prometheus.Counter
	took     prometheus.Histogram
}

// New validates cfg and applies defaults; it does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" && cfg.Files == nil {
		return nil, errors.New("httpboot: Root or Files is required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &metrics.Registry{Reg: cfg.Registerer}
	s := &Server{cfg: cfg, log: log, faults: fault.OrNone(cfg.Faults),
		requests: r.CounterVec("httpboot", "requests_total", "HTTP boot requests answered, by method and status code.", "method", "code"),
		sent:     r.Counter("httpboot", "sent_bytes_total", "Body bytes sent by the HTTP boot server."),
		took:     r.Histogram("httpboot", "request_seconds", "Time to answer HTTP boot requests, bodies included.", nil),
	}
	if r.Err != nil {
		return nil, fmt.Errorf("httpboot: %w", r.Err)
	}
	return s, nil
}

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully and
// returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := httpserve.Server(s, httpserve.Options{ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, IdleTimeout: s.cfg.IdleTimeout,
		BaseContext: ctx, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("httpboot: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// ServeHTTP serves GET and HEAD of files; the conductor may mount the
// Server in its own mux instead of calling Serve.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w}
	name := r.URL.Path
	defer func() {
		ev := Event{Path: name, Method: r.Method, Status: cw.status(), Bytes: cw.n,
			Range: r.Header.Get("Range"), Duration: time.Since(start), Time: start}
		ev.Remote, _ = netip.ParseAddrPort(r.RemoteAddr)
		s.requests.WithLabelValues(metrics.Method(r.Method), metrics.Code(ev.Status)).Inc()
		s.sent.Add(float64(ev.Bytes))
		s.took.Observe(ev.Duration.Seconds())
		s.log.Info("httpboot: request", "path", name, "ip", ev.Remote.Addr(), "status", ev.Status, "bytes", ev.Bytes)
		if s.cfg.Observer != nil {
			s.cfg.Observer(ev)
		}
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		cw.Header().Set("Allow", "GET, HEAD")
		http.Error(cw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	clean, err := cleanPath(r.URL.Path)
	if err != nil {
		http.Error(cw, "forbidden", http.StatusForbidden)
		return
	}
	name = clean
	var af answerFault
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	if h, ok := s.faults.Inject(fault.HTTP, requester(remote, clean), clean); ok {
		af = answerFaultOf(h)
		if af.Delay > 0 {
			select {
			case <-time.After(af.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if af.Status != 0 {
			http.Error(cw, http.StatusText(af.Status), af.Status)
			return
		}
	}
	ra, size, mod, err := s.open(clean)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			http.Error(cw, "not found", http.StatusNotFound)
		case errors.Is(err, errForbidden):
			http.Error(cw, "forbidden", http.StatusForbidden)
		default:
			s.log.Warn("httpboot: open", "path", clean, "err", err)
			http.Error(cw, "cannot read", http.StatusInternalServerError)
		}
		return
	}
	if c, ok := ra.(io.Closer); ok {
		defer c.Close()
	}
	whole := r.Method == http.MethodGet && r.Header.Get("Range") == ""
	if whole && af.Corrupt && size > 0 {
		ra = corruptReader{r: ra, off: min(max(af.CorruptAt, 0), size-1)}
	}
	if whole && af.Truncate {
		s.truncated(cw, ra, size, af.TruncateAt)
		return
	}
	http.ServeContent(cw, r, clean, mod, io.NewSectionReader(ra, 0, size))
}

// truncated announces size bytes, sends only the first n (0 or past the
// end: half), then drops the connection, as a server dying mid-response.
func (s *Server) truncated(w http.ResponseWriter, ra io.ReaderAt, size, n int64) {
	if n <= 0 || n >= size {
		n = size / 2
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, io.NewSectionReader(ra, 0, n))
	http.NewResponseController(w).Flush()
	// net/http closes the connection without finishing the response.
	panic(http.ErrAbortHandler)
}

var errForbidden = errors.New("forbidden")

// open finds clean in Files, then under Root.
func (s *Server) open(clean string) (io.ReaderAt, int64, time.Time, error) {
	if s.cfg.Files != nil {
		r, size, err := s.cfg.Files.Open(clean)
		if err == nil {
			return r, size, time.Time{}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, 0, time.Time{}, err
		}
	}
	if s.cfg.Root == "" {
		return nil, 0, time.Time{}, fs.ErrNotExist
	}
	f, err := os.OpenInRoot(s.cfg.Root, clean)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, time.Time{}, err
		}
		return nil, 0, time.Time{}, fmt.Errorf("%w: %w", errForbidden, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, time.Time{}, fs.ErrNotExist
	}
	return f, fi.Size(), fi.ModTime(), nil
}

// cleanPath turns a URL path into a root-relative name, refusing "..",
// NUL bytes, backslashes and the root itself.
func cleanPath(p string) (string, error) {
	if strings.ContainsAny(p, "\x00\\") {
		return "", errForbidden
	}
	var out []string
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "..":
			return "", errForbidden
		case "", ".":
			continue
		}
		out = append(out, part)
	}
	if len(out) == 0 {
		return "", errForbidden
	}
	return strings.Join(out, "/"), nil
}

// countingWriter records the status and body bytes of a response.
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) status() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}
