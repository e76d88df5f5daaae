package commands

import (
	"context"
	"fmt"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
)

// Orders handles the commands of the orders context.
type Orders struct {
	x *executor
}

// NewOrders returns the order command handlers writing to store. It panics
// when cfg is invalid; check cfg.Validate first to report that as an error.
func NewOrders(store EventStore, cfg Config) *Orders {
	return &Orders{x: newExecutor(store, cfg)}
}

// PlaceOrder is the command that creates an order; its ids are chosen by the
// caller (UUIDs).
type PlaceOrder struct {
	OrderID    string
	SagaID     string
	CustomerID string
	Items      []order.Item
	// Currency is the ISO 4217 code of the prices; empty means
	// order.DefaultCurrency. It is left out of the command's JSON when
	// empty, so that the command reads the same to a receiver that
	// predates it.
	Currency string `json:",omitempty"`
	Address  order.Address
}

// Place creates an order, pending, placed at m.Now. Every invalid field is
// reported in one *domain.ValidationError, with the paths of the HTTP
// request (customer_id, items[0].quantity, shipping_address.country, ...).
func (h *Orders) Place(ctx context.Context, m Meta, c PlaceOrder) (Result, error) {
	return h.x.single(ctx, KindPlaceOrder, m, c, func(ctx context.Context, m Meta) (Result, error) { return h.place(ctx, m, c) })
}

func (h *Orders) place(ctx context.Context, m Meta, c PlaceOrder) (Result, error) {
	m, v := prepare(m)
	checkID(v, "order_id", c.OrderID)
	cmd := order.PlaceOrder{
		OrderID:    c.OrderID,
		SagaID:     c.SagaID,
		CustomerID: c.CustomerID,
		Items:      c.Items,
		Currency:   c.Currency,
		Address:    c.Address,
		At:         m.Now,
	}
	return run(ctx, h.x, m, v, order.Stream(c.OrderID), func(o *order.Order) ([]any, error) {
		return o.Place(cmd)
	})
}

// Confirm confirms a pending order whose shipment is scheduled.
func (h *Orders) Confirm(ctx context.Context, m Meta, orderID, shipmentID string) (Result, error) {
	return h.x.single(ctx, KindConfirmOrder, m, ConfirmOrder{OrderID: orderID, ShipmentID: shipmentID}, func(ctx context.Context, m Meta) (Result, error) {
		return h.run(ctx, m, orderID, func(o *order.Order) ([]any, error) { return o.Confirm(shipmentID) })
	})
}

// Reject rejects a pending order; reason is one of the order.Reason
// constants. Rejecting a rejected order changes nothing.
func (h *Orders) Reject(ctx context.Context, m Meta, orderID, reason string) (Result, error) {
	return h.x.single(ctx, KindRejectOrder, m, RejectOrder{OrderID: orderID, Reason: reason}, func(ctx context.Context, m Meta) (Result, error) {
		return h.run(ctx, m, orderID, func(o *order.Order) ([]any, error) { return o.Reject(reason) })
	})
}

// Cancel cancels a pending or confirmed order; reason is one of the
// order.Reason constants. A shipped, rejected or cancelled order fails with
// domain.ErrIllegalState. It is the customer's cancel; a saga's is
// CancelOrder.
func (h *Orders) Cancel(ctx context.Context, m Meta, orderID, reason string) (Result, error) {
	return h.x.single(ctx, KindCancelOrder, m, CancelOrder{OrderID: orderID, Reason: reason}, func(ctx context.Context, m Meta) (Result, error) {
		return h.run(ctx, m, orderID, func(o *order.Order) ([]any, error) { return o.Cancel(reason) })
	})
}

// MarkShipped records that a confirmed order's shipment was dispatched.
func (h *Orders) MarkShipped(ctx context.Context, m Meta, orderID string) (Result, error) {
	return h.x.single(ctx, KindMarkOrderShipped, m, MarkOrderShipped{OrderID: orderID}, func(ctx context.Context, m Meta) (Result, error) {
		return h.run(ctx, m, orderID, (*order.Order).MarkShipped)
	})
}

// The traveling commands below are the ones a saga sends. Unlike the
// methods above, which return a refusal to their caller, they answer every
// outcome with an event on the order's stream, caused by the command (see
// order.Order.ConfirmReply): the saga learns the outcome from that event.
// Only invalid input and failures of the store are errors.

// ConfirmOrder runs the confirm_order command: OrderConfirmed, or
// OrderCommandRejected when the order is not pending.
func (h *Orders) ConfirmOrder(ctx context.Context, m Meta, c ConfirmOrder) (Outcome, error) {
	return h.answer(ctx, KindConfirmOrder, m, c, c.OrderID, func(o *order.Order) ([]any, error) { return o.ConfirmReply(c.OrderID, c.ShipmentID) })
}

// RejectOrder runs the reject_order command: OrderRejected, or
// OrderCommandRejected when the order is no longer pending.
func (h *Orders) RejectOrder(ctx context.Context, m Meta, c RejectOrder) (Outcome, error) {
	return h.answer(ctx, KindRejectOrder, m, c, c.OrderID, func(o *order.Order) ([]any, error) { return o.RejectReply(c.OrderID, c.Reason) })
}

// CancelOrder runs the cancel_order command: OrderCancelled, or
// OrderCommandRejected when the order is shipped, rejected or cancelled
// already.
func (h *Orders) CancelOrder(ctx context.Context, m Meta, c CancelOrder) (Outcome, error) {
	return h.answer(ctx, KindCancelOrder, m, c, c.OrderID, func(o *order.Order) ([]any, error) { return o.CancelReply(c.OrderID, c.Reason) })
}

// MarkOrderShipped runs the mark_order_shipped command: OrderShipped, or
// OrderCommandRejected when the order is not confirmed.
func (h *Orders) MarkOrderShipped(ctx context.Context, m Meta, c MarkOrderShipped) (Outcome, error) {
	return h.answer(ctx, KindMarkOrderShipped, m, c, c.OrderID, func(o *order.Order) ([]any, error) { return o.MarkShippedReply(c.OrderID) })
}

func (h *Orders) answer(ctx context.Context, kind Kind, m Meta, cmd any, orderID string, decide func(*order.Order) ([]any, error)) (Outcome, error) {
	return answer(ctx, h.x, kind, m, cmd, "order_id", orderID, order.Stream(orderID), decide)
}

// Load returns the current state of an order and its stream version, or an
// error wrapping domain.ErrNotFound when the order does not exist.
func (h *Orders) Load(ctx context.Context, orderID string) (*order.Order, int64, error) {
	if !domain.ValidUUID(orderID) {
		return nil, 0, fmt.Errorf("load order %q: %w", orderID, domain.ErrNotFound)
	}
	o := new(order.Order)
	version, _, err := readInto(ctx, h.x.store, order.Stream(orderID), o, 0, nil)
	if err != nil {
		return nil, 0, err
	}
	if version == 0 {
		return nil, 0, fmt.Errorf("load order %s: %w", orderID, domain.ErrNotFound)
	}
	return o, version, nil
}

func (h *Orders) run(ctx context.Context, m Meta, orderID string, decide func(*order.Order) ([]any, error)) (Result, error) {
	m, v := prepare(m)
	checkID(v, "order_id", orderID)
	return run(ctx, h.x, m, v, order.Stream(orderID), decide)
}

// Stats returns the counts of the handlers' work (conflicts, retries,
// batches), shared with the other handlers given the same Config.Stats.
func (h *Orders) Stats() StatsSnapshot { return h.x.stats.Snapshot() }
