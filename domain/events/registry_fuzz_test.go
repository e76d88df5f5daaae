package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

// FuzzRegistryDecode: the registry of every event decodes any stored
// payload without panicking. A type and schema version it does not know
// fail with ErrUnknownEventType; a known one fails only because its JSON
// does not fit the Go type (a syntax, type or time error, never
// ErrUnknownEventType); and what it decodes encodes back under the same
// type at the newest version (the one an older version is upcast to) to
// JSON that decodes to the same value.
func FuzzRegistryDecode(f *testing.F) {
	r := events.NewRegistry()
	placed := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	item := order.Item{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}
	addr := order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "DE"}
	for _, p := range []any{
		order.OrderPlaced{OrderID: "o", SagaID: "s", CustomerID: "c", Items: []order.Item{item}, ShippingAddress: addr, TotalCents: 2598, PlacedAt: placed},
		order.OrderConfirmed{OrderID: "o"},
		order.OrderRejected{OrderID: "o"},
		order.OrderCancelled{OrderID: "o"},
		order.OrderShipped{OrderID: "o"},
		order.OrderCommandRejected{},
		inventory.StockRestocked{},
		inventory.StockReserved{},
		inventory.StockReleased{},
		inventory.StockConsumed{},
		inventory.StockReservationAccepted{OrderID: "o", Lines: []inventory.Line{{SKU: "A", Quantity: 1}}},
		inventory.StockReservationRejected{OrderID: "o", Reason: "insufficient_stock", SKU: "A"},
		inventory.StockReservationReleased{},
		inventory.StockReservationConsumed{},
		shipping.ShipmentScheduled{ShipmentID: "s", OrderID: "o", Items: []order.Item{item}, Address: addr},
		shipping.ShipmentRefused{ShipmentID: "s", OrderID: "o", Reason: "destination_not_served"},
		shipping.ShipmentCancelled{},
		shipping.ShipmentDispatched{},
		shipping.ShipmentCommandRejected{},
	} {
		name, version, data, err := r.Encode(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(name, version, []byte(data))
	}
	for _, s := range []struct {
		name    string
		version int
		data    string
	}{
		{order.TypeOrderPlaced, 2, `{"order_id":"o"}`},
		{order.TypeOrderPlaced, 3, `{"order_id":"o"}`},
		{order.TypeOrderPlaced, 1, `{"order_id":"o","shipping_address":{"name":"Ada","line1":"1 Main St","line2":"Flat 2","city":"Springfield","postal_code":"12345","country":"DE"},"total_cents":2598,"placed_at":"2026-01-02T03:04:05Z"}`},
		{order.TypeOrderPlaced, 1, `{"shipping_address":[]}`},
		{order.TypeOrderPlaced, 1, `{"shipping_address":null,"currency":7}`},
		{order.TypeOrderPlaced, 2, `{"shipping_address":{"name":"Ada"},"destination":{"city":"x"}}`},
		{order.TypeOrderPlaced, 0, `{}`},
		{"NoSuchEvent", 1, `{}`},
		{order.TypeOrderPlaced, 1, `{"placed_at":"yesterday"}`},
		{order.TypeOrderPlaced, 1, `{"placed_at":"2026-13-01T00:00:00Z"}`},
		{order.TypeOrderPlaced, 1, `{"placed_at":12}`},
		{order.TypeOrderPlaced, 1, `{"total_cents":1.5}`},
		{order.TypeOrderPlaced, 1, `{"total_cents":99999999999999999999}`},
		{order.TypeOrderPlaced, 1, `{"items":{}}`},
		{order.TypeOrderPlaced, 1, `{"order_id":"\ud800"}`},
		{order.TypeOrderPlaced, 1, "{\"order_id\":\"\xff\"}"},
		{order.TypeOrderPlaced, 1, `{"order_id":"o"`},
		{order.TypeOrderPlaced, 1, `null`},
		{order.TypeOrderPlaced, 1, ``},
		{order.TypeOrderPlaced, 1, `[]`},
	} {
		f.Add(s.name, s.version, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, name string, version int, data []byte) {
		e := domain.Envelope{ID: "e-1", Stream: "order-1", Type: name, SchemaVersion: version, Data: data}
		p, err := r.Decode(e)
		known := knownEvent(r, name, version)
		if err != nil {
			switch {
			case !known && !errors.Is(err, domain.ErrUnknownEventType):
				t.Fatalf("Decode(%s v%d): %v does not wrap ErrUnknownEventType", name, version, err)
			case known && errors.Is(err, domain.ErrUnknownEventType):
				t.Fatalf("Decode(%s v%d, %q): a known type fails with %v", name, version, data, err)
			case known && !jsonFailure(err):
				t.Fatalf("Decode(%s v%d, %q): %v is not a JSON decoding error", name, version, data, err)
			}
			return
		}
		if !known {
			t.Fatalf("Decode(%s v%d) decoded %T for a type it does not know", name, version, p)
		}
		name2, version2, data2, err := r.Encode(p)
		if err != nil {
			t.Fatalf("Encode(Decode(%s v%d, %q)) = %v", name, version, data, err)
		}
		newest, _ := r.Current(name, version)
		if name2 != name || version2 != newest || version2 < version {
			t.Fatalf("%s v%d decodes to %T, which encodes as %s v%d, want v%d", name, version, p, name2, version2, newest)
		}
		p2, err := r.Decode(domain.Envelope{ID: "e-2", Type: name2, SchemaVersion: version2, Data: data2})
		if err != nil {
			t.Fatalf("Decode of re-encoded %s: %v", data2, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("%q decodes to %#v, its re-encoding %s to %#v", data, p, data2, p2)
		}
	})
}

// knownEvent reports whether r knows name at version, by asking it to
// decode the empty object, which every payload type accepts.
func knownEvent(r *domain.Registry, name string, version int) bool {
	_, err := r.Decode(domain.Envelope{Type: name, SchemaVersion: version, Data: json.RawMessage(`{}`)})
	return err == nil
}

// jsonFailure reports whether err comes from decoding JSON into a Go
// value: a syntax error, a value of the wrong JSON type, or a time that
// does not parse.
func jsonFailure(err error) bool {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
		pe *time.ParseError
	)
	// time.Time.UnmarshalJSON reports a value that is not a JSON string
	// with a plain error naming itself.
	return errors.As(err, &se) || errors.As(err, &te) || errors.As(err, &pe) ||
		strings.Contains(err.Error(), "Time.UnmarshalJSON")
}
