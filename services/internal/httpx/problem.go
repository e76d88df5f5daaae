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
	"strings"

	"github.com/go-chi/chi/v5"

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

// ProblemFor maps err to the problem the client receives for a request
// that only reads (see WriteError for commands). It is the one place where
// errors become status codes:
//
//	*Problem                      as is
//	*domain.ValidationError       400 validation, with field errors
//	domain.ErrInvalid             400 validation
//	domain.ErrNotFound            404 not-found
//	domain.ErrIllegalState        409 illegal-state
//	domain.ErrVersionConflict     409 version-conflict (Retry-After: 1)
//	domain.ErrInsufficientStock   409 insufficient-stock
//	domain.ErrDuplicateEventID    409 duplicate-event
//	context canceled / deadline   503 unavailable (Retry-After: 1)
//	a dependency unreachable      503 unavailable (Retry-After: 1), see IsUnavailable
//	anything else                 500 internal, without details
//
// Only a *domain.Refusal's Detail reaches the client from an error: the
// layers below wrap errors with stream names, retry counts and driver
// messages, which are for the logs. A sentinel without a Refusal gets a
// fixed sentence.
func ProblemFor(err error) *Problem {
	return problemFor(err, false)
}

// problemFor is ProblemFor; command says the request asked for a change,
// whose outcome is unknown when it ends in a 503.
func problemFor(err error, command bool) *Problem {
	var p *Problem
	var ve *domain.ValidationError
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &ve):
		return ValidationProblem("the request has invalid fields", ve.Fields...)
	case errors.Is(err, domain.ErrInvalid):
		return ValidationProblem("the request is invalid")
	case errors.Is(err, domain.ErrNotFound):
		return NewProblem(http.StatusNotFound, SlugNotFound, refusalDetail(err, "the resource does not exist"))
	case errors.Is(err, domain.ErrVersionConflict):
		p := NewProblem(http.StatusConflict, SlugVersionConflict,
			"the resource was changed concurrently too often; retry the request")
		p.RetryAfter = 1
		return p
	case errors.Is(err, domain.ErrInsufficientStock):
		return NewProblem(http.StatusConflict, SlugInsufficientStock, refusalDetail(err, "not enough stock is available"))
	case errors.Is(err, domain.ErrIllegalState):
		return NewProblem(http.StatusConflict, SlugIllegalState,
			refusalDetail(err, "the request is not allowed in the resource's current state"))
	case errors.Is(err, domain.ErrDuplicateEventID):
		return NewProblem(http.StatusConflict, SlugDuplicateEvent,
			"the command id was already used for a different resource")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return unavailable(command, "the request could not be completed in time")
	case IsUnavailable(err):
		return unavailable(command, "the service could not reach its database or message bus")
	default:
		return NewProblem(http.StatusInternalServerError, SlugInternal,
			"an internal error occurred; quote the request id when reporting it")
	}
}

// unavailable builds the 503 problem; why says what happened. A command's
// detail says that it may have been applied and that a retry with the
// same Idempotency-Key is safe: the failure may have come after its events
// were sent (a connection lost during the commit, a deadline that passed
// while the commit ran), and the retry carries the same command id, which
// the command handlers recognise, so it applies the command at most once.
func unavailable(command bool, why string) *Problem {
	detail := why + "; retry shortly"
	if command {
		detail = why + ", so the command may or may not have been applied; " +
			"retrying it with the same Idempotency-Key is safe and applies it at most once"
	}
	p := NewProblem(http.StatusServiceUnavailable, SlugUnavailable, detail)
	p.RetryAfter = unavailableRetryAfter
	return p
}

// refusalDetail is the client-facing detail of err: that of the
// *domain.Refusal it wraps, else fallback.
func refusalDetail(err error, fallback string) string {
	var r *domain.Refusal
	if errors.As(err, &r) && r.Detail != "" {
		return r.Detail
	}
	return fallback
}

// isCommand reports whether a request with this method asks for a change.
func isCommand(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// WriteError writes the problem for err (see ProblemFor; a 503 answering
// a command says that a retry with the same Idempotency-Key is safe).
// Server-side failures are logged with the request id; their details never
// reach the client.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err, isCommand(r.Method))
	if p.Status >= 500 {
		level := slog.LevelError
		if p.Status == http.StatusServiceUnavailable {
			level = slog.LevelWarn // a dependency's outage, not a bug here
		}
		msg := err.Error()
		msg = truncate(msg, maxLoggedError)
		Logger(r.Context()).LogAttrs(r.Context(), level, "request failed",
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

// allowCandidates are the methods MethodNotAllowed probes a path with, in
// the order the Allow header lists them.
var allowCandidates = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// MethodNotAllowed answers a known route asked with a method it does not
// serve: 405 with an Allow header listing the methods the route serves
// (RFC 9110 requires it). It is meant for chi's Mux.MethodNotAllowed; chi
// knows the methods but does not hand them to a custom handler, so they
// are found by matching the path against the router once per method. A
// path no method matches (chi also calls this for methods it does not
// know at all) is answered 404.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	allowed := allowedMethods(r)
	if len(allowed) == 0 {
		NotFound(w, r)
		return
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	WriteProblem(w, NewProblem(http.StatusMethodNotAllowed, SlugMethodNotAllowed,
		truncate(r.Method, 32)+" is not allowed here; use "+strings.Join(allowed, " or ")))
}

// allowedMethods returns the methods the chi router that routed r serves
// for r's path, or nil outside chi.
func allowedMethods(r *http.Request) []string {
	rctx := chi.RouteContext(r.Context())
	if rctx == nil || rctx.Routes == nil {
		return nil
	}
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	var allowed []string
	for _, m := range allowCandidates {
		if rctx.Routes.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
