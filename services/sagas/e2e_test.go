package sagas_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/stacktest"
)

// generous is the timing of a stack in which every service runs: no step
// should time out there, even on a machine busy with other test suites.
var generous = coordinator.Config{
	Timing: engine.Timing{
		Timeout:           20 * time.Second,
		Retry:             engine.RetryPolicy{MaxAttempts: 3, Initial: 100 * time.Millisecond, Multiplier: 2, Jitter: 0.2},
		CompensationRetry: engine.RetryPolicy{MaxAttempts: 5, Initial: 100 * time.Millisecond, Multiplier: 2, Jitter: 0.2},
	},
	PollInterval: 200 * time.Millisecond,
}

// within bounds every wait of these tests for something the system does
// within milliseconds when idle.
const within = 45 * time.Second

// TestOrderFulfillment drives order_fulfillment end to end through the
// four services, each on its own database, talking only through one NATS:
// the paths that end an order (confirmed, rejected for stock or
// destination, cancelled), the dispatch that ships it, and the saga's
// inspection through the API.
func TestOrderFulfillment(t *testing.T) {
	s := newStack(t, generous, allServices...)

	t.Run("group", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			run  func(*testing.T, *stack)
		}{
			{"happy path, then dispatch", testHappyPathAndDispatch},
			{"insufficient stock", testInsufficientStock},
			{"unknown sku", testUnknownSKU},
			{"one sku short: nothing reserved", testOneSKUShort},
			{"destination not served", testDestinationNotServed},
			{"cancelled while confirmed", testCancelWhileConfirmed},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				tt.run(t, s)
			})
		}
	})
	// One at a time from here: each watches what a consumer acknowledged.
	t.Run("redelivered command changes nothing", func(t *testing.T) { testRedeliveredCommand(t, s) })
	t.Run("redelivered reply changes nothing", func(t *testing.T) { testRedeliveredReply(t, s) })
	t.Run("200 orders race for 50 units", func(t *testing.T) { testHotSKU(t, s) })
	if page := s.listSagas(t, "status=failed"); len(page) != 0 {
		t.Errorf("failed sagas: %+v", page)
	}
}

