package cmdconsume_test

import (
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

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/cmdconsume"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/telemetry"
	"github.com/orderflow/orderflow/services/internal/telemetry/telemetrytest"
)

// syncBuffer collects output written from several goroutines.
type syncBuffer = testenv.Buffer

// TestRunSpans: each command runs in a consumer span of the service, the
// child of the message's traceparent (the sagas relay's publish span), or
// of the command event's own when the message has none; the answer
// carries the run's span on. A message parked is a failed span, and its
// log line names the trace.
func TestRunSpans(t *testing.T) {
	exp := telemetrytest.Record(t, "test")

	e := newEnv(t)
	var logs syncBuffer
	logger := telemetry.Logger(slog.New(slog.NewJSONHandler(&logs, nil)))
	st := run(t, e, cmdconsume.Config{Context: commands.ContextInventory, Bus: buses(e.store, commands.Config{})[commands.ContextInventory], Logger: logger})
	if _, err := commands.NewInventory(e.store, commands.Config{}).Restock(ctxT(t), meta(), "A", 5); err != nil {
		t.Fatal(err)
	}

	const (
		header   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" // the relay's publish span
		metadata = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01" // the coordinator's decision span
	)
	for _, tt := range []struct {
		name       string
		header     string
		wantParent string
	}{
		{"the message's traceparent", header, "00f067aa0ba902b7"},
		{"the event's, without one on the message", "", "1111111111111111"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			sagaID, orderID := uuid.NewString(), uuid.NewString()
			c := issue(t, sagaID, commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 1}}})
			m := commandMsg(t, c, metadata)
			if tt.header == "" {
				m.Header.Del(natsbus.HeaderTraceParent)
			} else {
				m.Header.Set(natsbus.HeaderTraceParent, tt.header)
			}
			e.publishMsg(t, m)
			e.reply(t, inventory.ReservationStream(orderID), c)
			// The span ends once the run returned, just after the
			// answer committed.
			var sp tracetest.SpanStub
			waitFor(t, "the run's span", func() bool {
				for _, s := range exp.GetSpans() {
					if s.Name == "run inventory.reserve_stock/v1" {
						sp = s
						return true
					}
				}
				return false
			})
			attrs := map[string]string{}
			for _, kv := range sp.Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if sp.SpanKind != trace.SpanKindConsumer || attrs["service.name"] != "orderflow-inventory" || attrs["orderflow.saga_id"] != sagaID ||
				attrs["orderflow.command_id"] != c.commandID || attrs["messaging.destination.name"] != "commands.inventory.reserve_stock" {
				t.Errorf("span %q (%s) %v", sp.Name, sp.SpanKind, attrs)
			}
			if sp.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sp.Parent.SpanID().String() != tt.wantParent {
				t.Errorf("span in trace %s under %s, want under %s", sp.SpanContext.TraceID(), sp.Parent.SpanID(), tt.wantParent)
			}
			want := "00-" + sp.SpanContext.TraceID().String() + "-" + sp.SpanContext.SpanID().String() + "-01"
			for _, r := range e.replies(t, inventory.ReservationStream(orderID), c) {
				if r.Metadata.TraceParent != want {
					t.Errorf("answer %s traceparent %q, want the run's %q", r.Type, r.Metadata.TraceParent, want)
				}
			}
		})
	}

	t.Run("parked", func(t *testing.T) {
		exp.Reset()
		c := issue(t, uuid.NewString(), commands.ReleaseStock{OrderID: uuid.NewString(), SKUs: []string{"A"}})
		c.wire.Name = "teleport_stock"
		m := commandMsg(t, c, metadata)
		m.Header.Set(natsbus.HeaderTraceParent, header)
		parked := st.Snapshot().Parked
		e.publishMsg(t, m)
		waitFor(t, "the message parked", func() bool { return st.Snapshot().Parked == parked+1 })
		var sp tracetest.SpanStub
		waitFor(t, "the run's span", func() bool {
			spans := exp.GetSpans()
			if len(spans) > 0 {
				sp = spans[0]
			}
			return len(spans) > 0
		})
		if sp.Status.Code != codes.Error || sp.Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("parked span %q: status %v, parent %s", sp.Name, sp.Status, sp.Parent.SpanID())
		}
		var line map[string]any
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if strings.Contains(l, "command parked") && strings.Contains(l, c.commandID) {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatal(err)
				}
			}
		}
		if line == nil || line["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || line["saga_id"] != c.sagaID {
			t.Errorf("parked line %v, want trace_id of the message's trace and saga_id %s; logs:\n%s", line, c.sagaID, logs.String())
		}
	})
}

// commandMsg is c's message as the sagas relay sends it, the command
// event carrying traceParent.
func commandMsg(t *testing.T, c issued, traceParent string) *nats.Msg {
	t.Helper()
	data, err := json.Marshal(c.wire)
	if err != nil {
		t.Fatal(err)
	}
	m, err := natsbus.Encode(natsbus.ContextSagas, domain.Envelope{
		ID: uuid.NewString(), Stream: "saga-" + c.sagaID, Version: 1, Position: uint64(time.Now().UnixNano()),
		Type: natsbus.CommandIssued, SchemaVersion: 1, Data: data,
		Metadata: domain.Metadata{CorrelationID: c.sagaID, CausationID: uuid.NewString(), RequestID: c.requestID, TraceParent: traceParent},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
