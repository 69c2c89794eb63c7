package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// Allocations (API 1.52; PATCH 1.57; owner 1.60). The conductor picks the
// node (conductor.CreateAllocation); backfilling an allocation from a
// deployed node (1.58 "node") is not supported.

const (
	minAllocations      = 52
	minAllocationUpdate = 57
	minAllocationOwner  = 60
)

// allocationSchema is Ironic's ALLOCATION_SCHEMA; traits are checked
// further by checkTraitSchema, candidate_nodes' items by type.
var allocationSchema = map[string]prop{
	"candidate_nodes": {types: []string{"array", "null"}},
	"extra":           {types: []string{"object", "null"}},
	"name":            {types: []string{"string", "null"}},
	"node":            {types: []string{"string", "null"}},
	"owner":           {types: []string{"string", "null"}},
	"resource_class":  {types: []string{"string", "null"}, maxLen: 80},
	"traits":          {types: []string{"array", "null"}},
	"uuid":            {types: []string{"string", "null"}},
}

var allocationFields = fieldVersions(map[string]int{
	"uuid": 1, "created_at": 1, "updated_at": 1, "candidate_nodes": 1, "extra": 1, "last_error": 1, "name": 1,
	"owner": minAllocationOwner, "resource_class": 1, "state": 1, "traits": 1, "links": 1, "node_uuid": 1,
})

var allocationSortKeys = []string{"id", "uuid", "name", "created_at", "updated_at"}

// renderAllocation renders a as Ironic's allocation convert_with_links.
func renderAllocation(r *http.Request, a *provisioner.Allocation, fields []string) obj {
	list := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	out := obj{
		{"uuid", a.UUID}, {"created_at", timestamp(a.CreatedAt)}, {"updated_at", timestamp(a.UpdatedAt)},
		{"candidate_nodes", list(a.CandidateNodes)}, {"extra", dict(a.Extra)}, {"last_error", orNull(a.LastError)},
		{"name", orNull(a.Name)},
	}
	if minor(r) >= minAllocationOwner {
		out = append(out, kv{"owner", orNull(a.Owner)})
	}
	out = append(out, obj{
		{"resource_class", orNull(a.ResourceClass)}, {"state", a.State}, {"traits", list(a.Traits)},
		{"links", links(r, "allocations/"+a.UUID)}, {"node_uuid", orNull(a.NodeUUID)},
	}...)
	return pick(out, fields)
}

// allocationsAllowed is Ironic's _route check: older microversions get
// 404 on GET, 405 otherwise.
func allocationsAllowed(r *http.Request) error {
	if minor(r) >= minAllocations {
		return nil
	}
	if r.Method == http.MethodGet {
		return clientErr(http.StatusNotFound, "The API version does not allow allocations")
	}
	return clientErr(http.StatusMethodNotAllowed, "The API version does not allow allocations")
}

// allocation reads the allocation the path names, by UUID or name.
func (s *Server) allocation(r *http.Request) (*provisioner.Allocation, error) {
	if err := allocationsAllowed(r); err != nil {
		return nil, err
	}
	ident := r.PathValue("allocation")
	a, err := s.st.Allocation(r.Context(), ident)
	if errors.Is(err, store.ErrNotFound) {
		return nil, clientErr(http.StatusNotFound, fmt.Sprintf("Allocation %s could not be found.", ident))
	}
	return a, err
}

// decodeAllocation checks a POST /v1/allocations body and builds the
// allocation, candidate nodes resolved to UUIDs.
func (s *Server) decodeAllocation(r *http.Request, body map[string]any) (*provisioner.Allocation, error) {
	if err := checkSchema("allocation", body, allocationSchema); err != nil {
		return nil, err
	}
	if _, ok := body["owner"]; ok && minor(r) < minAllocationOwner {
		return nil, errNotAcceptable
	}
	if node, _ := body["node"].(string); node != "" {
		if minor(r) < 58 {
			return nil, badRequest("Cannot set node when creating an allocation in this API version")
		}
		return nil, badRequest("Backfilling allocations from deployed nodes is not supported by metalbed.")
	}
	a := &provisioner.Allocation{}
	a.Name, _ = body["name"].(string)
	a.Owner, _ = body["owner"].(string)
	a.ResourceClass, _ = body["resource_class"].(string)
	a.Extra, _ = body["extra"].(map[string]any)
	if u, _ := body["uuid"].(string); u != "" {
		if err := checkUUIDArg("uuid", u); err != nil {
			return nil, err
		}
		a.UUID = strings.ToLower(u)
	}
	if a.Name != "" && (!nameRE.MatchString(a.Name) || uuidRE.MatchString(a.Name)) {
		return nil, badRequest(fmt.Sprintf("Cannot create allocation with invalid name '%s'", a.Name))
	}
	traits, _ := body["traits"].([]any)
	for _, t := range traits {
		if err := checkTraitSchema("allocation", t); err != nil {
			return nil, err
		}
		a.Traits = append(a.Traits, t.(string))
	}
	if a.ResourceClass == "" {
		return nil, badRequest("The resource_class field is mandatory when not backfilling")
	}
	cands, _ := body["candidate_nodes"].([]any)
	var missing []string
	for _, c := range cands {
		ident, ok := c.(string)
		if !ok {
			return nil, badRequest(fmt.Sprintf("Schema error for allocation: %v is not of type 'string'", c))
		}
		n, err := s.st.Node(r.Context(), ident)
		if errors.Is(err, store.ErrNotFound) {
			missing = append(missing, ident)
			continue
		}
		if err != nil {
			return nil, err
		}
		a.CandidateNodes = append(a.CandidateNodes, n.UUID)
	}
	if len(missing) > 0 {
		return nil, badRequest("Nodes cannot be found: " + strings.Join(missing, ", "))
	}
	return a, nil
}

