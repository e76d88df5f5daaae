// Package httpx is the HTTP plumbing every orderflow service shares: RFC 9457
// problem responses and the single mapping from errors to status codes, a
// strict JSON request decoder, request ids, access logs, panic recovery,
// health and readiness endpoints and a small Prometheus metrics registry.
//
// Handlers decode with DecodeJSON, call their command handler and, on error,
// hand the error to WriteError; they never choose an error status themselves.
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/orderflow/orderflow/domain"
)

// ProblemTypeBase prefixes every problem type: a problem's type is
// ProblemTypeBase + slug, e.g. "https://orderflow.dev/problems/validation".
const ProblemTypeBase = "https://orderflow.dev/problems/"

// Problem slugs used across the services. Clients match on the type URI, so
// these are part of the API contract (see services/api/openapi.yaml).
const (
	SlugValidation           = "validation"
	SlugBadRequest           = "bad-request"
	SlugMalformedJSON        = "malformed-json"
	SlugUnsupportedMediaType = "unsupported-media-type"
	SlugPayloadTooLarge      = "payload-too-large"
	SlugNotFound             = "not-found"
	SlugMethodNotAllowed     = "method-not-allowed"
	SlugIllegalState         = "illegal-state"
	SlugVersionConflict      = "version-conflict"
	SlugInsufficientStock    = "insufficient-stock"
	SlugDuplicateEvent       = "duplicate-event"
	SlugIdempotencyKeyReused = "idempotency-key-reused"
	SlugIdempotencyInFlight  = "idempotency-key-in-flight"
	SlugUnauthorized         = "unauthorized"
	SlugForbidden            = "forbidden"
	SlugRateLimited          = "rate-limited"
	SlugUnavailable          = "unavailable"
	SlugNotReady             = "not-ready"
	SlugInternal             = "internal"
)

const (
	problemContentType = "application/problem+json"
	jsonContentType    = "application/json"
	// maxLoggedError caps the error text logged for one failed request.
	maxLoggedError = 4000
)

// FieldError names one invalid input field; it is the shape of the entries
// of a problem's "errors" member.
type FieldError = domain.FieldError

// Problem is an RFC 9457 problem details object. It is also an error, so
// lower layers (the decoder, the idempotency middleware) can return a
// finished answer that WriteError writes unchanged.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
	// RetryAfter, when > 0, is sent as a Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

// NewProblem builds a problem of the given status and slug; the title is the
// status text.
func NewProblem(status int, slug, detail string) *Problem {
	return &Problem{Type: ProblemTypeBase + slug, Title: http.StatusText(status), Status: status, Detail: detail}
}

// ValidationProblem builds the 400 problem listing invalid fields.
func ValidationProblem(detail string, fields ...FieldError) *Problem {
	p := NewProblem(http.StatusBadRequest, SlugValidation, detail)
	p.Errors = fields
	return p
}

func (p *Problem) Error() string {
	return strconv.Itoa(p.Status) + " " + p.Title + ": " + p.Detail
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", problemContentType)
	h.Set("Cache-Control", "no-store")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	body, err := json.Marshal(p)
	if err != nil {
		// A Problem holds only strings and ints; this cannot fail, but
		// never leave the client without a status.
		w.WriteHeader(p.Status)
		return
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// WriteJSON writes v as application/json with the given status.
func WriteJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// ProblemFor maps err to the problem the client receives. It is the one
// place where errors become status codes:
//
//	*Problem                      as is
//	*domain.ValidationError       400 validation, with field errors
//	domain.ErrInvalid             400 validation
//	domain.ErrNotFound            404 not-found
//	domain.ErrIllegalState        409 illegal-state
//	domain.ErrVersionConflict     409 version-conflict
//	domain.ErrInsufficientStock   409 insufficient-stock
//	domain.ErrDuplicateEventID    409 duplicate-event
//	context canceled / deadline   503 unavailable (Retry-After: 1)
//	anything else                 500 internal, without details
//
// Domain error messages are written to clients; they are built from the
// command's input and never contain infrastructure details.
func ProblemFor(err error) *Problem {
	var p *Problem
	var ve *domain.ValidationError
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &ve):
		return ValidationProblem("the request has invalid fields", ve.Fields...)
	case errors.Is(err, domain.ErrInvalid):
		return ValidationProblem(err.Error())
	case errors.Is(err, domain.ErrNotFound):
		return NewProblem(http.StatusNotFound, SlugNotFound, err.Error())
	case errors.Is(err, domain.ErrVersionConflict):
		return NewProblem(http.StatusConflict, SlugVersionConflict,
			"the resource was changed concurrently too often; retry the request")
	case errors.Is(err, domain.ErrInsufficientStock):
		return NewProblem(http.StatusConflict, SlugInsufficientStock, err.Error())
	case errors.Is(err, domain.ErrIllegalState):
		return NewProblem(http.StatusConflict, SlugIllegalState, err.Error())
	case errors.Is(err, domain.ErrDuplicateEventID):
		return NewProblem(http.StatusConflict, SlugDuplicateEvent,
			"the command id was already used for a different resource")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		p := NewProblem(http.StatusServiceUnavailable, SlugUnavailable, "the request could not be completed in time; retry it")
		p.RetryAfter = 1
		return p
	default:
		return NewProblem(http.StatusInternalServerError, SlugInternal,
			"an internal error occurred; quote the request id when reporting it")
	}
}

// WriteError writes the problem for err (see ProblemFor). Server-side
// failures are logged with the request id; their details never reach the
// client.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	p := ProblemFor(err)
	if p.Status >= 500 {
		msg := err.Error()
		msg = truncate(msg, maxLoggedError)
		Logger(r.Context()).LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", p.Status),
			slog.String("error", msg))
	}
	WriteProblem(w, p)
}

// NotFound answers unknown routes with a 404 problem.
func NotFound(w http.ResponseWriter, r *http.Request) {
	WriteProblem(w, NewProblem(http.StatusNotFound, SlugNotFound, "no resource at "+truncate(r.URL.Path, 200)))
}

// MethodNotAllowed answers known routes with an unsupported method.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	WriteProblem(w, NewProblem(http.StatusMethodNotAllowed, SlugMethodNotAllowed, r.Method+" is not allowed here"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
