// Package api serves the provisioner's Ironic v1-compatible REST API
// (default 127.0.0.1:6385): version negotiation and error shapes as Ironic
// 21.4 answers them, nodes, ports, chassis, allocations, deploy templates,
// states, management, vendor passthru, drivers, conductors, node history,
// and the ramdisk endpoints (lookup, heartbeat, continue_inspection)
// guarded by agent token, deploy key or the node's state.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/httpserve"
	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/metalbed/metalbed/provisioner/conductor"
	"github.com/metalbed/metalbed/provisioner/store"
)

// DefaultAddr is where the API listens unless told otherwise.
const DefaultAddr = "127.0.0.1:6385"

// Config configures the API server.
type Config struct {
	// Conductor does the work; required.
	Conductor *conductor.Conductor
	// Store is read directly for listings; required.
	Store store.Store
	// Credentials, when set, turn on HTTP basic auth (see LoadHTPasswd; as
	// Ironic's auth_strategy http_basic). Default nil: no auth (noauth,
	// meant for loopback).
	Credentials *Credentials
	// MaxLimit caps ?limit (Ironic [api]max_limit). Default 1000.
	MaxLimit int
	// Logger gets request errors; nil discards.
	Logger *slog.Logger
	// Timeline, when set, answers GET /v1/nodes/{node}/timeline (a
	// metalbed extension: the node's per-node timeline) once the node is
	// known, by name or UUID; the request reaches it with
	// {node} set to the node's name when it has one, else its UUID. Default
	// nil: the route answers Ironic's 404.
	Timeline http.Handler
	// Recorder is told of each port created, changed or deleted
	// (events.Port*, carrying the node's UUID and name and the port's MAC):
	// the timeline learns which MAC is which node from them. Default: none.
	Recorder events.Recorder
	// Registerer receives the API's metrics (metalbed_api_requests_total
	// and metalbed_api_request_seconds, by method, the route's pattern and
	// status); nil: none are exported.
	Registerer prometheus.Registerer
	// Gatherer, when set, answers GET /metrics in Prometheus' format (like
	// Ironic's healthcheck: public, or behind Credentials when they are
	// set); nil: /metrics is Ironic's 404.
	Gatherer prometheus.Gatherer
	// Peer maps a connection's remote address ("ip:port") to the address
	// of the client behind it, for connections a TCP proxy relays (the
	// testbed's boot-network proxy). A lookup pins the agent's callback
	// host to the client's IP. nil: the connection's remote address.
	Peer func(remoteAddr string) string
}

// Server is the API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	c       *conductor.Conductor
	st      store.Store
	handler http.Handler
	fields  []nodeField
	rec     events.Recorder
	metrics apiMetrics
}

// New checks cfg and builds the routing table. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Conductor == nil || cfg.Store == nil {
		return nil, errors.New("api: Conductor and Store are required")
	}
	if cfg.MaxLimit <= 0 {
		cfg.MaxLimit = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, log: cfg.Logger, c: cfg.Conductor, st: cfg.Store, fields: nodeFields(), rec: events.OrDiscard(cfg.Recorder)}
	var err error
	if s.metrics, err = newAPIMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers requests on ln until ctx ends, then shuts down gracefully
// and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := httpserve.Server(s.handler, httpserve.Options{BaseContext: ctx})
	srv.ReadTimeout = 60 * time.Second // a request body (JSON) is small
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve api: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	srv.Shutdown(shut)
	<-errc
	return nil
}

// handlerFunc is an API handler; returning an error answers it in
// Ironic's error shape.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// access says who may call a route.
type access int

const (
	private access = iota // basic auth when configured
	public                // no auth (root documents)
	ramdisk               // no auth; guarded by agent token / deploy key in the handler
)

// route is one row of the routing table.
type route struct {
	pattern string // net/http pattern "METHOD /path"
	access  access
	h       handlerFunc
	// versioned routes negotiate the microversion (all but "/").
	versioned bool
}

