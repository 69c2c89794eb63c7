package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// portFields: name and the microversion that introduced it, in Ironic's order.
var portFieldVersions = []struct {
	name string
	min  int
}{
	{"uuid", 1}, {"created_at", 1}, {"updated_at", 1}, {"address", 1}, {"extra", 1},
	{"internal_info", 18}, {"is_smartnic", 53}, {"local_link_connection", 19},
	{"physical_network", 34}, {"pxe_enabled", 19}, {"node_uuid", 1}, {"links", 1},
	{"portgroup_uuid", 24},
}

func portFieldKnown(name string) (int, bool) {
	for _, f := range portFieldVersions {
		if f.name == name {
			return f.min, true
		}
	}
	return 0, false
}

func renderPort(r *http.Request, p *provisioner.Port, fields []string) obj {
	vals := map[string]any{
		"uuid": p.UUID, "created_at": timestamp(p.CreatedAt), "updated_at": timestamp(p.UpdatedAt),
		"address": p.Address.String(), "extra": dict(p.Extra), "internal_info": dict(p.InternalInfo),
		"is_smartnic": p.IsSmartNIC, "local_link_connection": dict(p.LocalLinkConnection),
		"physical_network": orNull(p.PhysicalNetwork), "pxe_enabled": p.PXEEnabled,
		"node_uuid": p.NodeUUID, "links": links(r, "ports/"+p.UUID), "portgroup_uuid": nil,
	}
	out := obj{}
	for _, f := range portFieldVersions {
		if minor(r) < f.min {
			continue
		}
		if fields != nil && f.name != "links" && !slices.Contains(fields, f.name) {
			continue
		}
		out = append(out, kv{f.name, vals[f.name]})
	}
	return out
}

// parseMAC validates and normalises a MAC as Ironic does.
func parseMAC(val any) (net.HardwareAddr, error) {
	s, _ := val.(string)
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, badRequest(fmt.Sprintf("Expected valid MAC address for address: %v", val))
	}
	return mac, nil
}

// portSetters set port attributes from JSON (POST and PATCH).
func portSet(p *provisioner.Port, k string, val any, version int) error {
	if min, ok := portFieldKnown(k); ok && version < min {
		return errNotAcceptable
	}
	switch k {
	case "address":
		mac, err := parseMAC(val)
		if err != nil {
			return err
		}
		p.Address = mac
	case "node_uuid":
		s, ok := val.(string)
		if !ok || s == "" {
			return badRequest("Invalid input for field/attribute node_uuid. Value: '" + fmt.Sprint(val) + "'. Mandatory field missing.")
		}
		p.NodeUUID = s
	case "pxe_enabled", "is_smartnic":
		b, ok := asBool(val)
		if !ok {
			return invalidValue(k, val, "a boolean")
		}
		if k == "pxe_enabled" {
			p.PXEEnabled = b
		} else {
			p.IsSmartNIC = b
		}
	case "extra", "local_link_connection":
		m, ok := val.(map[string]any)
		if val != nil && !ok {
			return invalidValue(k, val, "a JSON object")
		}
		if k == "extra" {
			p.Extra = m
		} else {
			p.LocalLinkConnection = m
		}
	case "physical_network":
		s, err := asString(k, val)
		if err != nil {
			return err
		}
		p.PhysicalNetwork = s
	case "portgroup_uuid":
		if val != nil {
			return badRequest("Port groups are not supported by metalbed; portgroup_uuid must be null.")
		}
	default:
		return badRequest(fmt.Sprintf("Unknown attribute for argument port: %s", k))
	}
	return nil
}

// decodePortCreate turns a POST /v1/ports body into a port.
func decodePortCreate(body []byte, version int) (*provisioner.Port, error) {
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil || in == nil {
		return nil, badRequest("Invalid input for port: the body must be a JSON object")
	}
	p := &provisioner.Port{PXEEnabled: true}
	for k, val := range in {
		if k == "uuid" {
			u, _ := val.(string)
			if !uuidRE.MatchString(u) {
				return nil, badRequest(fmt.Sprintf("Invalid input for field/attribute uuid. Value: '%v'. Expected a UUID.", val))
			}
			p.UUID = strings.ToLower(u)
			continue
		}
		if err := portSet(p, k, val, version); err != nil {
			return nil, err
		}
	}
	if p.Address == nil {
		return nil, badRequest("Invalid input for field/attribute address. Value: 'None'. Mandatory field missing.")
	}
	if p.NodeUUID == "" {
		return nil, badRequest("Invalid input for field/attribute node_uuid. Value: 'None'. Mandatory field missing.")
	}
	return p, nil
}

func (s *Server) createPort(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(err.Error())
	}
	p, err := decodePortCreate(body, minor(r))
	if err != nil {
		return err
	}
	if p.UUID == "" {
		p.UUID = uuid.NewString()
	}
	n, err := s.st.Node(r.Context(), p.NodeUUID)
	if err != nil || n.UUID != p.NodeUUID {
		// Ironic answers a missing node on port create with 400.
		return badRequest(fmt.Sprintf("Node %s could not be found.", p.NodeUUID))
	}
	p.CreatedAt = time.Now().UTC()
	if err := s.st.CreatePort(r.Context(), p); err != nil {
		return portStoreErr(p, err)
	}
	s.rec.Record(events.Event{Kind: events.PortCreated, Detail: p.Address.String(), Who: events.Who{Node: n.UUID, NodeName: n.Name, MAC: p.Address.String()}})
	w.Header().Set("Location", baseURL(r)+"/v1/ports/"+p.UUID)
	writeJSON(w, http.StatusCreated, renderPort(r, p, nil))
	return nil
}

