package api

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// nodeView is what a node field is rendered from.
type nodeView struct {
	n         *provisioner.Node
	r         *http.Request
	conductor string
}

// nodeField is one node attribute: its name, the microversion that
// introduced it, how it renders and (when writable) how PATCH and POST set it.
type nodeField struct {
	name string
	min  int
	get  func(v nodeView) any
	set  func(n *provisioner.Node, val any) error // nil = read-only
}

func ifaceField(role drivers.Role, min int) nodeField {
	return nodeField{string(role) + "_interface", min,
		func(v nodeView) any { return orNull(drivers.InterfaceName(v.n.Interfaces, role)) },
		func(n *provisioner.Node, val any) error {
			s, err := asString(string(role)+"_interface", val)
			drivers.SetInterfaceName(&n.Interfaces, role, s)
			return err
		}}
}

func strField(name string, min int, p func(n *provisioner.Node) *string) nodeField {
	return nodeField{name, min,
		func(v nodeView) any { return orNull(*p(v.n)) },
		func(n *provisioner.Node, val any) error {
			s, err := asString(name, val)
			*p(n) = s
			return err
		}}
}

func dictField(name string, min int, p func(n *provisioner.Node) *map[string]any, secret bool) nodeField {
	return nodeField{name, min,
		func(v nodeView) any {
			if secret {
				return masked(dict(*p(v.n)))
			}
			return dict(*p(v.n))
		},
		func(n *provisioner.Node, val any) error {
			if val == nil {
				*p(n) = map[string]any{}
				return nil
			}
			m, ok := val.(map[string]any)
			if !ok {
				return invalidValue(name, val, "a JSON object")
			}
			*p(n) = m
			return nil
		}}
}

func boolField(name string, min int, p func(n *provisioner.Node) *bool) nodeField {
	return nodeField{name, min,
		func(v nodeView) any { return *p(v.n) },
		func(n *provisioner.Node, val any) error {
			if val == nil { // removed: back to the default
				*p(n) = false
				return nil
			}
			b, ok := asBool(val)
			if !ok {
				return invalidValue(name, val, "a boolean")
			}
			*p(n) = b
			return nil
		}}
}

// asBool accepts JSON booleans and the strings Ironic's API takes for them
// (oslo bool_from_string, strict).
func asBool(val any) (bool, bool) {
	switch v := val.(type) {
	case bool:
		return v, true
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "t", "true", "on", "y", "yes":
			return true, true
		case "0", "f", "false", "off", "n", "no":
			return false, true
		}
	}
	return false, false
}

func ro(name string, min int, get func(v nodeView) any) nodeField {
	return nodeField{name: name, min: min, get: get}
}

func linkField(name string, min int, sub string) nodeField {
	return ro(name, min, func(v nodeView) any { return links(v.r, "nodes/"+v.n.UUID+sub) })
}

