package orders_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// v1Placed is the data of an OrderPlaced as the code before schema
// version 2 wrote it, for the order id and saga id given.
func v1Placed(orderID, sagaID string) string {
	return `{"order_id":"` + orderID + `","saga_id":"` + sagaID + `","customer_id":"c-old",` +
		`"items":[{"sku":"SKU-1","quantity":3,"unit_price_cents":700}],` +
		`"shipping_address":{"name":"Grace H.","line1":"7 Harbour Rd","line2":"Flat B","city":"Arlington","postal_code":"22201","country":"US"},` +
		`"total_cents":2100,"placed_at":"2025-06-01T09:00:00Z"}`
}

// appendV1Order stores an order placed by the code before OrderPlaced
// version 2, as it wrote it, and returns its id.
func appendV1Order(t *testing.T, env *servetest.Env) string {
	t.Helper()
	id := uuid.NewString()
	_, err := env.Store.Append(context.Background(), order.Stream(id), domain.NoStream, []domain.Envelope{{
		ID: uuid.NewString(), Type: order.TypeOrderPlaced, SchemaVersion: 1,
		Data:     json.RawMessage(v1Placed(id, sagas.SagaID(id))),
		Metadata: domain.Metadata{CorrelationID: sagas.SagaID(id)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var v1Address = address{Name: "Grace H.", Line1: "7 Harbour Rd", Line2: "Flat B", City: "Arlington", PostalCode: "22201", Country: "US"}

// TestV1OrderReadsAndCancels: an order whose stream holds a version 1
// OrderPlaced shows as the API always showed it, in USD, and the
// customer's cancel works on it.
func TestV1OrderReadsAndCancels(t *testing.T) {
	env := servetest.Start(t, "orders")
	id := appendV1Order(t, env)
	res := env.Eventually(t, 10*time.Second, "/api/orders/"+id, func(r servetest.Response) bool { return r.Status == http.StatusOK })
	var got orderView
	res.JSON(t, &got)
	if got.CustomerID != "c-old" || got.Status != "pending" || got.TotalCents != 2100 || got.Currency != "USD" ||
		got.ShippingAddress != v1Address || !got.CreatedAt.Equal(time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)) || got.Version != 1 {
		t.Fatalf("v1 order reads %+v", got)
	}

	if res := env.Post(t, "/api/orders/"+id+"/cancel", `{}`); res.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	evs := env.Events(t, order.Stream(id))
	if len(evs) != 2 || evs[0].SchemaVersion != 1 || evs[0].Type != order.TypeOrderPlaced || evs[1].Type != order.TypeOrderCancelled {
		t.Fatalf("stream %+v, want the v1 OrderPlaced as stored and an OrderCancelled", evs)
	}
	env.Eventually(t, 10*time.Second, "/api/orders/"+id, func(r servetest.Response) bool {
		var o orderView
		r.JSON(t, &o)
		return o.Status == "cancelled" && o.Reason == order.ReasonCancelledByCustomer && o.Version == 2 && o.Currency == "USD"
	})
}

// TestV1OrderTakesSagaCommands: the commands a saga sends (confirm, mark
// shipped, reject) work on an order whose stream holds a version 1
// OrderPlaced, through the command handlers on the service's PostgreSQL
// store.
func TestV1OrderTakesSagaCommands(t *testing.T) {
	env := servetest.Start(t, "orders")
	h := commands.NewOrders(env.Store, commands.Config{})
	meta := func() commands.Meta {
		return commands.Meta{CommandID: uuid.NewString(), RequestID: "req-" + uuid.NewString(), Now: time.Now()}
	}
	ctx := context.Background()
	tests := []struct {
		name   string
		do     func(id string) error
		status order.Status
	}{
		{"confirm then ship", func(id string) error {
			if _, err := h.Confirm(ctx, meta(), id, uuid.NewString()); err != nil {
				return err
			}
			_, err := h.MarkShipped(ctx, meta(), id)
			return err
		}, order.StatusShipped},
		{"confirm then cancel", func(id string) error {
			if _, err := h.Confirm(ctx, meta(), id, uuid.NewString()); err != nil {
				return err
			}
			_, err := h.Cancel(ctx, meta(), id, order.ReasonCancelledByCustomer)
			return err
		}, order.StatusCancelled},
		{"reject", func(id string) error {
			_, err := h.Reject(ctx, meta(), id, order.ReasonInsufficientStock)
			return err
		}, order.StatusRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := appendV1Order(t, env)
			if err := tt.do(id); err != nil {
				t.Fatal(err)
			}
			o, _, err := h.Load(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if o.Status != tt.status || o.ShippingAddress.Line2 != "Flat B" || o.TotalCents != 2100 {
				t.Errorf("order after the commands: %+v", o)
			}
			env.Eventually(t, 10*time.Second, "/api/orders/"+id, func(r servetest.Response) bool {
				if r.Status != http.StatusOK {
					return false // the read model has not seen the order yet
				}
				var v orderView
				r.JSON(t, &v)
				return v.Status == string(tt.status) && v.Currency == "USD" && v.ShippingAddress == v1Address
			})
		})
	}
}

// TestPlaceOrderCurrency: a new order is stored as OrderPlaced version 2,
// its address split into recipient and destination, in the currency the
// request names, else USD; the API shows the address whole.
func TestPlaceOrderCurrency(t *testing.T) {
	env := servetest.Start(t, "orders")
	tests := []struct {
		name     string
		body     string
		currency string
	}{
		{"no currency", validOrder, "USD"},
		{"euro", strings.Replace(validOrder, `"customer_id": "c-42",`, `"customer_id": "c-42", "currency": "EUR",`, 1), "EUR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := env.Post(t, "/api/orders", tt.body)
			if res.Status != http.StatusAccepted {
				t.Fatalf("place: %d %s", res.Status, res.Body)
			}
			var p placed
			res.JSON(t, &p)
			evs := env.Events(t, order.Stream(p.OrderID))
			if len(evs) != 1 || evs[0].SchemaVersion != order.PlacedSchemaVersion {
				t.Fatalf("events %+v, want one OrderPlaced v%d", evs, order.PlacedSchemaVersion)
			}
			var data struct {
				Currency    string                   `json:"currency"`
				Recipient   struct{ Name string }    `json:"recipient"`
				Destination struct{ Country string } `json:"destination"`
				Address     json.RawMessage          `json:"shipping_address"`
			}
			if err := json.Unmarshal(evs[0].Data, &data); err != nil {
				t.Fatal(err)
			}
			if data.Currency != tt.currency || data.Recipient.Name != "Ada L." || data.Destination.Country != "US" || data.Address != nil {
				t.Fatalf("OrderPlaced v2 data %s", evs[0].Data)
			}
			env.Eventually(t, 10*time.Second, "/api/orders/"+p.OrderID, func(r servetest.Response) bool {
				if r.Status != http.StatusOK {
					return false
				}
				var v orderView
				r.JSON(t, &v)
				return v.Currency == tt.currency &&
					v.ShippingAddress == address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
			})
		})
	}
	bad := strings.Replace(validOrder, `"customer_id": "c-42",`, `"customer_id": "c-42", "currency": "euro",`, 1)
	env.AppendsNothing(t, func() {
		env.Post(t, "/api/orders", bad).WantProblem(t, http.StatusBadRequest, httpx.SlugValidation, "currency")
	})
}
