package sagas_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
)

const orderID = "0b5e8a4c-1f7e-4f51-9d0c-2f4e5a6b7c8d"

var (
	sagaID     = sagas.SagaID(orderID)
	shipmentID = sagas.ShipmentID(sagaID)
	t0         = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
)

// timing is short and exact enough to reason about: attempts wait 5 s, a
// step has 3 attempts, a compensation 2, waits start at 1 s and double,
// shortened by up to half.
var timing = sagas.Timing{
	Timeout:           5 * time.Second,
	Retry:             sagas.RetryPolicy{MaxAttempts: 3, Initial: time.Second, Max: 4 * time.Second, Multiplier: 2, Jitter: 0.5},
	CompensationRetry: sagas.RetryPolicy{MaxAttempts: 2, Initial: time.Second, Max: 4 * time.Second, Multiplier: 2, Jitter: 0.5},
}

var fulfillment = sagas.OrderFulfillmentV1(timing)

func placed() order.OrderPlaced {
	return order.OrderPlaced{
		OrderID: orderID, SagaID: sagaID, CustomerID: "c-42",
		Items: []order.Item{
			{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299},
			{SKU: "SKU-2", Quantity: 1, UnitPriceCents: 500},
		},
		ShippingAddress: order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		TotalCents:      3098,
		PlacedAt:        t0,
	}
}

func startFulfillment(t testing.TB) *sagatest.Saga {
	t.Helper()
	return sagatest.Start(t, fulfillment, sagaID, placed(), t0)
}

// The replies, as the services answer them.
var (
	reservationAccepted = map[string]any{"order_id": orderID, "lines": []map[string]any{{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}}}
	reservationRejected = map[string]any{"order_id": orderID, "reason": "insufficient_stock", "sku": "SKU-2", "requested": 1, "available": 0}
	reservationReleased = map[string]any{"order_id": orderID}
	reservationConsumed = map[string]any{"order_id": orderID}
	shipmentScheduled   = shipping.ShipmentScheduled{ShipmentID: shipmentID, OrderID: orderID, Items: placed().Items, Address: placed().ShippingAddress}
	shipmentRefused     = shipping.ShipmentRefused{ShipmentID: shipmentID, OrderID: orderID, Reason: order.ReasonDestinationNotServed}
	shipmentCancelled   = shipping.ShipmentCancelled{ShipmentID: shipmentID, OrderID: orderID, Reason: order.ReasonCancelledByCustomer}
	shipmentDispatched  = shipping.ShipmentDispatched{ShipmentID: shipmentID, OrderID: orderID}
	orderConfirmed      = order.OrderConfirmed{OrderID: orderID, ShipmentID: shipmentID}
	orderRejected       = func(reason string) order.OrderRejected { return order.OrderRejected{OrderID: orderID, Reason: reason} }
	customerCancel      = order.OrderCancelled{OrderID: orderID, Reason: order.ReasonCancelledByCustomer}
	// orderRefuses is the order's answer to a command its state refuses.
	orderRefuses = func(status order.Status, reason string) map[string]any {
		return map[string]any{"order_id": orderID, "status": status, "reason": reason, "detail": "order " + orderID + " is " + string(status)}
	}
	orderShipped = order.OrderShipped{OrderID: orderID, ShipmentID: shipmentID}
)

// Acts of the services answering.
var (
	reserved       = sagatest.Reply("StockReservationAccepted", reservationAccepted)
	outOfStock     = sagatest.Reply("StockReservationRejected", reservationRejected)
	released       = sagatest.Reply("StockReservationReleased", reservationReleased)
	scheduled      = sagatest.Reply(shipping.TypeShipmentScheduled, shipmentScheduled)
	refused        = sagatest.Reply(shipping.TypeShipmentRefused, shipmentRefused)
	shipmentCancel = sagatest.Reply(shipping.TypeShipmentCancelled, shipmentCancelled)
	confirmed      = sagatest.Reply(order.TypeOrderConfirmed, orderConfirmed)
	rejected       = func(reason string) sagatest.Act {
		return sagatest.Reply(order.TypeOrderRejected, orderRejected(reason))
	}
	customerCancels  = sagatest.External(order.TypeOrderCancelled, customerCancel)
	dispatched       = sagatest.External(shipping.TypeShipmentDispatched, shipmentDispatched)
	consumed         = sagatest.Reply("StockReservationConsumed", reservationConsumed)
	markedShipped    = sagatest.Reply(order.TypeOrderShipped, orderShipped)
	expire           = sagatest.Expire()
	untilConfirmed   = []sagatest.Act{reserved, scheduled, confirmed}
	untilAQReleasing = []sagatest.Act{reserved, refused}
)

