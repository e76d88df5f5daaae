// Package shipping is the Shipment aggregate: the delivery of one order's
// items to its address, from scheduling to dispatch, unless it is cancelled
// or refused because the destination is not served.
package shipping

import (
	"fmt"
	"slices"
	"strings"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
)

// StreamPrefix starts the name of every shipment stream.
const StreamPrefix = "shipment-"

// Stream is the name of the stream of the shipment with the given id.
func Stream(shipmentID string) string { return StreamPrefix + shipmentID }

// Status is where a shipment is in its life.
type Status string

// The shipment statuses. The zero Status means the shipment does not exist.
const (
	StatusScheduled  Status = "scheduled"
	StatusDispatched Status = "dispatched"
	StatusCancelled  Status = "cancelled"
	// StatusRefused: the shipment was never scheduled because its
	// destination is not served.
	StatusRefused Status = "refused"
)

// ReasonDestinationNotServed is the reason of every refusal.
const ReasonDestinationNotServed = order.ReasonDestinationNotServed

// MaxReason bounds the length of a cancellation reason.
const MaxReason = 200

// Shipment is the state of one shipment, rebuilt from its events.
type Shipment struct {
	ID      string
	OrderID string
	Items   []order.Item
	Address order.Address
	Status  Status
	// Reason is set for cancelled and refused shipments.
	Reason string
}

// Apply records one past event. It never validates: events are facts.
// Events of other types are ignored.
func (s *Shipment) Apply(event any) {
	switch e := event.(type) {
	case ShipmentScheduled:
		s.ID = e.ShipmentID
		s.OrderID = e.OrderID
		s.Items = slices.Clone(e.Items)
		s.Address = e.Address
		s.Status = StatusScheduled
	case ShipmentRefused:
		s.ID = e.ShipmentID
		s.OrderID = e.OrderID
		s.Status = StatusRefused
		s.Reason = e.Reason
	case ShipmentCancelled:
		// A cancel answered with a note changed nothing, except that a
		// shipment never scheduled is closed for good.
		switch s.Status {
		case "":
			s.ID, s.OrderID = e.ShipmentID, e.OrderID
			s.Status, s.Reason = StatusCancelled, e.Reason
		case StatusScheduled:
			s.Status, s.Reason = StatusCancelled, e.Reason
		}
	case ShipmentDispatched:
		s.Status = StatusDispatched
	}
}

// ScheduleShipment is the command that creates a shipment for an order.
type ScheduleShipment struct {
	ShipmentID string
	OrderID    string
	Items      []order.Item
	Address    order.Address
}

// Validate checks every field of c and reports all invalid ones.
func (c ScheduleShipment) Validate() error {
	var v domain.ValidationError
	if !domain.ValidUUID(c.ShipmentID) {
		v.Add("shipment_id", "must be a UUID")
	}
	if !domain.ValidUUID(c.OrderID) {
		v.Add("order_id", "must be a UUID")
	}
	order.ValidateItems(&v, "items", c.Items)
	order.ValidateAddress(&v, "address", c.Address)
	return v.Err()
}

// Schedule decides to schedule a shipment, or to refuse it when served does
// not include the destination country. Scheduling an existing shipment for
// the same order again changes nothing.
func (s *Shipment) Schedule(c ScheduleShipment, served Destinations) ([]any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if s.Status != "" {
		if s.OrderID == c.OrderID && (s.Status == StatusScheduled || s.Status == StatusRefused) {
			return nil, nil
		}
		return nil, domain.Refuse(domain.ErrIllegalState, "shipment %s already exists for order %s and is %s",
			c.ShipmentID, s.OrderID, s.describe())
	}
	if !served.Serves(c.Address.Country) {
		addr := c.Address
		return []any{ShipmentRefused{ShipmentID: c.ShipmentID, OrderID: c.OrderID, Reason: ReasonDestinationNotServed, Items: c.Items, Address: &addr}}, nil
	}
	return []any{ShipmentScheduled{
		ShipmentID: c.ShipmentID,
		OrderID:    c.OrderID,
		Items:      slices.Clone(c.Items),
		Address:    c.Address,
	}}, nil
}

// Refuse decides to refuse a shipment that was never scheduled. Refusing a
// refused shipment again changes nothing.
func (s *Shipment) Refuse(shipmentID, orderID, reason string) ([]any, error) {
	var v domain.ValidationError
	if !domain.ValidUUID(shipmentID) {
		v.Add("shipment_id", "must be a UUID")
	}
	if !domain.ValidUUID(orderID) {
		v.Add("order_id", "must be a UUID")
	}
	if reason != ReasonDestinationNotServed {
		v.Add("reason", "must be "+ReasonDestinationNotServed)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	switch {
	case s.Status == "":
		return []any{ShipmentRefused{ShipmentID: shipmentID, OrderID: orderID, Reason: reason}}, nil
	case s.Status == StatusRefused && s.OrderID == orderID:
		return nil, nil
	}
	return nil, domain.Refuse(domain.ErrIllegalState, "shipment %s is %s; only a shipment that was never scheduled can be refused", shipmentID, s.describe())
}

// Cancel decides to cancel a scheduled shipment. A dispatched shipment
// cannot be cancelled; cancelling one that is cancelled, refused or unknown
// changes nothing, so compensation can be repeated.
func (s *Shipment) Cancel(reason string) ([]any, error) {
	switch {
	case strings.TrimSpace(reason) == "":
		return nil, invalid("reason", "is required")
	case len(reason) > MaxReason:
		return nil, invalid("reason", fmt.Sprintf("must be at most %d bytes", MaxReason))
	}
	switch s.Status {
	case StatusScheduled:
		return []any{ShipmentCancelled{ShipmentID: s.ID, OrderID: s.OrderID, Reason: reason}}, nil
	case StatusDispatched:
		return nil, domain.Refuse(domain.ErrIllegalState, "shipment %s was already dispatched and can no longer be cancelled", s.ID)
	}
	return nil, nil
}

// Dispatch decides that a scheduled shipment left the warehouse.
func (s *Shipment) Dispatch() ([]any, error) {
	switch s.Status {
	case "":
		return nil, domain.Refuse(domain.ErrNotFound, "the shipment does not exist")
	case StatusScheduled:
		return []any{ShipmentDispatched{ShipmentID: s.ID, OrderID: s.OrderID}}, nil
	}
	return nil, domain.Refuse(domain.ErrIllegalState, "shipment %s is %s; only a scheduled shipment can be dispatched", s.ID, s.describe())
}

// describe is the shipment's status as the API shows it: a refused
// shipment is shown as cancelled, with its reason.
func (s *Shipment) describe() string {
	if s.Status == StatusRefused {
		return "cancelled because its destination is not served"
	}
	return string(s.Status)
}

func invalid(field, message string) error {
	v := &domain.ValidationError{}
	v.Add(field, message)
	return v
}