// nodeFields is the node schema in Ironic's order, with the microversion
// each field appeared in (ironic/api/controllers/v1/utils.py).
func nodeFields() []nodeField {
	return []nodeField{
		ro("uuid", 1, func(v nodeView) any { return v.n.UUID }),
		ro("created_at", 1, func(v nodeView) any { return timestamp(v.n.CreatedAt) }),
		ro("updated_at", 1, func(v nodeView) any { return timestamp(v.n.UpdatedAt) }),
		{"automated_clean", 47, func(v nodeView) any {
			if v.n.AutomatedClean == nil {
				return nil
			}
			return *v.n.AutomatedClean
		}, func(n *provisioner.Node, val any) error {
			if val == nil {
				n.AutomatedClean = nil
				return nil
			}
			b, ok := asBool(val)
			if !ok {
				return invalidValue("automated_clean", val, "a boolean or null")
			}
			n.AutomatedClean = &b
			return nil
		}},
		ifaceField(drivers.RoleBios, 40),
		ifaceField(drivers.RoleBoot, 31),
		ro("boot_mode", 75, func(v nodeView) any { return orNull(v.n.BootMode) }),
		ro("clean_step", 7, func(v nodeView) any { return dict(v.n.CleanStep) }),
		{"conductor_group", 46, func(v nodeView) any { return v.n.ConductorGroup }, func(n *provisioner.Node, val any) error {
			s, err := asString("conductor_group", val)
			n.ConductorGroup = strings.ToLower(s)
			return err
		}},
		ro("console_enabled", 1, func(v nodeView) any { return v.n.ConsoleEnabled }),
		ifaceField(drivers.RoleConsole, 31),
		ifaceField(drivers.RoleDeploy, 31),
		ro("deploy_step", 44, func(v nodeView) any { return dict(v.n.DeployStep) }),
		strField("description", 51, func(n *provisioner.Node) *string { return &n.Description }),
		strField("driver", 1, func(n *provisioner.Node) *string { return &n.Driver }),
		dictField("driver_info", 1, func(n *provisioner.Node) *map[string]any { return &n.DriverInfo }, true),
		ro("driver_internal_info", 3, func(v nodeView) any { return masked(dict(v.n.DriverInternalInfo)) }),
		dictField("extra", 1, func(n *provisioner.Node) *map[string]any { return &n.Extra }, false),
		ro("fault", 42, func(v nodeView) any { return orNull(v.n.Fault) }),
		ro("inspection_finished_at", 6, func(v nodeView) any { return nil }),
		ro("inspection_started_at", 6, func(v nodeView) any { return nil }),
		ifaceField(drivers.RoleInspect, 31),
		dictField("instance_info", 1, func(n *provisioner.Node) *map[string]any { return &n.InstanceInfo }, true),
		strField("instance_uuid", 1, func(n *provisioner.Node) *string { return &n.InstanceUUID }),
		ro("last_error", 1, func(v nodeView) any { return orNull(v.n.LastError) }),
		strField("lessee", 65, func(n *provisioner.Node) *string { return &n.Lessee }),
		boolField("maintenance", 1, func(n *provisioner.Node) *bool { return &n.Maintenance }),
		strField("maintenance_reason", 1, func(n *provisioner.Node) *string { return &n.MaintenanceReason }),
		ifaceField(drivers.RoleManagement, 31),
		strField("name", 5, func(n *provisioner.Node) *string { return &n.Name }),
		dictField("network_data", 66, func(n *provisioner.Node) *map[string]any { return &n.NetworkData }, false),
		ifaceField(drivers.RoleNetwork, 20),
		strField("owner", 50, func(n *provisioner.Node) *string { return &n.Owner }),
		ifaceField(drivers.RolePower, 31),
		ro("power_state", 1, func(v nodeView) any { return orNull(v.n.PowerState) }),
		dictField("properties", 1, func(n *provisioner.Node) *map[string]any { return &n.Properties }, false),
		boolField("protected", 48, func(n *provisioner.Node) *bool { return &n.Protected }),
		strField("protected_reason", 48, func(n *provisioner.Node) *string { return &n.ProtectedReason }),
		ro("provision_state", 1, func(v nodeView) any { return string(v.n.ProvisionState) }),
		ro("provision_updated_at", 1, func(v nodeView) any { return timestamp(v.n.ProvisionUpdatedAt) }),
		ro("raid_config", 12, func(v nodeView) any { return dict(v.n.RaidConfig) }),
		ifaceField(drivers.RoleRaid, 31),
		ifaceField(drivers.RoleRescue, 38),
		ro("reservation", 1, func(v nodeView) any { return orNull(v.n.Reservation) }),
		strField("resource_class", 21, func(n *provisioner.Node) *string { return &n.ResourceClass }),
		boolField("retired", 61, func(n *provisioner.Node) *bool { return &n.Retired }),
		strField("retired_reason", 61, func(n *provisioner.Node) *string { return &n.RetiredReason }),
		ro("secure_boot", 75, func(v nodeView) any { return nil }),
		strField("shard", 82, func(n *provisioner.Node) *string { return &n.Shard }),
		ifaceField(drivers.RoleStorage, 33),
		ro("target_power_state", 1, func(v nodeView) any { return orNull(v.n.TargetPowerState) }),
		ro("target_provision_state", 1, func(v nodeView) any { return orNull(v.n.TargetProvisionState) }),
		ro("target_raid_config", 12, func(v nodeView) any { return dict(v.n.TargetRaidCfg) }),
		ro("traits", 37, func(v nodeView) any {
			if v.n.Traits == nil {
				return []string{}
			}
			return v.n.Traits
		}),
		ifaceField(drivers.RoleVendor, 31),
		linkField("links", 1, ""),
		ro("conductor", 49, func(v nodeView) any { return orNull(v.conductor) }),
		ro("allocation_uuid", 52, func(v nodeView) any { return orNull(v.n.AllocationUUID) }),
		{"chassis_uuid", 1, func(v nodeView) any { return orNull(v.n.ChassisUUID) }, func(n *provisioner.Node, val any) error {
			s, err := asString("chassis_uuid", val)
			if err == nil && s != "" && !uuidRE.MatchString(s) {
				err = checkUUIDArg("chassis_uuid", s)
			}
			n.ChassisUUID = strings.ToLower(s)
			return err
		}},
		linkField("ports", 1, "/ports"),
		linkField("states", 14, "/states"),
		linkField("portgroups", 24, "/portgroups"),
		linkField("volume", 32, "/volume"),
	}
}

