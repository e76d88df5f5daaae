package order_test

import (
	"testing"

	"github.com/orderflow/orderflow/domain/aggtest"
	"github.com/orderflow/orderflow/domain/order"
)

func refusedWith(status order.Status, reason, detail string) order.OrderCommandRejected {
	return order.OrderCommandRejected{OrderID: orderID, Status: string(status), Reason: reason, Detail: detail}
}

func TestReplies(t *testing.T) {
	confirm := func(id string) func(*order.Order) ([]any, error) {
		return func(o *order.Order) ([]any, error) { return o.ConfirmReply(orderID, id) }
	}
	reject := func(reason string) func(*order.Order) ([]any, error) {
		return func(o *order.Order) ([]any, error) { return o.RejectReply(orderID, reason) }
	}
	cancel := func(reason string) func(*order.Order) ([]any, error) {
		return func(o *order.Order) ([]any, error) { return o.CancelReply(orderID, reason) }
	}
	ship := func(o *order.Order) ([]any, error) { return o.MarkShippedReply(orderID) }
	const notFound = "the order does not exist"
	aggtest.Run(t, []orderCase{
		// The plain decision's events when it raises any.
		{Name: "confirm a pending order", Given: []any{placed()}, When: confirm(shipmentID), Then: []any{confirmed}, Check: status(order.StatusConfirmed)},
		{Name: "reject a pending order", Given: []any{placed()}, When: reject(order.ReasonInsufficientStock), Then: []any{rejected}, Check: status(order.StatusRejected)},
		{Name: "cancel a confirmed order", Given: []any{placed(), confirmed}, When: cancel(order.ReasonCancelledByCustomer), Then: []any{cancelled}, Check: status(order.StatusCancelled)},
		{Name: "mark a confirmed order shipped", Given: []any{placed(), confirmed}, When: ship, Then: []any{shipped}, Check: status(order.StatusShipped)},

		// Already done: the fact is raised again and changes nothing.
		{Name: "confirm again", Given: []any{placed(), confirmed}, When: confirm(shipmentID), Then: []any{confirmed}, Check: status(order.StatusConfirmed)},
		{Name: "reject again keeps the first reason", Given: []any{placed(), rejected}, When: reject(order.ReasonStepTimeout), Then: []any{rejected},
			Check: func(t testing.TB, o *order.Order) {
				t.Helper()
				if o.Status != order.StatusRejected || o.Reason != order.ReasonInsufficientStock {
					t.Errorf("order %s (%s), want rejected for insufficient_stock", o.Status, o.Reason)
				}
			}},
		{Name: "mark shipped again", Given: []any{placed(), confirmed, shipped}, When: ship, Then: []any{shipped}, Check: status(order.StatusShipped)},

		// Refused by the state: OrderCommandRejected, nothing changes.
		{Name: "confirm a cancelled order", Given: []any{placed(), cancelled}, When: confirm(shipmentID),
			Then:  []any{refusedWith(order.StatusCancelled, order.ReasonCancelledByCustomer, "order "+orderID+" is cancelled; only a pending order can be confirmed")},
			Check: status(order.StatusCancelled)},
		{Name: "confirm with another shipment", Given: []any{placed(), confirmed}, When: confirm(otherID),
			Then:  []any{refusedWith(order.StatusConfirmed, "", "order "+orderID+" is confirmed; only a pending order can be confirmed")},
			Check: status(order.StatusConfirmed)},
		{Name: "reject a cancelled order", Given: []any{placed(), cancelled}, When: reject(order.ReasonStepTimeout),
			Then:  []any{refusedWith(order.StatusCancelled, order.ReasonCancelledByCustomer, "order "+orderID+" is cancelled; only a pending or confirmed order can be rejected")},
			Check: status(order.StatusCancelled)},
		{Name: "cancel a cancelled order", Given: []any{placed(), cancelled}, When: cancel(order.ReasonStepTimeout),
			Then:  []any{refusedWith(order.StatusCancelled, order.ReasonCancelledByCustomer, "order "+orderID+" is cancelled; only a pending or confirmed order can be cancelled")},
			Check: status(order.StatusCancelled)},
		{Name: "mark a cancelled order shipped", Given: []any{placed(), cancelled}, When: ship,
			Then:  []any{refusedWith(order.StatusCancelled, order.ReasonCancelledByCustomer, "order "+orderID+" is cancelled; only a confirmed order can be marked as shipped")},
			Check: status(order.StatusCancelled)},
		{Name: "confirm an order never placed", When: confirm(shipmentID), Then: []any{refusedWith("", "", notFound)}, Check: status("")},
		{Name: "mark an order never placed shipped", When: ship, Then: []any{refusedWith("", "", notFound)}, Check: status("")},

		// Invalid input stays an error.
		{Name: "confirm with a bad shipment id", Given: []any{placed()}, When: confirm("s-1"), WantFields: []string{"shipment_id"}},
		{Name: "reject for an unknown reason", Given: []any{placed()}, When: reject("bored"), WantFields: []string{"reason"}},
		{Name: "cancel for an unknown reason", Given: []any{placed()}, When: cancel(""), WantFields: []string{"reason"}},
	})
}

func TestCommandRejectedRoundTripsAndChangesNothing(t *testing.T) {
	ev := refusedWith(order.StatusCancelled, order.ReasonCancelledByCustomer, "no")
	aggtest.RoundTrip(t, order.RegisterEvents, ev)
	o := aggtest.State[order.Order](placed(), cancelled, ev)
	if o.Status != order.StatusCancelled || o.Reason != order.ReasonCancelledByCustomer {
		t.Errorf("order %s (%s) after OrderCommandRejected, want it unchanged", o.Status, o.Reason)
	}
}

// status checks the order's status after the decision's events.
func status(want order.Status) func(testing.TB, *order.Order) {
	return func(t testing.TB, o *order.Order) {
		t.Helper()
		if o.Status != want {
			t.Errorf("status = %q, want %q", o.Status, want)
		}
	}
}
