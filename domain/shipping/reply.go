package shipping

import (
	"errors"
	"slices"

	"github.com/orderflow/orderflow/domain"
)

// Notes of a ShipmentCancelled that answers a cancel which found nothing
// to call off.
const (
	NoteAlreadyCancelled = "already_cancelled"
	NoteRefused          = "refused"
	NoteNeverScheduled   = "never_scheduled"
)

// The decisions below take the commands a saga sends to a shipment, which
// must always be answered by an event (see the order package's replies
// for the rule): the plain decision's events when it raises any; the
// shipment's state raised again when it already is what the command asks
// for; ShipmentCommandRejected when its state refuses the command.

// ScheduleReply answers a schedule command: ShipmentScheduled or
// ShipmentRefused, raised again for a shipment already scheduled or
// refused for the same order, and ShipmentCommandRejected for a shipment
// that is cancelled, dispatched or another order's.
func (s *Shipment) ScheduleReply(c ScheduleShipment, served Destinations) ([]any, error) {
	evs, err := s.Schedule(c, served)
	var refusal *domain.Refusal
	switch {
	case errors.As(err, &refusal):
		detail := refusal.Detail
		if s.Status == StatusCancelled && s.OrderID == "" {
			detail = "shipment " + c.ShipmentID + " was cancelled before it was scheduled"
		}
		return []any{ShipmentCommandRejected{ShipmentID: c.ShipmentID, OrderID: c.OrderID, Status: string(s.Status), Detail: detail}}, nil
	case err != nil:
		return nil, err
	case len(evs) > 0:
		return evs, nil
	case s.Status == StatusRefused:
		return []any{ShipmentRefused{ShipmentID: s.ID, OrderID: s.OrderID, Reason: s.Reason}}, nil
	}
	return []any{ShipmentScheduled{ShipmentID: s.ID, OrderID: s.OrderID, Items: slices.Clone(s.Items), Address: s.Address}}, nil
}

// CancelReply answers a cancel command for the shipment shipmentID, a
// compensation that must complete whatever happened before:
// ShipmentCancelled for a scheduled shipment, and ShipmentCancelled with a
// note for one that is cancelled or refused already, or was never
// scheduled (it then never will be: a schedule arriving after its
// compensation is refused). A dispatched shipment cannot be called back:
// ShipmentCommandRejected.
func (s *Shipment) CancelReply(shipmentID, reason string) ([]any, error) {
	if !domain.ValidUUID(shipmentID) {
		return nil, invalid("shipment_id", "must be a UUID")
	}
	evs, err := s.Cancel(reason)
	var refusal *domain.Refusal
	switch {
	case errors.As(err, &refusal):
		return []any{ShipmentCommandRejected{ShipmentID: shipmentID, OrderID: s.OrderID, Status: string(s.Status), Detail: refusal.Detail}}, nil
	case err != nil:
		return nil, err
	case len(evs) > 0:
		return evs, nil
	}
	note := NoteNeverScheduled
	switch s.Status {
	case StatusCancelled:
		note = NoteAlreadyCancelled
	case StatusRefused:
		note = NoteRefused
	}
	return []any{ShipmentCancelled{ShipmentID: shipmentID, OrderID: s.OrderID, Reason: reason, Note: note}}, nil
}
