package natsbus_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
)

func envelope(stream, typ, data string) domain.Envelope {
	return domain.Envelope{
		ID:            "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
		Stream:        stream,
		Version:       3,
		Position:      42,
		Type:          typ,
		SchemaVersion: 1,
		Data:          json.RawMessage(data),
		Metadata:      domain.Metadata{CorrelationID: "corr", CausationID: "cause"},
		RecordedAt:    time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC),
	}
}

const reserve = `{"context":"inventory","name":"reserve","command_id":"c-1","payload":{"sku":"A","qty":2}}`

func TestRoute(t *testing.T) {
	tests := []struct {
		name    string
		e       domain.Envelope
		subject string // empty: ErrUnroutable expected
	}{
		{"order event", envelope("order-1", "OrderPlaced", `{}`), "events.orders.OrderPlaced"},
		{"stock event", envelope("stock-SKU-1", "StockReserved", `{}`), "events.inventory.StockReserved"},
		{"shipment event", envelope("shipment-9", "ShipmentScheduled", `{}`), "events.shipping.ShipmentScheduled"},
		{"saga event", envelope("saga-7", "SagaStarted", `{}`), "events.sagas.SagaStarted"},
		{"saga command", envelope("saga-7", natsbus.CommandIssued, reserve), "commands.inventory.reserve"},
		{"command to orders", envelope("saga-7", natsbus.CommandIssued, `{"context":"orders","name":"confirm","command_id":"c-2"}`), "commands.orders.confirm"},
		{"CommandIssued outside a saga is an event", envelope("order-1", natsbus.CommandIssued, `{}`), "events.orders.CommandIssued"},
		{"unknown prefix", envelope("customer-1", "Created", `{}`), ""},
		{"bare prefix", envelope("order-", "OrderPlaced", `{}`), ""},
		{"type with a dot", envelope("order-1", "Order.Placed", `{}`), ""},
		{"type with a wildcard", envelope("order-1", "Order*", `{}`), ""},
		{"empty type", envelope("order-1", "", `{}`), ""},
		{"command data not JSON", envelope("saga-7", natsbus.CommandIssued, `nope`), ""},
		{"command to unknown context", envelope("saga-7", natsbus.CommandIssued, `{"context":"billing","name":"charge","command_id":"c"}`), ""},
		{"command name with a dot", envelope("saga-7", natsbus.CommandIssued, `{"context":"inventory","name":"re.serve","command_id":"c"}`), ""},
		{"command without name", envelope("saga-7", natsbus.CommandIssued, `{"context":"inventory","command_id":"c"}`), ""},
		{"command without id", envelope("saga-7", natsbus.CommandIssued, `{"context":"inventory","name":"reserve"}`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := natsbus.Route(tt.e)
			if tt.subject == "" {
				if !errors.Is(err, natsbus.ErrUnroutable) {
					t.Fatalf("Route = %q, %v; want ErrUnroutable", got, err)
				}
				if _, err := natsbus.Encode(tt.e); !errors.Is(err, natsbus.ErrUnroutable) {
					t.Fatalf("Encode err = %v, want ErrUnroutable", err)
				}
				return
			}
			if err != nil || got != tt.subject {
				t.Fatalf("Route = %q, %v; want %q", got, err, tt.subject)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	c, err := natsbus.ParseCommand(envelope("saga-7", natsbus.CommandIssued, reserve))
	if err != nil {
		t.Fatal(err)
	}
	if c.Context != "inventory" || c.Name != "reserve" || c.CommandID != "c-1" || string(c.Payload) != `{"sku":"A","qty":2}` {
		t.Fatalf("command = %+v", c)
	}
	if _, err := natsbus.ParseCommand(envelope("saga-7", "SagaStarted", reserve)); !errors.Is(err, natsbus.ErrUnroutable) {
		t.Fatalf("other type: err = %v", err)
	}
}

func TestContextOf(t *testing.T) {
	for _, r := range natsbus.Contexts {
		if got, ok := natsbus.ContextOf(r.Prefix + "x"); !ok || got != r.Context {
			t.Errorf("ContextOf(%q) = %q, %v", r.Prefix+"x", got, ok)
		}
	}
	if _, ok := natsbus.ContextOf("orders-1"); ok {
		t.Error(`"orders-1" matched a context`)
	}
}

func TestEncodeUnencodable(t *testing.T) {
	_, err := natsbus.Encode(envelope("order-1", "OrderPlaced", `{not json`))
	if !errors.Is(err, natsbus.ErrUnencodable) {
		t.Fatalf("Encode of invalid JSON data: err = %v, want ErrUnencodable", err)
	}
}

func sameEnvelope(t *testing.T, got, want domain.Envelope) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("envelope\n got %s\nwant %s", g, w)
	}
}

// TestEncodeDecodeThroughJetStream publishes encoded events and a command
// to a real server and decodes what the streams hold.
func TestEncodeDecodeThroughJetStream(t *testing.T) {
	_, js := connect(t, natsbustest.Server(t))
	if err := natsbus.EnsureTopology(ctxT(t), js, natsbus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	ev := envelope("order-1", "OrderPlaced", `{"total":12}`)
	ev.Metadata.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev.Metadata.TraceState = "vendor=1"
	cmd := envelope("saga-7", natsbus.CommandIssued, reserve)
	cmd.ID = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
	cmd.Position = 43

	for _, e := range []domain.Envelope{ev, cmd, ev} { // the repeat is dropped
		m, err := natsbus.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctxT(t), m); err != nil {
			t.Fatalf("publish %s: %v", m.Subject, err)
		}
	}

	events := natsbustest.Messages(t, js, natsbus.EventsStream)
	if len(events) != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", len(events))
	}
	m := events[0]
	if m.Subject != "events.orders.OrderPlaced" {
		t.Errorf("subject %q", m.Subject)
	}
	for name, want := range map[string]string{
		natsbus.HeaderMsgID:       ev.ID,
		natsbus.HeaderType:        "OrderPlaced",
		natsbus.HeaderStream:      "order-1",
		natsbus.HeaderPosition:    "42",
		natsbus.HeaderTraceParent: ev.Metadata.TraceParent,
		natsbus.HeaderTraceState:  "vendor=1",
	} {
		if got := m.Header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	got, err := natsbus.Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	sameEnvelope(t, got, ev)

	commands := natsbustest.Messages(t, js, natsbus.CommandsStream)
	if len(commands) != 1 || commands[0].Subject != "commands.inventory.reserve" {
		t.Fatalf("COMMANDS holds %+v", commands)
	}
	if commands[0].Header.Get(natsbus.HeaderMsgID) != cmd.ID {
		t.Errorf("command Nats-Msg-Id = %q, want the event id", commands[0].Header.Get(natsbus.HeaderMsgID))
	}
	if commands[0].Header.Get(natsbus.HeaderTraceParent) != "" {
		t.Error("traceparent header set for an event without one")
	}
	gotCmd, err := natsbus.Decode(commands[0])
	if err != nil {
		t.Fatal(err)
	}
	sameEnvelope(t, gotCmd, cmd)
	if c, err := natsbus.ParseCommand(gotCmd); err != nil || c.CommandID != "c-1" {
		t.Fatalf("ParseCommand after decode: %+v, %v", c, err)
	}
}

// TestEncodeNamesTheStream: a message whose subject some other stream
// captures is refused by the server instead of being stored there.
func TestEncodeNamesTheStream(t *testing.T) {
	_, js := connect(t, natsbustest.Server(t))
	if _, err := js.CreateStream(ctxT(t), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"events.>"}}); err != nil {
		t.Fatal(err)
	}
	m, err := natsbus.Encode(envelope("order-1", "OrderPlaced", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctxT(t), m); err == nil {
		t.Fatal("publish into a stream other than EVENTS succeeded")
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := natsbus.Encode(envelope("order-1", "OrderPlaced", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	body := func(f func(e *domain.Envelope)) []byte {
		e := envelope("order-1", "OrderPlaced", `{}`)
		f(&e)
		b, _ := json.Marshal(e)
		return b
	}
	withHeader := func(name, value string) nats.Header {
		h := nats.Header{}
		for k, v := range good.Header {
			h[k] = v
		}
		h.Set(name, value)
		return h
	}
	tests := []struct {
		name string
		msg  natsbustest.Msg
	}{
		{"not JSON", natsbustest.Msg{Body: []byte("hello"), Header: good.Header}},
		{"JSON but not an object", natsbustest.Msg{Body: []byte(`[1]`)}},
		{"no id", natsbustest.Msg{Body: body(func(e *domain.Envelope) { e.ID = "" })}},
		{"no type", natsbustest.Msg{Body: body(func(e *domain.Envelope) { e.Type = "" })}},
		{"no stream", natsbustest.Msg{Body: body(func(e *domain.Envelope) { e.Stream = "" })}},
		{"no position", natsbustest.Msg{Body: body(func(e *domain.Envelope) { e.Position = 0 })}},
		{"msg id differs", natsbustest.Msg{Body: good.Data, Header: withHeader(natsbus.HeaderMsgID, "other")}},
		{"type differs", natsbustest.Msg{Body: good.Data, Header: withHeader(natsbus.HeaderType, "OrderShipped")}},
		{"stream differs", natsbustest.Msg{Body: good.Data, Header: withHeader(natsbus.HeaderStream, "order-2")}},
		{"position differs", natsbustest.Msg{Body: good.Data, Header: withHeader(natsbus.HeaderPosition, "41")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := natsbus.Decode(tt.msg); !errors.Is(err, natsbus.ErrMalformed) {
				t.Fatalf("Decode err = %v, want ErrMalformed", err)
			}
		})
	}
	// Without headers the body alone is accepted.
	if _, err := natsbus.Decode(natsbustest.Msg{Body: good.Data}); err != nil {
		t.Fatalf("Decode without headers: %v", err)
	}
}
