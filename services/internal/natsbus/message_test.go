package natsbus_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
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
				if _, err := natsbus.Encode("orders", tt.e); !errors.Is(err, natsbus.ErrUnroutable) {
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

func TestEncodeRefusesInvalidSource(t *testing.T) {
	for _, source := range []string{"", "orders.v2", "in ventory", "orders>", strings.Repeat("s", 129)} {
		if _, err := natsbus.Encode(source, envelope("order-1", "OrderPlaced", `{}`)); !errors.Is(err, natsbus.ErrInvalidSource) {
			t.Errorf("Encode with source %q: err = %v, want ErrInvalidSource", source, err)
		}
		if natsbus.ValidSource(source) {
			t.Errorf("ValidSource(%q) = true", source)
		}
	}
	for _, source := range []string{"orders", "sagas", "test-relay_2"} {
		if !natsbus.ValidSource(source) {
			t.Errorf("ValidSource(%q) = false", source)
		}
	}
}

func TestOrigin(t *testing.T) {
	header := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		h      nats.Header
		source string
		pos    uint64
		ok     bool
	}{
		{"both", header(natsbus.HeaderSource, "orders", natsbus.HeaderPosition, "17"), "orders", 17, true},
		{"no source", header(natsbus.HeaderPosition, "17"), "", 0, false},
		{"no position", header(natsbus.HeaderSource, "orders"), "", 0, false},
		{"position zero", header(natsbus.HeaderSource, "orders", natsbus.HeaderPosition, "0"), "", 0, false},
		{"position not a number", header(natsbus.HeaderSource, "orders", natsbus.HeaderPosition, "x7"), "", 0, false},
		{"negative position", header(natsbus.HeaderSource, "orders", natsbus.HeaderPosition, "-3"), "", 0, false},
		{"no headers", nil, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source, pos, ok := natsbus.Origin(tt.h)
			if source != tt.source || pos != tt.pos || ok != tt.ok {
				t.Fatalf("Origin = %q, %d, %v; want %q, %d, %v", source, pos, ok, tt.source, tt.pos, tt.ok)
			}
		})
	}
}

// TestRelaySubjects: the filters a relay searches cover every subject
// Route gives the events of its context, and nothing of another
// context's events.
func TestRelaySubjects(t *testing.T) {
	matches := func(filter, subject string) bool {
		f, s := strings.Split(filter, "."), strings.Split(subject, ".")
		for i, tok := range f {
			switch {
			case tok == ">":
				return len(s) > i
			case i >= len(s):
				return false
			case tok != "*" && tok != s[i]:
				return false
			}
		}
		return len(f) == len(s)
	}
	anyMatch := func(filters []string, subject string) bool {
		for _, f := range filters {
			if matches(f, subject) {
				return true
			}
		}
		return false
	}
	routed := map[string][]domain.Envelope{
		natsbus.ContextOrders:    {envelope("order-1", "OrderPlaced", `{}`)},
		natsbus.ContextInventory: {envelope("stock-A", "StockReserved", `{}`)},
		natsbus.ContextShipping:  {envelope("shipment-1", "ShipmentScheduled", `{}`)},
		natsbus.ContextSagas:     {envelope("saga-1", "SagaStarted", `{}`), envelope("saga-1", natsbus.CommandIssued, reserve)},
	}
	for relay := range routed {
		filters := natsbus.RelaySubjects(relay)
		for owner, evs := range routed {
			for _, e := range evs {
				subject, err := natsbus.Route(e)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := anyMatch(filters, subject), owner == relay; got != want {
					t.Errorf("relay %s: filters %v match %s: %v, want %v", relay, filters, subject, got, want)
				}
				// A filter that matches a subject names the same stream.
				stream, _ := natsbus.StreamOf(subject)
				for _, f := range filters {
					if fs, ok := natsbus.StreamOf(f); !ok || matches(f, subject) && fs != stream {
						t.Errorf("filter %s is in stream %q, its subject %s in %q", f, fs, subject, stream)
					}
				}
			}
		}
	}
	if got := natsbus.RelaySubjects("test"); !slices.Equal(got, []string{natsbus.EventsSubjects, natsbus.CommandsSubjects}) {
		t.Errorf("RelaySubjects of a name outside the routing table = %v, want every subject", got)
	}
	for subject, want := range map[string]string{"events.orders.X": natsbus.EventsStream, "commands.>": natsbus.CommandsStream, "other.x": ""} {
		if got, _ := natsbus.StreamOf(subject); got != want {
			t.Errorf("StreamOf(%q) = %q, want %q", subject, got, want)
		}
	}
}

func TestEncodeUnencodable(t *testing.T) {
	_, err := natsbus.Encode("orders", envelope("order-1", "OrderPlaced", `{not json`))
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
		m, err := natsbus.Encode("sagas", e)
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
		natsbus.HeaderSource:      "sagas",
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
	if src, pos, ok := natsbus.Origin(m.Header); !ok || src != "sagas" || pos != 42 {
		t.Errorf("Origin = %q, %d, %v; want sagas, 42", src, pos, ok)
	}

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
	m, err := natsbus.Encode("orders", envelope("order-1", "OrderPlaced", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctxT(t), m); err == nil {
		t.Fatal("publish into a stream other than EVENTS succeeded")
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := natsbus.Encode("orders", envelope("order-1", "OrderPlaced", `{}`))
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
