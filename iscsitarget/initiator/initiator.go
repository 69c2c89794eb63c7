// Package initiator is a pure-Go iSCSI initiator (RFC 7143) for the conductor side of an
// iSCSI deploy: it logs in to one target (with CHAP when configured), finds the size of one
// LUN, and exposes it as an io.ReaderAt and io.WriterAt, keeping several SCSI commands in
// flight within the target's CmdSN window.
//
// One Session is one iSCSI session of one connection at ErrorRecoveryLevel 0: a connection
// failure fails the session, and the caller dials again.
package initiator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// DefaultInitiatorIQN is the initiator name used when Config.InitiatorIQN is empty.
const DefaultInitiatorIQN = "iqn.2024-01.io.metalbed:initiator"

// Config describes one session. The zero value of every optional field is its documented
// default.
type Config struct {
	// Addr is the target portal, "host:port" (port 3260 when missing). Required.
	Addr string
	// TargetIQN is the target to log in to. Required by Dial.
	TargetIQN string
	// InitiatorIQN is our name; default DefaultInitiatorIQN.
	InitiatorIQN string
	// LUN is the logical unit to use; 0 means the default, LUN 1 (the deploy ramdisk's disk).
	LUN uint64
	// CHAP, when Username or Secret is set, authenticates us to the target.
	CHAP CHAP
	// MutualCHAP, when set (with CHAP), makes the target prove it knows this secret.
	MutualCHAP CHAP
	// MaxOutstanding is how many SCSI commands may be in flight at once; default 8.
	MaxOutstanding int
	// MaxIOSize is the most bytes one READ or WRITE command carries; default 1 MiB.
	MaxIOSize int
	// Timeout bounds dialling plus the whole login (per portal when redirected), each SCSI
	// command from sending to its status, each write to the connection and each NOP-Out
	// ping; default 30s.
	Timeout time.Duration
	// KeepAlive is how long the connection may stay silent before we ping the target with a
	// NOP-Out; default 5s; negative disables pings.
	KeepAlive time.Duration
	// HeaderDigest and DataDigest offer CRC32C digests (preferred over None) at login.
	HeaderDigest bool
	DataDigest   bool
	// DialContext opens the transport; default a net.Dialer over TCP.
	DialContext func(ctx context.Context, addr string) (net.Conn, error)
	// Logger receives milestones (Info), misbehaving peers (Warn) and PDUs (Debug); nil
	// discards.
	Logger *slog.Logger
}

const (
	defaultMaxOutstanding = 8
	defaultMaxIOSize      = 1 << 20
	defaultTimeout        = 30 * time.Second
	defaultKeepAlive      = 5 * time.Second
	maxRedirects          = 4
	// ourMaxRecvDataSegmentLength is what we declare we can receive.
	ourMaxRecvDataSegmentLength = 256 << 10
	// ourMaxBurstLength is what we offer for MaxBurstLength and FirstBurstLength.
	ourMaxBurstLength   = 1 << 20
	ourFirstBurstLength = 256 << 10
	reservedTag         = 0xffffffff
)

// Errors callers may branch on.
var (
	// ErrClosed is returned by calls on a session that Close ended.
	ErrClosed = errors.New("iscsi: session closed")
	// ErrOutOfRange is returned by WriteAt for bytes beyond the end of the LUN.
	ErrOutOfRange = errors.New("iscsi: offset beyond the end of the LUN")
)

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		return c, errors.New("iscsi initiator: Config.Addr is required")
	}
	c.Addr = withDefaultPort(c.Addr)
	if c.InitiatorIQN == "" {
		c.InitiatorIQN = DefaultInitiatorIQN
	}
	if c.LUN == 0 {
		c.LUN = 1
	}
	if c.LUN > 0x3fff {
		return c, fmt.Errorf("iscsi initiator: LUN %d beyond flat addressing (16383)", c.LUN)
	}
	if c.MaxOutstanding <= 0 {
		c.MaxOutstanding = defaultMaxOutstanding
	}
	if c.MaxIOSize <= 0 {
		c.MaxIOSize = defaultMaxIOSize
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = defaultKeepAlive
	}
	if c.MutualCHAP.enabled() && !c.CHAP.enabled() {
		return c, errors.New("iscsi initiator: MutualCHAP needs CHAP")
	}
	if c.DialContext == nil {
		c.DialContext = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func withDefaultPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), "3260")
}

// encodeLUN returns the 8-byte SAM LUN structure of lun: peripheral addressing below 256,
// flat addressing above.
func encodeLUN(lun uint64) uint64 {
	if lun < 256 {
		return lun << 48
	}
	return (0x4000 | lun) << 48
}

