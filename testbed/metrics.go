package testbed

import (
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics configures the testbed's own metrics listener. Every testbed
// has one Prometheus registry (two testbeds in one process never share
// counters) holding the metrics of its BMCs (metalbed_bmc_*), Redfish
// service, provisioner (conductor, API, DHCP, TFTP, HTTP boot), iSCSI
// targets and faults, and Go's runtime and process metrics; the
// provisioner API answers it at /metrics. Metrics adds a listener of its
// own, without auth.
type Metrics struct {
	// Addr is HOST:PORT (port 0: a free one); Listener, when set, is a
	// socket the caller opened instead.
	Addr     string
	Listener net.Listener
	// PProf serves Go's profiles under /debug/pprof/ on that listener.
	PProf bool
}

// listenMetrics opens the metrics listener of cfg (nil: none).
func listenMetrics(cfg *Metrics) (net.Listener, error) {
	if cfg == nil {
		return nil, nil
	}
	ln, err := listen(cfg.Listener, cfg.Addr)
	if err != nil {
		return nil, addrError("Metrics.Addr", cfg.Addr, fmt.Errorf("metrics listener: %w", err))
	}
	return ln, nil
}

// withMetrics gives every BMC the testbed's registry (hooks may be nil:
// no other hooks).
func withMetrics(hooks func(string) nodeHooks, reg prometheus.Registerer) func(string) nodeHooks {
	return func(name string) nodeHooks {
		var h nodeHooks
		if hooks != nil {
			h = hooks(name)
		}
		h.bmcMetrics = reg
		return h
	}
}

// MetricsURL is the metrics listener, e.g. http://127.0.0.1:9100 (its
// scrape is at /metrics); "" before Started or without Config.Metrics.
func (t *Testbed) MetricsURL() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.metricsLn == nil {
		return ""
	}
	return "http://" + t.metricsLn.Addr().String()
}

// Gatherer is the testbed's registry.
func (t *Testbed) Gatherer() prometheus.Gatherer { return t.reg }
