// Package bmcemu serves virtual BMCs: one IPMI v2.0 (RMCP+) and IPMI 1.5
// endpoint per Machine, driven unchanged by ipmitool, pyghmi and Ironic.
//
// The session layer (RMCP+ Open Session/RAKP with cipher suites 3 and 17,
// IPMI 1.5 MD5 sessions, AES-CBC-128, integrity, SOL data plane) comes from
// github.com/bougou/go-ipmi. bmcemu owns everything a client sees of the
// machine: the command table (chassis, boot options, device identity, SDR,
// sensors, SEL, payloads), the packet gate in front of go-ipmi, metrics and
// the fault layer ipmi carried out at the command table (Config.Faults).
package bmcemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// Config configures one virtual BMC. The zero value of every optional field
// is a documented default.
type Config struct {
	// Machine is the machine this BMC manages. Required.
	Machine Machine
	// Name identifies the BMC in logs (key "node"). Default "bmc".
	Name string
	// Username and Password are the one administrator account. Username
	// defaults to "admin"; Password is required (1–20 bytes; IPMI 1.5
	// sessions use only the first 16).
	Username string
	Password string
	// GUID is returned by Get Device GUID and Get System GUID. The zero GUID
	// is replaced by one derived from Name.
	GUID [16]byte
	// CipherSuites lists the RMCP+ cipher suites offered, in preference
	// order. Default {3, 17}. Supported: 3 and 17, and 0 only together
	// with AllowCipherZero.
	CipherSuites []uint8
	// AllowCipherZero offers cipher suite 0 (no authentication, integrity or
	// confidentiality). Refused by default, as on any sane BMC.
	AllowCipherZero bool
	// DisableIPMI15 turns off IPMI 1.5 (ipmitool -I lan) sessions.
	DisableIPMI15 bool
	// MaxSessions bounds concurrent RMCP+ sessions. Default 32: clients such
	// as pyghmi that exit without Close Session hold a slot until the 60 s
	// inactivity timeout, and the spec minimum of 4 runs out under that.
	MaxSessions int
	// Faults is asked (layer ipmi, the machine known by Name) before every
	// command is executed, pre-session commands included, with op
	// "0xNN/0xNN" (netfn/cmd): "drop" sends no reply at all, "cc" answers
	// with the completion code in Arg (0xff when Arg is none) without
	// executing the command, and any hit's Delay holds the reply back
	// ("delay"). A power command is asked about once more with op "power"
	// before it reaches the Machine: "ignore" acknowledges it without
	// carrying it out; setting the boot flags with op "boot-flags":
	// "forget-bootflags" acknowledges them without keeping them. nil: no
	// faults.
	Faults fault.Injector
	// ReplyDelay holds replies outside a session (authentication
	// capabilities, Open Session Response, RAKP 2 and 4, IPMI 1.5
	// challenge) back this long, and ResendAfter sends an in-session IPMI
	// reply once more when the client has been silent that long since it.
	// Together they keep pyghmi clear of its reply/waiter race (see
	// pacing.go) without slowing other clients. Zero values mean the
	// defaults, 1 ms and 2 ms; a negative value turns each off.
	ReplyDelay  time.Duration
	ResendAfter time.Duration
	// Latency holds every reply back this long, as a BMC on a slow
	// management controller answers (vms/timing's BMCLatency). 0: none.
	Latency time.Duration
	// Logger receives per-packet debug lines and milestones. nil => discard.
	Logger *slog.Logger
	// Recorder is told of each command that changes the machine (chassis
	// control, boot flags set), keyed by Name as the machine, for the
	// node's timeline. nil => none.
	Recorder events.Recorder
	// Registerer receives the BMC metrics (metalbed_bmc_*). nil => none.
	// Many BMCs may share one Registerer: collectors already registered
	// are reused, so counters aggregate over BMCs (no per-BMC labels).
	Registerer prometheus.Registerer
	// SELCapacity bounds the System Event Log; the oldest entries are
	// overwritten. Default 128. Unused with SEL.
	SELCapacity int
	// SEL is the machine's System Event Log, when other BMC protocols
	// serving the same machine (the Redfish service) share it: what one
	// lists, adds or clears, the others see. nil => the BMC's own, of
	// SELCapacity records.
	SEL *SEL
	// Now is the clock for SEL timestamps. Default time.Now.
	Now func() time.Time
}

