// Package inventory is the Stock aggregate: the quantity of one sku on hand
// and the part of it reserved for orders. There is one stock stream per sku.
// Beside it, the Reservation aggregate (one stream per order) records the
// answers to the reservation commands of an order as a whole.
//
// Stock never oversells: a reservation is granted only from the available
// quantity (on hand minus reserved), and each order holds at most one
// reservation per sku in its whole life.
package inventory

import (
	"fmt"

	"github.com/orderflow/orderflow/domain"
)

// StreamPrefix starts the name of every stock stream.
const StreamPrefix = "stock-"

// Stream is the name of the stream of the stock of sku.
func Stream(sku string) string { return StreamPrefix + sku }

// Limits on quantities.
const (
	MaxRestock = 1_000_000
	MaxReserve = 1_000_000
)

// Line asks for a quantity of one sku.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// Stock is the state of one sku, rebuilt from its events. The zero Stock is
// a sku that was never restocked: nothing on hand, nothing to reserve.
type Stock struct {
	SKU      string
	OnHand   int
	Reserved int
	// Reservations holds the quantity reserved per order id.
	Reservations map[string]int
	// settled holds the orders whose reservation was released or consumed;
	// they may not reserve this sku again. It grows with every order of
	// the sku (settled.go keeps it compact).
	settled settledOrders
	// settledUnknownUpTo is the version up to which settled is incomplete:
	// a Stock restored from a snapshot, which leaves the settled orders
	// out, holds only those settled by the events applied after it (0: a
	// Stock read from its first event knows them all). See
	// docs/adr/0159-settled-orders-looked-up-instead-of-snapshotted.md.
	settledUnknownUpTo int64
}

// Available is the quantity that can still be reserved.
func (s *Stock) Available() int { return s.OnHand - s.Reserved }

// Apply records one past event. It never validates: events are facts.
// Events of other types are ignored.
func (s *Stock) Apply(event any) {
	switch e := event.(type) {
	case StockRestocked:
		s.SKU = e.SKU
		s.OnHand += e.Quantity
	case StockReserved:
		if s.Reservations == nil {
			s.Reservations = make(map[string]int)
		}
		s.Reservations[e.OrderID] = e.Quantity
		s.Reserved += e.Quantity
	case StockReleased:
		s.Reserved -= e.Quantity
		s.settle(e.OrderID)
	case StockConsumed:
		s.Reserved -= e.Quantity
		s.OnHand -= e.Quantity
		s.settle(e.OrderID)
	}
}

func (s *Stock) settle(orderID string) {
	delete(s.Reservations, orderID)
	s.settled.add(orderID)
}

// Restock decides to add quantity (1..MaxRestock) to the stock of sku; the
// first restock creates the stock.
func (s *Stock) Restock(sku string, quantity int) ([]any, error) {
	var v domain.ValidationError
	switch {
	case sku == "":
		v.Add("sku", "is required")
	case !domain.ValidExternalID(sku):
		v.Add("sku", domain.ExternalIDRule)
	case s.SKU != "" && s.SKU != sku:
		v.Add("sku", fmt.Sprintf("does not match the stock's sku %q", s.SKU))
	}
	if quantity < 1 || quantity > MaxRestock {
		v.Add("quantity", fmt.Sprintf("must be between 1 and %d", MaxRestock))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return []any{StockRestocked{SKU: sku, Quantity: quantity}}, nil
}

// Reserve decides to hold quantity for an order. A second reservation for
// an order that holds one changes nothing; an order whose reservation was
// released or consumed cannot reserve again. Asking for more than is
// available fails with domain.ErrInsufficientStock; a sku that was never
// restocked has nothing available.
func (s *Stock) Reserve(orderID string, quantity int) ([]any, error) {
	var v domain.ValidationError
	if !domain.ValidUUID(orderID) {
		v.Add("order_id", "must be a UUID")
	}
	if quantity < 1 || quantity > MaxReserve {
		v.Add("quantity", fmt.Sprintf("must be between 1 and %d", MaxReserve))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if _, ok := s.Reservations[orderID]; ok {
		return nil, nil
	}
	if s.settled.has(orderID) {
		return nil, domain.Refuse(domain.ErrIllegalState,
			"the reservation of sku %s for order %s was already released or consumed; it cannot be made again", s.SKU, orderID)
	}
	if quantity > s.Available() {
		if s.SKU == "" {
			// Never restocked: the state does not know the sku's name.
			return nil, domain.Refuse(domain.ErrInsufficientStock, "the sku was never restocked; %d requested", quantity)
		}
		return nil, domain.Refuse(domain.ErrInsufficientStock, "sku %s has %d available; %d requested", s.SKU, s.Available(), quantity)
	}
	return []any{StockReserved{SKU: s.SKU, OrderID: orderID, Quantity: quantity}}, nil
}

// Release decides to give an order's reservation back to the available
// stock. Without a reservation it changes nothing, so compensation can be
// repeated.
func (s *Stock) Release(orderID string) ([]any, error) {
	if !domain.ValidUUID(orderID) {
		return nil, invalid("order_id", "must be a UUID")
	}
	q, ok := s.Reservations[orderID]
	if !ok {
		return nil, nil
	}
	return []any{StockReleased{SKU: s.SKU, OrderID: orderID, Quantity: q}}, nil
}

// Consume decides that an order's reservation left the warehouse: on hand
// and reserved both drop by it. Without a reservation it changes nothing.
func (s *Stock) Consume(orderID string) ([]any, error) {
	if !domain.ValidUUID(orderID) {
		return nil, invalid("order_id", "must be a UUID")
	}
	q, ok := s.Reservations[orderID]
	if !ok {
		return nil, nil
	}
	return []any{StockConsumed{SKU: s.SKU, OrderID: orderID, Quantity: q}}, nil
}

func invalid(field, message string) error {
	v := &domain.ValidationError{}
	v.Add(field, message)
	return v
}