func TestOrderFulfillmentStart(t *testing.T) {
	s := startFulfillment(t)
	if got, want := sagatest.Describe(s.Events...), "SagaStarted order_fulfillment v1\nCommandIssued inventory.reserve_stock #1"; got != want {
		t.Fatalf("start decided:\n%s\nwant:\n%s", got, want)
	}
	c := s.Pending()
	if want := sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, false); c.CommandID != want {
		t.Errorf("command id = %s, want %s", c.CommandID, want)
	}
	if c.SagaID != sagaID || c.Step != sagas.StepReserveInventory || c.StepIndex != 0 || c.Attempt != 1 || c.Compensation || c.Version != 1 {
		t.Errorf("command = %+v", c)
	}
	if at, ok := s.State.Deadline(); !ok || !at.Equal(t0.Add(5*time.Second)) || !c.Deadline.Equal(at) {
		t.Errorf("deadline = %v, %v; command's %v; want %v", at, ok, c.Deadline, t0.Add(5*time.Second))
	}
	if s.State.Version() != 2 {
		t.Errorf("version = %d after 2 events", s.State.Version())
	}
	if name, version := s.State.Definition(); name != sagas.OrderFulfillment || version != 1 {
		t.Errorf("definition = %s v%d", name, version)
	}
	if s.State.Status() != sagas.StatusRunning || s.State.OrderID() != orderID || s.State.ID() != sagaID {
		t.Errorf("state: status %s, order %s, id %s", s.State.Status(), s.State.OrderID(), s.State.ID())
	}
}

func TestOrderFulfillmentHappyPath(t *testing.T) {
	sagatest.Run(t, startFulfillment, []sagatest.Case{
		{
			Name: "reserved stock schedules the shipment",
			When: reserved,
			Then: []string{
				"ReplyReceived StockReservationAccepted success",
				"StepSucceeded reserve_inventory",
				"CommandIssued shipping.schedule_shipment #1",
			},
		},
		{
			Name:  "a scheduled shipment confirms the order",
			Given: []sagatest.Act{reserved},
			When:  scheduled,
			Then: []string{
				"ReplyReceived ShipmentScheduled success",
				"StepSucceeded schedule_shipment",
				"CommandIssued orders.confirm_order #1",
			},
		},
		{
			Name:  "a confirmed order completes the saga",
			Given: []sagatest.Act{reserved, scheduled},
			When:  confirmed,
			Then: []string{
				"ReplyReceived OrderConfirmed success",
				"StepSucceeded confirm_order",
				"SagaCompleted",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantCommands(t, s, "inventory.reserve_stock", "shipping.schedule_shipment", "orders.confirm_order")
				wantView(t, s, sagas.StatusCompleted, "", map[string]sagas.StepStatus{
					"reserve_inventory": "succeeded", "schedule_shipment": "succeeded", "confirm_order": "succeeded",
				})
				if _, ok := s.State.Deadline(); ok {
					t.Errorf("a completed saga has a deadline")
				}
				if !s.State.Terminal() {
					t.Errorf("a completed saga is not terminal")
				}
				wantStepCount(t, s, 3) // the steps after the dispatch are not listed yet
			},
		},
	})
}

