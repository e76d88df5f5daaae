package coordinator

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
	"github.com/orderflow/orderflow/services/internal/telemetry"
	"github.com/orderflow/orderflow/services/internal/telemetry/telemetrytest"
)

// traceLog collects output written from several goroutines.
type traceLog = testenv.Buffer

// TestDecisionSpans: each decision on a delivered event is a consumer
// span of the sagas service, the child of the message's traceparent (the
// publishing relay's span); the events it records carry the decision's
// span on, so that the commands they send continue the trace. An event
// that cannot be decoded is parked in a failed span whose log line names
// the trace.
func TestDecisionSpans(t *testing.T) {
	exp := telemetrytest.Record(t, "test")

	store, pool := newStore(t)
	var logs traceLog
	c := newCoordinator(t, store, pool, Config{Logger: telemetry.Logger(slog.New(slog.NewJSONHandler(&logs, nil)))})
	nc, js, err := natsbus.Connect(context.Background(), natsbustest.Server(t), "coordinator-trace-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := natsbus.EnsureTopology(context.Background(), js, natsbus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, js) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})

	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		relay    = "00-" + traceID + "-00f067aa0ba902b7-01" // the orders relay's publish span
		original = "00-" + traceID + "-2222222222222222-01" // the request's server span
	)
	publish := func(t *testing.T, m *nats.Msg) {
		t.Helper()
		pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer pcancel()
		if _, err := js.PublishMsg(pctx, m); err != nil {
			t.Fatal(err)
		}
	}
	waitSpan := func(t *testing.T, name string) tracetest.SpanStub {
		t.Helper()
		var sp tracetest.SpanStub
		coordinatortest.Eventually(t, time.Minute, "span "+name, func() (bool, string) {
			for _, s := range exp.GetSpans() {
				if s.Name == name {
					sp = s
					return true, ""
				}
			}
			return false, ""
		})
		return sp
	}

	t.Run("decision", func(t *testing.T) {
		orderID := uuid.NewString()
		sagaID := sagas.SagaID(orderID)
		ev := placedEvent(t, orderID)
		ev.Metadata.TraceParent = original
		m, err := natsbus.Encode(natsbus.ContextOrders, ev)
		if err != nil {
			t.Fatal(err)
		}
		m.Header.Set(natsbus.HeaderTraceParent, relay)
		publish(t, m)

		sp := waitSpan(t, "decide "+order.TypeOrderPlaced)
		attrs := map[string]string{}
		for _, kv := range sp.Attributes {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		if sp.SpanKind != trace.SpanKindConsumer || attrs["service.name"] != "orderflow-sagas" || attrs["orderflow.saga_id"] != sagaID ||
			attrs["orderflow.event.type"] != order.TypeOrderPlaced || attrs["messaging.destination.name"] != "events.orders.OrderPlaced" {
			t.Errorf("span %q (%s) %v", sp.Name, sp.SpanKind, attrs)
		}
		if sp.SpanContext.TraceID().String() != traceID || sp.Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("span in trace %s under %s, want under the relay's span", sp.SpanContext.TraceID(), sp.Parent.SpanID())
		}
		if sp.Status.Code == codes.Error {
			t.Errorf("status %v", sp.Status)
		}
		want := "00-" + traceID + "-" + sp.SpanContext.SpanID().String() + "-01"
		evs, err := store.ReadStream(context.Background(), sagas.Stream(sagaID), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			t.Fatal("the saga recorded nothing")
		}
		for _, e := range evs {
			if e.Metadata.TraceParent != want {
				t.Errorf("saga event %s traceparent %q, want the decision's %q", e.Type, e.Metadata.TraceParent, want)
			}
		}
	})

	t.Run("parked", func(t *testing.T) {
		m := nats.NewMsg("events.orders." + order.TypeOrderPlaced)
		m.Data = []byte("not an envelope")
		m.Header.Set(natsbus.HeaderTraceParent, relay)
		m.Header.Set(natsbus.HeaderMsgID, uuid.NewString())
		publish(t, m)
		sp := waitSpan(t, "decide")
		if sp.Status.Code != codes.Error || sp.Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("span of a parked event: status %v, parent %s", sp.Status, sp.Parent.SpanID())
		}
		var parked map[string]any
		coordinatortest.Eventually(t, time.Minute, "the parked line", func() (bool, string) {
			for _, l := range logs.Lines("") {
				if strings.Contains(l, "event parked") {
					return json.Unmarshal([]byte(l), &parked) == nil, l
				}
			}
			return false, "no line"
		})
		if parked["trace_id"] != traceID {
			t.Errorf("parked line %v, want trace_id %s", parked, traceID)
		}
	})
}
