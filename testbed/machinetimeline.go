package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/httpserve"
	"github.com/metalbed/metalbed/provisioner/api"
)

// machineTimeline is the timeline of a testbed without the provisioner
// (Config.TimelineAddr): each machine's power and boots, its firmware's
// console milestones, its ramdisk's and agent's steps and the Redfish
// actions on it, served as the provisioner's timeline is (GET
// /v1/nodes/{machine}/timeline, GET /v1/timeline) for whoever provisions
// the machines instead (a real Ironic). It is kept in memory only. The
// endpoint also serves the fault rules (faultHandler) of the layers that
// run without the provisioner: the BMCs (ipmi, redfish) and the machines'
// ramdisk and agent; inject is the injector they ask.
type machineTimeline struct {
	tl     *events.Timeline
	ln     net.Listener
	faults *fault.Set
	inject fault.Injector
	creds  *api.Credentials // nil: no auth
}

// listenMachineTimeline binds the endpoint's listener; only the users of
// htpasswd ("": anyone) may use it; reg receives the fault counters.
func listenMachineTimeline(addr, htpasswd string, reg prometheus.Registerer) (*machineTimeline, error) {
	var creds *api.Credentials
	if htpasswd != "" {
		var err error
		if creds, err = api.LoadHTPasswd(htpasswd); err != nil {
			return nil, fmt.Errorf("--htpasswd: %w", err)
		}
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, addrError("TimelineAddr", addr, fmt.Errorf("timeline endpoint: %w", err))
	}
	mt := &machineTimeline{tl: events.New(events.Config{}), ln: ln, faults: fault.NewSet(), creds: creds}
	mt.inject = fault.NewInjector(fault.InjectorConfig{Rules: mt.faults, Resolver: mt.tl, Recorder: mt.tl, Registerer: reg})
	return mt, nil
}

// url is the endpoint's base URL.
func (mt *machineTimeline) url() string { return "http://" + mt.ln.Addr().String() }

// serve answers timeline and fault requests until ctx ends.
func (mt *machineTimeline) serve(ctx context.Context) error {
	h := faultHandler(mt.faults, HTTPBootInfo{}, knownNode(mt.tl), timelineHandler(mt.tl))
	if mt.creds != nil {
		h = mt.creds.Require("metalbed timeline", h)
	}
	return serveHTTP(ctx, mt.ln, h, "timeline endpoint")
}

// serveHTTP serves h on ln until ctx ends, then shuts the server down,
// giving requests in flight 5 s; idle keep-alive connections are closed
// after 2 minutes.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, what string) error {
	srv := httpserve.Server(h, httpserve.Options{})
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