func TestOrderFulfillmentRefusals(t *testing.T) {
	sagatest.Run(t, startFulfillment, []sagatest.Case{
		{
			Name: "insufficient stock rejects the order with nothing to release",
			When: outOfStock,
			Then: []string{
				"ReplyReceived StockReservationRejected failure insufficient_stock",
				"StepFailed reserve_inventory insufficient_stock",
				"CompensationStarted insufficient_stock",
				"CommandIssued close orders.reject_order #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantPayload(t, s.Pending(), `{"order_id":"`+orderID+`","reason":"insufficient_stock"}`)
				wantView(t, s, sagas.StatusCompensating, "reject_order", map[string]sagas.StepStatus{
					"reserve_inventory": "failed", "schedule_shipment": "skipped", "confirm_order": "skipped",
				})
			},
		},
		{
			Name: "an unknown sku is insufficient stock whatever reason inventory gives",
			When: sagatest.Reply("StockReservationRejected", map[string]any{"order_id": orderID, "reason": "unknown_sku", "sku": "NOPE"}),
			Then: []string{
				"ReplyReceived StockReservationRejected failure insufficient_stock",
				"StepFailed reserve_inventory insufficient_stock",
				"CompensationStarted insufficient_stock",
				"CommandIssued close orders.reject_order #1",
			},
		},
		{
			Name:  "the rejected order ends the saga compensated",
			Given: []sagatest.Act{outOfStock},
			When:  rejected(order.ReasonInsufficientStock),
			Then: []string{
				"ReplyReceived OrderRejected success",
				"CompensationDone reject_order",
				"SagaCompensated insufficient_stock",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantCommands(t, s, "inventory.reserve_stock", "close orders.reject_order")
				wantView(t, s, sagas.StatusCompensated, "", map[string]sagas.StepStatus{
					"reserve_inventory": "failed", "schedule_shipment": "skipped", "confirm_order": "skipped",
				})
				if v := s.State.View(); v.Steps[0].Error != "insufficient_stock" || v.EndedAt == "" {
					t.Errorf("view: step error %q, ended_at %q", v.Steps[0].Error, v.EndedAt)
				}
			},
		},
		{
			Name:  "a destination not served releases the stock first",
			Given: []sagatest.Act{reserved},
			When:  refused,
			Then: []string{
				"ReplyReceived ShipmentRefused failure destination_not_served",
				"StepFailed schedule_shipment destination_not_served",
				"CompensationStarted destination_not_served",
				"CommandIssued undo inventory.release_stock #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				c := s.Pending()
				wantPayload(t, c, `{"order_id":"`+orderID+`","skus":["SKU-1","SKU-2"]}`)
				if want := sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, true); c.CommandID != want {
					t.Errorf("compensation command id = %s, want %s", c.CommandID, want)
				}
				wantView(t, s, sagas.StatusCompensating, "reserve_inventory", map[string]sagas.StepStatus{
					"reserve_inventory": "compensating", "schedule_shipment": "failed", "confirm_order": "skipped",
				})
			},
		},
		{
			Name:  "then rejects the order",
			Given: untilAQReleasing,
			When:  released,
			Then: []string{
				"ReplyReceived StockReservationReleased success",
				"CompensationDone reserve_inventory",
				"CommandIssued close orders.reject_order #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantPayload(t, s.Pending(), `{"order_id":"`+orderID+`","reason":"destination_not_served"}`)
			},
		},
		{
			Name:  "and ends compensated without cancelling the refused shipment",
			Given: append(slices.Clone(untilAQReleasing), released),
			When:  rejected(order.ReasonDestinationNotServed),
			Then: []string{
				"ReplyReceived OrderRejected success",
				"CompensationDone reject_order",
				"SagaCompensated destination_not_served",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantCommands(t, s, "inventory.reserve_stock", "shipping.schedule_shipment", "undo inventory.release_stock", "close orders.reject_order")
				wantView(t, s, sagas.StatusCompensated, "", map[string]sagas.StepStatus{
					"reserve_inventory": "compensated", "schedule_shipment": "failed", "confirm_order": "skipped",
				})
			},
		},
		{
			Name:  "an order cancelled before its confirmation arrives is compensated, not rejected",
			Given: []sagatest.Act{reserved, scheduled},
			When:  sagatest.Reply("OrderCommandRejected", orderRefuses(order.StatusCancelled, order.ReasonCancelledByCustomer)),
			Then: []string{
				"ReplyReceived OrderCommandRejected failure cancelled_by_customer",
				"StepFailed confirm_order cancelled_by_customer",
				"CompensationStarted cancelled_by_customer",
				"CommandIssued undo shipping.cancel_shipment #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				shipmentCancel(s)
				released(s)
				wantCommands(t, s, "inventory.reserve_stock", "shipping.schedule_shipment", "orders.confirm_order",
					"undo shipping.cancel_shipment", "undo inventory.release_stock")
				if s.State.Status() != sagas.StatusCompensated {
					t.Errorf("status = %s, want compensated", s.State.Status())
				}
			},
		},
		{
			Name:  "a rejection the order refuses because it is cancelled is done all the same",
			Given: []sagatest.Act{outOfStock},
			When:  sagatest.Reply("OrderCommandRejected", orderRefuses(order.StatusCancelled, order.ReasonCancelledByCustomer)),
			Then: []string{
				"ReplyReceived OrderCommandRejected success",
				"CompensationDone reject_order",
				"SagaCompensated insufficient_stock",
			},
		},
		{
			Name:  "a rejection the order refuses because it is confirmed parks the saga",
			Given: []sagatest.Act{outOfStock},
			When:  sagatest.Reply("OrderCommandRejected", orderRefuses(order.StatusConfirmed, "")),
			Then: []string{
				"ReplyReceived OrderCommandRejected failure refused",
				"SagaFailed reject_order compensation_refused",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantView(t, s, sagas.StatusFailed, "reject_order", nil)
			},
		},
		{
			Name:  "a shipment cancel refused because it was dispatched parks the saga",
			Given: append(slices.Clone(untilConfirmed), customerCancels),
			When: sagatest.Reply("ShipmentCommandRejected", map[string]any{
				"shipment_id": shipmentID, "order_id": orderID, "status": "dispatched", "detail": "shipment is dispatched",
			}),
			Then: []string{
				"ReplyReceived ShipmentCommandRejected failure refused",
				"SagaFailed schedule_shipment compensation_refused",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				failed := s.Events[len(s.Events)-1].(sagas.SagaFailed)
				if failed.Detail != "ShipmentCommandRejected: refused: shipment is dispatched" {
					t.Errorf("detail = %q", failed.Detail)
				}
			},
		},
	})
}

