package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func (s *Server) versionDoc(r *http.Request) obj {
	return obj{
		{"id", "v1"},
		{"links", []obj{{{"href", baseURL(r) + "/v1/"}, {"rel", "self"}}}},
		{"status", "CURRENT"},
		{"min_version", fmt.Sprintf("1.%d", minMinor)},
		{"version", fmt.Sprintf("1.%d", maxMinor)},
	}
}

func (s *Server) root(w http.ResponseWriter, r *http.Request) error {
	v := s.versionDoc(r)
	writeJSON(w, http.StatusOK, obj{
		{"name", "OpenStack Ironic API"},
		{"description", "Ironic is an OpenStack project which enables the provision and management of baremetal machines."},
		{"default_version", v},
		{"versions", []obj{v}},
	})
	return nil
}

func (s *Server) v1(w http.ResponseWriter, r *http.Request) error {
	res := func(name string) []obj {
		return []obj{
			{{"href", baseURL(r) + "/v1/" + name + "/"}, {"rel", "self"}},
			{{"href", baseURL(r) + "/" + name + "/"}, {"rel", "bookmark"}},
		}
	}
	out := obj{
		{"id", "v1"},
		{"links", []obj{
			{{"href", baseURL(r) + "/v1/"}, {"rel", "self"}},
			{{"href", "https://docs.openstack.org//ironic/latest/contributor//webapi.html"}, {"rel", "describedby"}, {"type", "text/html"}},
		}},
		{"media_types", obj{{"base", "application/json"}, {"type", "application/vnd.openstack.ironic.v1+json"}}},
		{"chassis", res("chassis")},
		{"nodes", res("nodes")},
		{"ports", res("ports")},
		{"drivers", res("drivers")},
		{"version", s.versionDoc(r)},
	}
	for _, e := range []struct {
		name string
		min  int
	}{{"portgroups", 24}, {"volume", 32}, {"lookup", 22}, {"heartbeat", 22}, {"conductors", 49},
		{"allocations", 52}, {"events", 54}, {"deploy_templates", 55}, {"shards", 82}} {
		if minor(r) >= e.min {
			out = append(out, kv{e.name, res(e.name)})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// driverHosts lists the live conductors serving driver.
func (s *Server) driverHosts(r *http.Request, driver string) []string {
	hosts := []string{}
	recs, err := s.st.Conductors(r.Context())
	if err != nil {
		return hosts
	}
	for _, c := range recs {
		if s.c.Alive(c) && slices.Contains(c.Drivers, driver) {
			hosts = append(hosts, c.Hostname)
		}
	}
	return hosts
}

func (s *Server) renderDriver(r *http.Request, h *drivers.HardwareType, detail bool) obj {
	out := obj{
		{"name", h.Name},
		{"hosts", s.driverHosts(r, h.Name)},
		{"links", links(r, "drivers/"+h.Name)},
		{"properties", links(r, "drivers/"+h.Name+"/properties")},
		{"type", "dynamic"},
	}
	if detail && minor(r) >= 30 {
		// Ironic's order for the per-role defaults.
		for _, role := range []drivers.Role{drivers.RoleRaid, drivers.RoleDeploy, drivers.RoleNetwork, drivers.RoleInspect,
			drivers.RoleStorage, drivers.RoleBios, drivers.RolePower, drivers.RoleVendor, drivers.RoleManagement,
			drivers.RoleConsole, drivers.RoleBoot, drivers.RoleRescue} {
			if (role == drivers.RoleStorage && minor(r) < 33) || (role == drivers.RoleRescue && minor(r) < 38) ||
				(role == drivers.RoleBios && minor(r) < 40) {
				continue
			}
			enabled := slices.Clone(h.Enabled[role])
			def := any(nil)
			if len(enabled) > 0 {
				def = enabled[0]
			}
			sort.Strings(enabled)
			out = append(out, kv{"default_" + string(role) + "_interface", def},
				kv{"enabled_" + string(role) + "_interfaces", enabled})
		}
	}
	return out
}

func (s *Server) listDrivers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if t := q.Get("type"); t != "" && t != "dynamic" && t != "classic" {
		return badRequest(fmt.Sprintf("Invalid type %s. Valid values are: classic, dynamic", t))
	}
	detail, err := queryBool(r, "detail")
	if err != nil {
		return err
	}
	items := []obj{}
	if q.Get("type") != "classic" {
		for _, name := range s.c.Drivers().Names() {
			h, _ := s.c.Drivers().Get(name)
			items = append(items, s.renderDriver(r, h, detail != nil && *detail))
		}
	}
	writeJSON(w, http.StatusOK, obj{{"drivers", items}})
	return nil
}

func (s *Server) hardwareType(r *http.Request) (*drivers.HardwareType, error) {
	h, err := s.c.Drivers().Get(r.PathValue("driver"))
	if err != nil {
		return nil, clientErr(http.StatusNotFound, fmt.Sprintf("Could not find the following driver(s) or hardware type(s): %s.", r.PathValue("driver")))
	}
	return h, nil
}

func (s *Server) showDriver(w http.ResponseWriter, r *http.Request) error {
	h, err := s.hardwareType(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderDriver(r, h, true))
	return nil
}

// propertyLister is implemented by driver interfaces that document the
// driver_info keys they read (Ironic's get_properties).
type propertyLister interface {
	Properties() map[string]string
}

func (s *Server) driverProperties(w http.ResponseWriter, r *http.Request) error {
	h, err := s.hardwareType(r)
	if err != nil {
		return err
	}
	props := map[string]string{}
	add := func(impl any) {
		if p, ok := impl.(propertyLister); ok {
			for k, v := range p.Properties() {
				props[k] = v
			}
		}
	}
	defaults := h.Defaults()
	add(h.Power[defaults.Power])
	add(h.Management[defaults.Management])
	add(h.Boot[defaults.Boot])
	add(h.Deploy[defaults.Deploy])
	add(h.Vendor[defaults.Vendor])
	writeJSON(w, http.StatusOK, props)
	return nil
}

func (s *Server) renderConductor(r *http.Request, c provisioner.Conductor, detail bool) obj {
	out := obj{{"hostname", c.Hostname}, {"conductor_group", c.ConductorGroup}}
	if detail {
		out = append(out, kv{"created_at", timestamp(c.CreatedAt)}, kv{"updated_at", timestamp(c.UpdatedAt)})
	}
	out = append(out, kv{"links", links(r, "conductors/"+c.Hostname)}, kv{"alive", s.c.Alive(c)})
	if detail {
		d := c.Drivers
		if d == nil {
			d = []string{}
		}
		out = append(out, kv{"drivers", d})
	}
	return out
}

func (s *Server) listConductors(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 49 {
		return errNotFound
	}
	detail, err := queryBool(r, "detail")
	if err != nil {
		return err
	}
	recs, err := s.st.Conductors(r.Context())
	if err != nil {
		return err
	}
	items := []obj{}
	for _, c := range recs {
		items = append(items, s.renderConductor(r, c, detail != nil && *detail))
	}
	writeJSON(w, http.StatusOK, obj{{"conductors", items}})
	return nil
}

func (s *Server) showConductor(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 49 {
		return errNotFound
	}
	recs, err := s.st.Conductors(r.Context())
	if err != nil {
		return err
	}
	for _, c := range recs {
		if c.Hostname == r.PathValue("host") {
			writeJSON(w, http.StatusOK, s.renderConductor(r, c, true))
			return nil
		}
	}
	return clientErr(http.StatusNotFound, fmt.Sprintf("Conductor %s could not be found.", r.PathValue("host")))
}

// lookup is the ramdisk's GET /v1/lookup (1.22+): public, answers only for
// nodes in a state that expects a ramdisk, and hands out the agent token
// once.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 22 {
		return errNotFound
	}
	q := r.URL.Query()
	var macs []string
	if a := q.Get("addresses"); a != "" {
		for _, m := range strings.Split(a, ",") {
			mac, err := parseMAC(strings.TrimSpace(m))
			if err != nil {
				return badRequest(fmt.Sprintf("Invalid MAC address in addresses: %s", m))
			}
			macs = append(macs, mac.String())
		}
	}
	nodeUUID := q.Get("node_uuid")
	if len(macs) == 0 && nodeUUID == "" {
		return badRequest("One of addresses and node_uuid must be provided")
	}
	n, token, err := s.c.Lookup(r.Context(), macs, nodeUUID, s.clientIP(r))
	if err != nil {
		return err
	}
	if n == nil {
		return errNotFound
	}
	shown := map[string]any{}
	for k, v := range n.DriverInternalInfo {
		shown[k] = v
	}
	out := obj{
		{"node", obj{
			{"uuid", n.UUID},
			{"properties", dict(n.Properties)},
			{"instance_info", masked(dict(n.InstanceInfo))},
			{"driver_internal_info", masked(shown)},
			{"links", links(r, "nodes/"+n.UUID)},
		}},
		{"config", obj{
			{"heartbeat_timeout", 300},
			{"agent_token", token},
			{"agent_token_required", true},
		}},
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// clientIP is the IP address r came from (through Config.Peer), "" when
// it cannot be told.
func (s *Server) clientIP(r *http.Request) string {
	addr := r.RemoteAddr
	if s.cfg.Peer != nil {
		addr = s.cfg.Peer(addr)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

// heartbeat is the ramdisk's POST /v1/heartbeat/{node} (1.22+): public,
// guarded by the agent token.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 22 {
		return errNotFound
	}
	var body struct {
		CallbackURL  string `json:"callback_url"`
		AgentToken   string `json:"agent_token"`
		AgentVersion string `json:"agent_version"`
		AgentStatus  string `json:"agent_status"`
	}
	if err := readBody(r, &body); err != nil {
		return err
	}
	if body.CallbackURL == "" {
		return badRequest("Invalid input for field/attribute callback_url. Value: 'None'. Mandatory field missing.")
	}
	if err := s.c.Heartbeat(r.Context(), r.PathValue("node"), body.AgentToken, body.CallbackURL, body.AgentVersion); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
