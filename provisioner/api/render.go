package api

import (
	"bytes"
	"encoding/json"
	"net/http"
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
