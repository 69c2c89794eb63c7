package api

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/metrics"
)

// apiMetrics count requests by method, route pattern (never the raw path,
// which names nodes) and status.
type apiMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newAPIMetrics(reg prometheus.Registerer) (apiMetrics, error) {
	r := &metrics.Registry{Reg: reg}
	m := apiMetrics{
		requests: r.CounterVec("api", "requests_total",
			"API requests answered, by method, route pattern and status code.", "method", "route", "code"),
		latency: r.HistogramVec("api", "request_seconds",
			"Time to answer API requests, by method and route pattern.", nil, "method", "route"),
	}
	return m, r.Err
}

// observe records one answered request of the route with pattern.
func (m apiMetrics) observe(method, pattern string, code int, took time.Duration) {
	route := routePath(pattern)
	method = metrics.Method(method)
	m.requests.WithLabelValues(method, route, metrics.Code(code)).Inc()
	m.latency.WithLabelValues(method, route).Observe(took.Seconds())
}

// routePath is a mux pattern without its method: "GET /v1/nodes/{node}"
// is "/v1/nodes/{node}" (the method is a label of its own).
func routePath(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		return pattern[i+1:]
	}
	return pattern
}