func testHappyPathAndDispatch(t *testing.T, s *stack) {
	s.Restock(t, "HAPPY-1", 10)
	s.Restock(t, "HAPPY-2", 5)
	p := s.placeOrder(t, "US", 2, "HAPPY-1", "HAPPY-2")
	if p.SagaID != engine.SagaID(p.OrderID) {
		t.Fatalf("saga_id %s, want the one derived from order %s", p.SagaID, p.OrderID)
	}

	v := s.WaitSaga(t, "sagas", p.SagaID, "completed")
	if v.Type != engine.OrderFulfillment || v.DefinitionVersion != 1 || v.OrderID != p.OrderID || v.CurrentStep != "" || v.EndedAt == "" {
		t.Errorf("saga %+v", v)
	}
	if got, want := v.StepStatuses(), "reserve_inventory:succeeded schedule_shipment:succeeded confirm_order:succeeded"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
	for _, st := range v.Steps {
		if st.Attempts != 1 || st.StartedAt == "" || st.EndedAt == "" || st.Error != "" {
			t.Errorf("step %+v", st)
		}
	}
	for _, reply := range []struct{ event, from string }{
		{inventory.TypeStockReservationAccepted, "inventory"},
		{shipping.TypeShipmentScheduled, "shipping"},
		{"OrderConfirmed", "orders"},
	} {
		if !v.Has(reply.event, "from", reply.from, "outcome", "success") {
			t.Errorf("history lacks %s from %s: %v", reply.event, reply.from, v.Events())
		}
	}

	o := s.WaitOrder(t, p.OrderID, "confirmed", "")
	if o.ShipmentID != engine.ShipmentID(p.SagaID) {
		t.Errorf("order's shipment %s, want %s", o.ShipmentID, engine.ShipmentID(p.SagaID))
	}
	s.WaitStock(t, "HAPPY-1", stacktest.Stock{OnHand: 10, Reserved: 2, Available: 8})
	s.WaitStock(t, "HAPPY-2", stacktest.Stock{OnHand: 5, Reserved: 2, Available: 3})

	// Every reply carries the saga id as correlation id and the id of the
	// command it answers as causation id.
	issued := map[string]string{} // command id -> command
	for _, e := range s.events(t, "sagas", engine.Stream(p.SagaID)) {
		if e.Metadata.CorrelationID != p.SagaID {
			t.Errorf("saga event %s has correlation id %q", e.Type, e.Metadata.CorrelationID)
		}
		if e.Type == engine.TypeCommandIssued {
			var c engine.CommandIssued
			mustUnmarshal(t, e.Data, &c)
			issued[c.CommandID] = c.Context + "." + c.Name
		}
	}
	for _, r := range []struct{ svc, stream, typ, command string }{
		{"inventory", inventory.ReservationStream(p.OrderID), inventory.TypeStockReservationAccepted, "inventory.reserve_stock"},
		{"shipping", shipping.Stream(o.ShipmentID), shipping.TypeShipmentScheduled, "shipping.schedule_shipment"},
		{"orders", order.Stream(p.OrderID), order.TypeOrderConfirmed, "orders.confirm_order"},
	} {
		evs := s.events(t, r.svc, r.stream)
		i := slices.IndexFunc(evs, func(e domain.Envelope) bool { return e.Type == r.typ })
		if i < 0 {
			t.Errorf("%s has no %s", r.stream, r.typ)
			continue
		}
		e := evs[i]
		if e.Metadata.CorrelationID != p.SagaID || issued[e.Metadata.CausationID] != r.command {
			t.Errorf("%s %s: correlation %s, causation %s (%s), want the saga and its %s command",
				r.stream, r.typ, e.Metadata.CorrelationID, e.Metadata.CausationID, issued[e.Metadata.CausationID], r.command)
		}
	}

	// The list finds the saga by order and by status, without history.
	coordinatortest.Eventually(t, within, "saga listed", func() (bool, string) {
		var page struct {
			Items []stacktest.Saga `json:"items"`
			Next  string           `json:"next"`
		}
		code := s.GetJSON(t, "sagas", "/api/sagas?order_id="+p.OrderID, &page)
		return code == http.StatusOK && len(page.Items) == 1 && page.Items[0].SagaID == p.SagaID &&
				page.Items[0].Status == "completed" && page.Items[0].History == nil && len(page.Items[0].Steps) == 3,
			fmt.Sprintf("%d %+v", code, page)
	})

	// Dispatching the shipment resumes the saga: the reservation is
	// consumed and the order shipped.
	s.Post(t, "shipping", "/api/shipments/"+o.ShipmentID+"/dispatch", `{}`, http.StatusAccepted, nil)
	s.WaitOrder(t, p.OrderID, "shipped", "")
	s.WaitStock(t, "HAPPY-1", stacktest.Stock{OnHand: 8, Reserved: 0, Available: 8})
	s.WaitStock(t, "HAPPY-2", stacktest.Stock{OnHand: 3, Reserved: 0, Available: 3})
	coordinatortest.Eventually(t, within, "saga completed after dispatch", func() (bool, string) {
		var v stacktest.Saga
		s.GetJSON(t, "sagas", "/api/sagas/"+p.SagaID, &v)
		want := "reserve_inventory:succeeded schedule_shipment:succeeded confirm_order:succeeded consume_stock:succeeded mark_order_shipped:succeeded"
		return v.Status == "completed" && v.StepStatuses() == want, v.Status + " " + v.StepStatuses()
	})
}

