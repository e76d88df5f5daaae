// Package telemetrytest records the spans of a test: it installs a tracer
// provider that exports to memory for as long as the test runs.
package telemetrytest

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// Record makes every span started from now until the test ends go to the
// returned in-memory exporter (telemetry.Start with service, so the
// global provider and propagator are the ones the processes use).
func Record(t testing.TB, service string) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	shutdown, err := telemetry.Start(context.Background(), service, telemetry.WithExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return exp
}
