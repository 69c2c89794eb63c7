// Package iscsitarget exports one disk as an iSCSI target (RFC 7143): the
// disk is LUN 1, a controller LUN 0 answers INQUIRY and REPORT LUNS as
// Linux initiators expect (tgtd does the same).
//
// The iSCSI transport (login with CHAP, sessions, the CmdSN window,
// NOP-In pings, R2T and Data-Out, Data-In with status, task management,
// logout, SendTargets) and the SCSI command layer are metalbed's own, in
// internal/pdu and internal/scsi. gotgt v0.2.2 was the starting point, but
// its SCSI layer keeps per-target state in process-wide maps keyed by
// target name (LUN maps, reservations, a singleton target service) and its
// backing stores register in init() registries, so it cannot serve several
// independent targets in one process; nothing of it is used.
//
// Many Targets may run in one process, each on its own listener, sharing
// nothing.
package iscsitarget

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/iscsitarget/internal/scsi"
	"github.com/prometheus/client_golang/prometheus"
)

// Disk is the storage a Target exports: a file, a block device, or
// anything else that reads and writes at offsets. A Disk that also has
// WriteZeroesAt(off, n int64) error (a hole punched in a sparse file) is
// given WRITE SAME of a zero block that way instead of as written zeros.
type Disk interface {
	io.ReaderAt
	io.WriterAt
}

// CHAP holds CHAP credentials (RFC 1994, MD5). With Username empty no
// authentication is required. MutualUsername/MutualSecret, when set, are
// what the target answers an initiator that asks to authenticate it.
type CHAP struct {
	Username       string
	Secret         string
	MutualUsername string
	MutualSecret   string
}