func TestOrderFulfillmentTimeouts(t *testing.T) {
	sagatest.Run(t, startFulfillment, []sagatest.Case{
		{
			Name: "an unanswered attempt waits with backoff",
			When: expire,
			Then: []string{"AttemptTimedOut reserve_inventory #1"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				at, ok := s.State.Deadline()
				if wait := at.Sub(s.Now); !ok || wait < 500*time.Millisecond || wait > time.Second {
					t.Errorf("retry in %v (%v), want within [0.5s, 1s]", wait, ok)
				}
				wantView(t, s, sagas.StatusRunning, "reserve_inventory", map[string]sagas.StepStatus{"reserve_inventory": "running"})
			},
		},
		{
			Name:  "then sends the next attempt under a new command id",
			Given: []sagatest.Act{expire},
			When:  expire,
			Then:  []string{"CommandIssued inventory.reserve_stock #2"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				cmds := s.Issued()
				if cmds[0].CommandID == cmds[1].CommandID || cmds[1].CommandID != sagas.CommandID(sagaID, sagas.StepReserveInventory, 2, false) {
					t.Errorf("attempt ids %s, %s", cmds[0].CommandID, cmds[1].CommandID)
				}
				if string(cmds[0].Payload) != string(cmds[1].Payload) {
					t.Errorf("a retry changed the payload: %s, then %s", cmds[0].Payload, cmds[1].Payload)
				}
				if !cmds[1].Deadline.Equal(s.Now.Add(5 * time.Second)) {
					t.Errorf("deadline = %v, want %v", cmds[1].Deadline, s.Now.Add(5*time.Second))
				}
			},
		},
		{
			Name:  "the second wait is longer",
			Given: []sagatest.Act{expire, expire},
			When:  expire,
			Then:  []string{"AttemptTimedOut reserve_inventory #2"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				at, _ := s.State.Deadline()
				if wait := at.Sub(s.Now); wait < time.Second || wait > 2*time.Second {
					t.Errorf("retry in %v, want within [1s, 2s]", wait)
				}
			},
		},
		{
			Name:  "a spent budget rejects the order first, then releases what may be reserved",
			Given: []sagatest.Act{expire, expire, expire, expire},
			When:  expire,
			Then: []string{
				"StepTimedOut reserve_inventory",
				"CompensationStarted step_timeout",
				"CommandIssued close orders.reject_order #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantPayload(t, s.Pending(), `{"order_id":"`+orderID+`","reason":"step_timeout"}`)
				got := rejected(order.ReasonStepTimeout)(s)
				if want := "ReplyReceived OrderRejected success\nCompensationDone reject_order\nCommandIssued undo inventory.release_stock #1"; sagatest.Describe(got...) != want {
					t.Errorf("after the rejection:\n%s\nwant:\n%s", sagatest.Describe(got...), want)
				}
				got = released(s)
				if want := "ReplyReceived StockReservationReleased success\nCompensationDone reserve_inventory\nSagaCompensated step_timeout"; sagatest.Describe(got...) != want {
					t.Errorf("after the release:\n%s\nwant:\n%s", sagatest.Describe(got...), want)
				}
				v := s.State.View()
				if v.Steps[0].Status != sagas.StepStatusCompensated || v.Steps[0].Attempts != 3 {
					t.Errorf("reserve step = %+v", v.Steps[0])
				}
			},
		},
		{
			Name:  "a shipment step timing out releases the stock, rejects, then cancels the shipment it may have made",
			Given: []sagatest.Act{reserved, expire, expire, expire, expire},
			When:  expire,
			Then: []string{
				"StepTimedOut schedule_shipment",
				"CompensationStarted step_timeout",
				"CommandIssued undo inventory.release_stock #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				released(s)
				rejected(order.ReasonStepTimeout)(s)
				wantPayload(t, s.Pending(), `{"shipment_id":"`+shipmentID+`","reason":"step_timeout"}`)
				shipmentCancel(s)
				wantCommands(t, s, "inventory.reserve_stock", "shipping.schedule_shipment", "shipping.schedule_shipment",
					"shipping.schedule_shipment", "undo inventory.release_stock", "close orders.reject_order", "undo shipping.cancel_shipment")
				wantView(t, s, sagas.StatusCompensated, "", map[string]sagas.StepStatus{
					"reserve_inventory": "compensated", "schedule_shipment": "compensated", "confirm_order": "skipped",
				})
			},
		},
		{
			Name:  "a reply to an earlier attempt is taken",
			Given: []sagatest.Act{expire, expire},
			When:  sagatest.ReplyTo(sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, false), "StockReservationAccepted", reservationAccepted),
			Then: []string{
				"ReplyReceived StockReservationAccepted success",
				"StepSucceeded reserve_inventory",
				"CommandIssued shipping.schedule_shipment #1",
			},
		},
		{
			Name:  "a reply while waiting to retry is taken",
			Given: []sagatest.Act{expire},
			When:  sagatest.ReplyTo(sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, false), "StockReservationAccepted", reservationAccepted),
			Then: []string{
				"ReplyReceived StockReservationAccepted success",
				"StepSucceeded reserve_inventory",
				"CommandIssued shipping.schedule_shipment #1",
			},
		},
		{
			Name:  "a compensation that stays unanswered parks the saga as failed",
			Given: []sagatest.Act{reserved, refused, expire, expire},
			When:  expire,
			Then:  []string{"SagaFailed reserve_inventory compensation_timeout"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				if _, ok := s.State.Deadline(); ok {
					t.Errorf("a parked saga has a deadline")
				}
				wantView(t, s, sagas.StatusFailed, "reserve_inventory", map[string]sagas.StepStatus{
					"reserve_inventory": "compensating", "schedule_shipment": "failed",
				})
				if v := s.State.View(); v.Steps[0].Error != "compensation_timeout: no answer after 2 attempts" || v.Steps[0].CompensationAttempts != 2 || v.EndedAt != "" {
					t.Errorf("parked step = %+v, ended_at %q", v.Steps[0], v.EndedAt)
				}
			},
		},
	})
}

