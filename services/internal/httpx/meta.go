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

// maxTraceHeader bounds the W3C trace headers copied into events.
const maxTraceHeader = 512

// CommandMeta builds the metadata of the command a request carries: the
// command id stored by WithCommandID (else a new UUID), the request id as
// request and correlation id, the W3C trace context headers when they are
// well-formed, and the current time.
func CommandMeta(r *http.Request) commands.Meta {
	id, ok := CommandID(r.Context())
	if !ok {
		id = uuid.NewString()
	}
	rid := RequestIDFrom(r.Context())
	return commands.Meta{
		CommandID:     id,
		CorrelationID: rid,
		RequestID:     rid,
		TraceParent:   traceHeader(r, "Traceparent"),
		TraceState:    traceHeader(r, "Tracestate"),
		Now:           time.Now().UTC(),
	}
}

func traceHeader(r *http.Request, name string) string {
	v := r.Header.Get(name)
	if !PrintableASCII(v, maxTraceHeader) {
		return ""
	}
	return v
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