// defaultListFields are the fields a non-detailed node list shows.
var defaultListFields = []string{"uuid", "instance_uuid", "maintenance", "power_state", "provision_state", "name", "links"}

func invalidValue(name string, val any, want string) error {
	return badRequest(fmt.Sprintf("Invalid input for field/attribute %s. Value: '%v'. Wrong type. Expected %s.", name, val, want))
}

func asString(name string, val any) (string, error) {
	switch v := val.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", invalidValue(name, val, "a string or null")
}

func (s *Server) field(name string) *nodeField {
	for i := range s.fields {
		if s.fields[i].name == name {
			return &s.fields[i]
		}
	}
	return nil
}

// parseFields reads ?fields=a,b: unknown names are 400, names newer than
// the request's microversion 406, as Ironic.
func (s *Server) parseFields(r *http.Request, known func(string) (int, bool)) ([]string, error) {
	raw := r.URL.Query().Get("fields")
	if raw == "" {
		return nil, nil
	}
	if minor(r) < 8 {
		return nil, errNotAcceptable
	}
	var out []string
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		min, ok := known(f)
		if !ok {
			return nil, badRequest(fmt.Sprintf("Field(s) \"%s\" are not valid", f))
		}
		if minor(r) < min {
			return nil, errNotAcceptable
		}
		out = append(out, f)
	}
	return out, nil
}

func (s *Server) nodeFieldKnown(name string) (int, bool) {
	if f := s.field(name); f != nil {
		return f.min, true
	}
	return 0, false
}

// renderNode renders n at the request's microversion; fields limits the
// output (links always stay, as in Ironic).
func (s *Server) renderNode(r *http.Request, n *provisioner.Node, fields []string) obj {
	return s.renderNodeWith(r, n, fields, nil)
}

// renderNodeWith is renderNode with the conductor records already read
// (nil: read them), so a listing reads them once.
func (s *Server) renderNodeWith(r *http.Request, n *provisioner.Node, fields []string, recs []provisioner.Conductor) obj {
	v := nodeView{n: n, r: r}
	needConductor := fields == nil || slices.Contains(fields, "conductor")
	if needConductor && minor(r) >= 49 {
		if recs == nil {
			recs, _ = s.st.Conductors(r.Context())
		}
		v.conductor = s.c.ServingConductor(recs, n)
	}
	out := make(obj, 0, len(s.fields))
	for _, f := range s.fields {
		if minor(r) < f.min {
			continue
		}
		if fields != nil && f.name != "links" && !slices.Contains(fields, f.name) {
			continue
		}
		out = append(out, kv{f.name, f.get(v)})
	}
	return out
}

// readBody reads a JSON object body.
func readBody(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(fmt.Sprintf("Cannot read request body: %v", err))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest(fmt.Sprintf("Invalid JSON in request body: %v", err))
	}
	return nil
}

func queryBool(r *http.Request, key string) (*bool, error) {
	raw := r.URL.Query().Get(key)
	if raw == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("Invalid value for %s: %q is not a boolean", key, raw))
	}
	return &b, nil
}

