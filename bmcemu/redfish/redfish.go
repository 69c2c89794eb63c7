// Package redfish serves a Redfish service (DSP0266, schema 2019.1 and
// later, RedfishVersion 1.6.0) in front of many machines at once: each
// bmcemu.Machine is a ComputerSystem at /redfish/v1/Systems/<SMBIOS UUID>
// (its name resolves too) with a Manager and a Chassis of the same Id. It
// drives the machines through the same bmcemu.Machine interface as the IPMI
// BMC: the boot override lives in IPMI boot option parameter 5, so what
// IPMI sets Redfish reads and the other way round.
//
// It is written for the clients Ironic uses (sushy) and the DMTF's
// redfishtool: sessions and basic auth, ETags with If-Match, Redfish error
// bodies, the Reset action, Boot overrides, virtual media, the System Event
// Log as a LogService (one bmcemu.SEL shared with the IPMI BMC) and Chassis
// Thermal and Power from the IPMI sensors (bmcemu.Sensors).
package redfish

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/httpserve"
	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures one Redfish service.
type Config struct {
	// Systems are the machines served, each with the credentials of its
	// BMC. At least one; names and UUIDs must be unique.
	Systems []System
	// CertFile and KeyFile are the PEM server certificate (chain) and key
	// for HTTPS (see GenerateCertificate). Both are required unless
	// PlainHTTP.
	CertFile, KeyFile string
	// PlainHTTP serves plain HTTP instead of HTTPS.
	PlainHTTP bool
	// SessionTimeout ends a session this long after its last use.
	// Default 30 minutes.
	SessionTimeout time.Duration
	// RestartTimeout bounds how long GracefulRestart waits for the OS to
	// power the machine off before it resets it. Default 30 s.
	RestartTimeout time.Duration
	// Recorder is told of every Redfish action that changes a machine
	// (reset, boot override, virtual media, sessions, log clears), keyed
	// by the machine's name. nil => none.
	Recorder events.Recorder
	// Faults is asked (layer redfish, op the HTTP method) before every
	// request to one machine's resources: "status" answers with Arg's HTTP
	// status (default 500), "delay" (or any hit's Delay) answers late. It
	// is also asked at three moments (faults.go): op "power-off"
	// (power-on-conflict), "task" (task-fail) and "session"
	// (session-expire). nil => none.
	Faults fault.Injector
	// FirmwareReboot is how long the BMC reboots after a SimpleUpdate of
	// its firmware (by Now's clock): requests to its system answer 503
	// meanwhile. Default 5 s.
	FirmwareReboot time.Duration
	// Logger; nil => discard. Keys node, event, err.
	Logger *slog.Logger
	// Registerer receives metalbed_redfish_requests_total{method,code} and
	// metalbed_redfish_request_seconds{method}. nil => none are exported.
	Registerer prometheus.Registerer
	// Now is the clock for sessions and Manager DateTime. Default time.Now.
	Now func() time.Time
}

// System is one machine and the account that may manage it.
type System struct {
	Machine            bmcemu.Machine
	Username, Password string
	// SEL is the machine's System Event Log, shared with its IPMI BMC
	// (bmcemu.Config.SEL) so both protocols list and clear the same
	// records. nil => the service's own, of 128 records.
	SEL *bmcemu.SEL
	// Latency holds every answer about this system back this long, as a
	// BMC on a slow management controller answers (vms/timing). 0: none.
	Latency time.Duration
}

const (
	defaultSessionTimeout = 30 * time.Minute
	defaultRestartTimeout = 30 * time.Second
	// maxBody bounds every request body.
	maxBody = 64 << 10
	// machineTimeout bounds each call into a Machine.
	machineTimeout = 10 * time.Second
	// firmwareVersion is the Manager's firmware (the IPMI BMC reports 2.10).
	firmwareVersion = "2.10"
)

// Server is a Redfish service. Create it with New and run it with Serve.
type Server struct {
	cfg     Config
	log     *slog.Logger
	rec     events.Recorder
	systems []*system
	byID    map[string]*system // UUID and name
	mux     *http.ServeMux
	auth    *sessions
	tasks   *taskList

	serving sync.Mutex

	requests *prometheus.CounterVec   // method, code
	latency  *prometheus.HistogramVec // method

	lifeMu sync.Mutex
	life   context.Context // Serve's ctx: bounds work that outlives a request
}

