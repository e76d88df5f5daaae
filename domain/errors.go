package domain

import "errors"

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
)

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
