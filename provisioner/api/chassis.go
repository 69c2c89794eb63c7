package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/store"
)

// chassisSchema is Ironic's CHASSIS_SCHEMA (api/controllers/v1/chassis.py).
var chassisSchema = map[string]prop{
	"uuid":        {types: []string{"string", "null"}},
	"extra":       {types: []string{"object", "null"}},
	"description": {types: []string{"string", "null"}, maxLen: 255},
}

// chassisFields are the fields a chassis renders, all since 1.0.
var chassisFields = fieldVersions(map[string]int{
	"uuid": 1, "created_at": 1, "updated_at": 1, "description": 1, "extra": 1, "links": 1, "nodes": 1,
})

var chassisSortKeys = []string{"id", "uuid", "created_at", "updated_at"}

// renderChassis renders c as Ironic 21.4's chassis convert_with_links,
// "nodes" included: a trailing comma there makes it a list holding the
// self/bookmark pair, and clients see exactly that.
func renderChassis(r *http.Request, c *provisioner.Chassis, fields []string) obj {
	return pick(obj{
		{"uuid", c.UUID}, {"created_at", timestamp(c.CreatedAt)}, {"updated_at", timestamp(c.UpdatedAt)},
		{"description", orNull(c.Description)}, {"extra", dict(c.Extra)},
		{"links", links(r, "chassis/"+c.UUID)},
		{"nodes", [][]obj{links(r, "chassis/"+c.UUID+"/nodes")}},
	}, fields)
}

// chassisNotFound is Ironic's ChassisNotFound (404 where the chassis is
// the resource; callers acting on nodes turn it into 400).
func chassisNotFound(ident string) error {
	return clientErr(http.StatusNotFound, fmt.Sprintf("Chassis %s could not be found.", ident))
}

// chassis reads the chassis the path names.
func (s *Server) chassis(r *http.Request, ident string) (*provisioner.Chassis, error) {
	c, err := s.st.Chassis(r.Context(), ident)
	if errors.Is(err, store.ErrNotFound) {
		return nil, chassisNotFound(ident)
	}
	return c, err
}

func (s *Server) listChassis(detail bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var fields []string
		if !detail {
			var err error
			if fields, err = s.listFields(r, chassisFields, []string{"uuid", "description"}); err != nil {
				return err
			}
		}
		p, err := s.readPaging(r, chassisSortKeys)
		if err != nil {
			return err
		}
		if p.marker != "" {
			if err := checkUUIDArg("marker", p.marker); err != nil {
				return err
			}
			if _, err := s.chassis(r, p.marker); err != nil {
				return err
			}
		}
		list, err := s.st.ChassisList(r.Context(), p.filter())
		if err != nil {
			return err
		}
		writeCollection(w, r, "chassis", list, p.limit,
			func(x *provisioner.Chassis) obj { return renderChassis(r, x, fields) },
			func(x *provisioner.Chassis) string { return x.UUID })
		return nil
	}
}

func (s *Server) showChassis(w http.ResponseWriter, r *http.Request) error {
	fields, err := s.parseFields(r, chassisFields)
	if err != nil {
		return err
	}
	if err := checkUUIDArg("chassis_uuid", r.PathValue("chassis")); err != nil {
		return err
	}
	c, err := s.chassis(r, r.PathValue("chassis"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderChassis(r, c, fields))
	return nil
}

// setChassis sets c's attributes from a body that passed chassisSchema.
func setChassis(c *provisioner.Chassis, body map[string]any) {
	c.Description, _ = body["description"].(string)
	c.Extra, _ = body["extra"].(map[string]any)
}

func (s *Server) createChassis(w http.ResponseWriter, r *http.Request) error {
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		return err
	}
	if err := checkSchema("chassis", body, chassisSchema); err != nil {
		return err
	}
	c := &provisioner.Chassis{CreatedAt: time.Now().UTC()}
	if u, _ := body["uuid"].(string); u != "" {
		if err := checkUUIDArg("uuid", u); err != nil {
			return err
		}
		c.UUID = u
	} else {
		c.UUID = uuid.NewString()
	}
	setChassis(c, body)
	if err := s.st.CreateChassis(r.Context(), c); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return clientErr(http.StatusConflict, fmt.Sprintf("A chassis with UUID %s already exists.", c.UUID))
		}
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v1/chassis/"+c.UUID)
	writeJSON(w, http.StatusCreated, renderChassis(r, c, nil))
	return nil
}

func (s *Server) patchChassis(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(fmt.Sprintf("Cannot read request body: %v", err))
	}
	ops, err := decodePatch(body)
	if err != nil {
		return err
	}
	if err := allowedPatch(ops, "uuid", "extra", "description"); err != nil {
		return err
	}
	c, err := s.chassis(r, r.PathValue("chassis"))
	if err != nil {
		return err
	}
	doc := map[string]any{"uuid": c.UUID, "description": orNull(c.Description), "extra": dict(c.Extra)}
	if err := applyPatch(doc, ops); err != nil {
		return err
	}
	if err := checkSchema("patch", doc, chassisSchema); err != nil {
		return err
	}
	if doc["uuid"] != c.UUID {
		return badRequest("'/uuid' is an internal attribute and can not be updated")
	}
	setChassis(c, doc)
	c.UpdatedAt = time.Now().UTC()
	if err := s.st.UpdateChassis(r.Context(), c); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderChassis(r, c, nil))
	return nil
}

// allowedPatch is Ironic's patch_validate_allowed_fields.
func allowedPatch(ops []patchOp, allowed ...string) error {
	for _, op := range ops {
		top := pointer(op.Path)[0]
		if !slices.Contains(allowed, top) {
			return badRequest(fmt.Sprintf("Cannot patch %s. Only the following can be updated: %s", op.Path, strings.Join(allowed, ", ")))
		}
	}
	return nil
}

func (s *Server) deleteChassis(w http.ResponseWriter, r *http.Request) error {
	ident := r.PathValue("chassis")
	if err := checkUUIDArg("chassis_uuid", ident); err != nil {
		return err
	}
	err := s.st.DeleteChassis(r.Context(), ident)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return chassisNotFound(ident)
	case errors.Is(err, store.ErrNotEmpty):
		return badRequest(fmt.Sprintf("Cannot complete the requested action because chassis %s contains nodes.", ident))
	case err != nil:
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// nodeChassis checks the chassis a node names exists: Ironic answers a
// missing one with ChassisNotFound turned into 400.
func (s *Server) nodeChassis(r *http.Request, n *provisioner.Node) error {
	if n.ChassisUUID == "" {
		return nil
	}
	_, err := s.st.Chassis(r.Context(), n.ChassisUUID)
	if errors.Is(err, store.ErrNotFound) {
		return badRequest(fmt.Sprintf("Chassis %s could not be found.", n.ChassisUUID))
	}
	return err
}
