package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// patchOp is one RFC 6902 operation as Ironic accepts them (add, replace,
// remove).
type patchOp struct {
	Op    string           `json:"op"`
	Path  string           `json:"path"`
	Value *json.RawMessage `json:"value,omitempty"`
}

// decodePatch reads a JSON patch body.
func decodePatch(body []byte) ([]patchOp, error) {
	var ops []patchOp
	if err := json.Unmarshal(body, &ops); err != nil {
		return nil, badRequest(fmt.Sprintf("Invalid patch: %v", err))
	}
	if len(ops) == 0 {
		return nil, badRequest("Patch must not be empty")
	}
	for _, op := range ops {
		switch op.Op {
		case "add", "replace":
			if op.Value == nil {
				return nil, badRequest(fmt.Sprintf("'value' is a required property for op %q on %s", op.Op, op.Path))
			}
		case "remove":
		default:
			return nil, badRequest(fmt.Sprintf("Invalid input for field/attribute op. Value: '%s'. Value should be one of: add, replace, remove", op.Op))
		}
		if !strings.HasPrefix(op.Path, "/") || op.Path == "/" {
			return nil, badRequest(fmt.Sprintf("Invalid input for field/attribute path. Value: '%s'. '%s' is not a valid JSON pointer", op.Path, op.Path))
		}
	}
	return ops, nil
}

func pointer(path string) []string {
	parts := strings.Split(path[1:], "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return parts
}

// applyPatch applies ops to doc (a decoded JSON object) in order.
func applyPatch(doc map[string]any, ops []patchOp) error {
	for _, op := range ops {
		parts := pointer(op.Path)
		var val any
		if op.Value != nil {
			if err := json.Unmarshal(*op.Value, &val); err != nil {
				return badRequest(fmt.Sprintf("Invalid value for %s: %v", op.Path, err))
			}
		}
		if len(parts) == 1 && op.Op == "add" {
			if _, ok := doc[parts[0]]; !ok {
				return badRequest(fmt.Sprintf("Adding a new attribute (%s) to the root of the resource is not allowed", op.Path))
			}
		}
		if err := apply(doc, parts, op.Op, val); err != nil {
			return badRequest(fmt.Sprintf("Couldn't apply patch '%s %s'. Reason: %v", op.Op, op.Path, err))
		}
	}
	return nil
}

func apply(container any, parts []string, op string, val any) error {
	key, last := parts[0], len(parts) == 1
	switch c := container.(type) {
	case map[string]any:
		if !last {
			next, ok := c[key]
			if !ok || next == nil {
				return fmt.Errorf("member %q not found", key)
			}
			return apply(next, parts[1:], op, val)
		}
		_, exists := c[key]
		switch op {
		case "add":
			c[key] = val
		case "replace":
			if !exists {
				return fmt.Errorf("can't replace a non-existent object '%s'", key)
			}
			c[key] = val
		case "remove":
			if !exists {
				return fmt.Errorf("can't remove a non-existent object '%s'", key)
			}
			delete(c, key)
		}
		return nil
	case []any:
		// Arrays are edited in place through their parent; only nested
		// members of an element are reachable here.
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(c) {
			return fmt.Errorf("index %q out of range", key)
		}
		if last {
			if op == "remove" {
				return fmt.Errorf("removing array elements is not supported")
			}
			c[i] = val
			return nil
		}
		return apply(c[i], parts[1:], op, val)
	}
	return fmt.Errorf("member %q not found", key)
}