// Session is one logged-in iSCSI session to one LUN. Its methods are safe for concurrent
// use. Concurrent unaligned WriteAt calls that touch the same block are not atomic with
// respect to each other (each does a read-modify-write of that block), as with a raw disk.
type Session struct {
	cfg    Config
	log    *slog.Logger
	conn   net.Conn
	params params
	recv   pdu.Options // digests and our receive limit
	send   pdu.Options // digests for what we write
	lun    uint64      // encoded LUN field
	isid   [6]byte
	tsih   uint16

	blocks    uint64
	blockSize int

	wmu       sync.Mutex // serialises writes to conn
	wdeadline time.Time  // the write deadline last set, guarded by wmu

	mu        sync.Mutex
	cmdSN     uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	expStatSN uint32
	nextITT   uint32
	tasks     map[uint32]*task
	window    chan struct{} // closed and replaced when the CmdSN window or state changes
	err       error         // why the session cannot take commands any more
	draining  bool          // the target asked for a logout
	closing   error         // what to report when the connection ends as expected

	slots    chan struct{} // MaxOutstanding tokens
	noSame   atomic.Bool   // the target refused WRITE SAME(16): zeros go as WRITEs
	ctrl     chan *pdu.PDU // replies for the control goroutine to send
	asyncEvt chan *pdu.PDU // asynchronous messages for the control goroutine
	lastRecv atomic.Int64  // unix nanos of the last PDU read
	// nopReplies and pings count NOP-Outs answering the target and our own keepalives.
	nopReplies atomic.Int64
	pings      atomic.Int64
	// windowWaits counts commands that waited for the CmdSN window to open.
	windowWaits atomic.Int64
	done        chan struct{} // closed when the reader goroutine exits
	stop        chan struct{} // closed by Close
	wg          sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Size is the LUN's size in bytes.
func (s *Session) Size() int64 { return int64(s.blocks) * int64(s.blockSize) }

// BlockSize is the LUN's logical block size in bytes.
func (s *Session) BlockSize() int { return s.blockSize }

// Dial connects to cfg.Addr, logs in to cfg.TargetIQN (following login redirections), and
// checks that cfg.LUN is a disk and reads its size.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.TargetIQN == "" {
		return nil, errors.New("iscsi initiator: Config.TargetIQN is required")
	}
	s, err := connect(ctx, cfg, sessionNormal)
	if err != nil {
		return nil, err
	}
	s.start()
	if err := s.probe(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("LUN %d of %s: %w", cfg.LUN, cfg.TargetIQN, err)
	}
	s.log.Info("iscsi session ready", "target", cfg.TargetIQN, "addr", s.conn.RemoteAddr().String(),
		"lun", cfg.LUN, "size", s.Size(), "block_size", s.blockSize)
	return s, nil
}

// Discover logs in to addr as a discovery session and returns the target names its
// SendTargets=All answer lists.
func Discover(ctx context.Context, addr string) ([]string, error) {
	targets, err := DiscoverConfig(ctx, Config{Addr: addr})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(targets))
	for _, t := range targets {
		names = append(names, t.Name)
	}
	return names, nil
}

// Target is one entry of a SendTargets answer.
type Target struct {
	Name      string
	Addresses []string // "host:port,tpgt" as the target sent them
}

// DiscoverConfig is Discover with CHAP, digests, timeouts and logging from cfg
// (TargetIQN and LUN are ignored).
func DiscoverConfig(ctx context.Context, cfg Config) ([]Target, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s, err := connect(ctx, cfg, sessionDiscovery)
	if err != nil {
		return nil, err
	}
	defer s.conn.Close()
	targets, err := s.sendTargets(ctx)
	if err != nil {
		return nil, fmt.Errorf("discovery at %s: %w", cfg.Addr, err)
	}
	if err := s.logoutSync(ctx); err != nil {
		s.log.Warn("discovery logout", "addr", cfg.Addr, "err", err)
	}
	return targets, nil
}

// probe checks the LUN with INQUIRY and reads its capacity.
func (s *Session) probe(ctx context.Context) error {
	inq := make([]byte, inquiryAllocLength)
	n, err := s.command(ctx, inquiryCmd(inq))
	if err != nil {
		return err
	}
	vendor, product, err := checkInquiry(inq[:n], s.cfg.LUN)
	if err != nil {
		return err
	}
	s.log.Debug("iscsi inquiry", "vendor", vendor, "product", product)
	// A first command may meet the UNIT ATTENTION of a new I_T nexus; command retries those.
	if _, err := s.command(ctx, testUnitReadyCmd()); err != nil {
		return err
	}
	buf := make([]byte, 32)
	n, err = s.command(ctx, readCapacity16Cmd(buf))
	if err == nil {
		blocks, bs, perr := parseCapacity16(buf[:n])
		if perr != nil {
			return perr
		}
		s.blocks, s.blockSize = blocks, int(bs)
		return nil
	}
	{
		if !IsSense(err, SenseIllegalRequest) {
			return err
		}
		buf = make([]byte, 8)
		if n, err = s.command(ctx, readCapacity10Cmd(buf)); err != nil {
			return err
		}
		blocks, bs, needs16, perr := parseCapacity10(buf[:n])
		if perr != nil {
			return perr
		}
		if needs16 {
			return errors.New("READ CAPACITY(10) says the LUN needs READ CAPACITY(16), which it refused")
		}
		s.blocks, s.blockSize = blocks, int(bs)
	}
	return nil
}
