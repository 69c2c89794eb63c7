// Package tftp is the provisioner's read-only TFTP server for network boot
// (NBPs, pxelinux configs, deploy kernels and ramdisks, token files). It
// serves a root directory that no request can escape — "..", absolute
// paths, NUL bytes and symlinks pointing outside are refused — plus an
// optional Files hook for content the conductor generates.
//
// The protocol is metalbed's own: read requests (RFC 1350) in octet or
// netascii mode (converted as tftpd-hpa does); option negotiation (RFC
// 2347) of blksize (RFC 2348, 8..65464), tsize and timeout (RFC 2349) and
// windowsize (RFC 7440, answered with at most 64), a known option with an
// unusable value refused with error 8 as tftpd-hpa does and unknown ones
// ignored; sliding windows resent from the block after the last one
// acknowledged; duplicate ACKs ignored (no Sorcerer's Apprentice); block
// numbers rolling over from 65535 to 0. Errors carry their codes: 1 file
// not found, 2 access violation (escapes, write requests), 4 illegal
// operation (unknown mode, malformed packets), 5 unknown transfer ID (a
// stranger's packet, answered while the transfer goes on), 8 options
// refused, 0 with a message otherwise ("server busy, try again later").
// Each transfer gets a socket of its own, or with SinglePort is answered
// from the listening socket.
package tftp

import (
	"cmp"
	"context"
	"encoding/binary"
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
	// Timeout is the retransmission timeout (a client's timeout option
	// overrides it for its transfer); default 5s.
	Timeout time.Duration
	// Retries is how many times a block (or window) is resent before
	// the transfer is given up; default 5.
	Retries int
	// MaxBlockSize caps the blksize a client may negotiate (513..65464);
	// 0 honours the client's request up to 65464, as tftpd-hpa does.
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
		return transferFault{Delay: h.Delay, Refuse: fmt.Errorf("%s: %w", file, errNotFound)}
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

// Serve answers read requests on conn until ctx ends, then ends the
// transfers in flight and returns nil. Write requests are refused.
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
	ctx, cancel := context.WithCancel(ctx)
	defer stopOn(ctx, conn)()
	l := &listener{s: s, ctx: ctx, root: root, conn: conn, shared: map[netip.AddrPort]*sharedPeer{}}
	defer func() {
		cancel() // ends the transfers in flight
		l.wg.Wait()
	}()
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isTemporary(err) {
				if !sleep(ctx, 10*time.Millisecond) {
					return nil
				}
				continue
			}
			return fmt.Errorf("tftp: %w", err)
		}
		l.handle(buf[:n], from)
	}
}

// isTemporary reports errors a read loop should outlive (out of buffers
// or descriptors, a datagram refused by the peer's host).
func isTemporary(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// listener is one Serve call's state: the transfers it started, and in
// SinglePort mode the clients they serve.
type listener struct {
	s    *Server
	ctx  context.Context
	root *os.Root
	conn net.PacketConn
	wg   sync.WaitGroup

	mu     sync.Mutex
	shared map[netip.AddrPort]*sharedPeer // SinglePort: transfers by client
}

// handle answers one packet on the listening socket.
func (l *listener) handle(pkt []byte, from net.Addr) {
	remote := addrPort(from)
	if l.s.cfg.SinglePort && l.deliver(remote, pkt) {
		return
	}
	if len(pkt) < 2 {
		l.reply(from, codeIllegalOp, "illegal TFTP operation: short packet")
		return
	}
	switch op := binary.BigEndian.Uint16(pkt); op {
	case opRRQ:
		req, err := parseRequest(pkt)
		if err != nil {
			l.reply(from, codeIllegalOp, "illegal TFTP operation: "+err.Error())
			return
		}
		l.start(req, from, remote)
	case opWRQ:
		l.reply(from, codeAccess, "access violation: read-only server, write requests are refused")
	case opERROR:
	case opDATA, opACK, opOACK:
		l.reply(from, codeUnknownTID, "unknown transfer ID")
	default:
		l.reply(from, codeIllegalOp, fmt.Sprintf("illegal TFTP operation: opcode %d", op))
	}
}

// reply sends an ERROR from the listening socket.
func (l *listener) reply(to net.Addr, code uint16, msg string) {
	l.conn.WriteTo(errorPacket(code, msg), to)
}

// deliver hands pkt to the shared-socket transfer of remote, if any (a
// repeated RRQ included: the transfer ignores it).
func (l *listener) deliver(remote netip.AddrPort, pkt []byte) bool {
	l.mu.Lock()
	p := l.shared[remote]
	l.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case p.in <- append([]byte(nil), pkt...):
	default: // the transfer is behind: a lost packet, resent on timeout
	}
	return true
}

// start serves req in a transfer of its own. In SinglePort mode the
// client's packets go to the transfer from now on.
func (l *listener) start(req request, from net.Addr, remote netip.AddrPort) {
	var shared *sharedPeer
	if l.s.cfg.SinglePort {
		shared = &sharedPeer{conn: l.conn, remote: from, in: make(chan []byte, 8), done: l.ctx.Done()}
		l.mu.Lock()
		l.shared[remote] = shared
		l.mu.Unlock()
	}
	l.wg.Go(func() {
		start := time.Now()
		var n int64
		err := l.transfer(req, from, remote, shared, &n)
		l.s.report(Event{File: req.file, Remote: remote, Bytes: n, Duration: time.Since(start), Err: err, Time: start})
	})
}

