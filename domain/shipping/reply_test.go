package shipping_test

import (
	"testing"

	"github.com/orderflow/orderflow/domain/aggtest"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

func TestScheduleReply(t *testing.T) {
	d := served(t)
	schedule := func(c shipping.ScheduleShipment) func(*shipping.Shipment) ([]any, error) {
		return func(s *shipping.Shipment) ([]any, error) { return s.ScheduleReply(c, d) }
	}
	other := command("US")
	other.OrderID = otherID
	bad := command("US")
	bad.ShipmentID = "s-1"
	tombstone := shipping.ShipmentCancelled{ShipmentID: shipmentID, Reason: order.ReasonStepTimeout, Note: shipping.NoteNeverScheduled}
	rejected := func(st shipping.Status, forOrder, detail string) shipping.ShipmentCommandRejected {
		return shipping.ShipmentCommandRejected{ShipmentID: shipmentID, OrderID: forOrder, Status: string(st), Detail: detail}
	}
	aggtest.Run(t, []shipmentCase{
		{Name: "served destination", When: schedule(command("US")), Then: []any{scheduled}, Check: status(shipping.StatusScheduled)},
		{Name: "unserved destination", When: schedule(command("BR")), Then: []any{refusedFor(command("BR"))}, Check: status(shipping.StatusRefused)},
		{Name: "scheduled again for the same order", Given: []any{scheduled}, When: schedule(command("US")), Then: []any{scheduled}, Check: status(shipping.StatusScheduled)},
		{Name: "refused again for the same order", Given: []any{refused}, When: schedule(command("BR")), Then: []any{refused}, Check: status(shipping.StatusRefused)},
		{Name: "cancelled shipment", Given: []any{scheduled, cancelled}, When: schedule(command("US")),
			Then:  []any{rejected(shipping.StatusCancelled, orderID, "shipment "+shipmentID+" already exists for order "+orderID+" and is cancelled")},
			Check: status(shipping.StatusCancelled)},
		{Name: "cancelled before it was scheduled", Given: []any{tombstone}, When: schedule(command("US")),
			Then:  []any{rejected(shipping.StatusCancelled, orderID, "shipment "+shipmentID+" was cancelled before it was scheduled")},
			Check: status(shipping.StatusCancelled)},
		{Name: "another order's shipment", Given: []any{scheduled}, When: schedule(other),
			Then:  []any{rejected(shipping.StatusScheduled, otherID, "shipment "+shipmentID+" already exists for order "+orderID+" and is scheduled")},
			Check: status(shipping.StatusScheduled)},
		{Name: "invalid input stays an error", When: schedule(bad), WantFields: []string{"shipment_id"}},
	})
}

func TestCancelReply(t *testing.T) {
	const reason = order.ReasonCancelledByCustomer
	cancel := func(id, r string) func(*shipping.Shipment) ([]any, error) {
		return func(s *shipping.Shipment) ([]any, error) { return s.CancelReply(id, r) }
	}
	noted := func(forOrder, note string) shipping.ShipmentCancelled {
		return shipping.ShipmentCancelled{ShipmentID: shipmentID, OrderID: forOrder, Reason: reason, Note: note}
	}
	aggtest.Run(t, []shipmentCase{
		{Name: "scheduled shipment is cancelled", Given: []any{scheduled}, When: cancel(shipmentID, reason),
			Then: []any{shipping.ShipmentCancelled{ShipmentID: shipmentID, OrderID: orderID, Reason: reason}}, Check: status(shipping.StatusCancelled)},
		{Name: "cancelled shipment answers with a note and keeps its reason", Given: []any{scheduled, cancelled}, When: cancel(shipmentID, reason),
			Then: []any{noted(orderID, shipping.NoteAlreadyCancelled)},
			Check: func(t testing.TB, s *shipping.Shipment) {
				t.Helper()
				if s.Status != shipping.StatusCancelled || s.Reason != order.ReasonStepTimeout {
					t.Errorf("shipment %s (%s), want cancelled for step_timeout", s.Status, s.Reason)
				}
			}},
		{Name: "refused shipment answers with a note and stays refused", Given: []any{refused}, When: cancel(shipmentID, reason),
			Then: []any{noted(orderID, shipping.NoteRefused)}, Check: status(shipping.StatusRefused)},
		{Name: "unknown shipment is closed for good", When: cancel(shipmentID, reason),
			Then: []any{noted("", shipping.NoteNeverScheduled)},
			Check: func(t testing.TB, s *shipping.Shipment) {
				t.Helper()
				if s.Status != shipping.StatusCancelled || s.ID != shipmentID {
					t.Errorf("shipment %+v, want a cancelled shipment %s", s, shipmentID)
				}
			}},
		{Name: "dispatched shipment cannot be called back", Given: []any{scheduled, dispatched}, When: cancel(shipmentID, reason),
			Then: []any{shipping.ShipmentCommandRejected{ShipmentID: shipmentID, OrderID: orderID, Status: string(shipping.StatusDispatched),
				Detail: "shipment " + shipmentID + " was already dispatched and can no longer be cancelled"}},
			Check: status(shipping.StatusDispatched)},
		{Name: "bad id and reason", When: cancel("s", " "), WantFields: []string{"shipment_id"}},
		{Name: "reason is required", Given: []any{scheduled}, When: cancel(shipmentID, ""), WantFields: []string{"reason"}},
	})
}

func TestReplyEventsRoundTrip(t *testing.T) {
	aggtest.RoundTrip(t, shipping.RegisterEvents,
		shipping.ShipmentCancelled{ShipmentID: shipmentID, OrderID: orderID, Reason: "x", Note: shipping.NoteRefused},
		shipping.ShipmentCommandRejected{ShipmentID: shipmentID, OrderID: orderID, Status: "dispatched", Detail: "no"})
}