// Server is one virtual BMC. Create it with New and run it with Serve.
type Server struct {
	cfg     Config
	baseLog *slog.Logger // Config.Logger; see log
	logOnce sync.Once
	nodeLog *slog.Logger
	faults  fault.Injector
	machine Machine
	bmc     *bmc.BMC
	metrics *metrics
	sel     *SEL
	sdr     *sdrRepo
	hal     *halAdapter

	bootMu    sync.Mutex
	bootParam bootParams

	dropMu   sync.Mutex
	dropNext map[string]int // remote address -> replies still to drop; made on first use

	unknownUser sync.Map // console session ID -> managed session ID of a RAKP 1 naming no user (packet.go)

	solMu    sync.Mutex
	solAddrs map[string]struct{} // remote addresses with SOL activated; made on first use

	serving sync.Mutex // held while Serve runs: one Serve per Server
}

// bootParams are the boot option parameters the BMC itself keeps
// (parameter 5 is stored by the Machine).
type bootParams struct {
	setInProgress byte    // parameter 0
	validBitClear byte    // parameter 3
	ack           [2]byte // parameter 4
}

const (
	defaultUsername    = "admin"
	defaultMaxSessions = 32
	defaultSELCapacity = 128
	defaultReplyDelay  = time.Millisecond
	defaultResendAfter = 2 * time.Millisecond

	// OpenBMC Project (IANA 49871): a virtual BMC is no vendor's hardware,
	// and Ironic's vendor detection must not take it for one.
	manufacturerID = 49871
	productID      = 0x6d62 // "mb"
	firmwareMajor  = 2
	firmwareMinor  = 0x10 // BCD: firmware 2.10
)

// New validates cfg, applies defaults and builds the BMC and its command
// table. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Machine == nil {
		return nil, errors.New("bmcemu: Config.Machine is required")
	}
	if cfg.Name == "" {
		cfg.Name = "bmc"
	}
	if cfg.Username == "" {
		cfg.Username = defaultUsername
	}
	if len(cfg.Username) > 16 {
		return nil, fmt.Errorf("bmcemu: username %q longer than 16 bytes", cfg.Username)
	}
	if cfg.Password == "" {
		return nil, errors.New("bmcemu: Config.Password is required")
	}
	if len(cfg.Password) > 20 {
		return nil, errors.New("bmcemu: password longer than 20 bytes")
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = defaultMaxSessions
	}
	if cfg.SELCapacity <= 0 {
		cfg.SELCapacity = defaultSELCapacity
	}
	if cfg.ReplyDelay == 0 {
		cfg.ReplyDelay = defaultReplyDelay
	}
	if cfg.ResendAfter == 0 {
		cfg.ResendAfter = defaultResendAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GUID == ([16]byte{}) {
		cfg.GUID = guidFromName(cfg.Name)
	}
	suites, err := cipherSuites(cfg.CipherSuites, cfg.AllowCipherZero)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}

	sel := cfg.SEL
	if sel == nil {
		sel = NewSEL(cfg.SELCapacity)
	}
	sel.countInto(m.selEntries)

	s := &Server{
		cfg:     cfg,
		baseLog: log,
		machine: cfg.Machine,
		faults:  fault.OrNone(cfg.Faults),
		metrics: m,
		sel:     sel,
		sdr:     sharedSDR(),
	}
	s.hal = &halAdapter{srv: s}

	info := bmc.DeviceInfo{
		DeviceID:                0x20,
		DeviceRevision:          0x01,
		FirmwareMajor:           firmwareMajor,
		FirmwareMinor:           firmwareMinor,
		IPMIVersion:             0x02,
		ManufacturerID:          manufacturerID,
		ProductID:               productID,
		AdditionalDeviceSupport: 0x87,
	}
	opts := []bmc.Option{bmc.WithCipherSuites(suites), bmc.WithClock(evictionClock{})}
	if cfg.DisableIPMI15 {
		opts = append(opts, bmc.WithV15Disabled())
	}
	b := bmc.New(info, cfg.GUID, s.hal, opts...)
	b.Sessions = bmc.NewSessionStoreWithOptions(b.Clock(), bmc.WithMaxSessions(cfg.MaxSessions))
	b.Sessions.SetOnRemove(b.SOL.DeactivateBySession)
	// go-ipmi enables the anonymous user in slot 1; this BMC has exactly one
	// account, and Get Channel Authentication Capabilities must not
	// advertise null-user or anonymous login.
	if err := b.Users.Update(1, func(u *bmc.User) error { u.Enabled = false; return nil }); err != nil {
		return nil, fmt.Errorf("bmcemu: disable anonymous user: %w", err)
	}
	user, err := b.Users.Add(2, cfg.Username)
	if err != nil {
		return nil, fmt.Errorf("bmcemu: add user: %w", err)
	}
	if err := b.Users.Update(user.ID, func(u *bmc.User) error {
		u.SetPassword([]byte(cfg.Password))
		u.Enabled = true
		u.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}
		u.SetPayloadAccess(1, true, 0x02, 0)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("bmcemu: configure user: %w", err)
	}
	s.bmc = b
	return s, nil
}

