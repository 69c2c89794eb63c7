// Package metrics is what metalbed's components share to export Prometheus
// metrics: registration into an injected Registerer that tolerates a
// component built twice on one registry (a conductor restarted by a fault,
// many BMCs), the bounded label values of HTTP requests, and the handler of
// a metrics listener (/metrics, and /debug/pprof/ when asked).
//
// There is no global registry: each component's Config carries a
// prometheus.Registerer (nil: its collectors exist but nobody gathers
// them), and the composition root (testbed, `metalbed provisioner serve`)
// makes one prometheus.Registry and hands it to everything.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/metalbed/metalbed/internal/httpserve"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metalbed metric.
const Namespace = "metalbed"

// NewRegistry is a registry for one composition root (a testbed, a
// provisioner process), holding Go's runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Register registers c with reg and returns the collector to use: c, or
// the one already registered under the same descriptor (the same component
// built again on the same registry), which must then be of c's type. A nil
// reg returns c unregistered.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
		return c, fmt.Errorf("metrics: %T registered twice with different types", c)
	}
	return c, fmt.Errorf("metrics: %w", err)
}

// Registry is a Register that remembers the first error, so a component
// registers all its collectors and checks once.
type Registry struct {
	Reg prometheus.Registerer
	Err error
}

// CounterVec registers a counter vector metalbed_<subsystem>_<name>.
func (r *Registry) CounterVec(subsystem, name, help string, labels ...string) *prometheus.CounterVec {
	c, err := Register(r.Reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help}, labels))
	r.keep(err)
	return c
}

// Counter registers a counter metalbed_<subsystem>_<name>.
func (r *Registry) Counter(subsystem, name, help string) prometheus.Counter {
	c, err := Register(r.Reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help}))
	r.keep(err)
	return c
}

// HistogramVec registers a histogram vector metalbed_<subsystem>_<name>
// with buckets (nil: prometheus.DefBuckets).
func (r *Registry) HistogramVec(subsystem, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h, err := Register(r.Reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets}, labels))
	r.keep(err)
	return h
}

// Histogram registers a histogram metalbed_<subsystem>_<name> with
// buckets (nil: prometheus.DefBuckets).
func (r *Registry) Histogram(subsystem, name, help string, buckets []float64) prometheus.Histogram {
	h, err := Register(r.Reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets}))
	r.keep(err)
	return h
}

func (r *Registry) keep(err error) {
	if err != nil && r.Err == nil {
		r.Err = err
	}
}

// SlowBuckets are histogram buckets for things that take seconds to hours:
// provision states, deploys and cleanings (1 s to about 2.8 h).
var SlowBuckets = prometheus.ExponentialBuckets(1, 3, 10)

// Method is an HTTP method as a label value: the standard ones as they
// are, anything else "other", so a client cannot grow the label set.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// Code is an HTTP status as a label value.
func Code(status int) string { return strconv.Itoa(status) }

// StatusWriter is an http.ResponseWriter that remembers the status
// written. http.ResponseController reaches the wrapped writer through
// Unwrap (Flush, Hijack, deadlines).
type StatusWriter struct {
	http.ResponseWriter
	Status int // 0 until the header is written
}

// WriteHeader implements http.ResponseWriter.
func (w *StatusWriter) WriteHeader(code int) {
	if w.Status == 0 && code >= 200 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap is the wrapped writer, for http.ResponseController.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Code is the status written, 200 when the handler wrote nothing.
func (w *StatusWriter) Code() int {
	if w.Status == 0 {
		return http.StatusOK
	}
	return w.Status
}

// Handler answers a scrape of g in Prometheus' text or protobuf format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// Mux is a metrics listener's handler: GET /metrics from g and, with
// withPprof, Go's profiles under /debug/pprof/.
func Mux(g prometheus.Gatherer, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(g))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Serve answers Mux(g, withPprof) on ln until ctx ends, then shuts down
// and returns nil. ln is closed when Serve returns.
func Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer, withPprof bool) error {
	srv := httpserve.Server(Mux(g, withPprof), httpserve.Options{})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics listener: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	srv.Shutdown(shut)
	<-errc
	return nil
}
