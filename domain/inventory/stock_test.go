package inventory_test

import (
	"reflect"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/aggtest"
	"github.com/orderflow/orderflow/domain/inventory"
)

const (
	orderA = "0b5e8a4c-1f7e-4f51-9d0c-2f4e5a6b7c8d"
	orderB = "5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	sku    = "SKU-1"
)

type stockCase = aggtest.Case[inventory.Stock]

func restocked(q int) inventory.StockRestocked {
	return inventory.StockRestocked{SKU: sku, Quantity: q}
}
func reserved(o string, q int) inventory.StockReserved {
	return inventory.StockReserved{SKU: sku, OrderID: o, Quantity: q}
}
func released(o string, q int) inventory.StockReleased {
	return inventory.StockReleased{SKU: sku, OrderID: o, Quantity: q}
}
func consumed(o string, q int) inventory.StockConsumed {
	return inventory.StockConsumed{SKU: sku, OrderID: o, Quantity: q}
}

// levels checks on hand, reserved and available.
func levels(onHand, reserved, available int) func(testing.TB, *inventory.Stock) {
	return func(t testing.TB, s *inventory.Stock) {
		t.Helper()
		if s.OnHand != onHand || s.Reserved != reserved || s.Available() != available {
			t.Errorf("on hand %d reserved %d available %d, want %d %d %d", s.OnHand, s.Reserved, s.Available(), onHand, reserved, available)
		}
	}
}

func TestRestock(t *testing.T) {
	restock := func(s string, q int) func(*inventory.Stock) ([]any, error) {
		return func(st *inventory.Stock) ([]any, error) { return st.Restock(s, q) }
	}
	aggtest.Run(t, []stockCase{
		{Name: "first restock creates the stock", When: restock(sku, 50), Then: []any{restocked(50)}, Check: levels(50, 0, 50)},
		{Name: "restock adds to on hand", Given: []any{restocked(5), reserved(orderA, 3)}, When: restock(sku, 1_000_000),
			Then: []any{restocked(1_000_000)}, Check: levels(1_000_005, 3, 1_000_002)},
		{Name: "zero", When: restock(sku, 0), WantFields: []string{"quantity"}},
		{Name: "above the maximum", When: restock(sku, 1_000_001), WantFields: []string{"quantity"}},
		{Name: "bad sku and quantity", When: restock("no spaces", -3), WantFields: []string{"sku", "quantity"}},
		{Name: "missing sku", When: restock("", 1), WantFields: []string{"sku"}},
		{Name: "another sku's stream", Given: []any{restocked(1)}, When: restock("SKU-2", 1), WantFields: []string{"sku"}},
	})
}

func TestReserve(t *testing.T) {
	reserve := func(o string, q int) func(*inventory.Stock) ([]any, error) {
		return func(st *inventory.Stock) ([]any, error) { return st.Reserve(o, q) }
	}
	aggtest.Run(t, []stockCase{
		{Name: "reserve from available", Given: []any{restocked(10)}, When: reserve(orderA, 4), Then: []any{reserved(orderA, 4)}, Check: levels(10, 4, 6)},
		{Name: "reserve exactly the rest", Given: []any{restocked(10), reserved(orderA, 4)}, When: reserve(orderB, 6),
			Then: []any{reserved(orderB, 6)}, Check: levels(10, 10, 0)},
		{Name: "more than available", Given: []any{restocked(10), reserved(orderA, 4)}, When: reserve(orderB, 7), WantErr: domain.ErrInsufficientStock},
		{Name: "never restocked sku has nothing available", When: reserve(orderA, 1), WantErr: domain.ErrInsufficientStock},
		{Name: "consumed stock is gone", Given: []any{restocked(3), reserved(orderA, 3), consumed(orderA, 3)}, When: reserve(orderB, 1), WantErr: domain.ErrInsufficientStock},
		{Name: "released stock is available again", Given: []any{restocked(3), reserved(orderA, 3), released(orderA, 3)}, When: reserve(orderB, 3),
			Then: []any{reserved(orderB, 3)}, Check: levels(3, 3, 0)},
		{Name: "second reservation for the same order is a no-op", Given: []any{restocked(10), reserved(orderA, 4)}, When: reserve(orderA, 9), Check: levels(10, 4, 6)},
		{Name: "an order whose reservation was released cannot reserve again", Given: []any{restocked(10), reserved(orderA, 4), released(orderA, 4)},
			When: reserve(orderA, 4), WantErr: domain.ErrIllegalState},
		{Name: "an order whose reservation was consumed cannot reserve again", Given: []any{restocked(10), reserved(orderA, 4), consumed(orderA, 4)},
			When: reserve(orderA, 4), WantErr: domain.ErrIllegalState},
		{Name: "bad order id and quantity", Given: []any{restocked(10)}, When: reserve("order-1", 0), WantFields: []string{"order_id", "quantity"}},
		{Name: "quantity above the maximum", Given: []any{restocked(10)}, When: reserve(orderA, inventory.MaxReserve+1), WantFields: []string{"quantity"}},
	})
}

