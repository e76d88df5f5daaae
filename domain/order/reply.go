package order

import (
	"errors"

	"github.com/orderflow/orderflow/domain"
)

// The decisions below take the commands a saga sends to an order, which
// must always be answered by an event: the saga waits for the event
// caused by its command, and silence would only end in its timeout. Each
// wraps the plain decision of the same name:
//   - the events of the plain decision when it raises any;
//   - when the order already is what the command asks for (a later
//     attempt of a command that took effect), the event that says so,
//     raised again: OrderConfirmed, OrderRejected, OrderShipped;
//   - when the order's state refuses the command (or the order does not
//     exist), OrderCommandRejected, which changes nothing.
// Invalid input is still an error: no event can answer a command that
// names no order.

// ConfirmReply answers a confirm command for the order orderID.
func (o *Order) ConfirmReply(orderID, shipmentID string) ([]any, error) {
	evs, err := o.Confirm(shipmentID)
	return o.reply(orderID, evs, err, func() any { return OrderConfirmed{OrderID: o.ID, ShipmentID: o.ShipmentID} })
}

// RejectReply answers a reject command for the order orderID.
func (o *Order) RejectReply(orderID, reason string) ([]any, error) {
	evs, err := o.Reject(reason)
	return o.reply(orderID, evs, err, func() any { return OrderRejected{OrderID: o.ID, Reason: o.Reason} })
}

// CancelReply answers a cancel command for the order orderID. An order
// that is cancelled already is answered with OrderCommandRejected, not
// with OrderCancelled again: a customer's cancel is itself an
// OrderCancelled that calls the order's saga off, and a second one must
// not look like another.
func (o *Order) CancelReply(orderID, reason string) ([]any, error) {
	evs, err := o.Cancel(reason)
	return o.reply(orderID, evs, err, nil)
}

// MarkShippedReply answers a mark-shipped command for the order orderID.
func (o *Order) MarkShippedReply(orderID string) ([]any, error) {
	evs, err := o.MarkShipped()
	return o.reply(orderID, evs, err, func() any { return OrderShipped{OrderID: o.ID, ShipmentID: o.ShipmentID} })
}

// reply turns the outcome of a plain decision into the answer: again
// builds the event raised again when the decision was a no-op.
func (o *Order) reply(orderID string, evs []any, err error, again func() any) ([]any, error) {
	var refusal *domain.Refusal
	switch {
	case errors.As(err, &refusal):
		return []any{OrderCommandRejected{OrderID: orderID, Status: string(o.Status), Reason: o.Reason, Detail: refusal.Detail}}, nil
	case err != nil:
		return nil, err
	case len(evs) > 0:
		return evs, nil
	case again != nil:
		return []any{again()}, nil
	}
	return nil, nil
}
