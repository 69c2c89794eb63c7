package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/metalbed/metalbed/provisioner/conductor"
)

// apiError is a refusal the API answers itself.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func clientErr(status int, msg string) error { return &apiError{status, msg} }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, msg} }

// errNotAcceptable is Ironic's NotAcceptable (field or verb needs a newer
// microversion).
var errNotAcceptable = &apiError{http.StatusNotAcceptable, "Request not acceptable."}

// errNotFound is the generic "no such resource" answer.
var errNotFound = &apiError{http.StatusNotFound, "Resource could not be found."}

// statusOf maps every error to its HTTP status: the one place this API
// turns errors into wire codes.
func statusOf(err error) (int, string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.msg
	}
	var ce *conductor.Error
	if errors.As(err, &ce) {
		switch ce.Kind {
		case conductor.KindInvalid:
			return http.StatusBadRequest, ce.Msg
		case conductor.KindNotFound:
			return http.StatusNotFound, ce.Msg
		case conductor.KindLocked, conductor.KindConflict:
			return http.StatusConflict, ce.Msg
		case conductor.KindUnavailable:
			return http.StatusServiceUnavailable, ce.Msg
		case conductor.KindDriver:
			return http.StatusInternalServerError, ce.Msg
		case conductor.KindForbidden:
			return http.StatusForbidden, ce.Msg
		}
	}
	if errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable, "The request was cancelled."
	}
	return http.StatusInternalServerError, "An unknown exception occurred."
}

// pyJSON encodes v as Python's json.dumps would for the strings Ironic
// nests (no HTML escaping).
func pyJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return string(bytes.TrimRight(b.Bytes(), "\n"))
}

// writeError answers err in Ironic's shape: {"error_message": "<JSON
// string of {faultcode, faultstring, debuginfo}>"}.
func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	status, msg := statusOf(err)
	fault := "Client"
	if status >= 500 {
		fault = "Server"
		if errors.Is(err, context.Canceled) {
			// The client went away or the server is shutting down:
			// nothing failed that an operator must look at.
			log.Debug("request cancelled", "err", err)
		} else {
			log.Error("request failed", "err", err)
		}
	}
	inner := `{"faultcode": ` + pyJSON(fault) + `, "faultstring": ` + pyJSON(msg) + `, "debuginfo": null}`
	writeJSON(w, status, map[string]string{"error_message": inner})
}

// writeWebob answers the version-negotiation 406 in the shape Ironic's
// webob layer uses.
func writeWebob(w http.ResponseWriter, status int, desc string) {
	inner := `{"code": 406, "title": "Not Acceptable", "description": ` + pyJSON(desc) + `}`
	writeJSON(w, status, map[string]string{"error_message": inner})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}
