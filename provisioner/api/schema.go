package api

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/metalbed/metalbed/provisioner/conductor"
)

// prop is one property of the JSON schema Ironic validates a request body
// with (a jsonschema subset: types, maxLength).
type prop struct {
	types  []string // "string", "object", "array", "integer", "boolean", "null"
	maxLen int      // for strings; 0 = unbounded
}

// jsonType names v's JSON type as jsonschema does.
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case int64, int:
		return "integer"
	case float64:
		if v == math.Trunc(v) {
			return "integer"
		}
	}
	return "number"
}

// checkSchema validates body as Ironic's args.schema does, the message
// being "Schema error for <what>: " and jsonschema's: no properties
// beyond props, the required ones present, each of a listed type and no
// longer than its maxLen.
func checkSchema(what string, body map[string]any, props map[string]prop, required ...string) error {
	bad := func(format string, a ...any) error {
		return badRequest(fmt.Sprintf("Schema error for %s: ", what) + fmt.Sprintf(format, a...))
	}
	allowed := make([]string, 0, len(props))
	for k := range props {
		allowed = append(allowed, k)
	}
	if msg := conductor.AdditionalProperties(body, allowed...); msg != "" {
		return bad("%s", msg)
	}
	for _, k := range required {
		if _, ok := body[k]; !ok {
			return bad("'%s' is a required property", k)
		}
	}
	names := make([]string, 0, len(body))
	for k := range body {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		p, v := props[k], body[k]
		if !slices.Contains(p.types, jsonType(v)) {
			quoted := make([]string, len(p.types))
			for i, t := range p.types {
				quoted[i] = "'" + t + "'"
			}
			return bad("%s is not of type %s", conductor.PyRepr(v), strings.Join(quoted, ", "))
		}
		if s, ok := v.(string); ok && p.maxLen > 0 && len([]rune(s)) > p.maxLen {
			return bad("%s is too long", conductor.PyRepr(s))
		}
	}
	return nil
}

// checkUUIDArg is Ironic's args.uuid: "Expected UUID for <name>: <value>".
func checkUUIDArg(name, value string) error {
	if !uuidRE.MatchString(value) {
		return badRequest(fmt.Sprintf("Expected UUID for %s: %s", name, value))
	}
	return nil
}

// checkTraitSchema validates v as Ironic's TRAITS_SCHEMA (validTrait),
// with jsonschema's messages.
func checkTraitSchema(what string, v any) error {
	bad := func(format string, a ...any) error {
		return badRequest(fmt.Sprintf("Schema error for %s: ", what) + fmt.Sprintf(format, a...))
	}
	s, ok := v.(string)
	switch {
	case !ok:
		return bad("%s is not of type 'string'", conductor.PyRepr(v))
	case s == "":
		return bad("'' is too short")
	case len(s) > 255:
		return bad("%s is too long", conductor.PyRepr(s))
	case !validTrait(s):
		return bad("%s is not valid under any of the given schemas. Possible root cause: %s does not match '%s'",
			conductor.PyRepr(s), conductor.PyRepr(s), customTraitRE.String())
	}
	return nil
}
