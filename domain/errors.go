package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every layer. Wrap them with fmt.Errorf("...: %w")
// and test with errors.Is; the HTTP layer maps them to status codes in one
// place.
var (
	// ErrVersionConflict: an append's expected version did not match the
	// stream's current version (optimistic concurrency).
	ErrVersionConflict = errors.New("version conflict")
	// ErrNotFound: the aggregate or stream does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the command's input breaks a rule (bad quantity, price...).
	// Wrap a *ValidationError to say which fields.
	ErrInvalid = errors.New("invalid input")
	// ErrIllegalState: the command is not allowed in the aggregate's state
	// (e.g. cancelling a shipped order).
	ErrIllegalState = errors.New("illegal state transition")
	// ErrInsufficientStock: a reservation asks for more than is available.
	ErrInsufficientStock = errors.New("insufficient stock")
	// ErrDuplicateEventID: an appended event id is already stored somewhere
	// other than where this append would put it.
	ErrDuplicateEventID = errors.New("duplicate event id")
	// ErrUnavailable: a dependency (the database, the message bus) could
	// not be reached or dropped the connection, so the operation did not
	// complete; it may succeed when retried later. Adapters whose failures
	// the HTTP layer cannot recognise otherwise wrap it to mark them
	// transient. An operation that wrote may or may not have taken effect.
	ErrUnavailable = errors.New("dependency unavailable")
)

// Refusal is a decision's refusal of a command, told in the API's words:
// Detail names what the client sent (the order, the sku, the shipment)
// and why it cannot be done, e.g. "order 7c9e... is shipped; only a
// pending or confirmed order can be cancelled". It wraps one of the
// sentinels (ErrIllegalState, ErrNotFound, ErrInsufficientStock), so
// errors.Is keeps working through it.
//
// The layers above wrap a Refusal with context of their own (stream
// names, retry counts) for the logs; the HTTP layer finds the Refusal with
// errors.As and shows the client only its Detail.
type Refusal struct {
	// Err is the sentinel the refusal is an instance of.
	Err error
	// Detail is the sentence shown to the client. It is built from the
	// command's input and the aggregate's public state only.
	Detail string
}

// Refuse returns a *Refusal wrapping sentinel, with the detail formatted
// as by fmt.Sprintf.
func Refuse(sentinel error, format string, args ...any) *Refusal {
	return &Refusal{Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

func (r *Refusal) Error() string { return r.Detail }

// Unwrap returns the sentinel.
func (r *Refusal) Unwrap() error { return r.Err }

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of a command. It matches
// ErrInvalid with errors.Is.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Fields) == 0 {
		return "invalid input"
	}
	msg := "invalid input: " + e.Fields[0].Field + " " + e.Fields[0].Message
	if n := len(e.Fields) - 1; n > 0 {
		msg += " (and more)"
	}
	return msg
}

// Is makes errors.Is(err, ErrInvalid) true for a *ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Add records a field error.
func (e *ValidationError) Add(field, message string) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: message})
}

// Err returns e when it holds any field error, else nil.
func (e *ValidationError) Err() error {
	if e == nil || len(e.Fields) == 0 {
		return nil
	}
	return e
}
