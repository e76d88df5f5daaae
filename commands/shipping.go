package commands

import (
	"context"
	"fmt"

	"github.com/orderflow/orderflow/domain"
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
// It travels as schedule_shipment: the items' unit prices may be left out.
type ScheduleShipment struct {
	ShipmentID string        `json:"shipment_id"`
	OrderID    string        `json:"order_id"`
	Items      []order.Item  `json:"items"`
	Address    order.Address `json:"address"`
}

// Schedule creates a shipment, or refuses it (ShipmentRefused, reason
// destination_not_served) when the destination country is not served.
// Scheduling it again for the same order changes nothing.
func (h *Shipping) Schedule(ctx context.Context, m Meta, c ScheduleShipment) (Result, error) {
	return h.x.single(ctx, KindScheduleShipment, m, c, func(ctx context.Context, m Meta) (Result, error) {
		cmd := shipping.ScheduleShipment{ShipmentID: c.ShipmentID, OrderID: c.OrderID, Items: c.Items, Address: c.Address}
		return h.run(ctx, m, c.ShipmentID, func(s *shipping.Shipment) ([]any, error) {
			return s.Schedule(cmd, h.served)
		})
	})
}

// RefuseShipment names the arguments of Refuse for hooks.
type RefuseShipment struct {
	ShipmentID string
	OrderID    string
	Reason     string
}

// Refuse records that a shipment will not be made; reason is
// destination_not_served.
func (h *Shipping) Refuse(ctx context.Context, m Meta, shipmentID, orderID, reason string) (Result, error) {
	c := RefuseShipment{ShipmentID: shipmentID, OrderID: orderID, Reason: reason}
	return h.x.single(ctx, KindRefuseShipment, m, c, func(ctx context.Context, m Meta) (Result, error) {
		return h.run(ctx, m, shipmentID, func(s *shipping.Shipment) ([]any, error) {
			return s.Refuse(shipmentID, orderID, reason)
		})
	})
}

// Cancel cancels a scheduled shipment. Cancelling a cancelled, refused or
// unknown shipment changes nothing (Result.Version 0 for an unknown one); a
// dispatched one fails with domain.ErrIllegalState.
func (h *Shipping) Cancel(ctx context.Context, m Meta, shipmentID, reason string) (Result, error) {
	c := CancelShipment{ShipmentID: shipmentID, Reason: reason}
	return h.x.single(ctx, KindCancelShipment, m, c, func(ctx context.Context, m Meta) (Result, error) {
		return h.run(ctx, m, shipmentID, func(s *shipping.Shipment) ([]any, error) { return s.Cancel(reason) })
	})
}

// DispatchShipment names the argument of Dispatch for hooks.
type DispatchShipment struct {
	ShipmentID string
}

// Dispatch records that a scheduled shipment left the warehouse; any other
// shipment fails with domain.ErrIllegalState, an unknown one with
// domain.ErrNotFound.
func (h *Shipping) Dispatch(ctx context.Context, m Meta, shipmentID string) (Result, error) {
	return h.x.single(ctx, KindDispatchShipment, m, DispatchShipment{ShipmentID: shipmentID}, func(ctx context.Context, m Meta) (Result, error) {
		return h.run(ctx, m, shipmentID, (*shipping.Shipment).Dispatch)
	})
}

// ScheduleShipment runs the schedule_shipment command, always answered
// on the shipment's stream: ShipmentScheduled, ShipmentRefused for a
// destination not served (both raised again for a shipment already
// scheduled or refused for the same order), or ShipmentCommandRejected
// for a shipment that is cancelled, dispatched or another order's.
func (h *Shipping) ScheduleShipment(ctx context.Context, m Meta, c ScheduleShipment) (Outcome, error) {
	cmd := shipping.ScheduleShipment{ShipmentID: c.ShipmentID, OrderID: c.OrderID, Items: c.Items, Address: c.Address}
	return h.answer(ctx, KindScheduleShipment, m, c, c.ShipmentID, func(s *shipping.Shipment) ([]any, error) {
		return s.ScheduleReply(cmd, h.served)
	})
}

// CancelShipment runs the cancel_shipment command, a compensation, always
// answered on the shipment's stream: ShipmentCancelled, with a note when
// there was nothing to call off (the shipment can then never be
// scheduled), or ShipmentCommandRejected for a dispatched shipment.
func (h *Shipping) CancelShipment(ctx context.Context, m Meta, c CancelShipment) (Outcome, error) {
	return h.answer(ctx, KindCancelShipment, m, c, c.ShipmentID, func(s *shipping.Shipment) ([]any, error) {
		return s.CancelReply(c.ShipmentID, c.Reason)
	})
}

func (h *Shipping) answer(ctx context.Context, kind Kind, m Meta, cmd any, shipmentID string, decide func(*shipping.Shipment) ([]any, error)) (Outcome, error) {
	return answer(ctx, h.x, kind, m, cmd, "shipment_id", shipmentID, shipping.Stream(shipmentID), decide)
}

// Load returns the current state of a shipment and its stream version, or
// an error wrapping domain.ErrNotFound when the shipment does not exist.
func (h *Shipping) Load(ctx context.Context, shipmentID string) (*shipping.Shipment, int64, error) {
	if !domain.ValidUUID(shipmentID) {
		return nil, 0, fmt.Errorf("load shipment %q: %w", shipmentID, domain.ErrNotFound)
	}
	s := new(shipping.Shipment)
	version, _, err := readInto(ctx, h.x.store, shipping.Stream(shipmentID), s, 0, nil)
	if err != nil {
		return nil, 0, err
	}
	if s.Status == "" {
		return nil, 0, fmt.Errorf("load shipment %s: %w", shipmentID, domain.ErrNotFound)
	}
	return s, version, nil
}

func (h *Shipping) run(ctx context.Context, m Meta, shipmentID string, decide func(*shipping.Shipment) ([]any, error)) (Result, error) {
	m, v := prepare(m)
	checkID(v, "shipment_id", shipmentID)
	return run(ctx, h.x, m, v, shipping.Stream(shipmentID), decide)
}

// Stats returns the counts of the handlers' work (conflicts, retries,
// batches), shared with the other handlers given the same Config.Stats.
func (h *Shipping) Stats() StatsSnapshot { return h.x.stats.Snapshot() }
