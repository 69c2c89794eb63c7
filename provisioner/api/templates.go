package api

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/conductor"
	"github.com/metalbed/metalbed/provisioner/store"
)

// Deploy templates (API 1.55). metalbed keeps and serves them as Ironic
// does; its conductor runs their steps at deploy time (conductor
// planDeploySteps).

const minDeployTemplates = 55

// templateSchema is Ironic's TEMPLATE_SCHEMA; name and steps are checked
// further by checkTraitSchema and checkDeployStep. Ironic 21.4 accepts a
// description and drops it (its DeployTemplate object has no such field):
// so does metalbed.
var templateSchema = map[string]prop{
	"description": {types: []string{"string", "null"}, maxLen: 255},
	"extra":       {types: []string{"object", "null"}},
	"name":        {types: []string{"string"}},
	"steps":       {types: []string{"array"}},
	"uuid":        {types: []string{"string", "null"}},
}

// deployStepSchema is Ironic's DEPLOY_STEP_SCHEMA but for interface's
// enum and priority's anyOf, which checkDeployStep adds.
var deployStepSchema = map[string]prop{
	"args":      {types: []string{"object"}},
	"interface": {types: []string{"string"}},
	"priority":  {types: []string{"integer", "string"}},
	"step":      {types: []string{"string"}},
}

// deployInterfaces are the interfaces a deploy step may name
// (conductor/steps.py DEPLOYING_INTERFACE_PRIORITY).
var digitsRE = regexp.MustCompile(`^[0-9]+$`)

var deployInterfaces = []string{"power", "management", "deploy", "bios", "raid"}

var templateFields = fieldVersions(map[string]int{
	"uuid": 1, "created_at": 1, "updated_at": 1, "name": 1, "extra": 1, "links": 1, "steps": 1,
})

var templateSortKeys = []string{"id", "uuid", "name", "created_at", "updated_at"}

// checkDeployStep validates one step as DEPLOY_STEP_SCHEMA does and
// returns it typed.
func checkDeployStep(what string, v any) (provisioner.DeployStep, error) {
	bad := func(format string, a ...any) error {
		return badRequest(fmt.Sprintf("Schema error for %s: ", what) + fmt.Sprintf(format, a...))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return provisioner.DeployStep{}, bad("%s is not of type 'object'", conductor.PyRepr(v))
	}
	if err := checkSchema(what, m, deployStepSchema, "interface", "step", "args", "priority"); err != nil {
		return provisioner.DeployStep{}, err
	}
	st := provisioner.DeployStep{Args: m["args"].(map[string]any)}
	st.Interface, st.Step = m["interface"].(string), m["step"].(string)
	if !slices.Contains(deployInterfaces, st.Interface) {
		quoted := make([]string, len(deployInterfaces))
		for i, s := range deployInterfaces {
			quoted[i] = "'" + s + "'"
		}
		return st, bad("%s is not one of [%s]", conductor.PyRepr(st.Interface), strings.Join(quoted, ", "))
	}
	if st.Step == "" {
		return st, bad("'' is too short")
	}
	var prio float64
	switch p := m["priority"].(type) {
	case string:
		if !digitsRE.MatchString(p) {
			return st, bad("%s does not match '^[0-9]+$'", conductor.PyRepr(p))
		}
		prio, _ = strconv.ParseFloat(p, 64)
	case float64:
		if p < 0 {
			return st, bad("%v is less than the minimum of 0", p)
		}
		prio = p
	}
	if prio > math.MaxInt32 {
		// Ironic's schema has no maximum, but its database column is a
		// 32-bit integer.
		return st, bad("%v is greater than the maximum of %d", m["priority"], math.MaxInt32)
	}
	st.Priority = int(prio)
	return st, nil
}

// decodeTemplate checks a template document (POST body or patched
// document; what names it in messages) and sets t from it.
func decodeTemplate(what string, doc map[string]any, t *provisioner.DeployTemplate) error {
	if err := checkSchema(what, doc, templateSchema, "steps", "name"); err != nil {
		return err
	}
	if err := checkTraitSchema(what, doc["name"]); err != nil {
		return err
	}
	raw := doc["steps"].([]any)
	if len(raw) == 0 {
		return badRequest(fmt.Sprintf("Schema error for %s: [] is too short", what))
	}
	steps := make([]provisioner.DeployStep, 0, len(raw))
	var dups []string
	for _, v := range raw {
		st, err := checkDeployStep(what, v)
		if err != nil {
			return err
		}
		for _, prev := range steps {
			if prev.Interface == st.Interface && prev.Step == st.Step {
				dups = append(dups, fmt.Sprintf("interface: %s, step: %s", st.Interface, st.Step))
			}
		}
		steps = append(steps, st)
	}
	if len(dups) > 0 {
		return badRequest("Deploy template invalid: Duplicate deploy steps. A deploy template cannot have multiple deploy steps with the same interface and step. Duplicates: " +
			strings.Join(slices.Compact(dups), "; ") + ".")
	}
	t.Name, t.Steps = doc["name"].(string), steps
	t.Extra, _ = doc["extra"].(map[string]any)
	return nil
}

// templateDoc is t as the document a PATCH edits.
func templateDoc(t *provisioner.DeployTemplate) map[string]any {
	steps := make([]any, len(t.Steps))
	for i, st := range t.Steps {
		steps[i] = map[string]any{"interface": st.Interface, "step": st.Step, "args": dict(st.Args), "priority": float64(st.Priority)}
	}
	return map[string]any{"uuid": t.UUID, "name": t.Name, "steps": steps, "extra": dict(t.Extra)}
}