// wantRejected checks a saga that ended with its order rejected for
// reason, whose steps ended as steps says.
func wantRejected(t *testing.T, s *stack, p stacktest.Placed, reason, steps string) stacktest.Saga {
	t.Helper()
	v := s.WaitSaga(t, "sagas", p.SagaID, "compensated")
	if v.StepStatuses() != steps {
		t.Errorf("steps %s, want %s", v.StepStatuses(), steps)
	}
	if !v.Has(engine.TypeCompensationStarted, "reason", reason) {
		t.Errorf("history lacks CompensationStarted for %s: %v", reason, v.Events())
	}
	if !v.Has(order.TypeOrderRejected, "from", "orders", "compensation", true) {
		t.Errorf("history lacks the order's rejection: %v", v.Events())
	}
	s.WaitOrder(t, p.OrderID, "rejected", reason)
	return v
}

// issuedCommands lists the commands a saga issued, as "context.name".
func (s *stack) issuedCommands(t testing.TB, sagaID string) []string {
	t.Helper()
	var out []string
	for _, e := range s.events(t, "sagas", engine.Stream(sagaID)) {
		if e.Type == engine.TypeCommandIssued {
			var c engine.CommandIssued
			mustUnmarshal(t, e.Data, &c)
			out = append(out, c.Context+"."+c.Name)
		}
	}
	return out
}

func testInsufficientStock(t *testing.T, s *stack) {
	s.Restock(t, "SHORT-1", 1)
	p := s.placeOrder(t, "US", 2, "SHORT-1")
	v := wantRejected(t, s, p, "insufficient_stock", "reserve_inventory:failed schedule_shipment:skipped confirm_order:skipped")
	if v.Steps[0].Error != "insufficient_stock" {
		t.Errorf("reserve_inventory error %q", v.Steps[0].Error)
	}
	if !v.Has(inventory.TypeStockReservationRejected, "outcome", "failure", "reason", "insufficient_stock") {
		t.Errorf("history lacks the rejection: %v", v.Events())
	}
	// Nothing was reserved, so nothing is released.
	if got, want := s.issuedCommands(t, p.SagaID), []string{"inventory.reserve_stock", "orders.reject_order"}; !slices.Equal(got, want) {
		t.Errorf("commands %v, want %v", got, want)
	}
	s.WaitStock(t, "SHORT-1", stacktest.Stock{OnHand: 1, Reserved: 0, Available: 1})
}

func testUnknownSKU(t *testing.T, s *stack) {
	p := s.placeOrder(t, "US", 1, "NEVER-STOCKED-1")
	wantRejected(t, s, p, "insufficient_stock", "reserve_inventory:failed schedule_shipment:skipped confirm_order:skipped")
	if code := s.GetJSON(t, "inventory", "/api/inventory/NEVER-STOCKED-1", nil); code != http.StatusNotFound {
		t.Errorf("GET the unknown sku: %d, want 404 (the rejection created no stock)", code)
	}
}

func testOneSKUShort(t *testing.T, s *stack) {
	s.Restock(t, "MIX-1", 5)
	s.Restock(t, "MIX-2", 1)
	p := s.placeOrder(t, "US", 2, "MIX-1", "MIX-2")
	wantRejected(t, s, p, "insufficient_stock", "reserve_inventory:failed schedule_shipment:skipped confirm_order:skipped")
	// All or nothing: what MIX-1 held for a moment is back.
	s.WaitStock(t, "MIX-1", stacktest.Stock{OnHand: 5, Reserved: 0, Available: 5})
	s.WaitStock(t, "MIX-2", stacktest.Stock{OnHand: 1, Reserved: 0, Available: 1})
}

func testDestinationNotServed(t *testing.T, s *stack) {
	s.Restock(t, "ICE-1", 5)
	p := s.placeOrder(t, "AQ", 2, "ICE-1")
	v := wantRejected(t, s, p, "destination_not_served", "reserve_inventory:compensated schedule_shipment:failed confirm_order:skipped")
	if !v.Has(shipping.TypeShipmentRefused, "from", "shipping", "outcome", "failure", "reason", "destination_not_served") {
		t.Errorf("history lacks the refusal: %v", v.Events())
	}
	if !v.Has(inventory.TypeStockReservationReleased, "from", "inventory", "compensation", true) {
		t.Errorf("history lacks the release: %v", v.Events())
	}
	s.WaitStock(t, "ICE-1", stacktest.Stock{OnHand: 5, Reserved: 0, Available: 5})
}