func TestOrderFulfillmentRetry(t *testing.T) {
	parked := []sagatest.Act{reserved, refused, expire, expire, expire}
	sagatest.Run(t, startFulfillment, []sagatest.Case{
		{
			Name:  "an operator's retry sends the parked compensation again",
			Given: parked,
			When:  sagatest.Retry(),
			Then:  []string{"SagaRetried reserve_inventory #3", "CommandIssued undo inventory.release_stock #3"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantView(t, s, sagas.StatusCompensating, "reserve_inventory", nil)
			},
		},
		{
			Name:  "and the saga then completes its compensation",
			Given: append(slices.Clone(parked), sagatest.Retry()),
			When:  sagatest.Seq(released, rejected(order.ReasonDestinationNotServed)),
			Then: []string{
				"ReplyReceived StockReservationReleased success",
				"CompensationDone reserve_inventory",
				"CommandIssued close orders.reject_order #1",
				"ReplyReceived OrderRejected success",
				"CompensationDone reject_order",
				"SagaCompensated destination_not_served",
			},
		},
		{
			Name:  "a retried action has a fresh budget",
			Given: append(slices.Clone(parked), sagatest.Retry(), expire, expire),
			When:  expire,
			Then:  []string{"SagaFailed reserve_inventory compensation_timeout"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantCommands(t, s, "inventory.reserve_stock", "shipping.schedule_shipment",
					"undo inventory.release_stock", "undo inventory.release_stock", "undo inventory.release_stock", "undo inventory.release_stock")
			},
		},
		{
			Name:  "a late reply to a parked compensation resumes the saga",
			Given: parked,
			When:  sagatest.ReplyTo(sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, true), "StockReservationReleased", reservationReleased),
			Then: []string{
				"ReplyReceived StockReservationReleased success",
				"CompensationDone reserve_inventory",
				"CommandIssued close orders.reject_order #1",
			},
		},
		{
			Name:  "a customer's cancel settles a closing action that stays unanswered",
			Given: []sagatest.Act{outOfStock, expire, expire, expire},
			When:  customerCancels,
			Then: []string{
				"ExternalEventReceived OrderCancelled",
				"CompensationDone reject_order",
				"SagaCompensated insufficient_stock",
			},
		},
	})
}

