package redfish

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// apiError is an error with its Redfish answer: the one place errors
// become HTTP statuses and Base registry messages is writeError.
type apiError struct {
	status int
	id     string // Base message registry MessageId, without the prefix
	msg    string
}

func (e *apiError) Error() string { return e.msg }

const baseRegistry = "Base.1.8."

func errNotFound(path string) *apiError {
	return &apiError{http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", path)}
}

func errMethod(method, path string) *apiError {
	return &apiError{http.StatusMethodNotAllowed, "OperationNotAllowed", fmt.Sprintf("%s is not allowed on %s.", method, path)}
}

func errUnauthorized() *apiError {
	return &apiError{http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation."}
}

func errForbidden() *apiError {
	return &apiError{http.StatusForbidden, "InsufficientPrivilege", "There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation."}
}

func errBadValue(prop, value string) *apiError {
	return &apiError{http.StatusBadRequest, "PropertyValueNotInList", fmt.Sprintf("The value %q for the property %s is not in the list of acceptable values.", value, prop)}
}

func errBadFormat(prop, value string) *apiError {
	return &apiError{http.StatusBadRequest, "PropertyValueFormatError", fmt.Sprintf("The value %q for the property %s is of a different format than the property can accept.", value, prop)}
}

// errValueConflict is a property whose value conflicts with another's.
func errValueConflict(prop, other, why string) *apiError {
	return &apiError{http.StatusBadRequest, "PropertyValueConflict", fmt.Sprintf("The property %s could not be written because its value would conflict with the value of the %s property: %s", prop, other, why)}
}

func errMissing(prop string) *apiError {
	return &apiError{http.StatusBadRequest, "PropertyMissing", fmt.Sprintf("The property %s is a required property and must be included in the request.", prop)}
}

func errMalformed(why string) *apiError {
	return &apiError{http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service: " + why}
}

func errTooLarge() *apiError {
	return &apiError{http.StatusRequestEntityTooLarge, "GeneralError", fmt.Sprintf("The request body is larger than %d bytes.", maxBody)}
}

func errPrecondition() *apiError {
	return &apiError{http.StatusPreconditionFailed, "PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource."}
}

func errConflict(msg string) *apiError {
	return &apiError{http.StatusConflict, "ResourceInUse", msg}
}

func errInternal(msg string) *apiError {
	return &apiError{http.StatusInternalServerError, "InternalError", "The request failed due to an internal service error: " + msg}
}

// propertyError is one property of a request body in error: a Base
// registry message naming the property (RelatedProperties) and its
// MessageArgs.
type propertyError struct {
	id   string // Base message registry MessageId, without the prefix
	msg  string
	args []string
	prop string // "Attributes/ProcTurboMode"
}

// propertyErrors is a 400 answer listing every property in error, one
// @Message.ExtendedInfo entry each.
type propertyErrors []*propertyError

func (e propertyErrors) Error() string {
	var msgs []string
	for _, p := range e {
		msgs = append(msgs, p.msg)
	}
	return strings.Join(msgs, " ")
}

// propertyMessage is an ExtendedInfo message about properties.
type propertyMessage struct {
	message
	MessageArgs       []string `json:"MessageArgs"`
	RelatedProperties []string `json:"RelatedProperties"`
}

func writePropertyErrors(w http.ResponseWriter, pe propertyErrors) {
	var body struct {
		Error struct {
			Code         string            `json:"code"`
			Message      string            `json:"message"`
			ExtendedInfo []propertyMessage `json:"@Message.ExtendedInfo"`
		} `json:"error"`
	}
	body.Error.Code = baseRegistry + "GeneralError"
	body.Error.Message = "A general error has occurred. See ExtendedInfo for more information."
	for _, p := range pe {
		body.Error.ExtendedInfo = append(body.Error.ExtendedInfo, propertyMessage{
			message:           message{ODataType: "#Message.v1_1_1.Message", MessageID: baseRegistry + p.id, Message: p.msg, Severity: "Warning"},
			MessageArgs:       p.args,
			RelatedProperties: []string{"#/" + p.prop},
		})
	}
	writeJSON(w, http.StatusBadRequest, body)
}

// writeError writes err as a Redfish error body. A plain error is an
// internal error.
func writeError(w http.ResponseWriter, err error) {
	var pe propertyErrors
	if errors.As(err, &pe) {
		writePropertyErrors(w, pe)
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errInternal(err.Error())
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="metalbed"`)
	}
	body := errorBody{Error: errorInfo{
		Code:    baseRegistry + "GeneralError",
		Message: "A general error has occurred. See ExtendedInfo for more information.",
		ExtendedInfo: []message{{
			ODataType: "#Message.v1_1_1.Message",
			MessageID: baseRegistry + ae.id,
			Message:   ae.msg,
			Severity:  "Critical",
		}},
	}}
	writeJSON(w, ae.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are marshalled
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// etagOf is the strong ETag of a resource: a digest of its representation.
func etagOf(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("etag: %w", err)
	}
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:8]) + `"`, nil
}

// ifMatch reports whether header (If-Match) admits etag: absent, "*", or
// a list holding it (strong comparison: a weak tag never matches).
func ifMatch(header []string, etag string) bool {
	if len(header) == 0 {
		return true
	}
	for _, h := range header {
		for _, t := range strings.Split(h, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || t == etag {
				return true
			}
		}
	}
	return false
}

// decodeBody reads a JSON object of at most maxBody bytes into v,
// refusing unknown properties. An empty body leaves v alone when
// emptyOK.
func decodeBody(r io.Reader, v any, emptyOK bool) error {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge()
		}
		return errMalformed(err.Error())
	}
	if len(b) > maxBody {
		return errTooLarge()
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if emptyOK {
			return nil
		}
		return errMalformed("empty body")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			return &apiError{http.StatusBadRequest, "PropertyUnknown", fmt.Sprintf("The property %s is not in the list of valid properties for the resource.", strings.TrimPrefix(err.Error(), "json: unknown field "))}
		}
		return errMalformed(err.Error())
	}
	if dec.More() {
		return errMalformed("trailing data after the JSON object")
	}
	return nil
}
