// Package events assembles the event registry of every context (orders,
// stock, shipments), for the code that reads or writes their streams.
package events

import (
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

// NewRegistry returns a registry that knows every event of the order, stock
// and shipment aggregates.
func NewRegistry() *domain.Registry {
	r := domain.NewRegistry()
	for _, register := range []func(*domain.Registry) error{
		order.RegisterEvents,
		inventory.RegisterEvents,
		shipping.RegisterEvents,
	} {
		if err := register(r); err != nil {
			// The event types are fixed at compile time; a clash is a
			// programming error that every test would hit.
			panic(err)
		}
	}
	return r
}