// New validates cfg, applies defaults and builds the route table. It does
// no I/O.
func New(cfg Config) (*Server, error) {
	if len(cfg.Systems) == 0 {
		return nil, errors.New("redfish: Config.Systems is empty")
	}
	if !cfg.PlainHTTP && (cfg.CertFile == "" || cfg.KeyFile == "") {
		return nil, errors.New("redfish: HTTPS needs Config.CertFile and KeyFile (or set PlainHTTP)")
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = defaultSessionTimeout
	}
	if cfg.RestartTimeout <= 0 {
		cfg.RestartTimeout = defaultRestartTimeout
	}
	if cfg.FirmwareReboot <= 0 {
		cfg.FirmwareReboot = defaultFirmwareReboot
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:  cfg,
		log:  log,
		rec:  events.OrDiscard(cfg.Recorder),
		byID: map[string]*system{},
	}
	for i, sc := range cfg.Systems {
		if sc.Machine == nil {
			return nil, fmt.Errorf("redfish: system %d: Machine is nil", i)
		}
		if sc.Username == "" || sc.Password == "" {
			return nil, fmt.Errorf("redfish: system %d: username and password are required", i)
		}
		hw := sc.Machine.Hardware()
		id := strings.ToLower(hw.UUID)
		if id == "" || hw.Name == "" {
			return nil, fmt.Errorf("redfish: system %d: machine has no UUID or name", i)
		}
		sys := &system{srv: s, id: id, hw: hw, m: sc.Machine, user: sc.Username, pass: sc.Password, latency: sc.Latency,
			lastState: "None",
			bios:      newBiosState(hw.UEFI), secure: newSecureBootState(), sel: sc.SEL}
		if sys.sel == nil {
			sys.sel = bmcemu.NewSEL(0)
		}
		sys.media = []*media{
			{id: "Cd", name: "Virtual CD", types: cdTypes, dev: bmcemu.MediaCD},
			{id: "UsbStick", name: "Virtual USB stick", types: usbStickTypes, dev: bmcemu.MediaUSBStick},
		}
		for _, k := range []string{id, hw.Name} {
			if _, dup := s.byID[k]; dup {
				return nil, fmt.Errorf("redfish: system %q: duplicate name or UUID", k)
			}
			s.byID[k] = sys
		}
		s.systems = append(s.systems, sys)
	}
	r := &metrics.Registry{Reg: cfg.Registerer}
	s.requests = r.CounterVec("redfish", "requests_total", "Redfish requests answered, by method and status code.", "method", "code")
	s.latency = r.HistogramVec("redfish", "request_seconds", "Time to answer Redfish requests, by method.", nil, "method")
	if r.Err != nil {
		return nil, fmt.Errorf("redfish: %w", r.Err)
	}
	s.auth = newSessions(s)
	s.tasks = newTaskList(s)
	s.mux = s.routes()
	return s, nil
}

// Serve answers Redfish on ln until ctx ends, then returns nil. ln is
// closed when Serve returns. Each Server serves one listener at a time.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.serving.TryLock() {
		return errors.New("redfish: Serve already running")
	}
	defer s.serving.Unlock()
	s.lifeMu.Lock()
	s.life = ctx
	s.lifeMu.Unlock()
	for _, sys := range s.systems {
		cancel := sys.m.Subscribe(sys.machineEvent)
		defer cancel()
		stopSEL := sys.sel.Follow(sys.m, s.cfg.Now)
		defer stopSEL()
	}
	hs := httpserve.Server(s, httpserve.Options{BaseContext: ctx, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)})
	scheme := "http"
	if !s.cfg.PlainHTTP {
		cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("redfish: certificate: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	})
	defer stop()
	s.log.Info("redfish serving", "ip", ln.Addr().String(), "scheme", scheme, "systems", len(s.systems))
	err := hs.Serve(ln)
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("redfish: serve: %w", err)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	sw := &metrics.StatusWriter{ResponseWriter: w}
	w = sw
	defer func() {
		m := metrics.Method(r.Method)
		s.requests.WithLabelValues(m, metrics.Code(sw.Code())).Inc()
		s.latency.WithLabelValues(m).Observe(time.Since(began).Seconds())
	}()
	defer func() {
		if p := recover(); p != nil {
			s.log.Warn("redfish handler panicked", "err", fmt.Sprint(p), "path", r.URL.Path)
			writeError(w, errInternal(fmt.Sprint(p)))
		}
	}()
	w.Header().Set("OData-Version", "4.0")
	s.mux.ServeHTTP(w, r)
}

// lifetime is the context of the running Serve (Background before).
func (s *Server) lifetime() context.Context {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.life == nil {
		return context.Background()
	}
	return s.life
}

// record tells the Recorder about an action on sys.
func (s *Server) record(sys *system, kind events.Kind, detail string) {
	s.rec.Record(events.Event{Kind: kind, Detail: detail, Who: events.Who{Machine: sys.hw.Name}})
}
