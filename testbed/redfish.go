package testbed

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/fault"
	"log/slog"
	"net"
	"net/netip"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/bmcemu/redfish"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/vms/sim"
)

// DefaultRedfishAddr is where the Redfish service listens by default.
const DefaultRedfishAddr = "127.0.0.1:8000"

// vmRedfishPort is the Redfish service's port inside a real-VM boot
// network, on the provisioner's address there.
const vmRedfishPort = 8000

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
	// vmLn, with real VMs, listens on the provisioner's address in their
	// boot network and is relayed to ln, so that a provisioner on that
	// network (a real Ironic in its namespace) reaches the BMCs as a
	// conductor on a lab's BMC network does; vmURL is its base URL.
	vmLn  net.Listener
	vmURL string
	log   *slog.Logger
}

// startRedfish binds the Redfish listener (and, with nw, its relay in the
// boot network) and builds the service over the fleet's machines; rec
// receives its events and faults is asked at each request (nil: none).
func startRedfish(cfg Redfish, dir string, f *fleet, nw *libvirt.Network, rec events.Recorder, faults fault.Injector, reg prometheus.Registerer, log *slog.Logger) (*redfishService, error) {
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
	rs := &redfishService{ln: ln, log: log}
	if nw != nil {
		vmAddr := netip.AddrPortFrom(nw.Addr(), vmRedfishPort).String()
		vmLn, err := nw.Listen("tcp4", vmAddr)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("redfish in the boot network: %w", err)
		}
		rs.vmLn = vmLn
	}
	rc := redfish.Config{PlainHTTP: cfg.PlainHTTP, Recorder: rec, Faults: faults, Registerer: reg, Logger: log}
	scheme := "http"
	if !cfg.PlainHTTP {
		var ips []net.IP
		if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
			ips = append(ips, ta.IP)
		}
		if nw != nil {
			ips = append(ips, nw.Addr().AsSlice())
		}
		cert, err := redfish.GenerateCertificate(dir, ips...)
		if err != nil {
			rs.close()
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
			Latency:  n.plan.Pace.BMCLatency,
		})
	}
	srv, err := redfish.New(rc)
	if err != nil {
		rs.close()
		return nil, err
	}
	rs.srv = srv
	rs.url = scheme + "://" + ln.Addr().String()
	if rs.vmLn != nil {
		rs.vmURL = scheme + "://" + rs.vmLn.Addr().String()
	}
	return rs, nil
}

// serve runs the service (and its relay from the boot network) until ctx
// ends.
func (rs *redfishService) serve(ctx context.Context) error {
	if rs.vmLn == nil {
		return rs.srv.Serve(ctx, rs.ln)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rs.srv.Serve(gctx, rs.ln) })
	g.Go(func() error {
		return relayTCP(gctx, rs.vmLn, rs.ln.Addr().String(), "redfish in the boot network", nil, rs.log)
	})
	return g.Wait()
}

// close closes the listeners.
func (rs *redfishService) close() {
	rs.ln.Close()
	if rs.vmLn != nil {
		rs.vmLn.Close()
	}
}

// nodeInfo is machine n as Ironic's redfish driver_info sees it (and as
// inventory.json shows it): the service, n's ComputerSystem, its BMC's
// credentials, and the CA file to verify the service (false over plain
// HTTP).
func (rs *redfishService) nodeInfo(n *fleetNode) *InventoryRedfish {
	r := &InventoryRedfish{Address: rs.url, SystemID: "/redfish/v1/Systems/" + sim.FormatUUID(n.machine.UUID()),
		Username: n.plan.Username, Password: n.plan.Password, VerifyCA: false, BootNetworkAddress: rs.vmURL}
	if rs.caFile != "" {
		r.VerifyCA = rs.caFile
	}
	return r
}