func TestOrderFulfillmentCustomerCancel(t *testing.T) {
	sagatest.Run(t, startFulfillment, []sagatest.Case{
		{
			Name:  "while pending, the step in flight is answered before compensating",
			Given: []sagatest.Act{reserved},
			When:  customerCancels,
			Then: []string{
				"ExternalEventReceived OrderCancelled",
				"CompensationStarted cancelled_by_customer",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantView(t, s, sagas.StatusCompensating, "schedule_shipment", map[string]sagas.StepStatus{
					"reserve_inventory": "succeeded", "schedule_shipment": "running", "confirm_order": "skipped",
				})
			},
		},
		{
			Name:  "then everything done is compensated in reverse",
			Given: []sagatest.Act{reserved, customerCancels},
			When:  sagatest.Seq(scheduled, shipmentCancel, released),
			Then: []string{
				"ReplyReceived ShipmentScheduled success",
				"StepSucceeded schedule_shipment",
				"CommandIssued undo shipping.cancel_shipment #1",
				"ReplyReceived ShipmentCancelled success",
				"CompensationDone schedule_shipment",
				"CommandIssued undo inventory.release_stock #1",
				"ReplyReceived StockReservationReleased success",
				"CompensationDone reserve_inventory",
				"SagaCompensated cancelled_by_customer",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				for _, c := range sagatest.Commands(s.Events...) {
					if c == "close orders.reject_order" || c == "orders.confirm_order" {
						t.Errorf("a cancelled order got %s", c)
					}
				}
				wantView(t, s, sagas.StatusCompensated, "", map[string]sagas.StepStatus{
					"reserve_inventory": "compensated", "schedule_shipment": "compensated", "confirm_order": "skipped",
				})
			},
		},
		{
			Name:  "while pending, a step in flight that times out is compensated after the known ones",
			Given: []sagatest.Act{reserved, customerCancels},
			When:  expire,
			Then: []string{
				"StepTimedOut schedule_shipment",
				"CommandIssued undo inventory.release_stock #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				got := released(s)
				if want := "CommandIssued undo shipping.cancel_shipment #1"; sagatest.Describe(got[len(got)-1]) != want {
					t.Errorf("after the release: %s, want %s", sagatest.Describe(got...), want)
				}
			},
		},
		{
			Name:  "while pending and waiting to retry, the step stops at once",
			Given: []sagatest.Act{expire},
			When:  customerCancels,
			Then: []string{
				"ExternalEventReceived OrderCancelled",
				"CompensationStarted cancelled_by_customer",
				"StepTimedOut reserve_inventory",
				"CommandIssued undo inventory.release_stock #1",
			},
		},
		{
			Name:  "while confirmed, the shipment is cancelled and the stock released",
			Given: untilConfirmed,
			When:  customerCancels,
			Then: []string{
				"ExternalEventReceived OrderCancelled",
				"CompensationStarted cancelled_by_customer",
				"CommandIssued undo shipping.cancel_shipment #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantPayload(t, s.Pending(), `{"shipment_id":"`+shipmentID+`","reason":"cancelled_by_customer"}`)
				shipmentCancel(s)
				released(s)
				wantView(t, s, sagas.StatusCompensated, "", map[string]sagas.StepStatus{
					"reserve_inventory": "compensated", "schedule_shipment": "compensated", "confirm_order": "succeeded",
				})
				if s.State.Reason() != order.ReasonCancelledByCustomer {
					t.Errorf("reason = %q", s.State.Reason())
				}
			},
		},
		{
			Name:  "a second cancel changes nothing",
			Given: []sagatest.Act{reserved, customerCancels},
			When:  customerCancels,
		},
		{
			Name:  "a cancel while the closing action runs settles it",
			Given: []sagatest.Act{outOfStock},
			When:  customerCancels,
			Then: []string{
				"ExternalEventReceived OrderCancelled",
				"CompensationDone reject_order",
				"SagaCompensated insufficient_stock",
			},
		},
		{
			Name:  "a cancel after the saga is compensated changes nothing",
			Given: []sagatest.Act{outOfStock, rejected(order.ReasonInsufficientStock)},
			When:  customerCancels,
		},
		{
			Name:  "a cancel after dispatch changes nothing",
			Given: append(slices.Clone(untilConfirmed), dispatched),
			When:  customerCancels,
		},
	})
}