func testCancelWhileConfirmed(t *testing.T, s *stack) {
	s.Restock(t, "CANCEL-1", 5)
	p := s.placeOrder(t, "US", 2, "CANCEL-1")
	o := s.WaitOrder(t, p.OrderID, "confirmed", "")
	s.WaitSaga(t, "sagas", p.SagaID, "completed")
	s.Post(t, "orders", "/api/orders/"+p.OrderID+"/cancel", `{}`, http.StatusAccepted, nil)

	v := s.WaitSaga(t, "sagas", p.SagaID, "compensated")
	if got, want := v.StepStatuses(), "reserve_inventory:compensated schedule_shipment:compensated confirm_order:succeeded"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
	if !v.Has(order.TypeOrderCancelled, "external", true) || !v.Has(engine.TypeCompensationStarted, "reason", "cancelled_by_customer") {
		t.Errorf("history lacks the customer's cancel: %v", v.Events())
	}
	// In reverse: the shipment first, then the stock; the order is
	// cancelled already, so it is not rejected.
	if got, want := s.issuedCommands(t, p.SagaID), []string{"inventory.reserve_stock", "shipping.schedule_shipment", "orders.confirm_order",
		"shipping.cancel_shipment", "inventory.release_stock"}; !slices.Equal(got, want) {
		t.Errorf("commands %v, want %v", got, want)
	}
	s.WaitOrder(t, p.OrderID, "cancelled", "cancelled_by_customer")
	s.WaitStock(t, "CANCEL-1", stacktest.Stock{OnHand: 5, Reserved: 0, Available: 5})
	coordinatortest.Eventually(t, within, "shipment cancelled", func() (bool, string) {
		var sh stacktest.Shipment
		code := s.GetJSON(t, "shipping", "/api/shipments/"+o.ShipmentID, &sh)
		return code == http.StatusOK && sh.Status == "cancelled", fmt.Sprintf("%d %s", code, sh.Status)
	})
	if res := s.Do(t, "orders", http.MethodPost, "/api/orders/"+p.OrderID+"/cancel", `{}`); res.Status != http.StatusConflict {
		t.Errorf("cancel a cancelled order: %d %s, want 409", res.Status, res.Body)
	}
}

func testRedeliveredCommand(t *testing.T, s *stack) {
	s.Restock(t, "REDO-1", 5)
	p := s.placeOrder(t, "US", 2, "REDO-1")
	s.WaitSaga(t, "sagas", p.SagaID, "completed")
	s.WaitStock(t, "REDO-1", stacktest.Stock{OnHand: 5, Reserved: 2, Available: 3})
	reservation, stockStream := inventory.ReservationStream(p.OrderID), inventory.Stream("REDO-1")
	before := len(s.events(t, "inventory", reservation)) + len(s.events(t, "inventory", stockStream))

	// The reserve command as the relay published it, delivered again
	// (as after a lost ack): under a new message id, since JetStream
	// itself drops a repeated one.
	i := slices.IndexFunc(s.events(t, "sagas", engine.Stream(p.SagaID)), func(e domain.Envelope) bool {
		return e.Type == engine.TypeCommandIssued
	})
	cmd := s.events(t, "sagas", engine.Stream(p.SagaID))[i]
	duplicates := s.Metric(t, "inventory", "orderflow_command_consumer_duplicates_total")
	parked := s.Metric(t, "inventory", "orderflow_command_consumer_parked_total")
	seq := s.publishAgain(t, "sagas", cmd)
	s.waitWorkQueueTook(t, natsbus.CommandsStream, seq)
	if got := s.Metric(t, "inventory", "orderflow_command_consumer_duplicates_total"); got != duplicates+1 {
		t.Errorf("duplicate commands %v -> %v, want one more: the command was not run again", duplicates, got)
	}
	if got := s.Metric(t, "inventory", "orderflow_command_consumer_parked_total"); got != parked {
		t.Errorf("parked commands %v -> %v", parked, got)
	}

	if after := len(s.events(t, "inventory", reservation)) + len(s.events(t, "inventory", stockStream)); after != before {
		t.Errorf("the redelivered command appended %d events", after-before)
	}
	s.WaitStock(t, "REDO-1", stacktest.Stock{OnHand: 5, Reserved: 2, Available: 3})
}

