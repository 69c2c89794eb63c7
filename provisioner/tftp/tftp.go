// Package tftp is the provisioner's read-only TFTP server for network boot
// (NBPs, pxelinux configs, deploy kernels and ramdisks, token files). It
// serves a root directory that no request can escape — "..", absolute
// paths, NUL bytes and symlinks pointing outside are refused — plus an
// optional Files hook for content the conductor generates. Transfers use
// github.com/pin/tftp/v3: blksize (RFC 2348) and tsize (RFC 2349) are
// negotiated; windowsize (RFC 7440) is not supported by pin/tftp and is
// ignored (the client falls back to lock-step, as the RFC requires).
package tftp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Files serves generated content. Open gets a cleaned, root-relative,
// slash-separated name and returns its bytes and size; an error wrapping
// fs.ErrNotExist falls through to Config.Root. If r is an io.Closer it is
// closed after the transfer. Open must be safe for concurrent use.
type Files interface {
	Open(name string) (r io.ReaderAt, size int64, err error)
}

// Config configures a Server.
type Config struct {
	// Root is the directory served; "" serves only Files.
	Root string
	// Files, when set, is consulted before Root.
	Files Files
	// Timeout is the retransmission timeout; default 5s.
	Timeout time.Duration
	// Retries is how many times a block is resent; default 5.
	Retries int
	// MaxBlockSize caps the blksize a client may negotiate (513..65464);
	// 0 honours the client's request up to 65464, as tftpd-hpa does.
	// (pin/tftp's own clamp to the interface MTU is turned off: it falls
	// back to 512 whenever its per-packet interface lookup fails.)
	MaxBlockSize int
	// SinglePort answers every transfer from the listening socket instead
	// of a new socket per transfer (RFC 1350's server TID). Serve's conn
	// may then live in another network namespace than the process, which
	// a per-transfer socket would not (it opens in the namespace of
	// whatever thread runs it). Default false: a socket per transfer.
	SinglePort bool
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Observer, when set, is called once per read request when it ends,
	// successfully or not; it must not block.
	Observer func(Event)
	// Faults is asked before each read request is answered (layer tftp,
	// op the cleaned file name, the client known by its IP) and breaks
	// that transfer: "missing" answers "file not found"; "stall" stops the
	// transfer after Arg bytes (default 64 KiB) for the rule's Delay
	// (default a minute), so the client times out mid-file; "slow" waits
	// Arg (a duration, default 2ms) before every block, and the file still
	// arrives whole. Any other hit's Delay starts the transfer late. nil:
	// no faults.
	Faults fault.Injector
	// MaxTransfers bounds the transfers in flight (each holds a socket and
	// a file for up to Timeout×Retries when the client goes silent);
	// requests beyond it are refused at once with "server busy". Default
	// 1024 (2048 descriptors).
	MaxTransfers int
	// MaxPerClient bounds the transfers in flight to one client address
	// (a PXE ROM needs one or two at a time); default 8.
	MaxPerClient int
	// Registerer receives metalbed_tftp_transfers_total{result},
	// metalbed_tftp_sent_bytes_total and metalbed_tftp_transfer_seconds.
	// nil: none are exported.
	Registerer prometheus.Registerer
}

// transferFault is how one transfer goes wrong; the zero value is none.
type transferFault struct {
	// Delay is waited before the request is answered.
	Delay time.Duration
	// Refuse, when not nil, is sent to the client as the TFTP error
	// instead of the file.
	Refuse error
	// BlockDelay is waited before each block is read for sending: a
	// slow server (the client still gets the whole file).
	BlockDelay time.Duration
	// StallAfter, when > 0, stops the transfer once that many bytes are
	// sent: no further block for StallFor (default 1 minute), then the
	// transfer fails. The client times out first.
	StallAfter int64
	StallFor   time.Duration
}

// Defaults of the tftp layer's fault arguments.
const (
	defaultStallAfter = 64 << 10
	defaultBlockDelay = 2 * time.Millisecond
)

// transferFaultOf carries out the tftp layer's actions (fault.Catalog).
func transferFaultOf(h fault.Hit, file string) transferFault {
	switch h.Action {
	case "missing":
		return transferFault{Delay: h.Delay, Refuse: fmt.Errorf("%s: file not found", file)}
	case "stall":
		n, err := h.ArgInt()
		if err != nil || n <= 0 {
			n = defaultStallAfter
		}
		return transferFault{StallAfter: n, StallFor: cmp.Or(h.Delay, defaultStall)}
	case "slow":
		d, err := time.ParseDuration(h.Arg)
		if err != nil || d <= 0 {
			d = defaultBlockDelay
		}
		return transferFault{Delay: h.Delay, BlockDelay: d}
	}
	return transferFault{Delay: h.Delay}
}

