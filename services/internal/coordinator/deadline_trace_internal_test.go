package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/telemetry/telemetrytest"
)

// TestDeadlineContinuesTheTrace: a passed deadline is decided in a span
// of the trace of the saga's last decision, and the events it records (a
// retried command) carry that span on, so a step that times out stays in
// its order's trace.
func TestDeadlineContinuesTheTrace(t *testing.T) {
	exp := telemetrytest.Record(t, "test")

	store, pool := newStore(t)
	c := newCoordinator(t, store, pool, Config{Timing: sagas.Timing{
		Timeout:           200 * time.Millisecond,
		Retry:             sagas.RetryPolicy{MaxAttempts: 2, Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 1},
		CompensationRetry: sagas.RetryPolicy{MaxAttempts: 1},
	}})
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		request = "00-" + traceID + "-2222222222222222-01"
	)
	orderID := uuid.NewString()
	sagaID := sagas.SagaID(orderID)
	ev := placedEvent(t, orderID)
	ev.Metadata.TraceParent = request
	ctx := context.Background()
	if err := c.Deliver(ctx, ev); err != nil {
		t.Fatal(err)
	}
	before, err := store.ReadStream(ctx, sagas.Stream(sagaID), 1, 0)
	if err != nil {
		t.Fatal(err)
	}

	// The reserve command goes unanswered: once its deadline passes, the
	// decision retries it.
	coordinatortest.Eventually(t, time.Minute, "the deadline decided", func() (bool, string) {
		res, err := c.fireDeadline(ctx, sagaID)
		return err == nil && res.appended > 0, ""
	})
	var span tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "deadline" {
			span = s
		}
	}
	if !span.SpanContext.IsValid() {
		t.Fatalf("no deadline span among %d spans", len(exp.GetSpans()))
	}
	if got := span.SpanContext.TraceID().String(); got != traceID || span.Parent.SpanID().String() != "2222222222222222" {
		t.Errorf("deadline span in trace %s under %s; want trace %s under the decision that set the deadline", got, span.Parent.SpanID(), traceID)
	}
	after, err := store.ReadStream(ctx, sagas.Stream(sagaID), int64(len(before))+1, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "00-" + traceID + "-" + span.SpanContext.SpanID().String() + "-01"
	for _, e := range after {
		if e.Metadata.TraceParent != want {
			t.Errorf("%s recorded by the deadline carries traceparent %q, want %q", e.Type, e.Metadata.TraceParent, want)
		}
	}
	if len(after) == 0 {
		t.Error("the deadline recorded nothing")
	}
}