// paging reads limit, marker, sort_key and sort_dir.
type paging struct {
	limit    int
	marker   string
	sortKey  string
	sortDesc bool
}

// filter is the store's view of p.
func (p paging) filter() store.ListFilter {
	return store.ListFilter{SortKey: p.sortKey, SortDesc: p.sortDesc, Marker: p.marker, Limit: p.limit}
}

func (s *Server) readPaging(r *http.Request, sortable []string) (paging, error) {
	q := r.URL.Query()
	var p paging
	if raw := q.Get("limit"); raw != "" {
		l, err := strconv.Atoi(raw)
		if err != nil {
			return p, badRequest(fmt.Sprintf("Invalid input for field/attribute limit. Value: '%s'. unable to convert to int", raw))
		}
		if l <= 0 {
			return p, badRequest("Limit must be positive")
		}
		p.limit = l
	}
	if p.limit == 0 || p.limit > s.cfg.MaxLimit {
		p.limit = s.cfg.MaxLimit
	}
	p.marker = q.Get("marker")
	p.sortKey = q.Get("sort_key")
	if p.sortKey != "" && !slices.Contains(sortable, p.sortKey) {
		return p, badRequest(fmt.Sprintf("The sort_key value \"%s\" is an invalid field for sorting", p.sortKey))
	}
	switch d := q.Get("sort_dir"); d {
	case "", "asc":
	case "desc":
		p.sortDesc = true
	default:
		return p, badRequest(fmt.Sprintf("Invalid sort direction: %s. Acceptable values are 'asc' or 'desc'", d))
	}
	return p, nil
}

// collection renders a list with Ironic's "next" link when a page is full.
func collection(r *http.Request, key string, items []obj, limit int, lastUUID string) obj {
	out := obj{{key, items}}
	if limit > 0 && len(items) == limit && lastUUID != "" {
		q := r.URL.Query()
		q.Set("limit", strconv.Itoa(limit))
		q.Set("marker", lastUUID)
		out = append(out, kv{"next", baseURL(r) + strings.TrimSuffix(r.URL.Path, "/") + "?" + q.Encode()})
	}
	return out
}

// writeCollection answers a list of items rendered by render, with the
// "next" link of a full page after the last one's UUID (collection).
func writeCollection[T any](w http.ResponseWriter, r *http.Request, key string, list []T, limit int, render func(T) obj, uuidOf func(T) string) {
	items := make([]obj, 0, len(list))
	last := ""
	for _, x := range list {
		items = append(items, render(x))
		last = uuidOf(x)
	}
	writeJSON(w, http.StatusOK, collection(r, key, items, limit, last))
}

var nodeSortKeys = []string{"id", "uuid", "name", "created_at", "updated_at", "provision_state", "driver", "power_state", "maintenance"}

func (s *Server) listNodes(detail bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		fields, err := s.parseFields(r, s.nodeFieldKnown)
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
			if detail {
				return badRequest("Can not specify ?detail=True to the /detail resource")
			}
			detail = *d
		}
		if detail && fields != nil {
			return badRequest("Can not specify ?detail=True and fields in the same request.")
		}
		if !detail && fields == nil {
			fields = defaultListFields
		}
		p, err := s.readPaging(r, nodeSortKeys)
		if err != nil {
			return err
		}
		f := store.NodeFilter{ProvisionState: provisioner.ProvisionState(q.Get("provision_state")),
			Driver: q.Get("driver"), SortKey: p.sortKey, SortDesc: p.sortDesc, Limit: p.limit}
		if f.Maintenance, err = queryBool(r, "maintenance"); err != nil {
			return err
		}
		if chassis := cmp.Or(r.PathValue("chassis"), q.Get("chassis_uuid")); chassis != "" {
			if err := checkUUIDArg("chassis_uuid", chassis); err != nil {
				return err
			}
			if _, err := s.chassis(r, chassis); err != nil {
				return err
			}
			f.ChassisUUID = chassis
		}
		if q.Has("shard") {
			if minor(r) < 82 {
				return errNotAcceptable
			}
			sh := q.Get("shard")
			f.Shard = &sh
		}
		if p.marker != "" {
			m, err := s.st.Node(r.Context(), p.marker)
			if err != nil {
				return badRequest(fmt.Sprintf("Marker %s could not be found.", p.marker))
			}
			f.Marker = m.UUID
		}
		nodes, err := s.st.Nodes(r.Context(), f)
		if err != nil {
			return err
		}
		recs, err := s.st.Conductors(r.Context())
		if err != nil {
			return err
		}
		items := make([]obj, 0, len(nodes))
		last := ""
		for _, n := range nodes {
			items = append(items, s.renderNodeWith(r, n, fields, recs))
			last = n.UUID
		}
		writeJSON(w, http.StatusOK, collection(r, "nodes", items, p.limit, last))
		return nil
	}
}

