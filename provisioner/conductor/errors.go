package conductor

import (
	"errors"
	"fmt"
)

// Kind classifies a refusal so the API can map it to a status code in one
// place.
type Kind int

// Kinds of refusal.
const (
	// KindInvalid is a bad request: bad parameter, refused transition,
	// driver validation failure (HTTP 400).
	KindInvalid Kind = iota + 1
	// KindNotFound: no such node (404).
	KindNotFound
	// KindLocked: the node is reserved by a running task (409 NodeLocked).
	KindLocked
	// KindConflict: the request conflicts with the node's state (409).
	KindConflict
	// KindUnavailable: the conductor is not running (503).
	KindUnavailable
	// KindDriver: the BMC or driver failed (500, as Ironic's IPMIFailure).
	KindDriver
	// KindForbidden: the node is protected (403, Ironic's NodeProtected).
	KindForbidden
)

// Error is a refusal with Ironic's message text.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func refuse(kind Kind, format string, a ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// KindOf returns the Kind of err, 0 when err is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}