// defaultStall is how long a stalled transfer holds back before failing.
const defaultStall = time.Minute

// errStalled ends a transfer stalled by a fault.
var errStalled = errors.New("transfer stalled (injected fault)")

// errStopping ends a transfer held back by a fault when the server stops.
var errStopping = errors.New("server stopping")

// sleep waits d, or less when ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// faultReader carries a fault's BlockDelay and StallAfter out on the file.
type faultReader struct {
	ctx  context.Context // the server's: a stall ends when it stops
	r    io.Reader
	f    transferFault
	sent int64
}

func (fr *faultReader) Read(p []byte) (int, error) {
	if fr.f.StallAfter > 0 {
		left := fr.f.StallAfter - fr.sent
		if left <= 0 {
			sleep(fr.ctx, cmp.Or(fr.f.StallFor, defaultStall))
			return 0, errStalled
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	if !sleep(fr.ctx, fr.f.BlockDelay) {
		return 0, errStopping
	}
	n, err := fr.r.Read(p)
	fr.sent += int64(n)
	return n, err
}

// Event is one finished (or refused) transfer. TFTP carries no MAC: map
// Remote to a node with the DHCP server's lease table (dhcp.Server.MACOf)
// or the per-MAC file names (pxelinux.cfg/01-<mac>).
type Event struct {
	File     string         // the name the client asked for
	Remote   netip.AddrPort // the client
	Bytes    int64          // bytes sent
	Duration time.Duration
	Err      error // nil on success
	Time     time.Time
}

// Server is a read-only TFTP server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	faults fault.Injector
	// metrics
	transfers *prometheus.CounterVec // result: success, failure
	sent      prometheus.Counter
	took      prometheus.Histogram

	mu       sync.Mutex
	inFlight int
	perIP    map[netip.Addr]int
}

// ErrBusy refuses a request beyond MaxTransfers or MaxPerClient, or one
// the host has no descriptor left for: the client may try again.
var ErrBusy = errors.New("server busy, try again later")

// admit counts a transfer for ip in, or refuses it with ErrBusy; the
// returned func counts it out.
func (s *Server) admit(ip netip.Addr) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight >= s.cfg.MaxTransfers {
		return nil, fmt.Errorf("%w (%d transfers in flight)", ErrBusy, s.inFlight)
	}
	if s.perIP[ip] >= s.cfg.MaxPerClient {
		return nil, fmt.Errorf("%w (%d transfers in flight to %s)", ErrBusy, s.perIP[ip], ip)
	}
	s.inFlight++
	s.perIP[ip]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inFlight--
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
	}, nil
}

// ErrAccess is returned for names that would leave the root.
var ErrAccess = errors.New("access violation")

// New validates cfg and applies defaults; it does no I/O. Serve opens Root
// as an os.Root, which refuses symlinks that lead outside it.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" && cfg.Files == nil {
		return nil, errors.New("tftp: Root or Files is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = 1024
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = 8
	}
	if cfg.MaxBlockSize != 0 && (cfg.MaxBlockSize < 513 || cfg.MaxBlockSize > 65464) {
		return nil, fmt.Errorf("tftp: MaxBlockSize %d outside 513..65464", cfg.MaxBlockSize)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &metrics.Registry{Reg: cfg.Registerer}
	s := &Server{cfg: cfg, log: log, faults: fault.OrNone(cfg.Faults), perIP: map[netip.Addr]int{},
		transfers: r.CounterVec("tftp", "transfers_total", "TFTP read requests ended, by result (success, failure).", "result"),
		sent:      r.Counter("tftp", "sent_bytes_total", "File bytes sent by TFTP transfers, failed ones included."),
		took:      r.Histogram("tftp", "transfer_seconds", "Duration of TFTP transfers, failed ones included.", nil),
	}
	if r.Err != nil {
		return nil, fmt.Errorf("tftp: %w", r.Err)
	}
	return s, nil
}

