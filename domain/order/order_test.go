package order_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/aggtest"
	"github.com/orderflow/orderflow/domain/order"
)

const (
	orderID    = "0b5e8a4c-1f7e-4f51-9d0c-2f4e5a6b7c8d"
	sagaID     = "5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	shipmentID = "9c8b7a6d-5e4f-4d3c-8b2a-1f0e9d8c7b6a"
	otherID    = "11111111-2222-4333-8444-555555555555"
)

var placedAt = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func address() order.Address {
	return order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
}

func place() order.PlaceOrder {
	return order.PlaceOrder{
		OrderID:    orderID,
		SagaID:     sagaID,
		CustomerID: "c-42",
		Items: []order.Item{
			{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299},
			{SKU: "SKU-2", Quantity: 1, UnitPriceCents: 500},
		},
		Address: address(),
		At:      placedAt,
	}
}

func placed() order.OrderPlaced {
	c := place()
	return order.OrderPlaced{
		OrderID: orderID, SagaID: sagaID, CustomerID: "c-42", Items: c.Items, Currency: order.DefaultCurrency,
		ShippingAddress: c.Address, TotalCents: 2*1299 + 500, PlacedAt: placedAt,
	}
}

var (
	confirmed = order.OrderConfirmed{OrderID: orderID, ShipmentID: shipmentID}
	rejected  = order.OrderRejected{OrderID: orderID, Reason: order.ReasonInsufficientStock}
	cancelled = order.OrderCancelled{OrderID: orderID, Reason: order.ReasonCancelledByCustomer}
	shipped   = order.OrderShipped{OrderID: orderID, ShipmentID: shipmentID}
)

type orderCase = aggtest.Case[order.Order]

func placeWith(edit func(*order.PlaceOrder)) func(*order.Order) ([]any, error) {
	return func(o *order.Order) ([]any, error) {
		c := place()
		edit(&c)
		return o.Place(c)
	}
}

func TestPlace(t *testing.T) {
	aggtest.Run(t, []orderCase{
		{
			Name: "new order is placed pending with its total",
			When: placeWith(func(*order.PlaceOrder) {}),
			Then: []any{placed()},
			Check: func(t testing.TB, o *order.Order) {
				if o.Status != order.StatusPending || o.TotalCents != 3098 || o.CustomerID != "c-42" {
					t.Errorf("state = %+v", o)
				}
			},
		},
		{
			Name: "placed time is stored in UTC",
			When: placeWith(func(c *order.PlaceOrder) { c.At = placedAt.In(time.FixedZone("X", 3600)) }),
			Then: []any{placed()},
		},
		{
			Name: "limits are inclusive",
			When: placeWith(func(c *order.PlaceOrder) {
				c.Items = []order.Item{{SKU: strings.Repeat("s", 64), Quantity: 1000, UnitPriceCents: 100_000_000}, {SKU: "free", Quantity: 1, UnitPriceCents: 0}}
				c.Address.Name = strings.Repeat("n", order.MaxAddressField)
			}),
			Then: []any{func() any {
				e := placed()
				e.Items = []order.Item{{SKU: strings.Repeat("s", 64), Quantity: 1000, UnitPriceCents: 100_000_000}, {SKU: "free", Quantity: 1, UnitPriceCents: 0}}
				e.ShippingAddress.Name = strings.Repeat("n", order.MaxAddressField)
				e.TotalCents = 100_000_000_000
				return e
			}()},
		},
		{
			Name: "a currency the request names is kept",
			When: placeWith(func(c *order.PlaceOrder) { c.Currency = "EUR" }),
			Then: []any{func() any {
				e := placed()
				e.Currency = "EUR"
				return e
			}()},
		},
		{
			Name:       "a currency not of the ISO 4217 form is refused",
			When:       placeWith(func(c *order.PlaceOrder) { c.Currency = "usd" }),
			WantFields: []string{"currency"},
		},
		{
			Name:    "an order id is placed only once",
			Given:   []any{placed()},
			When:    placeWith(func(*order.PlaceOrder) {}),
			WantErr: domain.ErrIllegalState,
		},
		{
			Name: "every invalid field is reported",
			When: placeWith(func(c *order.PlaceOrder) {
				c.CustomerID = "bad id!"
				c.Items = []order.Item{
					{SKU: "SKU-1", Quantity: 0, UnitPriceCents: 1},
					{SKU: "SKU-1", Quantity: 1001, UnitPriceCents: -1},
					{SKU: "", Quantity: 1, UnitPriceCents: 100_000_001},
				}
				c.Address = order.Address{Name: " ", Line1: "x", Line2: "\t", City: "", PostalCode: strings.Repeat("9", 33), Country: "XX"}
			}),
			WantFields: []string{
				"customer_id",
				"items[0].quantity",
				"items[1].sku", "items[1].quantity", "items[1].unit_price_cents",
				"items[2].sku", "items[2].unit_price_cents",
				"shipping_address.name", "shipping_address.line2", "shipping_address.city",
				"shipping_address.postal_code", "shipping_address.country",
			},
		},
		{
			Name:       "no items",
			When:       placeWith(func(c *order.PlaceOrder) { c.Items = nil }),
			WantFields: []string{"items"},
		},
		{
			Name: "more than 50 items",
			When: placeWith(func(c *order.PlaceOrder) {
				c.Items = make([]order.Item, 51)
				for i := range c.Items {
					c.Items[i] = order.Item{SKU: "S" + strings.Repeat("x", i), Quantity: 1}
				}
			}),
			WantFields: []string{"items"},
		},
		{
			Name:       "ids, customer and time missing",
			When:       placeWith(func(c *order.PlaceOrder) { c.OrderID, c.SagaID, c.CustomerID, c.At = "x", "", "", time.Time{} }),
			WantFields: []string{"order_id", "saga_id", "customer_id", "placed_at"},
		},
		{
			Name:       "lower-case and unknown countries",
			When:       placeWith(func(c *order.PlaceOrder) { c.Address.Country = "us" }),
			WantFields: []string{"shipping_address.country"},
		},
		{
			Name: "text too long, control characters, bad UTF-8",
			When: placeWith(func(c *order.PlaceOrder) {
				c.Address.Name = strings.Repeat("é", order.MaxAddressField+1)
				c.Address.Line1 = "a\x00b"
				c.Address.City = "\xff"
				c.Address.Country = ""
			}),
			WantFields: []string{"shipping_address.name", "shipping_address.line1", "shipping_address.city", "shipping_address.country"},
		},
		{
			Name:       "invalid input is reported before the state is checked",
			Given:      []any{placed()},
			When:       placeWith(func(c *order.PlaceOrder) { c.Items[0].Quantity = -1 }),
			WantFields: []string{"items[0].quantity"},
		},
	})
}