func (s *Server) createAllocation(w http.ResponseWriter, r *http.Request) error {
	if err := allocationsAllowed(r); err != nil {
		return err
	}
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		return err
	}
	a, err := s.decodeAllocation(r, body)
	if err != nil {
		return err
	}
	if err := s.c.CreateAllocation(r.Context(), a); err != nil {
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v1/allocations/"+a.UUID)
	writeJSON(w, http.StatusCreated, renderAllocation(r, a, nil))
	return nil
}

func (s *Server) listAllocations(w http.ResponseWriter, r *http.Request) error {
	if err := allocationsAllowed(r); err != nil {
		return err
	}
	q := r.URL.Query()
	fields, err := s.parseFields(r, allocationFields)
	if err != nil {
		return err
	}
	p, err := s.readPaging(r, allocationSortKeys)
	if err != nil {
		return err
	}
	f := store.AllocationFilter{ListFilter: p.filter(),
		ResourceClass: q.Get("resource_class"), State: q.Get("state"), Owner: q.Get("owner")}
	if f.Owner != "" && minor(r) < minAllocationOwner {
		return errNotAcceptable
	}
	if node := q.Get("node"); node != "" {
		n, err := s.st.Node(r.Context(), node)
		if errors.Is(err, store.ErrNotFound) {
			return badRequest(fmt.Sprintf("Node %s could not be found.", node))
		}
		if err != nil {
			return err
		}
		f.NodeUUID = n.UUID
	}
	list, err := s.st.Allocations(r.Context(), f)
	if err != nil {
		return err
	}
	writeCollection(w, r, "allocations", list, p.limit,
		func(x *provisioner.Allocation) obj { return renderAllocation(r, x, fields) },
		func(x *provisioner.Allocation) string { return x.UUID })
	return nil
}

func (s *Server) showAllocation(w http.ResponseWriter, r *http.Request) error {
	a, err := s.allocation(r)
	if err != nil {
		return err
	}
	fields, err := s.parseFields(r, allocationFields)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderAllocation(r, a, fields))
	return nil
}

func (s *Server) patchAllocation(w http.ResponseWriter, r *http.Request) error {
	if err := allocationsAllowed(r); err != nil {
		return err
	}
	if minor(r) < minAllocationUpdate {
		return clientErr(http.StatusMethodNotAllowed, "The API version does not allow updating allocations")
	}
	a, err := s.allocation(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(fmt.Sprintf("Cannot read request body: %v", err))
	}
	ops, err := decodePatch(body)
	if err != nil {
		return err
	}
	if err := allowedPatch(ops, "name", "extra"); err != nil {
		return err
	}
	doc := map[string]any{"name": orNull(a.Name), "extra": dict(a.Extra)}
	if err := applyPatch(doc, ops); err != nil {
		return err
	}
	if err := checkSchema("patch", doc, allocationSchema); err != nil {
		return err
	}
	name, _ := doc["name"].(string)
	if name != "" && (!nameRE.MatchString(name) || uuidRE.MatchString(name)) {
		return badRequest(fmt.Sprintf("Cannot update allocation with invalid name '%s'", name))
	}
	a.Name = name
	a.Extra, _ = doc["extra"].(map[string]any)
	a.UpdatedAt = time.Now().UTC()
	if err := s.st.UpdateAllocation(r.Context(), a); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return clientErr(http.StatusConflict, fmt.Sprintf("An allocation with name %s already exists.", a.Name))
		}
		return err
	}
	writeJSON(w, http.StatusOK, renderAllocation(r, a, nil))
	return nil
}

// deleteAllocationOf deletes the allocation find names (by its own path,
// or by its node's).
func (s *Server) deleteAllocationOf(find func(*http.Request) (*provisioner.Allocation, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		a, err := find(r)
		if err != nil {
			return err
		}
		if err := s.c.DeleteAllocation(r.Context(), a.UUID); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// nodeAllocation finds the allocation holding the node the path names:
// Ironic's NodeAllocationController.
func (s *Server) nodeAllocation(r *http.Request) (*provisioner.Allocation, error) {
	if minor(r) < minAllocations {
		return nil, clientErr(http.StatusNotFound, "The API version does not allow allocations")
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return nil, err
	}
	list, err := s.st.Allocations(r.Context(), store.AllocationFilter{NodeUUID: n.UUID})
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, clientErr(http.StatusNotFound, fmt.Sprintf("Allocation for node %s was not found", r.PathValue("node")))
	}
	return list[0], nil
}

func (s *Server) showNodeAllocation(w http.ResponseWriter, r *http.Request) error {
	fields, err := s.parseFields(r, allocationFields)
	if err != nil {
		return err
	}
	a, err := s.nodeAllocation(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderAllocation(r, a, fields))
	return nil
}
