package testbed

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/fault"
	"log/slog"
	"net"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/bmcemu/redfish"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/vms/sim"
)

// DefaultRedfishAddr is where the Redfish service listens by default.
const DefaultRedfishAddr = "127.0.0.1:8000"

// Redfish configures the one Redfish service in front of every machine:
// each is a ComputerSystem at /redfish/v1/Systems/<SMBIOS UUID>, managed
// with its BMC's credentials.
type Redfish struct {
	// Addr is HOST:PORT (port 0: a free one); "" => DefaultRedfishAddr.
	Addr string
	// Listener, when set, is a socket the caller opened instead of Addr.
	Listener net.Listener
	// PlainHTTP serves plain HTTP; by default HTTPS, with a CA and a
	// certificate for 127.0.0.1 generated into the state directory.
	PlainHTTP bool
}

// redfishService is the running Redfish service of a testbed.
type redfishService struct {
	srv    *redfish.Server
	ln     net.Listener
	url    string // scheme://host:port
	caFile string // "" with plain HTTP
}

// startRedfish binds the Redfish listener and builds the service over the
// fleet's machines; rec receives its events and faults is asked at each
// request (nil: none).
func startRedfish(cfg Redfish, dir string, f *fleet, rec events.Recorder, faults fault.Injector, reg prometheus.Registerer, log *slog.Logger) (*redfishService, error) {
	ln := cfg.Listener
	if ln == nil {
		addr := cfg.Addr
		if addr == "" {
			addr = DefaultRedfishAddr
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				err = fmt.Errorf("%w (another metalbed or sushy-emulator?)", err)
			}
			return nil, addrError("Redfish.Addr", addr, fmt.Errorf("redfish: %w", err))
		}
	}
	rs := &redfishService{ln: ln}
	rc := redfish.Config{PlainHTTP: cfg.PlainHTTP, Recorder: rec, Faults: faults, Registerer: reg, Logger: log}
	scheme := "http"
	if !cfg.PlainHTTP {
		var ips []net.IP
		if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
			ips = append(ips, ta.IP)
		}
		cert, err := redfish.GenerateCertificate(dir, ips...)
		if err != nil {
			ln.Close()
			return nil, err
		}
		rc.CertFile, rc.KeyFile, rs.caFile = cert.CertFile, cert.KeyFile, cert.CAFile
		scheme = "https"
	}
	for _, n := range f.nodes {
		rc.Systems = append(rc.Systems, redfish.System{
			Machine:  newBMCMachine(n.machine, n.machine.BootMode()),
			Username: n.plan.Username,
			Password: n.plan.Password,
			SEL:      n.sel,
		})
	}
	srv, err := redfish.New(rc)
	if err != nil {
		ln.Close()
		return nil, err
	}
	rs.srv = srv
	rs.url = scheme + "://" + ln.Addr().String()
	return rs, nil
}

// serve runs the service until ctx ends.
func (rs *redfishService) serve(ctx context.Context) error { return rs.srv.Serve(ctx, rs.ln) }

// nodeInfo is machine n as Ironic's redfish driver_info sees it (and as
// inventory.json shows it): the service, n's ComputerSystem, its BMC's
// credentials, and the CA file to verify the service (false over plain
// HTTP).
func (rs *redfishService) nodeInfo(n *fleetNode) *InventoryRedfish {
	r := &InventoryRedfish{Address: rs.url, SystemID: "/redfish/v1/Systems/" + sim.FormatUUID(n.machine.UUID()),
		Username: n.plan.Username, Password: n.plan.Password, VerifyCA: false}
	if rs.caFile != "" {
		r.VerifyCA = rs.caFile
	}
	return r
}