func TestConfirm(t *testing.T) {
	confirm := func(id string) func(*order.Order) ([]any, error) {
		return func(o *order.Order) ([]any, error) { return o.Confirm(id) }
	}
	aggtest.Run(t, []orderCase{
		{Name: "pending order is confirmed", Given: []any{placed()}, When: confirm(shipmentID), Then: []any{confirmed},
			Check: func(t testing.TB, o *order.Order) {
				if o.Status != order.StatusConfirmed || o.ShipmentID != shipmentID {
					t.Errorf("state = %+v", o)
				}
			}},
		{Name: "confirming again with the same shipment is a no-op", Given: []any{placed(), confirmed}, When: confirm(shipmentID)},
		{Name: "confirming with another shipment", Given: []any{placed(), confirmed}, When: confirm(otherID), WantErr: domain.ErrIllegalState},
		{Name: "rejected order", Given: []any{placed(), rejected}, When: confirm(shipmentID), WantErr: domain.ErrIllegalState},
		{Name: "cancelled order", Given: []any{placed(), cancelled}, When: confirm(shipmentID), WantErr: domain.ErrIllegalState},
		{Name: "shipped order", Given: []any{placed(), confirmed, shipped}, When: confirm(shipmentID), WantErr: domain.ErrIllegalState},
		{Name: "unknown order", When: confirm(shipmentID), WantErr: domain.ErrNotFound},
		{Name: "shipment id must be a UUID", Given: []any{placed()}, When: confirm("ship-1"), WantFields: []string{"shipment_id"}},
	})
}

func TestReject(t *testing.T) {
	reject := func(reason string) func(*order.Order) ([]any, error) {
		return func(o *order.Order) ([]any, error) { return o.Reject(reason) }
	}
	aggtest.Run(t, []orderCase{
		{Name: "pending order is rejected", Given: []any{placed()}, When: reject(order.ReasonInsufficientStock), Then: []any{rejected},
			Check: func(t testing.TB, o *order.Order) {
				if o.Status != order.StatusRejected || o.Reason != order.ReasonInsufficientStock {
					t.Errorf("state = %+v", o)
				}
			}},
		{Name: "every reason is accepted", Given: []any{placed()}, When: reject(order.ReasonStepTimeout),
			Then: []any{order.OrderRejected{OrderID: orderID, Reason: order.ReasonStepTimeout}}},
		{Name: "rejecting a rejected order is a no-op", Given: []any{placed(), rejected}, When: reject(order.ReasonDestinationNotServed)},
		// The saga gave up on the confirmation and compensated before the
		// late confirm ran: its rejection stands.
		{Name: "confirmed order", Given: []any{placed(), confirmed}, When: reject(order.ReasonStepTimeout),
			Then: []any{order.OrderRejected{OrderID: orderID, Reason: order.ReasonStepTimeout}}},
		{Name: "cancelled order", Given: []any{placed(), cancelled}, When: reject(order.ReasonStepTimeout), WantErr: domain.ErrIllegalState},
		{Name: "shipped order", Given: []any{placed(), confirmed, shipped}, When: reject(order.ReasonStepTimeout), WantErr: domain.ErrIllegalState},
		{Name: "unknown order", When: reject(order.ReasonStepTimeout), WantErr: domain.ErrNotFound},
		{Name: "unknown reason", Given: []any{placed()}, When: reject("bored"), WantFields: []string{"reason"}},
	})
}