func TestRelease(t *testing.T) {
	release := func(o string) func(*inventory.Stock) ([]any, error) {
		return func(st *inventory.Stock) ([]any, error) { return st.Release(o) }
	}
	aggtest.Run(t, []stockCase{
		{Name: "release the order's reservation", Given: []any{restocked(10), reserved(orderA, 4), reserved(orderB, 1)}, When: release(orderA),
			Then: []any{released(orderA, 4)}, Check: levels(10, 1, 9)},
		{Name: "without a reservation it is a no-op", Given: []any{restocked(10), reserved(orderB, 1)}, When: release(orderA), Check: levels(10, 1, 9)},
		{Name: "releasing twice is a no-op", Given: []any{restocked(10), reserved(orderA, 4), released(orderA, 4)}, When: release(orderA), Check: levels(10, 0, 10)},
		{Name: "releasing a consumed reservation is a no-op", Given: []any{restocked(10), reserved(orderA, 4), consumed(orderA, 4)}, When: release(orderA), Check: levels(6, 0, 6)},
		{Name: "unknown sku is a no-op", When: release(orderA), Check: levels(0, 0, 0)},
		{Name: "bad order id", When: release("x"), WantFields: []string{"order_id"}},
	})
}

func TestConsume(t *testing.T) {
	consume := func(o string) func(*inventory.Stock) ([]any, error) {
		return func(st *inventory.Stock) ([]any, error) { return st.Consume(o) }
	}
	aggtest.Run(t, []stockCase{
		{Name: "consume drops on hand and reserved", Given: []any{restocked(10), reserved(orderA, 4), reserved(orderB, 1)}, When: consume(orderA),
			Then: []any{consumed(orderA, 4)}, Check: levels(6, 1, 5)},
		{Name: "without a reservation it is a no-op", Given: []any{restocked(10)}, When: consume(orderA), Check: levels(10, 0, 10)},
		{Name: "consuming twice is a no-op", Given: []any{restocked(10), reserved(orderA, 4), consumed(orderA, 4)}, When: consume(orderA), Check: levels(6, 0, 6)},
		{Name: "consuming a released reservation is a no-op", Given: []any{restocked(10), reserved(orderA, 4), released(orderA, 4)}, When: consume(orderA), Check: levels(10, 0, 10)},
		{Name: "bad order id", When: consume(""), WantFields: []string{"order_id"}},
	})
}

func TestReservationsState(t *testing.T) {
	s := aggtest.State[inventory.Stock](restocked(10), reserved(orderA, 4), reserved(orderB, 2), released(orderB, 2))
	if want := map[string]int{orderA: 4}; !reflect.DeepEqual(s.Reservations, want) {
		t.Errorf("reservations = %v, want %v", s.Reservations, want)
	}
	if s.SKU != sku {
		t.Errorf("sku = %q, want %q", s.SKU, sku)
	}
}

func TestEventsRoundTripThroughRegistry(t *testing.T) {
	aggtest.RoundTrip(t, inventory.RegisterEvents, restocked(1), reserved(orderA, 2), released(orderA, 2), consumed(orderB, 3))
}