// renderTemplate renders t as Ironic's deploy template convert_with_links,
// secrets in step args masked.
func renderTemplate(r *http.Request, t *provisioner.DeployTemplate, fields []string) obj {
	steps := make([]obj, len(t.Steps))
	for i, st := range t.Steps {
		steps[i] = obj{{"interface", st.Interface}, {"step", st.Step}, {"args", masked(dict(st.Args))}, {"priority", st.Priority}}
	}
	return pick(obj{
		{"uuid", t.UUID}, {"created_at", timestamp(t.CreatedAt)}, {"updated_at", timestamp(t.UpdatedAt)},
		{"name", t.Name}, {"extra", dict(t.Extra)}, {"links", links(r, "deploy_templates/"+t.UUID)}, {"steps", steps},
	}, fields)
}

// templatesAllowed is Ironic's _route check: older microversions get 404
// on GET, 405 otherwise.
func templatesAllowed(r *http.Request) error {
	if minor(r) >= minDeployTemplates {
		return nil
	}
	if r.Method == http.MethodGet {
		return clientErr(http.StatusNotFound, "The API version does not allow deploy templates")
	}
	return clientErr(http.StatusMethodNotAllowed, "The API version does not allow deploy templates")
}

// template reads the template the path names, by UUID or name.
func (s *Server) template(r *http.Request) (*provisioner.DeployTemplate, error) {
	if err := templatesAllowed(r); err != nil {
		return nil, err
	}
	ident := r.PathValue("template")
	if !uuidRE.MatchString(ident) && !nameRE.MatchString(ident) {
		return nil, badRequest(fmt.Sprintf("Expected a logical name or UUID but received %s.", ident))
	}
	t, err := s.st.DeployTemplate(r.Context(), ident)
	if errors.Is(err, store.ErrNotFound) {
		return nil, clientErr(http.StatusNotFound, fmt.Sprintf("Deploy template %s could not be found.", ident))
	}
	return t, err
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	if err := templatesAllowed(r); err != nil {
		return err
	}
	fields, err := s.listFields(r, templateFields, []string{"uuid", "name"})
	if err != nil {
		return err
	}
	p, err := s.readPaging(r, templateSortKeys)
	if err != nil {
		return err
	}
	list, err := s.st.DeployTemplates(r.Context(), p.filter())
	if err != nil {
		return err
	}
	writeCollection(w, r, "deploy_templates", list, p.limit,
		func(x *provisioner.DeployTemplate) obj { return renderTemplate(r, x, fields) },
		func(x *provisioner.DeployTemplate) string { return x.UUID })
	return nil
}

func (s *Server) showTemplate(w http.ResponseWriter, r *http.Request) error {
	t, err := s.template(r)
	if err != nil {
		return err
	}
	fields, err := s.parseFields(r, templateFields)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderTemplate(r, t, fields))
	return nil
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request) error {
	if err := templatesAllowed(r); err != nil {
		return err
	}
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		return err
	}
	t := &provisioner.DeployTemplate{UUID: uuid.NewString(), CreatedAt: time.Now().UTC()}
	if err := decodeTemplate("template", body, t); err != nil {
		return err
	}
	if u, _ := body["uuid"].(string); u != "" {
		if err := checkUUIDArg("uuid", u); err != nil {
			return err
		}
		t.UUID = strings.ToLower(u)
	}
	if err := s.st.CreateDeployTemplate(r.Context(), t); err != nil {
		return s.templateStoreErr(r, t, err)
	}
	w.Header().Set("Location", baseURL(r)+"/v1/deploy_templates/"+t.UUID)
	writeJSON(w, http.StatusCreated, renderTemplate(r, t, nil))
	return nil
}

// templateStoreErr names which uniqueness a write broke, as Ironic's
// DeployTemplateDuplicateName and DeployTemplateAlreadyExists do.
func (s *Server) templateStoreErr(r *http.Request, t *provisioner.DeployTemplate, err error) error {
	if !errors.Is(err, store.ErrDuplicate) {
		return err
	}
	if other, gerr := s.st.DeployTemplate(r.Context(), t.Name); gerr == nil && other.UUID != t.UUID {
		return clientErr(http.StatusConflict, fmt.Sprintf("A deploy template with name %s already exists.", t.Name))
	}
	return clientErr(http.StatusConflict, fmt.Sprintf("A deploy template with UUID %s already exists.", t.UUID))
}

func (s *Server) patchTemplate(w http.ResponseWriter, r *http.Request) error {
	if err := templatesAllowed(r); err != nil {
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
	if err := allowedPatch(ops, "extra", "name", "steps", "description"); err != nil {
		return err
	}
	t, err := s.template(r)
	if err != nil {
		return err
	}
	doc := templateDoc(t)
	if err := applyPatch(doc, ops); err != nil {
		return err
	}
	if err := decodeTemplate("patch", doc, t); err != nil {
		return err
	}
	t.UpdatedAt = time.Now().UTC()
	if err := s.st.UpdateDeployTemplate(r.Context(), t); err != nil {
		return s.templateStoreErr(r, t, err)
	}
	writeJSON(w, http.StatusOK, renderTemplate(r, t, nil))
	return nil
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	t, err := s.template(r)
	if err != nil {
		return err
	}
	if err := s.st.DeleteDeployTemplate(r.Context(), t.UUID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