// table lists every route; built once in New.
func (s *Server) table() []route {
	v := func(pattern string, a access, h handlerFunc) route { return route{pattern, a, h, true} }
	return []route{
		{"GET /{$}", public, s.root, false},
		v("GET /v1", public, s.v1),
		v("GET /v1/{$}", public, s.v1),

		v("GET /v1/nodes", private, s.listNodes(false)),
		v("GET /v1/nodes/detail", private, s.listNodes(true)),
		v("POST /v1/nodes", private, s.createNode),
		v("GET /v1/nodes/{node}", private, s.showNode),
		v("PATCH /v1/nodes/{node}", private, s.patchNode),
		v("DELETE /v1/nodes/{node}", private, s.deleteNode),
		v("PUT /v1/nodes/{node}/maintenance", private, s.maintenance(true)),
		v("DELETE /v1/nodes/{node}/maintenance", private, s.maintenance(false)),
		v("GET /v1/nodes/{node}/validate", private, s.validateNode),
		v("GET /v1/nodes/{node}/timeline", private, s.timeline),
		v("GET /v1/nodes/{node}/states", private, s.states),
		v("PUT /v1/nodes/{node}/states/power", private, s.setPower),
		v("PUT /v1/nodes/{node}/states/provision", private, s.setProvision),
		v("GET /v1/nodes/{node}/management/boot_device", private, s.getBootDevice),
		v("PUT /v1/nodes/{node}/management/boot_device", private, s.setBootDevice),
		v("GET /v1/nodes/{node}/management/boot_device/supported", private, s.supportedBootDevices),
		v("PUT /v1/nodes/{node}/management/inject_nmi", private, s.injectNMI),
		v("PUT /v1/nodes/{node}/states/boot_mode", private, s.setBootMode),
		v("GET /v1/nodes/{node}/vifs", private, s.listVIFs),
		v("POST /v1/nodes/{node}/vifs", private, s.attachVIF),
		v("DELETE /v1/nodes/{node}/vifs/{vif}", private, s.detachVIF),
		v("GET /v1/nodes/{node}/vendor_passthru/methods", private, s.vendorMethods),
		v("/v1/nodes/{node}/vendor_passthru", ramdisk, s.vendorPassthru),
		v("/v1/nodes/{node}/vendor_passthru/{method}", ramdisk, s.vendorPassthru),
		v("GET /v1/nodes/{node}/history", private, s.history(false)),
		v("GET /v1/nodes/{node}/history/detail", private, s.history(true)),
		v("GET /v1/nodes/{node}/history/{event}", private, s.historyEvent),
		v("GET /v1/nodes/{node}/states/console", private, s.consoleState),
		v("PUT /v1/nodes/{node}/states/console", private, s.setConsole),
		v("GET /v1/nodes/{node}/bios", private, s.bios),
		v("GET /v1/nodes/{node}/bios/{setting}", private, s.bios),
		v("GET /v1/nodes/{node}/inventory", private, s.inventory),
		v("GET /v1/nodes/{node}/traits", private, s.getTraits),
		v("PUT /v1/nodes/{node}/traits", private, s.setTraits),
		v("PUT /v1/nodes/{node}/traits/{trait}", private, s.setTraits),
		v("DELETE /v1/nodes/{node}/traits", private, s.deleteTraits),
		v("DELETE /v1/nodes/{node}/traits/{trait}", private, s.deleteTraits),
		v("GET /v1/nodes/{node}/allocation", private, s.showNodeAllocation),
		v("DELETE /v1/nodes/{node}/allocation", private, s.deleteAllocationOf(s.nodeAllocation)),
		v("GET /v1/nodes/{node}/ports", private, s.nodePorts(false)),
		v("GET /v1/nodes/{node}/ports/detail", private, s.nodePorts(true)),

		v("GET /v1/ports", private, s.listPorts(false)),
		v("GET /v1/ports/detail", private, s.listPorts(true)),
		v("POST /v1/ports", private, s.createPort),
		v("GET /v1/ports/{port}", private, s.showPort),
		v("PATCH /v1/ports/{port}", private, s.patchPort),
		v("DELETE /v1/ports/{port}", private, s.deletePort),

		v("GET /v1/chassis", private, s.listChassis(false)),
		v("GET /v1/chassis/detail", private, s.listChassis(true)),
		v("POST /v1/chassis", private, s.createChassis),
		v("GET /v1/chassis/{chassis}", private, s.showChassis),
		v("PATCH /v1/chassis/{chassis}", private, s.patchChassis),
		v("DELETE /v1/chassis/{chassis}", private, s.deleteChassis),
		v("GET /v1/chassis/{chassis}/nodes", private, s.listNodes(false)),
		v("GET /v1/chassis/{chassis}/nodes/detail", private, s.listNodes(true)),

		v("GET /v1/allocations", private, s.listAllocations),
		v("POST /v1/allocations", private, s.createAllocation),
		v("GET /v1/allocations/{allocation}", private, s.showAllocation),
		v("PATCH /v1/allocations/{allocation}", private, s.patchAllocation),
		v("DELETE /v1/allocations/{allocation}", private, s.deleteAllocationOf(s.allocation)),

		v("GET /v1/deploy_templates", private, s.listTemplates),
		v("POST /v1/deploy_templates", private, s.createTemplate),
		v("GET /v1/deploy_templates/{template}", private, s.showTemplate),
		v("PATCH /v1/deploy_templates/{template}", private, s.patchTemplate),
		v("DELETE /v1/deploy_templates/{template}", private, s.deleteTemplate),

		v("GET /v1/drivers", private, s.listDrivers),
		v("GET /v1/drivers/{driver}", private, s.showDriver),
		v("GET /v1/drivers/{driver}/properties", private, s.driverProperties),

		v("GET /v1/conductors", private, s.listConductors),
		v("GET /v1/conductors/{host}", private, s.showConductor),
		v("GET /v1/shards", private, s.shards),

		v("GET /v1/lookup", ramdisk, s.lookup),
		v("POST /v1/heartbeat/{node}", ramdisk, s.heartbeat),
		v("POST /v1/continue_inspection", ramdisk, s.continueInspection),
	}
}