func TestOrderFulfillmentDispatch(t *testing.T) {
	sagatest.Run(t, startFulfillment, []sagatest.Case{
		{
			Name:  "a dispatched shipment consumes the reservation",
			Given: untilConfirmed,
			When:  dispatched,
			Then: []string{
				"ExternalEventReceived ShipmentDispatched",
				"CommandIssued inventory.consume_stock #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantPayload(t, s.Pending(), `{"order_id":"`+orderID+`","skus":["SKU-1","SKU-2"]}`)
				wantView(t, s, sagas.StatusRunning, "consume_stock", map[string]sagas.StepStatus{
					"confirm_order": "succeeded", "consume_stock": "running",
				})
				if v := s.State.View(); v.EndedAt != "" {
					t.Errorf("a running saga ended at %s", v.EndedAt)
				}
			},
		},
		{
			Name:  "then marks the order shipped and completes again",
			Given: append(slices.Clone(untilConfirmed), dispatched),
			When:  sagatest.Seq(consumed, markedShipped),
			Then: []string{
				"ReplyReceived StockReservationConsumed success",
				"StepSucceeded consume_stock",
				"CommandIssued orders.mark_order_shipped #1",
				"ReplyReceived OrderShipped success",
				"StepSucceeded mark_order_shipped",
				"SagaCompleted",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantView(t, s, sagas.StatusCompleted, "", map[string]sagas.StepStatus{
					"reserve_inventory": "succeeded", "schedule_shipment": "succeeded", "confirm_order": "succeeded",
					"consume_stock": "succeeded", "mark_order_shipped": "succeeded",
				})
				wantStepCount(t, s, 5)
			},
		},
		{
			Name:  "a dispatch before the confirmation is kept for after it",
			Given: []sagatest.Act{reserved, scheduled},
			When:  sagatest.Seq(dispatched, confirmed),
			Then: []string{
				"ExternalEventReceived ShipmentDispatched",
				"ReplyReceived OrderConfirmed success",
				"StepSucceeded confirm_order",
				"CommandIssued inventory.consume_stock #1",
			},
		},
		{
			Name:  "a refused confirmation after the dispatch parks the saga, nothing is undone",
			Given: []sagatest.Act{reserved, scheduled, dispatched},
			When:  sagatest.Reply("OrderCommandRejected", orderRefuses(order.StatusCancelled, order.ReasonCancelledByCustomer)),
			Then: []string{
				"ReplyReceived OrderCommandRejected failure cancelled_by_customer",
				"StepFailed confirm_order cancelled_by_customer",
				"SagaFailed confirm_order step_failed_past_pivot",
			},
		},
		{
			Name:  "a second dispatch changes nothing",
			Given: append(slices.Clone(untilConfirmed), dispatched),
			When:  dispatched,
		},
		{
			Name:  "a dispatch of a compensated saga changes nothing",
			Given: []sagatest.Act{reserved, refused, released},
			When:  dispatched,
		},
		{
			Name:  "a step past the pivot that stays unanswered parks the saga, nothing is undone",
			Given: append(slices.Clone(untilConfirmed), dispatched, expire, expire, expire, expire),
			When:  expire,
			Then:  []string{"StepTimedOut consume_stock", "SagaFailed consume_stock step_failed_past_pivot"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				got := sagatest.Retry()(s)
				if want := "SagaRetried consume_stock #4\nCommandIssued inventory.consume_stock #4"; sagatest.Describe(got...) != want {
					t.Errorf("retry decided:\n%s\nwant:\n%s", sagatest.Describe(got...), want)
				}
				consumed(s)
				markedShipped(s)
				if s.State.Status() != sagas.StatusCompleted {
					t.Errorf("status = %s, want completed", s.State.Status())
				}
			},
		},
		{
			Name:  "a refusal past the pivot parks the saga",
			Given: append(slices.Clone(untilConfirmed), dispatched, consumed),
			When:  sagatest.Reply("OrderCommandRejected", orderRefuses(order.StatusCancelled, order.ReasonCancelledByCustomer)),
			Then: []string{
				"ReplyReceived OrderCommandRejected failure cancelled_by_customer",
				"StepFailed mark_order_shipped cancelled_by_customer",
				"SagaFailed mark_order_shipped step_failed_past_pivot",
			},
		},
	})
}

