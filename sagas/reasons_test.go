package sagas_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
)

// The reasons the coordinator records are words of the orders' API
// (GET /api/orders/{id} shows them) and the order aggregate refuses a
// reject whose reason it does not know: a reason spelled differently here
// would leave the closing action unanswerable and park every such saga.
// The engine's constant is spelled in sagas, because the engine serves
// every definition and knows no context's words; this test keeps the two
// spellings together.
func TestReasonsAreTheOrderDomains(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want string
	}{
		{"sagas.ReasonStepTimeout", sagas.ReasonStepTimeout, order.ReasonStepTimeout},
		// A refusal's reason is the order's word too, and the inventory
		// and shipping domains say they use the same one.
		{"inventory.ReasonInsufficientStock", inventory.ReasonInsufficientStock, order.ReasonInsufficientStock},
		{"shipping.ReasonDestinationNotServed", shipping.ReasonDestinationNotServed, order.ReasonDestinationNotServed},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want the order domain's %q", c.name, c.got, c.want)
		}
		if !order.ValidReason(c.got) {
			t.Errorf("%s = %q is not a reason the order domain accepts", c.name, c.got)
		}
	}
}

// TestOrderFulfillmentRejectsWithOrderReasons drives order_fulfillment down
// every road that ends in rejecting the order and hands the reject_order
// command it sends to the order aggregate: the reason must be the order
// domain's constant and the order must be rejected with it. A customer's
// cancel needs no reject; its reason must still be one the order knows.
func TestOrderFulfillmentRejectsWithOrderReasons(t *testing.T) {
	expire5 := []sagatest.Act{expire, expire, expire, expire, expire} // three attempts, each unanswered
	tests := []struct {
		name string
		acts []sagatest.Act
		want string
		// reject says whether the saga must send reject_order.
		reject bool
	}{
		{"insufficient stock", []sagatest.Act{outOfStock}, order.ReasonInsufficientStock, true},
		{"unknown sku", []sagatest.Act{sagatest.Reply(inventory.TypeStockReservationRejected,
			map[string]any{"order_id": orderID, "reason": "unknown_sku", "sku": "NOPE"})}, order.ReasonInsufficientStock, true},
		// Inventory's other refusal is not an order reason; the step's
		// mapping must not let it through.
		{"reservation settled", []sagatest.Act{sagatest.Reply(inventory.TypeStockReservationRejected,
			map[string]any{"order_id": orderID, "reason": inventory.ReasonReservationSettled})}, order.ReasonInsufficientStock, true},
		{"destination not served", []sagatest.Act{reserved, refused}, order.ReasonDestinationNotServed, true},
		{"reserve step timeout", expire5, order.ReasonStepTimeout, true},
		{"schedule step timeout", append([]sagatest.Act{reserved}, expire5...), order.ReasonStepTimeout, true},
		{"confirm step timeout", append([]sagatest.Act{reserved, scheduled}, expire5...), order.ReasonStepTimeout, true},
		{"customer cancel while pending", []sagatest.Act{reserved, customerCancels, scheduled}, order.ReasonCancelledByCustomer, false},
		{"customer cancel while confirmed", append(slices.Clone(untilConfirmed), customerCancels), order.ReasonCancelledByCustomer, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startFulfillment(t)
			for _, a := range tt.acts {
				a(s)
			}
			var reject *sagas.CommandIssued
			for range 10 {
				if _, ok := s.State.Deadline(); !ok {
					break
				}
				c := s.Pending()
				switch c.Context + "." + c.Name {
				case "orders.reject_order":
					if reject != nil {
						t.Fatalf("reject_order sent twice")
					}
					reject = &c
					rejectOrder(t, c, tt.want)
					rejected(tt.want)(s)
				case "inventory.release_stock":
					released(s)
				case "shipping.cancel_shipment":
					wantReason(t, c, tt.want)
					shipmentCancel(s)
				default:
					t.Fatalf("the saga waits on %s.%s, which this test does not answer", c.Context, c.Name)
				}
			}
			if (reject != nil) != tt.reject {
				t.Errorf("reject_order sent: %v, want %v", reject != nil, tt.reject)
			}
			if s.State.Status() != sagas.StatusCompensated || s.State.Reason() != tt.want {
				t.Errorf("saga ended %s with reason %q, want compensated with %q", s.State.Status(), s.State.Reason(), tt.want)
			}
			if !order.ValidReason(s.State.Reason()) {
				t.Errorf("the saga's reason %q is not one the order domain accepts", s.State.Reason())
			}
		})
	}
}

// wantReason checks the reason in a command's payload.
func wantReason(t *testing.T, c sagas.CommandIssued, want string) {
	t.Helper()
	var p struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(c.Payload, &p); err != nil {
		t.Fatalf("%s.%s payload %s: %v", c.Context, c.Name, c.Payload, err)
	}
	if p.Reason != want {
		t.Errorf("%s.%s reason %q, want %q", c.Context, c.Name, p.Reason, want)
	}
}

// rejectOrder runs the reject_order command c on a pending order, as the
// orders service does, and checks that the order is rejected with want.
func rejectOrder(t *testing.T, c sagas.CommandIssued, want string) {
	t.Helper()
	wantReason(t, c, want)
	var p struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason"`
	}
	if err := json.Unmarshal(c.Payload, &p); err != nil {
		t.Fatal(err)
	}
	var o order.Order
	o.Apply(placed())
	evs, err := o.RejectReply(p.OrderID, p.Reason)
	if wantEvs := []any{order.OrderRejected{OrderID: orderID, Reason: want}}; err != nil || !reflect.DeepEqual(evs, wantEvs) {
		t.Errorf("the order answers reject_order %s with %#v, %v; want %#v", c.Payload, evs, err, wantEvs)
	}
}