// Config configures a Target. Zero values mean the documented defaults.
type Config struct {
	// Addr is the portal ListenAndServe binds; default "127.0.0.1:3260".
	Addr string
	// IQN is the target name; required.
	IQN string
	// Disk is exported as LUN 1; required.
	Disk Disk
	// Size is the size of Disk in bytes. Zero means: Disk's Size() int64
	// method, or its Stat() size, or (block devices) Seek to the end.
	Size int64
	// BlockSize is the logical block size, 512 (default) or 4096.
	BlockSize uint32
	// CHAP, when CHAP.Username is set, requires CHAP authentication.
	CHAP CHAP
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Recorder receives each login and logout (events.ISCSILogin,
	// events.ISCSILogout, keyed by IQN and the initiator's IP) for the
	// node's timeline; nil: none.
	Recorder events.Recorder
	// Faults is asked about the node whose disk this is (known by IQN)
	// at the target's dispatch points, and the target carries out the
	// actions of layers iscsi and disk (fault.Catalog): at each login
	// (layer iscsi, op "login"), "refuse-login" answers with status 0x0202
	// (authorization failure); at each new connection (op "connect"),
	// "reset-after" resets it once Arg bytes (default 1) have crossed it,
	// both directions counted; at each WRITE (op "write"), "medium-error"
	// answers CHECK CONDITION, MEDIUM ERROR, WRITE ERROR and leaves the
	// disk untouched, as does layer disk's "write-error" (op "write");
	// and once, in New (layer disk, op "size"), "too-small" reports a
	// capacity of Arg bytes (default 512 MiB) when that is less than
	// Size. nil: no faults.
	Faults fault.Injector
	// Registerer receives metalbed_iscsi_logins_total{result},
	// metalbed_iscsi_commands_total{status},
	// metalbed_iscsi_read_bytes_total and metalbed_iscsi_written_bytes_total
	// (no IQN label: targets sharing a Registerer add up). nil: none are
	// exported.
	Registerer prometheus.Registerer
	// ResponseDelay is waited before each SCSI response and NOP-In reply:
	// a slow target. Default 0.
	ResponseDelay time.Duration
	// LoginTimeout bounds a whole login; default 15 s.
	LoginTimeout time.Duration
	// NopInterval is how long a connection may be idle before the target
	// sends a NOP-In ping; default 10 s. NopTimeout is how long it then
	// waits for any PDU before dropping the connection; default 30 s.
	NopInterval time.Duration
	NopTimeout  time.Duration
	// QueueDepth is the CmdSN window and the number of commands executed
	// at once per session; default 32.
	QueueDepth int
}

// Target serves one disk. Create it with New; Serve it on a listener.
type Target struct {
	cfg      Config
	log      *slog.Logger
	rec      events.Recorder
	faults   fault.Injector
	who      events.Who // the node whose disk this is, for Faults
	lu       *scsi.LU
	pool     bufPool
	handlers [64]pduHandler
	metrics  targetMetrics

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	sessions  map[uint16]*conn // full-feature normal sessions by TSIH
	lastTSIH  uint16
	lastNexus uint64
	wg        sync.WaitGroup
}

// New validates cfg and applies defaults. It does no network I/O; it may
// stat the disk to learn its size.
func New(cfg Config) (*Target, error) {
	if cfg.IQN == "" {
		return nil, errors.New("iscsitarget: no IQN")
	}
	if len(cfg.IQN) > 223 {
		return nil, fmt.Errorf("iscsitarget: IQN %q longer than 223 bytes", cfg.IQN)
	}
	if cfg.Disk == nil {
		return nil, errors.New("iscsitarget: no disk")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:3260"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = 15 * time.Second
	}
	if cfg.NopInterval <= 0 {
		cfg.NopInterval = 10 * time.Second
	}
	if cfg.NopTimeout <= 0 {
		cfg.NopTimeout = 30 * time.Second
	}
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = 32
	}
	if (cfg.CHAP.MutualUsername == "") != (cfg.CHAP.MutualSecret == "") {
		return nil, errors.New("iscsitarget: mutual CHAP needs both a username and a secret")
	}
	if cfg.CHAP.MutualUsername != "" && cfg.CHAP.Username == "" {
		return nil, errors.New("iscsitarget: mutual CHAP without initiator CHAP")
	}
	if cfg.CHAP.Username != "" && cfg.CHAP.Secret == "" {
		return nil, errors.New("iscsitarget: CHAP username without a secret")
	}
	if cfg.Size == 0 {
		n, err := diskSize(cfg.Disk)
		if err != nil {
			return nil, fmt.Errorf("iscsitarget: size of disk: %w", err)
		}
		cfg.Size = n
	}
	faults := fault.OrNone(cfg.Faults)
	who := events.Who{IQN: cfg.IQN}
	if h, ok := faults.Inject(fault.Disk, who, "size"); ok && h.Action == "too-small" {
		n, err := h.ArgInt()
		if err != nil || n <= 0 {
			n = defaultTooSmall
		}
		cfg.Size = min(n, cfg.Size)
	}
	var sync func() error
	if s, ok := cfg.Disk.(interface{ Sync() error }); ok {
		sync = s.Sync
	}
	var naa [8]byte
	if _, err := rand.Read(naa[:]); err != nil {
		return nil, fmt.Errorf("iscsitarget: identifier: %w", err)
	}
	id := binary.BigEndian.Uint64(naa[:])
	lu, err := scsi.NewLU(scsi.LUConfig{
		Disk:       cfg.Disk,
		Size:       cfg.Size,
		BlockSize:  cfg.BlockSize,
		Serial:     fmt.Sprintf("MB%014x", id>>8),
		NAA:        id,
		Sync:       sync,
		WriteFault: func(uint64, uint32) bool { return writeFault(faults, who) },
	})
	if err != nil {
		return nil, fmt.Errorf("iscsitarget: %w", err)
	}
	m, err := newTargetMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("iscsitarget: %w", err)
	}
	return &Target{
		metrics:   m,
		cfg:       cfg,
		log:       cfg.Logger,
		rec:       events.OrDiscard(cfg.Recorder),
		faults:    faults,
		who:       who,
		lu:        lu,
		handlers:  pduHandlers(),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		sessions:  map[uint16]*conn{},
	}, nil
}

// defaultTooSmall is the capacity layer disk's "too-small" reports when
// its Arg is none: less than a 1 GiB root partition needs.
const defaultTooSmall = 512 << 20

// writeFault reports whether a WRITE must fail: layer iscsi's
// "medium-error", else layer disk's "write-error" (op "write").
func writeFault(faults fault.Injector, who events.Who) bool {
	if h, ok := faults.Inject(fault.ISCSI, who, "write"); ok && h.Action == "medium-error" {
		return true
	}
	h, ok := faults.Inject(fault.Disk, who, "write")
	return ok && h.Action == "write-error"
}

// resetAfter is how many bytes a new connection may carry before layer
// iscsi's "reset-after" (op "connect") resets it; 0: no limit.
func (t *Target) resetAfter() int64 {
	h, ok := t.faults.Inject(fault.ISCSI, t.who, "connect")
	if !ok || h.Action != "reset-after" {
		return 0
	}
	n, err := h.ArgInt()
	if err != nil || n <= 0 {
		n = 1
	}
	return n
}

// refuseLogin reports whether layer iscsi's "refuse-login" (op "login")
// refuses a login.
func (t *Target) refuseLogin() bool {
	h, ok := t.faults.Inject(fault.ISCSI, t.who, "login")
	return ok && h.Action == "refuse-login"
}