func TestOrderFulfillmentStaleReplies(t *testing.T) {
	reserve1 := sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, false)
	sagatest.Run(t, startFulfillment, []sagatest.Case{
		{
			Name:  "a reply to a step already answered",
			Given: []sagatest.Act{reserved},
			When:  sagatest.ReplyTo(reserve1, "StockReservationAccepted", reservationAccepted),
		},
		{
			Name:  "a contradicting reply to a step already answered",
			Given: []sagatest.Act{reserved, scheduled},
			When:  sagatest.ReplyTo(reserve1, "StockReservationRejected", reservationRejected),
		},
		{
			Name:  "a reply to a step given up on",
			Given: []sagatest.Act{expire, expire, expire, expire, expire},
			When:  sagatest.ReplyTo(reserve1, "StockReservationAccepted", reservationAccepted),
		},
		{
			Name: "a reply to a command the saga never sent",
			When: sagatest.ReplyTo(sagas.CommandID(sagaID, sagas.StepReserveInventory, 7, false), "StockReservationAccepted", reservationAccepted),
		},
		{
			Name: "another event the command caused",
			When: sagatest.Reply("StockReserved", map[string]any{"sku": "SKU-1", "order_id": orderID, "quantity": 2}),
		},
		{
			Name: "a reply of a type another step waits for",
			When: sagatest.Reply(shipping.TypeShipmentScheduled, shipmentScheduled),
		},
		{
			Name:  "a compensation answer after the compensation is done",
			Given: []sagatest.Act{reserved, refused, released},
			When:  sagatest.ReplyTo(sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, true), "StockReservationReleased", reservationReleased),
		},
	})
}

func TestOrderFulfillmentTrigger(t *testing.T) {
	defs := sagas.DefaultDefinitions(timing)
	started := defs.StartedBy(order.TypeOrderPlaced)
	if len(started) != 1 || started[0].Name != sagas.OrderFulfillment || started[0].Version != 1 {
		t.Fatalf("OrderPlaced starts %v", started)
	}
	data, err := json.Marshal(placed())
	if err != nil {
		t.Fatal(err)
	}
	id, err := started[0].Trigger.SagaID(data)
	if err != nil || id != sagaID {
		t.Errorf("saga id = %q, %v; want %s", id, err, sagaID)
	}
	if _, err := started[0].Trigger.SagaID([]byte(`{"order_id":`)); err == nil {
		t.Errorf("a malformed OrderPlaced gave a saga id")
	}
	if got := defs.StartedBy(order.TypeOrderCancelled); len(got) != 0 {
		t.Errorf("OrderCancelled starts %v", got)
	}
	only := sagas.NewDefinitions()
	if err := only.Register(fulfillment); err != nil {
		t.Fatal(err)
	}
	want := []string{"OrderCancelled", "OrderCommandRejected", "OrderConfirmed", "OrderPlaced", "OrderRejected", "OrderShipped",
		"ShipmentCancelled", "ShipmentCommandRejected", "ShipmentDispatched", "ShipmentRefused", "ShipmentScheduled",
		"StockReservationAccepted", "StockReservationConsumed", "StockReservationRejected", "StockReservationReleased"}
	if got := only.Consumes(); !slices.Equal(got, want) {
		t.Errorf("order_fulfillment consumes\n %q\nwant %q", got, want)
	}
}

func wantCommands(t testing.TB, s *sagatest.Saga, want ...string) {
	t.Helper()
	if got := sagatest.Commands(s.Events...); !slices.Equal(got, want) {
		t.Errorf("commands issued:\n got %q\nwant %q", got, want)
	}
}

func wantPayload(t testing.TB, c sagas.CommandIssued, want string) {
	t.Helper()
	if string(c.Payload) != want {
		t.Errorf("%s.%s payload:\n got %s\nwant %s", c.Context, c.Name, c.Payload, want)
	}
}

// wantView checks the saga's status, current step and the status of the
// named steps in its view.
func wantView(t testing.TB, s *sagatest.Saga, status sagas.Status, current string, steps map[string]sagas.StepStatus) {
	t.Helper()
	v := s.State.View()
	if v.Status != status || v.CurrentStep != current {
		t.Errorf("view: status %s, current step %q; want %s, %q", v.Status, v.CurrentStep, status, current)
	}
	for name, want := range steps {
		i := slices.IndexFunc(v.Steps, func(st sagas.StepView) bool { return st.Name == name })
		if i < 0 {
			t.Errorf("view has no step %s", name)
			continue
		}
		if v.Steps[i].Status != want {
			t.Errorf("step %s is %s, want %s", name, v.Steps[i].Status, want)
		}
	}
}