func portStoreErr(p *provisioner.Port, err error) error {
	switch {
	case errors.Is(err, store.ErrDuplicate):
		return clientErr(http.StatusConflict, fmt.Sprintf("A port with MAC address %s already exists.", p.Address))
	case errors.Is(err, store.ErrNotFound):
		return badRequest(fmt.Sprintf("Node %s could not be found.", p.NodeUUID))
	}
	return err
}

var portSortKeys = []string{"id", "uuid", "address", "created_at", "updated_at"}

func (s *Server) portList(w http.ResponseWriter, r *http.Request, detail bool, nodeIdent string) error {
	q := r.URL.Query()
	fields, err := s.parseFields(r, portFieldKnown)
	if err != nil {
		return err
	}
	d, err := queryBool(r, "detail")
	if err != nil {
		return err
	}
	if d != nil {
		if minor(r) < 43 {
			return errNotAcceptable
		}
		detail = *d
	}
	if detail && fields != nil {
		return badRequest("Can not specify ?detail=True and fields in the same request.")
	}
	if !detail && fields == nil {
		fields = []string{"uuid", "address", "links"}
	}
	p, err := s.readPaging(r, portSortKeys)
	if err != nil {
		return err
	}
	f := store.PortFilter{SortKey: p.sortKey, SortDesc: p.sortDesc, Limit: p.limit, Marker: p.marker}
	if nodeIdent == "" {
		nodeIdent = q.Get("node")
		if nodeIdent == "" {
			nodeIdent = q.Get("node_uuid")
		}
	}
	if nodeIdent != "" {
		n, err := s.c.Node(r.Context(), nodeIdent)
		if err != nil {
			return err
		}
		f.NodeUUID = n.UUID
	}
	if a := q.Get("address"); a != "" {
		mac, err := parseMAC(a)
		if err != nil {
			return err
		}
		f.Address = mac.String()
	}
	ports, err := s.st.Ports(r.Context(), f)
	if err != nil {
		return err
	}
	items := make([]obj, 0, len(ports))
	last := ""
	for _, port := range ports {
		items = append(items, renderPort(r, port, fields))
		last = port.UUID
	}
	writeJSON(w, http.StatusOK, collection(r, "ports", items, p.limit, last))
	return nil
}

func (s *Server) listPorts(detail bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error { return s.portList(w, r, detail, "") }
}

func (s *Server) nodePorts(detail bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		return s.portList(w, r, detail, r.PathValue("node"))
	}
}

func (s *Server) port(r *http.Request) (*provisioner.Port, error) {
	p, err := s.st.Port(r.Context(), r.PathValue("port"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, clientErr(http.StatusNotFound, fmt.Sprintf("Port %s could not be found.", r.PathValue("port")))
	}
	return p, err
}

func (s *Server) showPort(w http.ResponseWriter, r *http.Request) error {
	fields, err := s.parseFields(r, portFieldKnown)
	if err != nil {
		return err
	}
	p, err := s.port(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderPort(r, p, fields))
	return nil
}

func (s *Server) patchPort(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(err.Error())
	}
	ops, err := decodePatch(body)
	if err != nil {
		return err
	}
	p, err := s.port(r)
	if err != nil {
		return err
	}
	writable := []string{"address", "node_uuid", "pxe_enabled", "extra", "local_link_connection", "physical_network", "is_smartnic", "portgroup_uuid"}
	for _, op := range ops {
		top := pointer(op.Path)[0]
		if slices.Contains(internalAttrs, top) {
			return badRequest(fmt.Sprintf("'/%s' is an internal attribute and can not be updated", top))
		}
		if !slices.Contains(writable, top) {
			return badRequest(fmt.Sprintf("Cannot patch %s", op.Path))
		}
	}
	doc := map[string]any{}
	raw, _ := json.Marshal(renderPort(r, p, nil))
	json.Unmarshal(raw, &doc)
	before := map[string]string{}
	for _, k := range writable {
		b, _ := json.Marshal(doc[k])
		before[k] = string(b)
	}
	if err := applyPatch(doc, ops); err != nil {
		return err
	}
	for _, k := range writable {
		b, _ := json.Marshal(doc[k])
		if string(b) == before[k] {
			continue
		}
		if err := portSet(p, k, doc[k], minor(r)); err != nil {
			return err
		}
	}
	n, err := s.st.Node(r.Context(), p.NodeUUID)
	if err != nil {
		return badRequest(fmt.Sprintf("Node %s could not be found.", p.NodeUUID))
	}
	p.UpdatedAt = time.Now().UTC()
	if err := s.st.UpdatePort(r.Context(), p); err != nil {
		return portStoreErr(p, err)
	}
	s.rec.Record(events.Event{Kind: events.PortUpdated, Detail: p.Address.String(), Who: events.Who{Node: n.UUID, NodeName: n.Name, MAC: p.Address.String()}})
	writeJSON(w, http.StatusOK, renderPort(r, p, nil))
	return nil
}

func (s *Server) deletePort(w http.ResponseWriter, r *http.Request) error {
	p, err := s.port(r)
	if err != nil {
		return err
	}
	if err := s.st.DeletePort(r.Context(), p.UUID); err != nil {
		return err
	}
	s.rec.Record(events.Event{Kind: events.PortDeleted, Detail: p.Address.String(), Who: events.Who{Node: p.NodeUUID}})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