func TestCancel(t *testing.T) {
	cancel := func(reason string) func(*order.Order) ([]any, error) {
		return func(o *order.Order) ([]any, error) { return o.Cancel(reason) }
	}
	aggtest.Run(t, []orderCase{
		{Name: "pending order is cancelled", Given: []any{placed()}, When: cancel(order.ReasonCancelledByCustomer), Then: []any{cancelled},
			Check: func(t testing.TB, o *order.Order) {
				if o.Status != order.StatusCancelled || o.Reason != order.ReasonCancelledByCustomer {
					t.Errorf("state = %+v", o)
				}
			}},
		{Name: "confirmed order is cancelled", Given: []any{placed(), confirmed}, When: cancel(order.ReasonStepTimeout),
			Then: []any{order.OrderCancelled{OrderID: orderID, Reason: order.ReasonStepTimeout}}},
		{Name: "shipped order", Given: []any{placed(), confirmed, shipped}, When: cancel(order.ReasonCancelledByCustomer), WantErr: domain.ErrIllegalState},
		{Name: "rejected order", Given: []any{placed(), rejected}, When: cancel(order.ReasonCancelledByCustomer), WantErr: domain.ErrIllegalState},
		{Name: "cancelled order", Given: []any{placed(), cancelled}, When: cancel(order.ReasonCancelledByCustomer), WantErr: domain.ErrIllegalState},
		{Name: "unknown order", When: cancel(order.ReasonCancelledByCustomer), WantErr: domain.ErrNotFound},
		{Name: "unknown reason", Given: []any{placed()}, When: cancel(""), WantFields: []string{"reason"}},
	})
}

func TestMarkShipped(t *testing.T) {
	ship := func(o *order.Order) ([]any, error) { return o.MarkShipped() }
	aggtest.Run(t, []orderCase{
		{Name: "confirmed order ships", Given: []any{placed(), confirmed}, When: ship, Then: []any{shipped},
			Check: func(t testing.TB, o *order.Order) {
				if o.Status != order.StatusShipped {
					t.Errorf("status = %s", o.Status)
				}
			}},
		{Name: "shipping again is a no-op", Given: []any{placed(), confirmed, shipped}, When: ship},
		{Name: "pending order", Given: []any{placed()}, When: ship, WantErr: domain.ErrIllegalState},
		{Name: "cancelled order", Given: []any{placed(), confirmed, cancelled}, When: ship, WantErr: domain.ErrIllegalState},
		{Name: "rejected order", Given: []any{placed(), rejected}, When: ship, WantErr: domain.ErrIllegalState},
		{Name: "unknown order", When: ship, WantErr: domain.ErrNotFound},
	})
}

func TestEventsRoundTripThroughRegistry(t *testing.T) {
	aggtest.RoundTrip(t, order.RegisterEvents, placed(), confirmed, rejected, cancelled, shipped)
}

func TestPlacedJSONNames(t *testing.T) {
	r := domain.NewRegistry()
	if err := order.RegisterEvents(r); err != nil {
		t.Fatal(err)
	}
	_, _, data, err := r.Encode(placed())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"order_id"`, `"saga_id"`, `"customer_id"`, `"items"`, `"sku"`, `"quantity"`, `"unit_price_cents"`,
		`"currency":"USD"`, `"recipient":{"name":"Ada L."}`, `"destination"`, `"line1"`, `"postal_code"`, `"country"`, `"total_cents"`, `"placed_at"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("OrderPlaced JSON %s lacks %s", data, key)
		}
	}
	// Version 2 splits the address: nothing is written twice.
	for _, key := range []string{"line2", `"shipping_address"`, `"name":"Ada L.","line1"`} {
		if strings.Contains(string(data), key) {
			t.Errorf("OrderPlaced JSON %s carries %s", data, key)
		}
	}
	var ve *domain.ValidationError
	if err := (order.PlaceOrder{}).Validate(); !errors.As(err, &ve) {
		t.Fatalf("Validate of an empty command = %v, want a *domain.ValidationError", err)
	}
}