// routes builds the mux from the table, each handler wrapped in version
// negotiation and auth.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.table() {
		mux.Handle(rt.pattern, s.wrap(rt))
	}
	if s.cfg.Gatherer != nil {
		// Public on a noauth API, as Ironic's healthcheck; behind the
		// basic auth when Credentials are set.
		scrape := metrics.Handler(s.cfg.Gatherer)
		mux.Handle("GET /metrics", s.wrap(route{pattern: "GET /metrics", access: private,
			h: func(w http.ResponseWriter, r *http.Request) error { scrape.ServeHTTP(w, r); return nil }}))
	}
	// Anything else: Ironic's 404 shape.
	mux.Handle("/", s.wrap(route{pattern: "/", access: private, versioned: true,
		h: func(http.ResponseWriter, *http.Request) error { return errNotFound }}))
	// Ironic (pecan) answers "/v1/drivers/" as "/v1/drivers"; clients use
	// both spellings.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = strings.TrimRight(p, "/")
			if r2.URL.Path == "" {
				r2.URL.Path = "/"
			}
			r2.URL.RawPath = ""
			r = r2
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) wrap(rt route) http.Handler {
	inner := s.serveRoute(rt)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		sw := &metrics.StatusWriter{ResponseWriter: w}
		inner.ServeHTTP(sw, r)
		s.metrics.observe(r.Method, rt.pattern, sw.Code(), time.Since(began))
	})
}

// serveRoute answers rt: version negotiation, auth, the handler.
func (s *Server) serveRoute(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Openstack-Request-Id", "req-"+uuid.NewString())
		if rt.versioned {
			var ok bool
			if r, ok = negotiate(w, r); !ok {
				return
			}
		}
		if rt.access == private && !s.authorized(w, r) {
			return
		}
		// Bodies are small JSON documents; cap them.
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := rt.h(w, r); err != nil {
			writeError(w, s.log, err)
		}
	})
}
