package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Keys of the log attributes NewLogHandler adds.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

// logHandler adds the trace and span ids of a record's context.
type logHandler struct {
	next slog.Handler
	// traced is set when trace_id is already among the attributes given
	// through WithAttrs (see WithTrace): the line must not say it twice.
	traced bool
	// grouped is set once WithGroup opened a group: attributes given
	// after it are inside the group and do not count for traced.
	grouped bool
}

// NewLogHandler wraps h so that every line logged with a context that
// holds a span context (a request's, a message's) gets trace_id and
// span_id. Wrapping a handler it returned again returns it as it is.
func NewLogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(*logHandler); ok {
		return h
	}
	return &logHandler{next: h}
}

// Logger returns l with its handler wrapped by NewLogHandler.
func Logger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*logHandler); ok {
		return l
	}
	return slog.New(NewLogHandler(l.Handler()))
}

func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			if !h.traced {
				r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()))
			}
			r.AddAttrs(slog.String(LogSpanID, sc.SpanID().String()))
		}
	}
	return h.next.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	traced := h.traced
	if !h.grouped {
		for _, a := range attrs {
			if a.Key == LogTraceID {
				traced = true
			}
		}
	}
	return &logHandler{next: h.next.WithAttrs(attrs), traced: traced, grouped: h.grouped}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &logHandler{next: h.next.WithGroup(name), traced: h.traced, grouped: true}
}

// WithTrace returns l with the attribute trace_id of the span context in
// ctx, or l itself when ctx has none. A logger kept for a whole request
// (httpx.Logger) carries it this way, so that its lines name the trace
// even when they are logged without the request's context.
func WithTrace(ctx context.Context, l *slog.Logger) *slog.Logger {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return l
	}
	return l.With(slog.String(LogTraceID, sc.TraceID().String()))
}
