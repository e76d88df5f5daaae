package commands

import (
	"context"

	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

// Shipping handles the commands of the shipping context.
type Shipping struct {
	x      *executor
	served shipping.Destinations
}

// NewShipping returns the shipment command handlers writing to store. It
// panics when cfg is invalid; check cfg.Validate first to report that as an
// error.
func NewShipping(store EventStore, cfg Config) *Shipping {
	x := newExecutor(store, cfg)
	served, _ := cfg.destinations() // newExecutor validated cfg
	return &Shipping{x: x, served: served}
}

// ScheduleShipment is the command that creates a shipment for an order.
type ScheduleShipment struct {
	ShipmentID string
	OrderID    string
	Items      []order.Item
	Address    order.Address
}

// Schedule creates a shipment, or refuses it (ShipmentRefused, reason
// destination_not_served) when the destination country is not served.
// Scheduling it again for the same order changes nothing.
func (h *Shipping) Schedule(ctx context.Context, m Meta, c ScheduleShipment) (Result, error) {
	cmd := shipping.ScheduleShipment{ShipmentID: c.ShipmentID, OrderID: c.OrderID, Items: c.Items, Address: c.Address}
	return h.run(ctx, m, c.ShipmentID, func(s *shipping.Shipment) ([]any, error) {
		return s.Schedule(cmd, h.served)
	})
}

// Refuse records that a shipment will not be made; reason is
// destination_not_served.
func (h *Shipping) Refuse(ctx context.Context, m Meta, shipmentID, orderID, reason string) (Result, error) {
	return h.run(ctx, m, shipmentID, func(s *shipping.Shipment) ([]any, error) {
		return s.Refuse(shipmentID, orderID, reason)
	})
}

// Cancel cancels a scheduled shipment. Cancelling a cancelled, refused or
// unknown shipment changes nothing (Result.Version 0 for an unknown one); a
// dispatched one fails with domain.ErrIllegalState.
func (h *Shipping) Cancel(ctx context.Context, m Meta, shipmentID, reason string) (Result, error) {
	return h.run(ctx, m, shipmentID, func(s *shipping.Shipment) ([]any, error) { return s.Cancel(reason) })
}

// Dispatch records that a scheduled shipment left the warehouse; any other
// shipment fails with domain.ErrIllegalState, an unknown one with
// domain.ErrNotFound.
func (h *Shipping) Dispatch(ctx context.Context, m Meta, shipmentID string) (Result, error) {
	return h.run(ctx, m, shipmentID, (*shipping.Shipment).Dispatch)
}

func (h *Shipping) run(ctx context.Context, m Meta, shipmentID string, decide func(*shipping.Shipment) ([]any, error)) (Result, error) {
	m, v := prepare(m)
	checkID(v, "shipment_id", shipmentID)
	return run(ctx, h.x, m, v, shipping.Stream(shipmentID), decide)
}

// Stats returns the counts of the handlers' work (conflicts, retries,
// batches), shared with the other handlers given the same Config.Stats.
func (h *Shipping) Stats() StatsSnapshot { return h.x.stats.Snapshot() }
