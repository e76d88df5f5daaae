package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is the W3C trace context format every hop reads and writes.
// The services use it directly rather than OpenTelemetry's global one, so
// that the trace context passes through a process whatever was installed
// (in tests, nothing is).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Attribute keys of the spans and log lines, beyond the semantic
// conventions'.
const (
	KeyEventType     = attribute.Key("orderflow.event.type")
	KeyEventID       = attribute.Key("orderflow.event.id")
	KeyStream        = attribute.Key("orderflow.stream")
	KeyCorrelationID = attribute.Key("orderflow.correlation_id")
	KeySagaID        = attribute.Key("orderflow.saga_id")
	KeyCommand       = attribute.Key("orderflow.command")
	KeyCommandID     = attribute.Key("orderflow.command_id")
	KeyRequestID     = attribute.Key("orderflow.request_id")
	KeyDelivery      = attribute.Key("orderflow.delivery")
)

// MessagingNATS is the messaging.system of the spans of NATS hops (the
// semantic conventions list no value of their own for it).
var MessagingNATS = semconv.MessagingSystemKey.String("nats")

// Fail marks span failed with err. Nothing happens when it records
// nothing.
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// ScopePrefix begins the instrumentation scope name of each service's
// tracer: ScopePrefix + "orders".
const ScopePrefix = "github.com/orderflow/orderflow/services/"

// Tracer starts the spans of one service. Every span gets the attribute
// service.name=orderflow-<service> as well as the resource's: when several
// services share one process and provider (the dev stack's tests) the
// attribute still tells them apart.
type Tracer struct {
	scope   string
	service attribute.KeyValue
}

// NewTracer returns the tracer of service ("orders", "sagas").
func NewTracer(service string) *Tracer {
	return &Tracer{scope: ScopePrefix + service, service: semconv.ServiceName(ServiceName(service))}
}

// kindOptions holds the start options of each span kind, built once: an
// option built per span would cost an allocation even when nothing is
// recorded.
var kindOptions = func() [6][]trace.SpanStartOption {
	var o [6][]trace.SpanStartOption
	for k := range o {
		o[k] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKind(k))}
	}
	return o
}()

// Start starts a span of kind named name, child of the span (or remote
// span context) in ctx, from the provider installed at this moment. Under
// a no-op provider the span records nothing and carries ctx's span
// context on, so the caller's trace id still reaches the next hop. Set
// attributes only when span.IsRecording(), which spares building them
// when nothing records.
func (t *Tracer) Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	var opts []trace.SpanStartOption
	if int(kind) < len(kindOptions) {
		opts = kindOptions[kind]
	}
	ctx, span := otel.GetTracerProvider().Tracer(t.scope).Start(ctx, name, opts...)
	if span.IsRecording() {
		span.SetAttributes(t.service)
	}
	return ctx, span
}

// w3c carries one trace context as the two W3C header values, without
// the map a header carrier needs.
type w3c struct {
	parent, state string
}

const (
	headerParent = "traceparent"
	headerState  = "tracestate"
)

func (c *w3c) Get(key string) string {
	switch key {
	case headerParent:
		return c.parent
	case headerState:
		return c.state
	}
	return ""
}

func (c *w3c) Set(key, value string) {
	switch key {
	case headerParent:
		c.parent = value
	case headerState:
		c.state = value
	}
}

func (c *w3c) Keys() []string { return []string{headerParent, headerState} }

// Extract returns ctx with the remote span context traceParent and
// traceState describe (W3C values, as events and NATS messages carry
// them), to start a child span from. A missing or malformed traceParent
// leaves ctx as it is.
func Extract(ctx context.Context, traceParent, traceState string) context.Context {
	if traceParent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, &w3c{parent: traceParent, state: traceState})
}

// ExtractHTTP is Extract from the traceparent and tracestate headers of h.
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return Propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject returns the W3C values of the span context in ctx, for the
// metadata of the events and messages a hop sends on; "" when ctx has
// none.
func Inject(ctx context.Context) (traceParent, traceState string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return "", ""
	}
	var c w3c
	Propagator.Inject(ctx, &c)
	return c.parent, c.state
}

// InjectHTTP sets the traceparent and tracestate headers of h from the
// span context in ctx: what a client (the gateway calling a service) sends
// so that the next hop continues the trace.
func InjectHTTP(ctx context.Context, h http.Header) {
	Propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// TraceID returns the trace id of the span context in ctx in hex, or ""
// when ctx has none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
