package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// obj is a JSON object that keeps its key order, so answers read like
// Ironic's.
type obj []kv

type kv struct {
	k string
	v any
}

// MarshalJSON implements json.Marshaler.
func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		var vb bytes.Buffer
		enc := json.NewEncoder(&vb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e.v); err != nil {
			return nil, err
		}
		b.Write(bytes.TrimRight(vb.Bytes(), "\n"))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// baseURL is the API's own URL as the client reached it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// links is Ironic's self + bookmark pair for a resource path ("nodes/<uuid>").
func links(r *http.Request, path string) []obj {
	base := baseURL(r)
	return []obj{
		{{"href", base + "/v1/" + path}, {"rel", "self"}},
		{{"href", base + "/" + path}, {"rel", "bookmark"}},
	}
}

// timestamp renders t as Ironic does, null when unset.
func timestamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000") + "+00:00"
}

// orNull renders "" as null.
func orNull[T ~string](s T) any {
	if s == "" {
		return nil
	}
	return string(s)
}

// dict renders a nil map as {}.
func dict(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// secretKey reports dictionary keys whose values Ironic shows as "******".
func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"password", "secret", "token", "passwd", "_key", "configdrive", "image_url"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// masked copies m with secret values replaced by "******".
func masked(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if secretKey(k) && v != nil {
			v = "******"
		}
		out[k] = v
	}
	return out
}

// pick keeps the named fields of o (and links, as Ironic's sanitize_dict
// does); fields nil keeps all.
func pick(o obj, fields []string) obj {
	if fields == nil {
		return o
	}
	out := make(obj, 0, len(fields)+1)
	for _, e := range o {
		if e.k == "links" || slices.Contains(fields, e.k) {
			out = append(out, e)
		}
	}
	return out
}

// fieldVersions answers parseFields' question from a table of field name
// to the microversion that introduced it.
func fieldVersions(m map[string]int) func(string) (int, bool) {
	return func(name string) (int, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// listFields is Ironic's get_request_return_fields for a listing:
// ?fields, or ?detail=true (1.43+; not both) for every field (nil), else
// defaults.
func (s *Server) listFields(r *http.Request, known func(string) (int, bool), defaults []string) ([]string, error) {
	fields, err := s.parseFields(r, known)
	if err != nil {
		return nil, err
	}
	d, err := queryBool(r, "detail")
	if err != nil {
		return nil, err
	}
	if d != nil && minor(r) < 43 {
		return nil, errNotAcceptable
	}
	detail := d != nil && *d
	if detail && fields != nil {
		return nil, badRequest("Can not specify ?detail=True and fields in the same request.")
	}
	if detail {
		return nil, nil
	}
	if fields == nil {
		fields = defaults
	}
	return fields, nil
}
