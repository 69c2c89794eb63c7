package drivers

import (
	"fmt"
	"slices"
	"strings"
)

// PyItem is one key of a PyDict.
type PyItem struct {
	Key   string
	Value any
}

// PyDict is a Python dict whose keys keep the order they were given in,
// as the dicts Ironic builds and prints in its messages.
type PyDict []PyItem

// pyString is a str's repr: single quotes unless it holds one and no
// double quote, backslashes doubled.
func pyString(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}

// PyLiteral renders a JSON value as Python's repr does, as Ironic's
// messages print dicts and lists ({'interface': 'bios', 'args': {}}):
// None, True/False, quoted strings, numbers as JSON has them, lists, and
// dicts with their keys sorted (a PyDict keeps its own order).
func PyLiteral(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case string:
		return pyString(v)
	case bool:
		if v {
			return "True"
		}
		return "False"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = PyLiteral(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		d := make(PyDict, len(keys))
		for i, k := range keys {
			d[i] = PyItem{k, v[k]}
		}
		return PyLiteral(d)
	case PyDict:
		parts := make([]string, len(v))
		for i, it := range v {
			parts[i] = PyLiteral(it.Key) + ": " + PyLiteral(it.Value)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}