// cipherSuites turns the configured suite IDs into go-ipmi's, refusing what
// the BMC cannot or must not offer.
func cipherSuites(ids []uint8, allowZero bool) ([]types.CipherSuiteID, error) {
	if len(ids) == 0 {
		ids = []uint8{3, 17}
		if allowZero {
			ids = append(ids, 0)
		}
	}
	out := make([]types.CipherSuiteID, 0, len(ids))
	for _, id := range ids {
		switch id {
		case 3, 17:
		case 0:
			if !allowZero {
				return nil, errors.New("bmcemu: cipher suite 0 requires AllowCipherZero")
			}
		default:
			return nil, fmt.Errorf("bmcemu: cipher suite %d not supported (use 3, 17)", id)
		}
		out = append(out, types.CipherSuiteID(id))
	}
	return out, nil
}

// Serve answers IPMI on conn until ctx ends, then returns nil. conn stays
// the caller's: Serve does not close it, but it does set its read deadline
// to wake up at shutdown. Each Server serves at most one conn at a time.
//
// Until the first datagram arrives the BMC only waits for it (idle.go):
// go-ipmi's packet loop, its buffers and its goroutines start then.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if !s.serving.TryLock() {
		return errors.New("bmcemu: Serve already running")
	}
	defer s.serving.Unlock()

	// Set up on a goroutine of its own (see elsewhere).
	var b binding
	elsewhere(func() { b = s.attach(ctx, conn) })
	defer b.detach()
	ctx = b.ctx

	// Waiting ends at shutdown or with a closed conn (as go-ipmi's loop
	// does, with nil); whatever else ends it, the loop meets as it did.
	if err := awaitDatagram(conn); ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	err := s.serveIPMI(ctx, b.gate)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bmcemu: serve: %w", err)
	}
	return nil
}

// binding is what Serve sets up around conn from its first moment.
type binding struct {
	ctx    context.Context // Serve's, canceled by detach
	gate   *gateConn       // in front of conn
	detach func()          // undoes it all
}

// attach starts what serving conn needs from the first moment: the SEL
// following the machine, the BMC in the serving map, the wake-up at
// shutdown.
func (s *Server) attach(ctx context.Context, conn net.PacketConn) binding {
	ctx, cancel := context.WithCancel(ctx)
	stopSEL := s.sel.Follow(s.machine, s.cfg.Now)
	serving.Store(s.bmc, s)
	gate := &gateConn{srv: s, conn: conn}
	stop := context.AfterFunc(ctx, func() {
		gate.closing.Store(true)
		_ = conn.SetReadDeadline(time.Unix(1, 0))
	})
	s.baseLog.Info("bmc serving", "node", s.cfg.Name, "ip", conn.LocalAddr().String())
	return binding{ctx: ctx, gate: gate, detach: func() {
		_ = conn.SetReadDeadline(time.Time{})
		stop()
		serving.Delete(s.bmc)
		stopSEL()
		cancel()
	}}
}

