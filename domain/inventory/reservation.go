package inventory

import (
	"fmt"
	"slices"

	"github.com/orderflow/orderflow/domain"
)

// The Reservation aggregate is an order's reservation as a whole, across
// its skus: one stream per order, reservation-<order_id>. The stock of
// each sku stays the truth about quantities (its stream is where oversell
// is prevented); the reservation is where the answers to a saga's
// reserve, release and consume commands are recorded, each caused by the
// command it answers, so that the saga hears one event per command
// whatever happened on the skus. It also fences an order whose
// reservation was released or consumed: a reservation that comes later,
// as a late attempt of a saga that already gave up, is refused.

// ReservationStreamPrefix starts the name of every reservation stream.
const ReservationStreamPrefix = "reservation-"

// ReservationStream is the name of the stream of the reservation of the
// order with the given id.
func ReservationStream(orderID string) string { return ReservationStreamPrefix + orderID }

// Why a reservation was rejected (StockReservationRejected.Reason).
const (
	// ReasonInsufficientStock: a sku has less available than asked for,
	// or was never restocked. The same word as the order's reason.
	ReasonInsufficientStock = "insufficient_stock"
	// ReasonReservationSettled: the order's reservation was already
	// released or consumed, so it cannot be made (again).
	ReasonReservationSettled = "reservation_settled"
)

// ReservationStatus is where an order's reservation is in its life.
type ReservationStatus string

// The reservation statuses. The zero status means no command about the
// order's reservation was answered yet.
const (
	ReservationAccepted ReservationStatus = "accepted"
	ReservationRejected ReservationStatus = "rejected"
	ReservationReleased ReservationStatus = "released"
	ReservationConsumed ReservationStatus = "consumed"
)

// Reservation is the state of one order's reservation, rebuilt from its
// events.
type Reservation struct {
	OrderID string
	Status  ReservationStatus
	// Lines are the quantities held, once accepted.
	Lines []Line
	// Rejection is the last rejection, kept to answer a repeated
	// reservation the same way.
	Rejection *StockReservationRejected
}

// Apply records one past event. It never validates: events are facts.
// Events of other types are ignored.
func (r *Reservation) Apply(event any) {
	switch e := event.(type) {
	case StockReservationAccepted:
		r.OrderID = e.OrderID
		r.Lines = slices.Clone(e.Lines)
		r.Status = ReservationAccepted
	case StockReservationRejected:
		r.OrderID = e.OrderID
		rej := e
		r.Rejection = &rej
		// A rejection answers one command; it does not undo a
		// reservation another command holds, nor reopen a settled one.
		if r.Status == "" {
			r.Status = ReservationRejected
		}
	case StockReservationReleased:
		r.OrderID = e.OrderID
		if r.Status != ReservationConsumed {
			r.Status = ReservationReleased
		}
	case StockReservationConsumed:
		r.OrderID = e.OrderID
		if r.Status != ReservationReleased {
			r.Status = ReservationConsumed
		}
	}
}

// Settled reports whether the reservation was released or consumed: the
// order may not reserve stock any more.
func (r *Reservation) Settled() bool {
	return r.Status == ReservationReleased || r.Status == ReservationConsumed
}

// Answer decides the answer to a reservation request that the
// reservation's state alone settles: the accepted lines again for an
// accepted reservation, the earlier rejection again for a rejected one,
// and a rejection for a settled one. It raises nothing when the stock
// must be asked (no answer yet).
func (r *Reservation) Answer(orderID string) ([]any, error) {
	if !domain.ValidUUID(orderID) {
		return nil, invalid("order_id", "must be a UUID")
	}
	switch r.Status {
	case ReservationAccepted:
		return []any{StockReservationAccepted{OrderID: orderID, Lines: slices.Clone(r.Lines)}}, nil
	case ReservationRejected:
		rej := *r.Rejection
		return []any{rej}, nil
	case ReservationReleased, ReservationConsumed:
		return []any{StockReservationRejected{OrderID: orderID, Reason: ReasonReservationSettled}}, nil
	}
	return nil, nil
}

// Accept decides that the order's lines are held. The first answer to an
// order's reservation stands: a reservation that was rejected or is
// settled cannot be accepted (the caller must give back what it reserved
// and repeat the standing answer), and accepting an accepted one again
// repeats it.
func (r *Reservation) Accept(orderID string, lines []Line) ([]any, error) {
	var v domain.ValidationError
	if !domain.ValidUUID(orderID) {
		v.Add("order_id", "must be a UUID")
	}
	if len(lines) == 0 {
		v.Add("lines", "must hold at least 1 line")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	switch r.Status {
	case "":
		return []any{StockReservationAccepted{OrderID: orderID, Lines: slices.Clone(lines)}}, nil
	case ReservationAccepted:
		return r.Answer(orderID)
	}
	return nil, domain.Refuse(domain.ErrIllegalState, "the reservation of order %s was already %s; it cannot be made now", orderID, r.Status)
}

// Reject decides that a reservation request was not granted; rej says
// why. When the order's reservation was answered before, the standing
// answer is repeated instead: a rejection does not undo an accepted
// reservation.
func (r *Reservation) Reject(rej StockReservationRejected) ([]any, error) {
	var v domain.ValidationError
	if !domain.ValidUUID(rej.OrderID) {
		v.Add("order_id", "must be a UUID")
	}
	switch rej.Reason {
	case ReasonInsufficientStock, ReasonReservationSettled:
	default:
		v.Add("reason", fmt.Sprintf("must be %s or %s", ReasonInsufficientStock, ReasonReservationSettled))
	}
	if rej.Requested < 0 || rej.Available < 0 {
		v.Add("requested", "quantities must not be negative")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if r.Status != "" {
		return r.Answer(rej.OrderID)
	}
	return []any{rej}, nil
}

// Release decides that the order's reservation was given back. It is
// always raised, also when nothing was held, so that a compensation is
// answered however often it is sent.
func (r *Reservation) Release(orderID string) ([]any, error) {
	if !domain.ValidUUID(orderID) {
		return nil, invalid("order_id", "must be a UUID")
	}
	return []any{StockReservationReleased{OrderID: orderID}}, nil
}

// Consume decides that the order's reservation left with its shipment. It
// is always raised, like Release.
func (r *Reservation) Consume(orderID string) ([]any, error) {
	if !domain.ValidUUID(orderID) {
		return nil, invalid("order_id", "must be a UUID")
	}
	return []any{StockReservationConsumed{OrderID: orderID}}, nil
}
