package order_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
)

// v1Placed is an OrderPlaced as the code before schema version 2 wrote it
// (schema_version 1), byte for byte.
const v1Placed = `{"order_id":"0b5e8a4c-1f7e-4f51-9d0c-2f4e5a6b7c8d","saga_id":"5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d",` +
	`"customer_id":"c-42","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1299},{"sku":"SKU-2","quantity":1,"unit_price_cents":500}],` +
	`"shipping_address":{"name":"Ada L.","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"},` +
	`"total_cents":3098,"placed_at":"2025-03-04T05:06:07Z"}`

func orderRegistry(t *testing.T) *domain.Registry {
	t.Helper()
	r := domain.NewRegistry()
	if err := order.RegisterEvents(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUpcastPlacedV1(t *testing.T) {
	r := orderRegistry(t)
	withLine2 := placed()
	withLine2.ShippingAddress.Line2 = "Flat 2"
	tests := []struct {
		name string
		data string
		want order.OrderPlaced
	}{
		{"as the v1 code wrote it", v1Placed, placed()},
		{"with a second address line", strings.Replace(v1Placed, `"line1":"1 Main St",`, `"line1":"1 Main St","line2":"Flat 2",`, 1), withLine2},
		{"a currency in v1 data is not v1's: it is dollars", strings.Replace(v1Placed, `"total_cents"`, `"currency":"EUR","total_cents"`, 1), placed()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := domain.Envelope{ID: "e1", Stream: order.Stream(orderID), Type: order.TypeOrderPlaced, SchemaVersion: 1, Data: json.RawMessage(tt.data)}
			got, err := r.Decode(e)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode(v1) =\n%#v, want\n%#v", got, tt.want)
			}
			up, err := r.Upcast(e)
			if err != nil {
				t.Fatal(err)
			}
			if up.SchemaVersion != order.PlacedSchemaVersion {
				t.Errorf("upcast to v%d, want v%d", up.SchemaVersion, order.PlacedSchemaVersion)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(up.Data, &m); err != nil {
				t.Fatal(err)
			}
			if string(m["currency"]) != `"USD"` || string(m["recipient"]) != `{"name":"Ada L."}` || m["destination"] == nil || m["shipping_address"] != nil {
				t.Errorf("upcast data %s is not version 2 in dollars", up.Data)
			}
			// The version-less reading (a saga's input) agrees with the
			// registry's.
			var direct order.OrderPlaced
			if err := json.Unmarshal([]byte(tt.data), &direct); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(direct, tt.want) {
				t.Errorf("json.Unmarshal(v1) =\n%#v, want\n%#v", direct, tt.want)
			}
		})
	}
}

func TestPlacedV2PassesThrough(t *testing.T) {
	r := orderRegistry(t)
	p := placed()
	p.Currency = "EUR"
	name, version, data, err := r.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if name != order.TypeOrderPlaced || version != 2 {
		t.Fatalf("Encode = %s v%d, want %s v2", name, version, order.TypeOrderPlaced)
	}
	e := domain.Envelope{ID: "e2", Type: name, SchemaVersion: version, Data: data}
	up, err := r.Upcast(e)
	if err != nil || up.SchemaVersion != 2 || string(up.Data) != string(data) {
		t.Fatalf("Upcast(v2) = v%d %s, %v; want the event as it is", up.SchemaVersion, up.Data, err)
	}
	got, err := r.Decode(e)
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("Decode(v2) = %#v, %v; want %#v", got, err, p)
	}
}

func TestUpcastPlacedV1Errors(t *testing.T) {
	r := orderRegistry(t)
	tests := []struct {
		name    string
		version int
		data    string
		want    error
	}{
		{"a total that is not a number", 1, `{"total_cents":"12"}`, domain.ErrUpcast},
		{"an address that is not an object", 1, `{"shipping_address":"1 Main St"}`, domain.ErrUpcast},
		{"a version no code wrote", 3, v1Placed, domain.ErrUnknownEventType},
		{"version zero", 0, v1Placed, domain.ErrUnknownEventType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Decode(domain.Envelope{ID: "e3", Type: order.TypeOrderPlaced, SchemaVersion: tt.version, Data: json.RawMessage(tt.data)})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestCommandsOnAV1Order: an order whose stream holds a version 1
// OrderPlaced, read through the registry, takes every command a v2 order
// takes.
func TestCommandsOnAV1Order(t *testing.T) {
	r := orderRegistry(t)
	load := func(t *testing.T) *order.Order {
		t.Helper()
		p, err := r.Decode(domain.Envelope{ID: "e1", Type: order.TypeOrderPlaced, SchemaVersion: 1, Data: json.RawMessage(v1Placed)})
		if err != nil {
			t.Fatal(err)
		}
		var o order.Order
		o.Apply(p)
		return &o
	}
	tests := []struct {
		name string
		do   func(*order.Order) ([]any, error)
		want any
	}{
		{"confirm", func(o *order.Order) ([]any, error) { return o.Confirm(shipmentID) }, confirmed},
		{"cancel", func(o *order.Order) ([]any, error) { return o.Cancel(order.ReasonCancelledByCustomer) }, cancelled},
		{"reject", func(o *order.Order) ([]any, error) { return o.Reject(order.ReasonInsufficientStock) }, rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := load(t)
			if o.Status != order.StatusPending || o.TotalCents != 3098 || o.ShippingAddress != address() || !o.PlacedAt.Equal(placedAt) {
				t.Fatalf("state of the v1 order = %+v", o)
			}
			got, err := tt.do(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("raised %#v, want %#v", got, tt.want)
			}
		})
	}
	o := load(t)
	o.Apply(confirmed)
	if got, err := o.Cancel(order.ReasonCancelledByCustomer); err != nil || !reflect.DeepEqual(got, []any{cancelled}) {
		t.Errorf("cancel of the confirmed v1 order = %#v, %v", got, err)
	}
}

func TestPlacedJSONNull(t *testing.T) {
	p := placed()
	if err := json.Unmarshal([]byte(`null`), &p); err != nil || !reflect.DeepEqual(p, placed()) {
		t.Errorf("null changed the event to %#v (%v)", p, err)
	}
	var zero order.OrderPlaced
	if err := json.Unmarshal([]byte(`{"placed_at":"2025-03-04T05:06:07Z"}`), &zero); err != nil || !zero.PlacedAt.Equal(placedAt) || zero.Currency != "" {
		t.Errorf("a v2 event without currency reads as %#v (%v)", zero, err)
	}
}
