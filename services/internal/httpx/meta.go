package httpx

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

type commandIDKey struct{}

// WithCommandID stores the id the request's command must carry (the
// idempotency middleware derives it from the Idempotency-Key).
func WithCommandID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, commandIDKey{}, id)
}

// CommandID returns the id stored by WithCommandID.
func CommandID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(commandIDKey{}).(string)
	return id, ok
}

// maxTraceState bounds the W3C tracestate copied into events; a longer
// one is dropped (the W3C recommends propagating at least 512 bytes).
const maxTraceState = 512

// CommandMeta builds the metadata of the command a request carries: the
// command id stored by WithCommandID (else a new UUID), the request id as
// request and correlation id, the trace context of the request's current
// span (the server span of Trace, so the next hop's spans are its
// children; without one, the caller's traceparent when well-formed), and
// the current time.
func CommandMeta(r *http.Request) commands.Meta {
	id, ok := CommandID(r.Context())
	if !ok {
		id = uuid.NewString()
	}
	rid := RequestIDFrom(r.Context())
	parent, state := TraceContext(r)
	return commands.Meta{
		CommandID:     id,
		CorrelationID: rid,
		RequestID:     rid,
		TraceParent:   parent,
		TraceState:    state,
		Now:           time.Now().UTC(),
	}
}

// TraceContext returns the W3C traceparent and tracestate of the
// request's current span, or, when no span runs (a handler served without
// Trace), of the request's own headers when they are well-formed: what the
// events and commands a request causes carry on.
func TraceContext(r *http.Request) (traceParent, traceState string) {
	parent, state := telemetry.Inject(r.Context())
	if parent == "" && r.Header.Get("Traceparent") != "" {
		parent, state = telemetry.Inject(telemetry.ExtractHTTP(r.Context(), r.Header))
	}
	if len(state) > maxTraceState {
		state = ""
	}
	return parent, state
}

// PathUUID returns the chi path parameter name in canonical lower case when
// it is a UUID. Anything else cannot name a resource whose ids are UUIDs,
// so callers answer with NotFoundProblem.
func PathUUID(r *http.Request, name string) (string, bool) {
	id := chi.URLParam(r, name)
	if !domain.ValidUUID(id) {
		return "", false
	}
	return strings.ToLower(id), true
}

// NotFoundProblem is the 404 problem for a missing resource of the given
// kind ("order", "shipment"...) and id, as the client wrote it.
func NotFoundProblem(kind, id string) *Problem {
	return NewProblem(http.StatusNotFound, SlugNotFound, fmt.Sprintf("no %s with id %q", kind, truncate(id, 64)))
}
