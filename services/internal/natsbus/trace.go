package natsbus

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// StartConsumeSpan starts the consumer span named name of the handling of
// msg (its delivered-th delivery): the child of the trace context in its
// headers, which the publishing relay set to its publish span, or of md's
// (the event's metadata) for a message published otherwise.
func StartConsumeSpan(ctx context.Context, tracer *telemetry.Tracer, name string, msg jetstream.Msg, delivered int, md domain.Metadata) (context.Context, trace.Span) {
	parent, state := md.TraceParent, md.TraceState
	if h := msg.Headers(); h.Get(HeaderTraceParent) != "" {
		parent, state = h.Get(HeaderTraceParent), h.Get(HeaderTraceState)
	}
	ctx = telemetry.Extract(ctx, parent, state)
	ctx, span := tracer.Start(ctx, name, trace.SpanKindConsumer)
	if span.IsRecording() {
		span.SetAttributes(
			telemetry.MessagingNATS,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(msg.Subject()),
			telemetry.KeyDelivery.Int(delivered),
		)
	}
	return ctx, span
}