func testRedeliveredReply(t *testing.T, s *stack) {
	s.Restock(t, "REDO-2", 5)
	p := s.placeOrder(t, "US", 2, "REDO-2")
	s.WaitSaga(t, "sagas", p.SagaID, "completed")
	stream := engine.Stream(p.SagaID)
	before := s.events(t, "sagas", stream)

	// The inventory's answer to the reserve command, delivered again.
	evs := s.events(t, "inventory", inventory.ReservationStream(p.OrderID))
	i := slices.IndexFunc(evs, func(e domain.Envelope) bool { return e.Type == inventory.TypeStockReservationAccepted })
	if i < 0 {
		t.Fatalf("no %s", inventory.TypeStockReservationAccepted)
	}
	received := s.Metric(t, "sagas", "orderflow_saga_events_received_total")
	parked := s.Metric(t, "sagas", "orderflow_saga_events_parked_total")
	seq := s.publishAgain(t, "inventory", evs[i])
	s.waitAcknowledged(t, natsbus.EventsStream, coordinator.DefaultDurable, seq)
	if got := s.Metric(t, "sagas", "orderflow_saga_events_received_total"); got <= received {
		t.Errorf("events received %v -> %v: the reply was not delivered again", received, got)
	}
	if got := s.Metric(t, "sagas", "orderflow_saga_events_parked_total"); got != parked {
		t.Errorf("parked events %v -> %v", parked, got)
	}

	if after := s.events(t, "sagas", stream); len(after) != len(before) {
		t.Errorf("the redelivered reply appended %d saga events", len(after)-len(before))
	}
	s.WaitSaga(t, "sagas", p.SagaID, "completed")
	s.WaitStock(t, "REDO-2", stacktest.Stock{OnHand: 5, Reserved: 2, Available: 3})
}

func testHotSKU(t *testing.T, s *stack) {
	const units, orders = 50, 200
	s.Restock(t, "HOT-1", units)
	errs := make(chan error, orders)
	concurrently(orders, 32, func(int) {
		if _, err := s.PlaceOrder("hot-race", "US", stacktest.Line{SKU: "HOT-1", Quantity: 1}); err != nil {
			errs <- err
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	count := func(status string) int {
		var page struct {
			Items []stacktest.Order `json:"items"`
		}
		if code := s.GetJSON(t, "orders", "/api/orders?customer_id=hot-race&limit=500&status="+status, &page); code != http.StatusOK {
			t.Fatalf("list orders: %d", code)
		}
		if status == "rejected" {
			for _, o := range page.Items {
				if o.Reason != "insufficient_stock" {
					t.Fatalf("order rejected for %s", o.Reason)
				}
			}
		}
		return len(page.Items)
	}
	var confirmed, rejected int
	coordinatortest.Eventually(t, 2*within, "every order decided", func() (bool, string) {
		confirmed, rejected = count("confirmed"), count("rejected")
		return confirmed+rejected == orders, fmt.Sprintf("%d confirmed, %d rejected", confirmed, rejected)
	})
	if confirmed != units || rejected != orders-units {
		t.Errorf("%d confirmed, %d rejected; want %d and %d", confirmed, rejected, units, orders-units)
	}
	s.WaitStock(t, "HOT-1", stacktest.Stock{OnHand: units, Reserved: units, Available: 0})
	for _, status := range []string{"running", "compensating", "failed"} {
		coordinatortest.Eventually(t, within, "no saga "+status, func() (bool, string) {
			page := s.listSagas(t, "status="+status)
			return len(page) == 0, fmt.Sprintf("%d sagas", len(page))
		})
	}
}

// concurrently runs n calls of f on up to workers goroutines.
func concurrently(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