func diskSize(d Disk) (int64, error) {
	if s, ok := d.(interface{ Size() int64 }); ok {
		return s.Size(), nil
	}
	if f, ok := d.(interface{ Stat() (os.FileInfo, error) }); ok {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if fi.Mode().IsRegular() {
			return fi.Size(), nil
		}
	}
	if s, ok := d.(io.Seeker); ok {
		n, err := s.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	return 0, errors.New("unknown size: set Config.Size")
}

// Size is the exported size in bytes (whole blocks).
func (t *Target) Size() int64 { return int64(t.lu.Blocks()) * int64(t.lu.BlockSize()) }

// IQN is the target name.
func (t *Target) IQN() string { return t.cfg.IQN }

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("iscsitarget: target closed")

// ListenAndServe binds cfg.Addr and serves until ctx ends; a bind error is
// returned.
func (t *Target) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", t.cfg.Addr)
	if err != nil {
		return fmt.Errorf("iscsitarget: %w", err)
	}
	return t.Serve(ctx, ln)
}

// Serve accepts connections on ln until ctx ends (it returns nil) or
// Close is called (it returns ErrClosed). It closes ln. Sessions accepted
// here end when Serve returns.
func (t *Target) Serve(ctx context.Context, ln net.Listener) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	t.listeners[ln] = struct{}{}
	t.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	t.log.Info("iscsi target serving", "iqn", t.cfg.IQN, "addr", ln.Addr().String())

	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		cancel()
		wg.Wait()
		t.mu.Lock()
		delete(t.listeners, ln)
		t.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				t.mu.Lock()
				closed := t.closed
				t.mu.Unlock()
				if closed {
					return ErrClosed
				}
				return nil
			}
			if retryAccept(err) {
				// As net/http: back off and accept again; running out of
				// descriptors for a moment must not end the export.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t.log.Warn("iscsi accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-ctx.Done():
				case <-time.After(delay):
				}
				continue
			}
			t.mu.Lock()
			closed := t.closed
			t.mu.Unlock()
			if closed {
				return ErrClosed
			}
			return fmt.Errorf("iscsitarget: accept: %w", err)
		}
		delay = 0
		c := t.newConn(nc)
		if c == nil {
			nc.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serve(ctx)
		}()
	}
}

// Close stops every Serve and drops every session and connection.
func (t *Target) Close() error {
	t.mu.Lock()
	t.closed = true
	for ln := range t.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	t.wg.Wait()
	return nil
}

// Sessions is the number of logged-in normal sessions.
func (t *Target) Sessions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

func (t *Target) register(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	t.lastNexus++
	c.nexus = t.lastNexus
	t.wg.Add(1)
	return true
}

func (t *Target) unregister(c *conn) {
	t.mu.Lock()
	delete(t.conns, c)
	if c.tsih != 0 && t.sessions[c.tsih] == c {
		delete(t.sessions, c.tsih)
	}
	t.mu.Unlock()
	t.wg.Done()
}

// addSession gives c a new TSIH and reinstates (drops) an older session of
// the same initiator and ISID (RFC 7143 6.3.5).
func (t *Target) addSession(c *conn) uint16 {
	t.mu.Lock()
	var old []*conn
	for _, s := range t.sessions {
		if s.isid == c.isid && s.initiator == c.initiator {
			old = append(old, s)
			delete(t.sessions, s.tsih)
		}
	}
	c.tsih = t.nextTSIHLocked()
	t.sessions[c.tsih] = c
	t.mu.Unlock()
	for _, s := range old {
		t.log.Info("iscsi session reinstated", "initiator", c.initiator)
		s.close()
	}
	return c.tsih
}

// newTSIH is a TSIH for a discovery session (not tracked).
func (t *Target) newTSIH() uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nextTSIHLocked()
}

func (t *Target) nextTSIHLocked() uint16 {
	for {
		t.lastTSIH++
		if t.lastTSIH != 0 && t.sessions[t.lastTSIH] == nil {
			return t.lastTSIH
		}
	}
}

func (t *Target) sessionExists(tsih uint16) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[tsih] != nil
}

// bufPool recycles data buffers by power-of-two size class (4 KiB..8 MiB).
type bufPool struct {
	classes [12]sync.Pool
}

func sizeClass(n int) int {
	c, size := 0, 4096
	for size < n {
		size <<= 1
		c++
	}
	return c
}

func (p *bufPool) get(n int) []byte {
	c := sizeClass(n)
	if c >= len(p.classes) {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 4096<<c)
}

func (p *bufPool) put(b []byte) {
	c := sizeClass(cap(b))
	if c >= len(p.classes) || cap(b) != 4096<<c {
		return
	}
	b = b[:cap(b)]
	p.classes[c].Put(&b)
}

// retryAccept reports whether an Accept error is passing: a timeout, or
// the process or system out of descriptors or buffers, or a connection
// aborted before it was accepted.
func retryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
