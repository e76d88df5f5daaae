package sagas_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/stacktest"
)

// short is the timing of the stacks that leave a service out: an attempt
// waits two seconds, and every step and compensation gets two attempts.
var short = coordinator.Config{
	Timing: engine.Timing{
		Timeout:           2 * time.Second,
		Retry:             engine.RetryPolicy{MaxAttempts: 2, Initial: 100 * time.Millisecond, Multiplier: 2},
		CompensationRetry: engine.RetryPolicy{MaxAttempts: 2, Initial: 100 * time.Millisecond, Multiplier: 2},
	},
	PollInterval: 100 * time.Millisecond,
}

// patient is short with forward steps that keep trying for half a
// minute: a test that must act while a step is in flight has time to.
var patient = func() coordinator.Config {
	c := short
	c.Timing.Retry.MaxAttempts = 15
	c.Timing.Retry.Max = 2 * time.Second
	return c
}()

// TestStepTimeout: with the inventory service down, the reservation goes
// unanswered through its attempts, the order is rejected step_timeout,
// and the release of what the reservation may have held, unanswered too,
// parks the saga as failed. Once the inventory service is back it runs
// what was sent meanwhile; the release's answer resumes the saga, which
// ends compensated with no stock held.
func TestStepTimeout(t *testing.T) {
	s := newStack(t, short, allServices...)
	s.Restock(t, "SLOW-1", 5)
	s.WaitStock(t, "SLOW-1", stacktest.Stock{OnHand: 5, Available: 5})
	s.stop("inventory")

	p := s.placeOrder(t, "US", 2, "SLOW-1")
	s.WaitOrder(t, p.OrderID, "rejected", "step_timeout")
	// Parked on the release (a step whose compensation is parked shows
	// as compensating).
	v := s.WaitSagaAt(t, "sagas", p.SagaID, "failed", engine.StepReserveInventory)
	if got, want := v.StepStatuses(), "reserve_inventory:compensating schedule_shipment:skipped confirm_order:skipped"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
	if st := v.Steps[0]; st.Attempts != 2 || st.CompensationAttempts != 2 {
		t.Errorf("reserve_inventory %+v: want 2 attempts and 2 of its release", st)
	}
	for _, want := range []struct {
		event  string
		detail []any
	}{
		{engine.TypeAttemptTimedOut, []any{"step", engine.StepReserveInventory, "attempt", 1}},
		{engine.TypeStepTimedOut, []any{"step", engine.StepReserveInventory, "attempts", 2}},
		{engine.TypeCompensationStarted, []any{"reason", "step_timeout"}},
		{order.TypeOrderRejected, []any{"from", "orders"}},
		{engine.TypeSagaFailed, []any{"reason", "compensation_timeout"}},
	} {
		if !v.Has(want.event, want.detail...) {
			t.Errorf("history lacks %s %v: %v", want.event, want.detail, v.Events())
		}
	}
	if n := s.Metric(t, "sagas", "orderflow_sagas_failed_total"); n < 1 {
		t.Errorf("orderflow_sagas_failed_total %v, want >= 1", n)
	}
	coordinatortest.Eventually(t, within, "the saga listed as failed", func() (bool, string) {
		items := s.listSagas(t, "status=failed")
		return len(items) == 1 && items[0].SagaID == p.SagaID, fmt.Sprintf("%+v", items)
	})

	s.start("inventory")
	v = s.WaitSaga(t, "sagas", p.SagaID, "compensated")
	if !v.Has(inventory.TypeStockReservationReleased, "from", "inventory", "compensation", true) {
		t.Errorf("history lacks the release: %v", v.Events())
	}
	stacktest.WaitDrained(t, s.js, natsbus.CommandsStream, "commands-inventory", within)
	// Whatever order the late reservations and releases ran in, nothing
	// is held: a release fences the order's reservation.
	s.WaitStock(t, "SLOW-1", stacktest.Stock{OnHand: 5, Reserved: 0, Available: 5})
	s.WaitOrder(t, p.OrderID, "rejected", "step_timeout")
}

