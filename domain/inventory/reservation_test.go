package inventory_test

import (
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/aggtest"
	"github.com/orderflow/orderflow/domain/inventory"
)

type reservationCase = aggtest.Case[inventory.Reservation]

var (
	lines     = []inventory.Line{{SKU: "SKU-1", Quantity: 2}, {SKU: "SKU-2", Quantity: 1}}
	accepted  = inventory.StockReservationAccepted{OrderID: orderA, Lines: lines}
	short     = inventory.StockReservationRejected{OrderID: orderA, Reason: inventory.ReasonInsufficientStock, SKU: "SKU-2", Requested: 1, Available: 0}
	settled   = inventory.StockReservationRejected{OrderID: orderA, Reason: inventory.ReasonReservationSettled}
	releasedR = inventory.StockReservationReleased{OrderID: orderA}
	consumedR = inventory.StockReservationConsumed{OrderID: orderA}
)

func reservation(want inventory.ReservationStatus) func(testing.TB, *inventory.Reservation) {
	return func(t testing.TB, r *inventory.Reservation) {
		t.Helper()
		if r.Status != want {
			t.Errorf("status = %q, want %q", r.Status, want)
		}
	}
}

func TestReservationAnswer(t *testing.T) {
	answer := func(r *inventory.Reservation) ([]any, error) { return r.Answer(orderA) }
	aggtest.Run(t, []reservationCase{
		{Name: "nothing answered yet: ask the stock", When: answer, Check: reservation("")},
		{Name: "accepted: accepted again", Given: []any{accepted}, When: answer, Then: []any{accepted}, Check: reservation(inventory.ReservationAccepted)},
		{Name: "rejected: the same rejection again", Given: []any{short}, When: answer, Then: []any{short}, Check: reservation(inventory.ReservationRejected)},
		{Name: "released: settled", Given: []any{accepted, releasedR}, When: answer, Then: []any{settled}, Check: reservation(inventory.ReservationReleased)},
		{Name: "released before any reservation: settled", Given: []any{releasedR}, When: answer, Then: []any{settled}, Check: reservation(inventory.ReservationReleased)},
		{Name: "consumed: settled", Given: []any{accepted, consumedR}, When: answer, Then: []any{settled}, Check: reservation(inventory.ReservationConsumed)},
		{Name: "bad order id", When: func(r *inventory.Reservation) ([]any, error) { return r.Answer("o") }, WantFields: []string{"order_id"}},
	})
}

func TestReservationAccept(t *testing.T) {
	accept := func(ls []inventory.Line) func(*inventory.Reservation) ([]any, error) {
		return func(r *inventory.Reservation) ([]any, error) { return r.Accept(orderA, ls) }
	}
	aggtest.Run(t, []reservationCase{
		{Name: "first answer", When: accept(lines), Then: []any{accepted}, Check: reservation(inventory.ReservationAccepted)},
		{Name: "after a rejection: the rejection stands", Given: []any{short}, When: accept(lines), WantErr: domain.ErrIllegalState},
		{Name: "again repeats the accepted lines", Given: []any{accepted}, When: accept(lines[:1]), Then: []any{accepted}, Check: reservation(inventory.ReservationAccepted)},
		{Name: "released reservation", Given: []any{releasedR}, When: accept(lines), WantErr: domain.ErrIllegalState},
		{Name: "consumed reservation", Given: []any{accepted, consumedR}, When: accept(lines), WantErr: domain.ErrIllegalState},
		{Name: "no lines", When: accept(nil), WantFields: []string{"lines"}},
	})
}

func TestReservationRejectReleaseConsume(t *testing.T) {
	reject := func(rej inventory.StockReservationRejected) func(*inventory.Reservation) ([]any, error) {
		return func(r *inventory.Reservation) ([]any, error) { return r.Reject(rej) }
	}
	release := func(r *inventory.Reservation) ([]any, error) { return r.Release(orderA) }
	consume := func(r *inventory.Reservation) ([]any, error) { return r.Consume(orderA) }
	aggtest.Run(t, []reservationCase{
		{Name: "reject", When: reject(short), Then: []any{short}, Check: reservation(inventory.ReservationRejected)},
		{Name: "an accepted reservation stands", Given: []any{accepted}, When: reject(short), Then: []any{accepted},
			Check: reservation(inventory.ReservationAccepted)},
		{Name: "the first rejection stands", Given: []any{short}, When: reject(settled), Then: []any{short},
			Check: reservation(inventory.ReservationRejected)},
		{Name: "a released reservation is settled", Given: []any{releasedR}, When: reject(short), Then: []any{settled},
			Check: reservation(inventory.ReservationReleased)},
		{Name: "a rejection applied after acceptance does not undo it", Given: []any{accepted, short}, When: func(r *inventory.Reservation) ([]any, error) { return r.Answer(orderA) },
			Then: []any{accepted}, Check: reservation(inventory.ReservationAccepted)},
		{Name: "reject for an unknown reason", When: reject(inventory.StockReservationRejected{OrderID: orderA, Reason: "bored"}), WantFields: []string{"reason"}},
		{Name: "release what is held", Given: []any{accepted}, When: release, Then: []any{releasedR}, Check: reservation(inventory.ReservationReleased)},
		{Name: "release with nothing held still answers", When: release, Then: []any{releasedR}, Check: reservation(inventory.ReservationReleased)},
		{Name: "release again still answers", Given: []any{accepted, releasedR}, When: release, Then: []any{releasedR}, Check: reservation(inventory.ReservationReleased)},
		{Name: "release after consume answers and stays consumed", Given: []any{accepted, consumedR}, When: release, Then: []any{releasedR},
			Check: reservation(inventory.ReservationConsumed)},
		{Name: "consume what is held", Given: []any{accepted}, When: consume, Then: []any{consumedR}, Check: reservation(inventory.ReservationConsumed)},
		{Name: "consume after release answers and stays released", Given: []any{accepted, releasedR}, When: consume, Then: []any{consumedR},
			Check: reservation(inventory.ReservationReleased)},
		{Name: "release: bad order id", When: func(r *inventory.Reservation) ([]any, error) { return r.Release("x") }, WantFields: []string{"order_id"}},
		{Name: "consume: bad order id", When: func(r *inventory.Reservation) ([]any, error) { return r.Consume("x") }, WantFields: []string{"order_id"}},
	})
}

func TestReservationCloneSharesNothing(t *testing.T) {
	r := aggtest.State[inventory.Reservation](accepted, short)
	c := r.Clone()
	c.Lines[0].Quantity = 99
	c.Rejection.SKU = "X"
	if r.Lines[0].Quantity != 2 || r.Rejection.SKU != "SKU-2" {
		t.Errorf("changing the clone changed the original: %+v", r)
	}
}

func TestReservationEventsRoundTrip(t *testing.T) {
	aggtest.RoundTrip(t, inventory.RegisterEvents, accepted, short, settled, releasedR, consumedR)
}
