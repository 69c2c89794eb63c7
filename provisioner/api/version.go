package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// The microversions this API honours. 1.79 (allocation name matching) and
// 1.80 (self-service node policy) change nothing metalbed serves; 1.81
// (node inventory) and 1.82 (shards) are implemented.
const (
	minMinor = 1
	maxMinor = 82
)

const versionHeader = "X-OpenStack-Ironic-API-Version"

type versionKey struct{}

// minor returns the negotiated minor version of the request.
func minor(r *http.Request) int {
	if v, ok := r.Context().Value(versionKey{}).(int); ok {
		return v
	}
	return minMinor
}

// negotiate parses the version header as Ironic does: absent = 1.1,
// "latest" = the maximum, anything unparsable or out of range = 406.
func negotiate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	h := w.Header()
	raw := strings.TrimSpace(r.Header.Get(versionHeader))
	v := minMinor
	switch {
	case raw == "":
	case strings.EqualFold(raw, "latest"):
		v = maxMinor
	default:
		major, min, ok := parseVersion(raw)
		if !ok {
			writeWebob(w, http.StatusNotAcceptable, "Invalid value for X-OpenStack-Ironic-API-Version header")
			return nil, false
		}
		h.Set("X-OpenStack-Ironic-API-Minimum-Version", fmt.Sprintf("1.%d", minMinor))
		h.Set("X-OpenStack-Ironic-API-Maximum-Version", fmt.Sprintf("1.%d", maxMinor))
		if major != 1 {
			writeWebob(w, http.StatusNotAcceptable, fmt.Sprintf(
				"Mutually exclusive versions requested. Version %s requested but not supported by this service. The supported version range is: [1.%d, 1.%d].",
				raw, minMinor, maxMinor))
			return nil, false
		}
		if min < minMinor || min > maxMinor {
			writeWebob(w, http.StatusNotAcceptable, fmt.Sprintf(
				"Version %s was requested but the minor version is not supported by this service. The supported version range is: [1.%d, 1.%d].",
				raw, minMinor, maxMinor))
			return nil, false
		}
		v = min
	}
	h.Set("X-OpenStack-Ironic-API-Minimum-Version", fmt.Sprintf("1.%d", minMinor))
	h.Set("X-OpenStack-Ironic-API-Maximum-Version", fmt.Sprintf("1.%d", maxMinor))
	h.Set("X-OpenStack-Ironic-API-Version", fmt.Sprintf("1.%d", v))
	h.Set("OpenStack-API-Version", fmt.Sprintf("baremetal 1.%d", v))
	return r.WithContext(context.WithValue(r.Context(), versionKey{}, v)), true
}

func parseVersion(s string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(s, ".")
	if !found {
		return 0, 0, false
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(a)
	minor, err2 = strconv.Atoi(b)
	if err1 != nil || err2 != nil || major < 0 || minor < 0 || strings.HasPrefix(b, "+") || strings.HasPrefix(a, "+") {
		return 0, 0, false
	}
	return major, minor, true
}
