package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// BenchmarkMessageHop measures what a relay or consumer adds per message:
// take the trace context an event carries, start and end a span under
// it, and hand the span's context on; with no collector configured (the
// no-op provider) and with a provider recording every span.
func BenchmarkMessageHop(b *testing.B) {
	tracer := telemetry.NewTracer("orders")
	hop := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx := telemetry.Extract(context.Background(), callerParent, "")
			ctx, span := tracer.Start(ctx, "publish", trace.SpanKindProducer)
			if span.IsRecording() {
				_, _ = telemetry.Inject(ctx)
			}
			span.End()
		}
	}
	b.Run("noop", func(b *testing.B) {
		b.Setenv(telemetry.EnvEndpoint, "")
		b.Setenv(telemetry.EnvTracesEndpoint, "")
		shutdown, err := telemetry.Start(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		defer shutdown(context.Background())
		hop(b)
	})
	b.Run("recording", func(b *testing.B) {
		shutdown, err := telemetry.Start(context.Background(), "bench", telemetry.WithExporter(tracetest.NewNoopExporter()))
		if err != nil {
			b.Fatal(err)
		}
		defer shutdown(context.Background())
		hop(b)
	})
}
