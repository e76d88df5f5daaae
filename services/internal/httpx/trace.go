package httpx

import (
	"net/http"
	"slices"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// Trace is middleware that runs each request in a server span of
// service's tracer, the child of the caller's W3C traceparent when the
// request has a valid one. The span is named by method and route
// ("POST /api/orders") and ends with the status; a 5xx marks it failed.
// CommandMeta puts the span's context in the events the request appends,
// so the trace follows them. Requests to the untraced paths (probes and
// metric scrapes) get no span.
//
// Place it inside RequestID (the span names the request id) and outside
// AccessLog (the access line names the trace).
func Trace(service string, untraced ...string) func(http.Handler) http.Handler {
	tracer := telemetry.NewTracer(service)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(untraced) > 0 && slices.Contains(untraced, r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			ctx := r.Context()
			if r.Header.Get("Traceparent") != "" {
				ctx = telemetry.ExtractHTTP(ctx, r.Header)
			}
			ctx, span := tracer.Start(ctx, r.Method, trace.SpanKindServer)
			defer span.End()
			if !span.IsRecording() {
				// Nothing to record: only the caller's trace context, if
				// any, goes on.
				if trace.SpanContextFromContext(ctx).IsValid() {
					r = r.WithContext(ctx)
				}
				next.ServeHTTP(w, r)
				return
			}
			rec := NewStatusRecorder(w)
			next.ServeHTTP(rec, r.WithContext(ctx))
			// The route is known once the router has matched it.
			route := RoutePattern(r)
			status := rec.Status()
			span.SetName(r.Method + " " + route)
			span.SetAttributes(
				semconv.HTTPRequestMethodKey.String(r.Method),
				semconv.HTTPRoute(route),
				semconv.URLPath(r.URL.Path),
				semconv.HTTPResponseStatusCode(status),
				telemetry.KeyRequestID.String(RequestIDFrom(r.Context())),
			)
			if status >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		})
	}
}