func (s *Server) showNode(w http.ResponseWriter, r *http.Request) error {
	fields, err := s.parseFields(r, s.nodeFieldKnown)
	if err != nil {
		return err
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderNode(r, n, fields))
	return nil
}

// timeline is metalbed's GET /v1/nodes/{node}/timeline: the node must
// exist (Ironic's 404 otherwise), then Config.Timeline answers.
func (s *Server) timeline(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Timeline == nil {
		return errNotFound
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	r2 := r.Clone(r.Context())
	r2.SetPathValue("node", cmp.Or(n.Name, n.UUID))
	r2.URL.Path = "/v1/nodes/" + url.PathEscape(cmp.Or(n.Name, n.UUID)) + "/timeline"
	r2.URL.RawPath = ""
	s.cfg.Timeline.ServeHTTP(w, r2)
	return nil
}

// nameRE is Ironic's rule for node names (RFC 3986 unreserved characters).
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9\-._~]+$`)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkNode validates what POST and PATCH may set.
func checkNode(n *provisioner.Node) error {
	if n.Driver == "" {
		return badRequest("Invalid input for field/attribute driver. Value: 'None'. Mandatory field missing.")
	}
	if n.Name != "" && (!nameRE.MatchString(n.Name) || uuidRE.MatchString(n.Name)) {
		return badRequest(fmt.Sprintf("Cannot create node with invalid name '%s'", n.Name))
	}
	if n.InstanceUUID != "" && !uuidRE.MatchString(n.InstanceUUID) {
		return badRequest(fmt.Sprintf("Invalid input for field/attribute instance_uuid. Value: '%s'. Expected a UUID.", n.InstanceUUID))
	}
	if n.Protected && n.ProvisionState != provisioner.StateActive {
		return badRequest(fmt.Sprintf("Node %s can only be made protected in provision state 'active'", n.UUID))
	}
	if !n.Protected && n.ProtectedReason != "" {
		return badRequest("Cannot set protected_reason without setting protected to True")
	}
	return nil
}

// decodeNodeCreate turns a POST /v1/nodes body into a node, checking every
// attribute against the schema and the microversion.
func (s *Server) decodeNodeCreate(body []byte, version int) (*provisioner.Node, error) {
	var in map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil || in == nil {
		return nil, badRequest("Invalid input for node: the body must be a JSON object")
	}
	normalizeNumbers(in)
	n := &provisioner.Node{}
	for k, val := range in {
		switch k {
		case "uuid":
			u, err := asString(k, val)
			if err != nil {
				return nil, err
			}
			if u != "" && !uuidRE.MatchString(u) {
				return nil, badRequest(fmt.Sprintf("Invalid input for field/attribute uuid. Value: '%s'. Expected a UUID.", u))
			}
			n.UUID = strings.ToLower(u)
			continue
		case "traits":
			return nil, badRequest("Cannot specify node traits on node creation. Traits must be set via the node traits API.")
		}
		f := s.field(k)
		if f == nil || f.set == nil {
			return nil, badRequest(fmt.Sprintf("Unknown attribute for argument node: %s", k))
		}
		if version < f.min {
			return nil, errNotAcceptable
		}
		if err := f.set(n, val); err != nil {
			return nil, err
		}
	}
	if version < 11 {
		n.ProvisionState = provisioner.StateAvailable
	} else {
		n.ProvisionState = provisioner.StateEnroll
	}
	if n.Maintenance || n.Protected {
		// Ironic takes neither on creation.
		return nil, badRequest("Cannot set maintenance or protected on node creation")
	}
	if err := checkNode(n); err != nil {
		return nil, err
	}
	return n, nil
}

// normalizeNumbers turns json.Number into int64 when integral, else
// float64, so driver_info ports stay integers as clients sent them.
func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = normalizeNumbers(e)
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	}
	return v
}

func (s *Server) createNode(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(fmt.Sprintf("Cannot read request body: %v", err))
	}
	n, err := s.decodeNodeCreate(body, minor(r))
	if err != nil {
		return err
	}
	if err := s.nodeChassis(r, n); err != nil {
		return err
	}
	if err := s.c.CreateNode(r.Context(), n); err != nil {
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+n.UUID)
	writeJSON(w, http.StatusCreated, s.renderNode(r, n, nil))
	return nil
}

// internalAttrs cannot be patched at all.
var internalAttrs = []string{"created_at", "id", "links", "updated_at", "uuid"}

// patchNodeDoc applies a JSON patch to n: the patch runs on the node's full
// (unmasked) document, then every writable field that changed is set back
// with its type checked. Read-only fields refuse changes.
func (s *Server) patchNodeDoc(n *provisioner.Node, ops []patchOp, version int, r *http.Request) error {
	for _, op := range ops {
		top := pointer(op.Path)[0]
		if slices.Contains(internalAttrs, top) {
			return badRequest(fmt.Sprintf("'/%s' is an internal attribute and can not be updated", top))
		}
		f := s.field(top)
		if f == nil {
			if op.Op == "add" && len(pointer(op.Path)) == 1 {
				return badRequest(fmt.Sprintf("Adding a new attribute (%s) to the root of the resource is not allowed", op.Path))
			}
			return badRequest(fmt.Sprintf("Cannot patch %s: no such attribute", op.Path))
		}
		if version < f.min {
			return errNotAcceptable
		}
		if top == "traits" {
			return badRequest("Cannot update node traits via node patch. Node traits should be updated via the node traits API.")
		}
		if f.set == nil {
			return badRequest(fmt.Sprintf("Cannot patch /%s: it is read-only", top))
		}
		if op.Op == "remove" && len(pointer(op.Path)) == 1 && top == "driver" {
			return badRequest("'/driver' is a mandatory attribute and can not be removed")
		}
	}
	before := map[string]any{}
	v := nodeView{n: n, r: r}
	for _, f := range s.fields {
		if f.set == nil {
			continue
		}
		val := f.get(v)
		if strings.HasSuffix(f.name, "_info") || f.name == "extra" || f.name == "properties" || f.name == "network_data" {
			// Patch the real values, not the masked view.
			val = rawDict(n, f.name)
		}
		before[f.name] = val
	}
	// Round-trip through JSON so the document holds plain JSON types.
	raw, err := json.Marshal(before)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return err
	}
	normalizeNumbers(doc)
	orig, _ := json.Marshal(doc)
	var origDoc map[string]any
	json.Unmarshal(orig, &origDoc)
	if err := applyPatch(doc, ops); err != nil {
		return err
	}
	for _, f := range s.fields {
		if f.set == nil {
			continue
		}
		newVal, present := doc[f.name]
		if !present {
			newVal = nil
		}
		a, _ := json.Marshal(newVal)
		b, _ := json.Marshal(origDoc[f.name])
		if string(a) == string(b) {
			continue
		}
		if err := f.set(n, newVal); err != nil {
			return err
		}
	}
	return checkNode(n)
}

func rawDict(n *provisioner.Node, name string) map[string]any {
	switch name {
	case "driver_info":
		return dict(n.DriverInfo)
	case "instance_info":
		return dict(n.InstanceInfo)
	case "extra":
		return dict(n.Extra)
	case "properties":
		return dict(n.Properties)
	case "network_data":
		return dict(n.NetworkData)
	}
	return nil
}

func (s *Server) patchNode(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(fmt.Sprintf("Cannot read request body: %v", err))
	}
	ops, err := decodePatch(body)
	if err != nil {
		return err
	}
	reset, err := queryBool(r, "reset_interfaces")
	if err != nil {
		return err
	}
	if reset != nil && minor(r) < 45 {
		return errNotAcceptable
	}
	n, err := s.c.UpdateNode(r.Context(), r.PathValue("node"), func(n *provisioner.Node) error {
		oldDriver, oldChassis := n.Driver, n.ChassisUUID
		if err := s.patchNodeDoc(n, ops, minor(r), r); err != nil {
			return err
		}
		if oldChassis != "" && n.ChassisUUID == "" && minor(r) < 25 {
			return errNotAcceptable // removing chassis_uuid came with 1.25
		}
		if err := s.nodeChassis(r, n); err != nil {
			return err
		}
		if reset != nil && *reset {
			if n.Driver == oldDriver {
				return badRequest("The reset_interfaces parameter can be provided only when changing the node's driver.")
			}
			// Interfaces not set by this patch go back to the new
			// driver's defaults.
			for _, role := range drivers.Roles() {
				patched := slices.ContainsFunc(ops, func(op patchOp) bool {
					return pointer(op.Path)[0] == string(role)+"_interface"
				})
				if !patched {
					drivers.SetInterfaceName(&n.Interfaces, role, "")
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderNode(r, n, nil))
	return nil
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) error {
	if err := s.c.DeleteNode(r.Context(), r.PathValue("node")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) maintenance(on bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		reason := ""
		if on && r.ContentLength != 0 {
			var body struct {
				Reason *string `json:"reason"`
			}
			if err := readBody(r, &body); err != nil {
				return err
			}
			if body.Reason != nil {
				reason = *body.Reason
			}
		}
		if _, err := s.c.SetMaintenance(r.Context(), r.PathValue("node"), on, reason); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
}

func (s *Server) history(detail bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if minor(r) < 78 {
			return errNotFound
		}
		d, err := queryBool(r, "detail")
		if err != nil {
			return err
		}
		if d != nil {
			detail = *d
		}
		n, err := s.c.Node(r.Context(), r.PathValue("node"))
		if err != nil {
			return err
		}
		events, err := s.st.History(r.Context(), n.UUID)
		if err != nil {
			return err
		}
		items := make([]obj, 0, len(events))
		for _, e := range events {
			items = append(items, renderEvent(r, n.UUID, e, detail))
		}
		writeJSON(w, http.StatusOK, obj{{"history", items}})
		return nil
	}
}

func renderEvent(r *http.Request, node string, e provisioner.HistoryEvent, detail bool) obj {
	out := obj{{"uuid", e.UUID}, {"created_at", timestamp(e.CreatedAt)}, {"severity", e.Severity}, {"event", e.Event}}
	if detail {
		out = append(out, kv{"event_type", e.EventType}, kv{"conductor", orNull(e.Conductor)}, kv{"user", orNull(e.User)})
	}
	return append(out, kv{"links", links(r, "nodes/"+node+"/history/"+e.UUID)})
}

func (s *Server) historyEvent(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 78 {
		return errNotFound
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	events, err := s.st.History(r.Context(), n.UUID)
	if err != nil {
		return err
	}
	for _, e := range events {
		if e.UUID == r.PathValue("event") {
			writeJSON(w, http.StatusOK, renderEvent(r, n.UUID, e, true))
			return nil
		}
	}
	return clientErr(http.StatusNotFound, fmt.Sprintf("Node history record %s could not be found.", r.PathValue("event")))
}

// shards (1.82) counts nodes per shard.
func (s *Server) shards(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 82 {
		return errNotFound
	}
	nodes, err := s.st.Nodes(r.Context(), store.NodeFilter{})
	if err != nil {
		return err
	}
	counts := map[string]int{}
	var names []string
	for _, n := range nodes {
		if n.Shard == "" {
			continue
		}
		if counts[n.Shard] == 0 {
			names = append(names, n.Shard)
		}
		counts[n.Shard]++
	}
	slices.Sort(names)
	items := []obj{}
	for _, name := range names {
		items = append(items, obj{{"name", name}, {"count", counts[name]}})
	}
	writeJSON(w, http.StatusOK, obj{{"shards", items}})
	return nil
}