// Serve answers read requests on conn until ctx ends, waits for transfers
// in flight to finish or time out, and returns nil. Write requests are
// refused.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	defer conn.Close()
	var root *os.Root
	if s.cfg.Root != "" {
		r, err := os.OpenRoot(s.cfg.Root)
		if err != nil {
			return fmt.Errorf("tftp: root: %w", err)
		}
		defer r.Close()
		root = r
	}
	srv := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		return s.read(ctx, root, name, rf)
	}, nil)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetBlockSizeNegotiation(false)
	if s.cfg.MaxBlockSize != 0 {
		srv.SetBlockSize(s.cfg.MaxBlockSize)
	}
	if s.cfg.SinglePort {
		srv.EnableSinglePort()
	}
	stop := context.AfterFunc(ctx, srv.Shutdown)
	defer stop()
	err := srv.Serve(conn)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		return errors.New("tftp: server stopped")
	}
	return fmt.Errorf("tftp: %w", err)
}

// read serves one read request.
func (s *Server) read(ctx context.Context, root *os.Root, name string, rf io.ReaderFrom) (err error) {
	start := time.Now()
	var remote netip.AddrPort
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		remote = ra.AddrPort()
	}
	var n int64
	defer func() {
		ev := Event{File: name, Remote: remote, Bytes: n, Duration: time.Since(start), Err: err, Time: start}
		result := "success"
		if err != nil {
			result = "failure"
		}
		s.transfers.WithLabelValues(result).Inc()
		s.sent.Add(float64(n))
		s.took.Observe(ev.Duration.Seconds())
		if err != nil {
			s.log.Info("tftp: transfer failed", "file", name, "ip", remote.Addr(), "err", err)
		} else {
			s.log.Info("tftp: sent", "file", name, "ip", remote.Addr(), "bytes", n)
		}
		if s.cfg.Observer != nil {
			s.cfg.Observer(ev)
		}
	}()
	done, err := s.admit(remote.Addr())
	if err != nil {
		return err
	}
	defer done()
	clean, err := CleanPath(name)
	if err != nil {
		return err
	}
	var tf transferFault
	if h, ok := s.faults.Inject(fault.TFTP, events.Who{IP: remote.Addr().String()}, clean); ok {
		tf = transferFaultOf(h, clean)
		if !sleep(ctx, tf.Delay) {
			return errStopping
		}
		if tf.Refuse != nil {
			return tf.Refuse
		}
	}
	r, size, err := s.open(root, clean)
	if err != nil {
		return err
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(size)
	}
	var body io.Reader = io.NewSectionReader(r, 0, size)
	if tf.BlockDelay > 0 || tf.StallAfter > 0 {
		body = &faultReader{ctx: ctx, r: body, f: tf}
	}
	n, err = rf.ReadFrom(body)
	if err != nil {
		return fmt.Errorf("sending %s: %w", clean, err)
	}
	return nil
}

// open finds clean in Files, then under root. Errors are what the client
// sees, so they name no host path.
func (s *Server) open(root *os.Root, clean string) (io.ReaderAt, int64, error) {
	if s.cfg.Files != nil {
		r, size, err := s.cfg.Files.Open(clean)
		switch {
		case err == nil:
			return r, size, nil
		case !errors.Is(err, fs.ErrNotExist):
			s.log.Warn("tftp: dynamic file", "file", clean, "err", err)
			return nil, 0, fmt.Errorf("%s: cannot read", clean)
		}
	}
	if root == nil {
		return nil, 0, fmt.Errorf("%s: file not found", clean)
	}
	f, err := root.Open(clean)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("%s: file not found", clean)
		}
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			s.log.Warn("tftp: out of file descriptors", "file", clean, "err", err)
			return nil, 0, fmt.Errorf("%s: %w", clean, ErrBusy)
		}
		s.log.Warn("tftp: refused", "file", clean, "err", err)
		return nil, 0, fmt.Errorf("%s: %w", clean, ErrAccess)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s: cannot read", clean)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file", clean)
	}
	return f, fi.Size(), nil
}

// CleanPath turns a requested name into a root-relative slash path, or
// fails with ErrAccess for names that could leave the root: empty names,
// NUL bytes, absolute paths, drive letters and ".." elements. Backslashes
// (sent by Windows-style clients) count as separators.
func CleanPath(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name: %w", ErrAccess)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("NUL in name: %w", ErrAccess)
	}
	n := strings.ReplaceAll(name, `\`, "/")
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("absolute path %q: %w", name, ErrAccess)
	}
	if len(n) >= 2 && n[1] == ':' {
		return "", fmt.Errorf("drive path %q: %w", name, ErrAccess)
	}
	parts := strings.Split(n, "/")
	out := parts[:0]
	for _, p := range parts {
		switch p {
		case "..":
			return "", fmt.Errorf("%q leaves the root: %w", name, ErrAccess)
		case "", ".":
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return "", fmt.Errorf("%q names the root: %w", name, ErrAccess)
	}
	return strings.Join(out, "/"), nil
}
