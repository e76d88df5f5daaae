package relay_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
	"github.com/orderflow/orderflow/services/internal/relay"
	"github.com/orderflow/orderflow/services/internal/telemetry/telemetrytest"
)

// TestPublishSpans: each publish is a producer span of the relay's
// service, the child of the trace context its event carries (a root when
// it carries none), that ends with JetStream's ack; the message's
// traceparent names the span, while the event in the body keeps its own.
// An event that can never be published ends its span failed.
func TestPublishSpans(t *testing.T) {
	exp := telemetrytest.Record(t, "test")

	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	for _, sc := range natsbus.StreamConfigs(natsbus.TopologyConfig{}) {
		sc.MaxMsgSize = 4 << 10
		if _, err := js.CreateStream(ctxT(t), sc); err != nil {
			t.Fatal(err)
		}
	}
	const (
		callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan  = "00f067aa0ba902b7"
	)
	stream := "order-" + uuid.NewString()
	traced := appendWithMetadata(t, d, stream, "OrderPlaced", `{}`,
		domain.Metadata{CorrelationID: "req-1", TraceParent: "00-" + callerTrace + "-" + callerSpan + "-01", TraceState: "caller=1"})
	untraced := appendWithMetadata(t, d, stream, "OrderConfirmed", `{}`, domain.Metadata{})
	big := appendWithMetadata(t, d, stream, "OrderNoted", `"`+strings.Repeat("x", 8<<10)+`"`,
		domain.Metadata{TraceParent: "00-" + callerTrace + "-" + callerSpan + "-01"})

	run := start(t, d, js, relay.Config{Name: "orders"})
	waitCaughtUp(t, run.r, d.store, 30*time.Second)

	spans := map[string]tracetest.SpanStub{} // by event id
	for _, sp := range exp.GetSpans() {
		for _, kv := range sp.Attributes {
			if kv.Key == "messaging.message.id" {
				spans[kv.Value.AsString()] = sp
			}
		}
	}
	msgs := map[string]natsbustest.Msg{}
	for _, m := range natsbustest.Messages(t, js, natsbus.EventsStream) {
		msgs[m.Header.Get(natsbus.HeaderMsgID)] = m
	}
	for _, tt := range []struct {
		name       string
		event      domain.Envelope
		fromCaller bool
		failed     bool
	}{
		{"event with a trace context", traced, true, false},
		{"event without one", untraced, false, false},
		{"event too large to publish", big, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sp, ok := spans[tt.event.ID]
			if !ok {
				t.Fatalf("no span for event %s", tt.event.ID)
			}
			attrs := map[string]string{}
			for _, kv := range sp.Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			subject := "events.orders." + tt.event.Type
			if sp.Name != "publish "+subject || sp.SpanKind != trace.SpanKindProducer || attrs["service.name"] != "orderflow-orders" ||
				attrs["messaging.destination.name"] != subject || attrs["orderflow.stream"] != stream || attrs["orderflow.event.type"] != tt.event.Type {
				t.Errorf("span %q (%s) %v", sp.Name, sp.SpanKind, attrs)
			}
			if tt.fromCaller {
				if sp.SpanContext.TraceID().String() != callerTrace || sp.Parent.SpanID().String() != callerSpan {
					t.Errorf("span in trace %s under %s, want the event's", sp.SpanContext.TraceID(), sp.Parent.SpanID())
				}
			} else if sp.Parent.IsValid() {
				t.Errorf("span under %s, want a root", sp.Parent.SpanID())
			}
			if got := sp.Status.Code == codes.Error; got != tt.failed {
				t.Errorf("span status %v, want failed %t", sp.Status, tt.failed)
			}
			m, published := msgs[tt.event.ID]
			if published == tt.failed {
				t.Fatalf("published %t, want %t", published, !tt.failed)
			}
			if !published {
				return
			}
			if attrs["orderflow.duplicate"] != "false" {
				t.Errorf("span of an acknowledged publish: %v", attrs)
			}
			want := "00-" + sp.SpanContext.TraceID().String() + "-" + sp.SpanContext.SpanID().String() + "-01"
			if got := m.Header.Get(natsbus.HeaderTraceParent); got != want {
				t.Errorf("message traceparent %q, want the span's %q", got, want)
			}
			if got, want := m.Header.Get(natsbus.HeaderTraceState), tt.event.Metadata.TraceState; got != want {
				t.Errorf("message tracestate %q, want %q", got, want)
			}
			body, err := natsbus.Decode(m)
			if err != nil {
				t.Fatal(err)
			}
			if body.Metadata.TraceParent != tt.event.Metadata.TraceParent {
				t.Errorf("the body's traceparent %q, want the event's own %q", body.Metadata.TraceParent, tt.event.Metadata.TraceParent)
			}
		})
	}
}

func appendWithMetadata(t *testing.T, d *db, stream, typ, data string, md domain.Metadata) domain.Envelope {
	t.Helper()
	e := domain.Envelope{ID: uuid.NewString(), Type: typ, SchemaVersion: 1, Data: json.RawMessage(data), Metadata: md}
	res, err := d.store.Append(ctxT(t), stream, domain.AnyVersion, []domain.Envelope{e})
	if err != nil {
		t.Fatalf("append %s %s: %v", stream, typ, err)
	}
	e.Stream, e.Position = stream, res.Position
	return e
}