// elsewhere runs fn on a goroutine of its own and waits for it. Serve's
// goroutine parks in awaitDatagram for as long as its BMC is idle (for
// most of a large fleet, for good), and the runtime never shrinks a parked
// stack below 4 KiB once it grew there: the set-up work (allocations,
// context and map bookkeeping) done elsewhere keeps it at the smallest,
// 2 KiB — 20 MB at 10 000 BMCs.
func elsewhere(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

// serveIPMI runs go-ipmi's packet loop on gate until ctx ends or the conn
// fails.
func (s *Server) serveIPMI(ctx context.Context, gate *gateConn) error {
	leave := sessionSweep.join()
	defer leave()
	gate.pace = newPacer(gate.conn, s.cfg.ReplyDelay, s.cfg.ResendAfter)
	gate.pace.quiet = s.solActive
	defer gate.pace.stop()
	// One byte over the largest datagram admitted, so an oversize one reads
	// as too large instead of silently truncated.
	inner := server.NewServer(s.bmc, gate, server.WithHandlerRegistry(registry()),
		server.WithServerBufferSize(maxIPMIPacket+1))
	err := inner.Serve(ctx)
	// inner.Close retires SOL workers and consoles; gateConn.Close leaves
	// the caller's conn open.
	_ = inner.Close()
	return err
}

// log is the BMC's logger, with its name as key "node". Made on first
// use: a With'd logger is a few hundred bytes, and most BMCs of a large
// fleet never log.
func (s *Server) log() *slog.Logger {
	s.logOnce.Do(func() { s.nodeLog = s.baseLog.With("node", s.cfg.Name) })
	return s.nodeLog
}

// setSOL records that the client at addr activated (on) or deactivated
// (off) the SOL payload. While it is active, its in-session replies are not
// re-sent: ipmitool in its SOL loop takes a second Activate Payload reply as
// the BMC ending the session.
func (s *Server) setSOL(addr net.Addr, on bool) {
	if addr == nil {
		return
	}
	s.solMu.Lock()
	defer s.solMu.Unlock()
	if !on {
		delete(s.solAddrs, addr.String())
		return
	}
	if s.solAddrs == nil || len(s.solAddrs) >= pacerMaxClients {
		s.solAddrs = make(map[string]struct{}) // bounded; worst case a resend too many
	}
	s.solAddrs[addr.String()] = struct{}{}
}

// solActive reports whether the client at key has SOL activated.
func (s *Server) solActive(key string) bool {
	s.solMu.Lock()
	defer s.solMu.Unlock()
	_, ok := s.solAddrs[key]
	return ok
}

// markDrop makes the next reply to addr vanish (fault injection).
func (s *Server) markDrop(addr net.Addr) {
	if addr == nil {
		return
	}
	s.dropMu.Lock()
	if s.dropNext == nil {
		s.dropNext = make(map[string]int)
	}
	s.dropNext[addr.String()]++
	s.dropMu.Unlock()
}

// takeDrop reports whether a reply to addr must be dropped, consuming it.
func (s *Server) takeDrop(addr net.Addr) bool {
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	k := addr.String()
	n := s.dropNext[k]
	if n == 0 {
		return false
	}
	if n == 1 {
		delete(s.dropNext, k)
	} else {
		s.dropNext[k] = n - 1
	}
	return true
}

// guidFromName derives a stable RFC 4122 version-5-shaped GUID from a name.
func guidFromName(name string) [16]byte {
	var g [16]byte
	h := uint64(1469598103934665603)
	for i := 0; i < 16; i++ {
		for _, c := range []byte(name) {
			h ^= uint64(c)
			h *= 1099511628211
		}
		h ^= uint64(i)
		h *= 1099511628211
		g[i] = byte(h >> 32)
	}
	g[6] = g[6]&0x0f | 0x50
	g[8] = g[8]&0x3f | 0x80
	return g
}
