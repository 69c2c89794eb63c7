// Package web is metalbed's dashboard: the fleet, each node's timeline as
// swimlanes per layer, its serial console and its faults, live, in a
// browser. It is a subscriber of the event stream (events.Timeline) and a
// user of the provisioner's REST API and the testbed's fault endpoint,
// nothing more: it reads the machines from an inventory function, acts
// through HTTP calls as a person with a client would, and serves plain
// HTML rendered here (SVG included), a little CSS and a little JavaScript
// (EventSource for the live parts), all embedded; nothing is fetched from
// elsewhere.
//
// With Config.Replay it serves a recorded timeline (timeline.jsonl, see
// events.ReadLog) played back at an adjustable speed, with no testbed.
package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/httpserve"
)

// DefaultAddr is where `metalbed up` and `metalbed demo` serve the
// dashboard by default.
const DefaultAddr = "127.0.0.1:6380"

// Machine is what the dashboard shows of a machine from the inventory.
type Machine struct {
	Name string
	// IPMI is the BMC as Ironic names it, e.g. ipmi://127.0.0.1:6230.
	IPMI string
	// Redfish is the Redfish system's URL; "" without Redfish.
	Redfish string
	// BootMode is bios or uefi.
	BootMode string
	// ConsoleLog is the machine's serial console file, streamed to the
	// node view; "" for none.
	ConsoleLog string
	// Power reads whether the machine is on, as its BMC does; nil: the
	// power state is the event stream's last power event.
	Power func(context.Context) (on bool, err error)
}

// Config configures the dashboard.
type Config struct {
	// Machines lists the fleet (the testbed's inventory); nil: only the
	// nodes the timeline knows.
	Machines func() []Machine
	// Timeline is the live event stream; nil without a provisioner.
	Timeline *events.Timeline
	// Replay, when set, is a recorded timeline served instead of
	// Timeline, played back from its first entry at Speed times the
	// recorded pace (0: 1; negative: at once).
	Replay []events.Entry
	Speed  float64
	// APIURL is the provisioner's Ironic API, e.g. http://127.0.0.1:6385,
	// which the node view's buttons call; "" disables them.
	APIURL string
	// FaultsURL is the testbed's timeline and fault endpoint, e.g.
	// http://127.0.0.1:6386 (GET and POST /v1/faults); "" hides faults.
	FaultsURL string
	// Client makes the API calls; nil: a client with a 30 s timeout.
	Client *http.Client
	// Guard, when set, wraps every page and action (e.g. basic auth with
	// the API's users); nil: open to whoever reaches the address.
	Guard func(http.Handler) http.Handler
	// Logger; nil discards.
	Logger *slog.Logger
}

// Server is the dashboard; it is an http.Handler.
type Server struct {
	cfg Config
	log *slog.Logger
	mux http.Handler

	mu     sync.Mutex
	tl     *events.Timeline // the live timeline, or the replay's
	subs   map[int]chan events.Entry
	nextID int
	gen    int // bumped when a replay restarts: pages reload

	replay *replayer // nil when live
}

// New checks cfg and builds the routes. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Speed == 0 {
		cfg.Speed = 1
	}
	if cfg.Replay != nil && cfg.Timeline != nil {
		return nil, errors.New("web: a replay goes without a live timeline")
	}
	if cfg.Machines == nil {
		cfg.Machines = func() []Machine { return nil }
	}
	s := &Server{cfg: cfg, log: cfg.Logger, subs: map[int]chan events.Entry{}, tl: cfg.Timeline}
	if cfg.Replay != nil {
		s.replay = newReplayer(s, cfg.Replay, cfg.Speed)
		s.tl = events.New(events.Config{})
	}
	// The buttons change machines: another site's page must not be able
	// to post to them from the user's browser (CSRF).
	s.mux = http.NewCrossOriginProtection().Handler(s.routes())
	if cfg.Guard != nil {
		s.mux = cfg.Guard(s.mux)
	}
	return s, nil
}

// ServeHTTP serves the dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve serves the dashboard on ln until ctx ends, then returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.replay != nil {
		go s.replay.run(ctx)
	} else if s.cfg.Timeline != nil {
		defer s.cfg.Timeline.Subscribe(s.publish)()
	}
	hs := httpserve.Server(s, httpserve.Options{BaseContext: ctx})
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc
	return nil
}

// timeline is the timeline being shown (live, or the replay's current run).
func (s *Server) timeline() *events.Timeline {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tl
}

// publish hands e to every open live page; a page too slow to keep up
// misses the entry but re-renders from the timeline at the next one.
func (s *Server) publish(e events.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.subs {
		select {
		case c <- e:
		default:
		}
	}
}

// subscribe returns a channel of the entries published from now on and
// the generation the page was rendered at.
func (s *Server) subscribe() (<-chan events.Entry, int, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID
	s.nextID++
	c := make(chan events.Entry, 256)
	s.subs[id] = c
	return c, s.gen, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// generation is bumped by a replay's restart.
func (s *Server) generation() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// restart swaps in a fresh timeline (a replay starting over) and tells
// every page to reload.
func (s *Server) restart(tl *events.Timeline) {
	s.mu.Lock()
	s.tl = tl
	s.gen++
	s.mu.Unlock()
	s.publish(events.Entry{}) // wakes every page, which sees the new generation
}
