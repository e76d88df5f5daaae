package serve_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// eventItem is an item of GET /admin/events.
type eventItem struct {
	Service       string          `json:"service"`
	EventID       string          `json:"event_id"`
	Stream        string          `json:"stream"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Version       int64           `json:"version"`
	Position      uint64          `json:"position"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Data          json.RawMessage `json:"data"`
	Metadata      map[string]any  `json:"metadata"`
}

type eventList struct {
	Items     []eventItem `json:"items"`
	Truncated bool        `json:"truncated"`
}

// TestAdminEvents: a service answers the events of one correlation id
// from its own store, with everything stored about each, and the events
// named by id; without either it is a 400.
func TestAdminEvents(t *testing.T) {
	env := servetest.Start(t, "orders")
	cmds := commands.NewOrders(env.Store, commands.Config{})
	place := func(corr string) (string, commands.Meta) {
		t.Helper()
		m := commands.Meta{CommandID: uuid.NewString(), CorrelationID: corr, RequestID: "req-" + corr}
		id := uuid.NewString()
		_, err := cmds.Place(t.Context(), m, commands.PlaceOrder{
			OrderID: id, SagaID: uuid.NewString(), CustomerID: "c-1",
			Items:   []order.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 10}},
			Address: order.Address{Name: "N", Line1: "L", City: "C", PostalCode: "1", Country: "US"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return id, m
	}
	corr := uuid.NewString()
	first, m := place(corr)
	other, _ := place(uuid.NewString())
	if _, err := cmds.Cancel(t.Context(), commands.Meta{CommandID: uuid.NewString(), CorrelationID: corr}, first, order.ReasonCancelledByCustomer); err != nil {
		t.Fatal(err)
	}
	otherEvents := env.Events(t, "order-"+other)

	get := func(query string) eventList {
		t.Helper()
		res := env.Get(t, "/admin/events?"+query)
		if res.Status != http.StatusOK {
			t.Fatalf("GET /admin/events?%s: %d %s", query, res.Status, res.Body)
		}
		if res.Header.Get("Cache-Control") != httpx.CacheNoStore {
			t.Errorf("Cache-Control %q", res.Header.Get("Cache-Control"))
		}
		var l eventList
		res.JSON(t, &l)
		return l
	}
	tests := []struct {
		name  string
		query string
		want  []string // stream:type
	}{
		{"correlation", "correlation_id=" + corr, []string{"order-" + first + ":OrderPlaced", "order-" + first + ":OrderCancelled"}},
		{"correlation upper case", "correlation_id=" + strings.ToUpper(corr), []string{"order-" + first + ":OrderPlaced", "order-" + first + ":OrderCancelled"}},
		{"by id", "event_id=" + otherEvents[0].ID, []string{"order-" + other + ":OrderPlaced"}},
		{"unknown", "correlation_id=" + uuid.NewString(), nil},
	}
	for _, tt := range tests {
		l := get(tt.query)
		var got []string
		for _, it := range l.Items {
			got = append(got, it.Stream+":"+it.Type)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") || l.Truncated {
			t.Errorf("%s: %v (truncated %v), want %v", tt.name, got, l.Truncated, tt.want)
		}
	}

	// Everything stored about an event comes back.
	l := get("correlation_id=" + url.QueryEscape(corr))
	stored := env.Events(t, "order-"+first)[0]
	it := l.Items[0]
	var data map[string]any
	if err := json.Unmarshal(it.Data, &data); err != nil {
		t.Fatalf("data %s: %v", it.Data, err)
	}
	if it.Service != "orders" || it.EventID != stored.ID || it.Version != 1 || it.Position != stored.Position ||
		it.SchemaVersion != stored.SchemaVersion || !it.RecordedAt.Equal(stored.RecordedAt) || data["order_id"] != first ||
		it.Metadata["correlation_id"] != corr || it.Metadata["causation_id"] != m.CommandID || it.Metadata["request_id"] != m.RequestID {
		t.Errorf("item %+v (data %s), stored %+v", it, it.Data, stored)
	}

	// An event stored at an older schema version is shown as the code
	// reads it, upcast to the newest.
	v1 := domain.Envelope{ID: uuid.NewString(), Type: order.TypeOrderPlaced, SchemaVersion: 1,
		Data: json.RawMessage(`{"order_id":"` + first + `","saga_id":"` + uuid.NewString() + `","customer_id":"c-1",` +
			`"items":[{"sku":"SKU-1","quantity":1,"unit_price_cents":10}],` +
			`"shipping_address":{"name":"Ada","line1":"1 Main St","city":"C","postal_code":"1","country":"US"},` +
			`"total_cents":10,"placed_at":"2025-01-02T03:04:05Z"}`),
		Metadata: domain.Metadata{CorrelationID: "v1-" + corr}}
	if _, err := env.Store.Append(t.Context(), "order-"+uuid.NewString(), domain.NoStream, []domain.Envelope{v1}); err != nil {
		t.Fatal(err)
	}
	old := get("correlation_id=v1-" + corr)
	if len(old.Items) != 1 {
		t.Fatalf("the v1 event: %+v", old.Items)
	}
	var upcast struct {
		Currency  string `json:"currency"`
		Recipient struct {
			Name string `json:"name"`
		} `json:"recipient"`
	}
	if err := json.Unmarshal(old.Items[0].Data, &upcast); err != nil || old.Items[0].SchemaVersion != order.PlacedSchemaVersion ||
		upcast.Currency != order.DefaultCurrency || upcast.Recipient.Name != "Ada" {
		t.Errorf("a v1 OrderPlaced shown as v%d %s (%v)", old.Items[0].SchemaVersion, old.Items[0].Data, err)
	}

	env.WantBadQueries(t, "/admin/events", []servetest.BadQuery{
		{Name: "nothing named", Query: "", Fields: []string{"correlation_id"}},
		{Name: "empty correlation", Query: "correlation_id=", Fields: []string{"correlation_id"}},
		{Name: "event id not a uuid", Query: "event_id=42", Fields: []string{"event_id"}},
		{Name: "correlation too long", Query: "correlation_id=" + strings.Repeat("x", 201), Fields: []string{"correlation_id"}},
	})
}
