package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/metalbed/metalbed/provisioner/api"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/web"
)

// Web configures the dashboard the testbed serves: its fleet, timelines,
// consoles and faults, live (package web).
type Web struct {
	// Addr is HOST:PORT (port 0: a free one); "" => web.DefaultAddr.
	Addr string
	// Listener, when set, is a socket the caller opened instead of Addr.
	Listener net.Listener
}

// webService is the running dashboard of a testbed.
type webService struct {
	srv *web.Server
	ln  net.Listener
	url string
}

// startWeb binds the dashboard's listener and builds it over the testbed:
// the inventory's machines, the provisioner's timeline, API and fault
// endpoint (b nil: machines only).
func startWeb(cfg Web, t *Testbed, b *bed) (*webService, error) {
	ln := cfg.Listener
	if ln == nil {
		addr := cfg.Addr
		if addr == "" {
			addr = web.DefaultAddr
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				err = fmt.Errorf("%w (another metalbed?)", err)
			}
			return nil, addrError("Web.Addr", addr, fmt.Errorf("web: %w", err))
		}
	}
	wc := web.Config{Machines: t.webMachines, Logger: t.log}
	if b != nil {
		// The dashboard's buttons act with the testbed's own account; its
		// pages ask people for an htpasswd user, as the API does.
		wc.Timeline, wc.APIURL, wc.FaultsURL = b.tl, b.withUser(b.apiURL()), b.withUser(b.timelineURL())
		if f := b.cfg.HTPasswdFile; f != "" {
			creds, err := api.LoadHTPasswd(f)
			if err != nil {
				ln.Close()
				return nil, fmt.Errorf("--htpasswd: %w", err)
			}
			wc.Guard = func(h http.Handler) http.Handler { return creds.Require("metalbed dashboard", h) }
		}
	}
	srv, err := web.New(wc)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &webService{srv: srv, ln: ln, url: "http://" + ln.Addr().String()}, nil
}

func (ws *webService) serve(ctx context.Context) error { return ws.srv.Serve(ctx, ws.ln) }

// webMachines is the inventory as the dashboard shows it.
func (t *Testbed) webMachines() []web.Machine {
	t.mu.Lock()
	f := t.fleet
	t.mu.Unlock()
	inv := t.Inventory()
	ms := make([]web.Machine, 0, len(inv.Nodes))
	for i, n := range inv.Nodes {
		m := web.Machine{Name: n.Name, IPMI: "ipmi://" + net.JoinHostPort(n.BMC.Address, strconv.Itoa(n.BMC.Port)),
			BootMode: string(n.BootMode), ConsoleLog: n.ConsoleLog}
		if n.Redfish != nil {
			m.Redfish = n.Redfish.Address + n.Redfish.SystemID
		}
		if f != nil && i < len(f.nodes) { // the inventory lists the fleet's nodes in order
			vm := f.nodes[i].machine
			m.Power = func(ctx context.Context) (bool, error) {
				ps, err := vm.PowerState(ctx)
				return ps == vms.PowerOn, err
			}
		}
		ms = append(ms, m)
	}
	return ms
}

// WebURL is the dashboard, e.g. http://127.0.0.1:6380; "" before Started
// or without Config.Web.
func (t *Testbed) WebURL() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.web == nil {
		return ""
	}
	return t.web.url
}