// transfer admits req, gives it a socket of its own (unless shared is
// set) and sends the file; n counts the bytes sent. Refusals before the
// transfer has its socket are answered from the listening one.
func (l *listener) transfer(req request, from net.Addr, remote netip.AddrPort, shared *sharedPeer, n *int64) error {
	if shared != nil {
		defer func() {
			l.mu.Lock()
			delete(l.shared, remote)
			l.mu.Unlock()
		}()
	}
	refuse := func(err error) error {
		l.reply(from, codeOf(err), err.Error())
		return err
	}
	if req.mode != "octet" && req.mode != "netascii" {
		return refuse(&Error{Code: codeIllegalOp, Msg: fmt.Sprintf("unknown mode %q", req.mode)})
	}
	done, err := l.s.admit(remote.Addr())
	if err != nil {
		return refuse(err)
	}
	defer done()
	if shared != nil {
		return l.s.send(l.ctx, l.root, req, shared, remote, n)
	}
	c, err := listenLike(l.conn)
	if err != nil {
		l.s.log.Warn("tftp: transfer socket", "err", err)
		return refuse(fmt.Errorf("no transfer socket: %w", ErrBusy))
	}
	defer c.Close()
	defer stopOn(l.ctx, c)()
	return l.s.send(l.ctx, l.root, req, &socketPeer{conn: c, remote: remote, buf: make([]byte, 2048)}, remote, n)
}

// listenLike opens a UDP socket on conn's local address, any port.
func listenLike(conn net.PacketConn) (*net.UDPConn, error) {
	var ip net.IP
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		ip = ua.IP
	}
	return net.ListenUDP("udp", &net.UDPAddr{IP: ip})
}

// addrPort is a's address and port (zero when a is no IP address).
func addrPort(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		return unmap(ua.AddrPort())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return unmap(ap)
}

// report counts a finished (or refused) transfer, logs it and hands it
// to the Observer.
func (s *Server) report(ev Event) {
	result := "success"
	if ev.Err != nil {
		result = "failure"
	}
	s.transfers.WithLabelValues(result).Inc()
	s.sent.Add(float64(ev.Bytes))
	s.took.Observe(ev.Duration.Seconds())
	if ev.Err != nil {
		s.log.Info("tftp: transfer failed", "file", ev.File, "ip", ev.Remote.Addr(), "err", ev.Err)
	} else {
		s.log.Info("tftp: sent", "file", ev.File, "ip", ev.Remote.Addr(), "bytes", ev.Bytes)
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer(ev)
	}
}

// send checks req's name, opens its file and sends it to p; n counts the
// bytes sent. A refusal is sent to the client as an ERROR with its code.
func (s *Server) send(ctx context.Context, root *os.Root, req request, p peer, remote netip.AddrPort, n *int64) error {
	refuse := func(err error) error {
		p.send(errorPacket(codeOf(err), err.Error()))
		return err
	}
	clean, err := CleanPath(req.file)
	if err != nil {
		return refuse(err)
	}
	var tf transferFault
	if h, ok := s.faults.Inject(fault.TFTP, events.Who{IP: remote.Addr().String()}, clean); ok {
		tf = transferFaultOf(h, clean)
		if !sleep(ctx, tf.Delay) {
			return errStopping
		}
		if tf.Refuse != nil {
			return refuse(tf.Refuse)
		}
	}
	r, size, err := s.open(root, clean)
	if err != nil {
		return refuse(err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	var body io.Reader = io.NewSectionReader(r, 0, size)
	if req.mode == "netascii" {
		body, size = newNetascii(body), -1 // the size on the wire is unknown
	}
	if tf.BlockDelay > 0 || tf.StallAfter > 0 {
		body = &faultReader{ctx: ctx, r: body, f: tf}
	}
	prm, opts, err := negotiate(req, size, cmp.Or(s.cfg.MaxBlockSize, maxBlockSize))
	if err != nil {
		return refuse(err)
	}
	snd := &sender{p: p, body: body, blksize: prm.blksize, window: prm.window,
		timeout: s.cfg.Timeout, retries: s.cfg.Retries}
	if prm.timeoutSecs > 0 {
		snd.timeout = time.Duration(prm.timeoutSecs) * time.Second
	}
	var oack []byte
	if len(opts) > 0 {
		oack = oackPacket(opts)
	}
	err = snd.run(oack)
	*n = snd.sent
	if err != nil {
		return fmt.Errorf("sending %s: %w", clean, err)
	}
	return nil
}

// Error is a TFTP ERROR: Code is RFC 1350's (8: RFC 2347's option
// refusal), Msg the text sent.
type Error struct {
	Code uint16
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// errNotFound is the error of a name neither Files nor Root holds.
var errNotFound = errors.New("file not found")

// codeOf is the TFTP error code for err: 1 file not found, 2 access
// violation, an Error's own code, else 0 (with the message: busy,
// internal errors).
func codeOf(err error) uint16 {
	var te *Error
	switch {
	case errors.As(err, &te):
		return te.Code
	case errors.Is(err, errNotFound):
		return codeNotFound
	case errors.Is(err, ErrAccess):
		return codeAccess
	}
	return codeUndefined
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
		return nil, 0, fmt.Errorf("%s: %w", clean, errNotFound)
	}
	f, err := root.Open(clean)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, 0, fmt.Errorf("%s: %w", clean, errNotFound)
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
		return nil, 0, fmt.Errorf("%s: not a regular file: %w", clean, ErrAccess)
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
