package bmcemu

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the BMC counters. They carry no per-BMC labels: many BMCs
// sharing one Registerer add into the same counters.
type metrics struct {
	packets      counter
	malformed    counter
	replies      counter
	commands     counter
	commandFails counter
	panics       counter
	powerActions counter
	faults       counter
	selEntries   counter
}

// counter is the part of prometheus.Counter bmcemu uses.
type counter interface{ Inc() }

// nopCounter stands in when no Registerer is configured, so thousands of
// BMCs without metrics carry no collectors.
type nopCounter struct{}

func (nopCounter) Inc() {}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	fields := []struct {
		dst  *counter
		name string
		help string
	}{
		{&m.packets, "packets_received_total", "Datagrams received by virtual BMCs."},
		{&m.malformed, "packets_malformed_total", "Datagrams dropped before the session layer as malformed."},
		{&m.replies, "packets_sent_total", "Datagrams sent by virtual BMCs."},
		{&m.commands, "commands_total", "IPMI commands dispatched."},
		{&m.commandFails, "command_errors_total", "IPMI commands answered with a non-zero completion code."},
		{&m.panics, "handler_panics_total", "Command handlers that panicked (answered 0xFF)."},
		{&m.powerActions, "power_actions_total", "Chassis Control actions carried out."},
		{&m.faults, "faults_injected_total", "Commands altered by Config.Faults."},
		{&m.selEntries, "sel_entries_total", "System Event Log records written."},
	}
	for _, f := range fields {
		if reg == nil {
			*f.dst = nopCounter{}
			continue
		}
		c := prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "metalbed", Subsystem: "bmc", Name: f.name, Help: f.help,
		})
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("bmcemu: register metric %s: %w", f.name, err)
			}
			existing, ok := are.ExistingCollector.(prometheus.Counter)
			if !ok {
				return nil, fmt.Errorf("bmcemu: metric %s registered with another type", f.name)
			}
			c = existing
		}
		*f.dst = c
	}
	return m, nil
}