// TestCancelWhilePendingParksAndRetry: with the shipping service down, a
// customer cancels an order whose shipment is being scheduled. The
// reservation is released, but the cancellation of the shipment, whose
// scheduling went unanswered, is unanswered too: the saga is parked as
// failed. An operator brings shipping back and retries; the saga ends
// compensated.
func TestCancelWhilePendingParksAndRetry(t *testing.T) {
	s := newStack(t, patient, "orders", "inventory", "sagas")
	s.Restock(t, "PEND-1", 5)
	p := s.placeOrder(t, "US", 2, "PEND-1")
	coordinatortest.Eventually(t, within, "the shipment being scheduled", func() (bool, string) {
		var v stacktest.Saga
		s.GetJSON(t, "sagas", "/api/sagas/"+p.SagaID, &v)
		return v.Status == "running" && v.CurrentStep == engine.StepScheduleShipment, v.Status + " " + v.CurrentStep
	})
	s.WaitOrder(t, p.OrderID, "pending", "")
	s.Post(t, "orders", "/api/orders/"+p.OrderID+"/cancel", `{}`, http.StatusAccepted, nil)

	s.WaitOrder(t, p.OrderID, "cancelled", "cancelled_by_customer")
	// Parked on the cancellation of the shipment.
	v := s.WaitSagaAt(t, "sagas", p.SagaID, "failed", engine.StepScheduleShipment)
	if got, want := v.StepStatuses(), "reserve_inventory:compensated schedule_shipment:compensating confirm_order:skipped"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
	if !v.Has(order.TypeOrderCancelled, "external", true) || !v.Has(engine.TypeCompensationStarted, "reason", "cancelled_by_customer") ||
		!v.Has(engine.TypeSagaFailed, "reason", "compensation_timeout") {
		t.Errorf("history %v", v.Events())
	}
	// What is known to have happened is undone first: the stock is back
	// while the saga waits for an operator.
	s.WaitStock(t, "PEND-1", stacktest.Stock{OnHand: 5, Reserved: 0, Available: 5})

	for _, tt := range []struct {
		id   string
		want int
	}{
		{"00000000-0000-4000-8000-000000000000", http.StatusNotFound},
		{"not-a-saga", http.StatusNotFound},
	} {
		if res := s.Do(t, "sagas", http.MethodPost, "/api/sagas/"+tt.id+"/retry", `{}`); res.Status != tt.want {
			t.Errorf("retry %s: %d %s, want %d", tt.id, res.Status, res.Body, tt.want)
		}
	}

	// The commands sent while shipping was down are dropped, as when the
	// broker's retention has lapsed: only the operator's retry can end
	// the saga now.
	ctx := context.Background()
	commands, err := s.js.Stream(ctx, natsbus.CommandsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := commands.Purge(ctx, jetstream.WithPurgeSubject("commands.shipping.>")); err != nil {
		t.Fatal(err)
	}
	s.start("shipping")
	var accepted struct {
		SagaID string `json:"saga_id"`
		Status string `json:"status"`
	}
	res := s.Post(t, "sagas", "/api/sagas/"+p.SagaID+"/retry", `{}`, http.StatusAccepted, &accepted)
	if accepted.SagaID != p.SagaID || accepted.Status != "compensating" || res.Header.Get("Location") != "/api/sagas/"+p.SagaID {
		t.Errorf("retry answered %+v, Location %q", accepted, res.Header.Get("Location"))
	}

	v = s.WaitSaga(t, "sagas", p.SagaID, "compensated")
	if !v.Has(engine.TypeSagaRetried, "step", engine.StepScheduleShipment, "attempt", 3) {
		t.Errorf("history lacks the retry: %v", v.Events())
	}
	// The retry's own attempt (the third) is the one answered.
	if !v.Has(shipping.TypeShipmentCancelled, "from", "shipping", "compensation", true, "attempt", 3) {
		t.Errorf("history lacks the answer to the retried cancellation: %v", v.Events())
	}
	if st := v.Steps[1]; st.CompensationAttempts != 3 {
		t.Errorf("schedule_shipment %+v: want 3 attempts of its cancellation", st)
	}
	if res := s.Do(t, "sagas", http.MethodPost, "/api/sagas/"+p.SagaID+"/retry", `{}`); res.Status != http.StatusConflict {
		t.Errorf("retry a compensated saga: %d %s, want 409", res.Status, res.Body)
	}
	s.WaitOrder(t, p.OrderID, "cancelled", "cancelled_by_customer")
	s.WaitStock(t, "PEND-1", stacktest.Stock{OnHand: 5, Reserved: 0, Available: 5})
}
