// Package order is the Order aggregate: a customer's order from placement
// through confirmation to shipping, or to its rejection or cancellation.
//
// The state is rebuilt from the order's stream with Apply; the decision
// methods validate a command against it and return the events to append,
// without changing it.
package order

import (
	"slices"
	"time"

	"github.com/orderflow/orderflow/domain"
)

// StreamPrefix starts the name of every order stream.
const StreamPrefix = "order-"

// Stream is the name of the stream of the order with the given id.
func Stream(orderID string) string { return StreamPrefix + orderID }

// Status is where an order is in its life.
type Status string

// The order statuses. The zero Status means the order was never placed.
const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusRejected  Status = "rejected"
	StatusCancelled Status = "cancelled"
	StatusShipped   Status = "shipped"
)

// Why an order was rejected or cancelled.
const (
	ReasonInsufficientStock    = "insufficient_stock"
	ReasonDestinationNotServed = "destination_not_served"
	ReasonStepTimeout          = "step_timeout"
	ReasonCancelledByCustomer  = "cancelled_by_customer"
)

// ValidReason reports whether r is one of the Reason constants.
func ValidReason(r string) bool {
	switch r {
	case ReasonInsufficientStock, ReasonDestinationNotServed, ReasonStepTimeout, ReasonCancelledByCustomer:
		return true
	}
	return false
}

// Item is one order line.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Address is where an order ships to.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// Order is the state of one order, rebuilt from its events.
type Order struct {
	ID              string
	SagaID          string
	CustomerID      string
	Items           []Item
	ShippingAddress Address
	TotalCents      int64
	PlacedAt        time.Time
	Status          Status
	// ShipmentID is set once the order is confirmed.
	ShipmentID string
	// Reason is set for rejected and cancelled orders.
	Reason string
}

// Apply records one past event. It never validates: events are facts.
// Events of other types are ignored.
func (o *Order) Apply(event any) {
	switch e := event.(type) {
	case OrderPlaced:
		o.ID = e.OrderID
		o.SagaID = e.SagaID
		o.CustomerID = e.CustomerID
		o.Items = slices.Clone(e.Items)
		o.ShippingAddress = e.ShippingAddress
		o.TotalCents = e.TotalCents
		o.PlacedAt = e.PlacedAt
		o.Status = StatusPending
	case OrderConfirmed:
		o.Status = StatusConfirmed
		o.ShipmentID = e.ShipmentID
	case OrderRejected:
		o.Status = StatusRejected
		o.Reason = e.Reason
	case OrderCancelled:
		o.Status = StatusCancelled
		o.Reason = e.Reason
	case OrderShipped:
		o.Status = StatusShipped
	}
}

// PlaceOrder is the command that creates an order.
type PlaceOrder struct {
	OrderID    string
	SagaID     string
	CustomerID string
	Items      []Item
	// Currency is the ISO 4217 code of the prices; empty means
	// DefaultCurrency.
	Currency string
	Address  Address
	// At is when the order is placed.
	At time.Time
}

// Validate checks every field of c and reports all invalid ones, with the
// field paths of the HTTP request (customer_id, items[0].quantity,
// shipping_address.country, ...).
func (c PlaceOrder) Validate() error {
	var v domain.ValidationError
	if !domain.ValidUUID(c.OrderID) {
		v.Add("order_id", "must be a UUID")
	}
	if !domain.ValidUUID(c.SagaID) {
		v.Add("saga_id", "must be a UUID")
	}
	switch {
	case c.CustomerID == "":
		v.Add("customer_id", "is required")
	case !domain.ValidExternalID(c.CustomerID):
		v.Add("customer_id", domain.ExternalIDRule)
	}
	ValidateItems(&v, "items", c.Items)
	if c.Currency != "" && !ValidCurrency(c.Currency) {
		v.Add("currency", "must be an ISO 4217 currency code in upper case, e.g. USD")
	}
	ValidateAddress(&v, "shipping_address", c.Address)
	if c.At.IsZero() {
		v.Add("placed_at", "is required")
	}
	return v.Err()
}

// Place decides to place a new order.
func (o *Order) Place(c PlaceOrder) ([]any, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if o.Status != "" {
		return nil, domain.Refuse(domain.ErrIllegalState, "order %s was already placed", c.OrderID)
	}
	var total int64
	for _, it := range c.Items {
		total += int64(it.Quantity) * it.UnitPriceCents
	}
	currency := c.Currency
	if currency == "" {
		currency = DefaultCurrency
	}
	return []any{OrderPlaced{
		OrderID:         c.OrderID,
		SagaID:          c.SagaID,
		CustomerID:      c.CustomerID,
		Items:           slices.Clone(c.Items),
		Currency:        currency,
		ShippingAddress: c.Address,
		TotalCents:      total,
		PlacedAt:        c.At.UTC(),
	}}, nil
}

// Confirm decides to confirm a pending order once its shipment is
// scheduled. Confirming it again with the same shipment changes nothing.
func (o *Order) Confirm(shipmentID string) ([]any, error) {
	if !domain.ValidUUID(shipmentID) {
		return nil, invalid("shipment_id", "must be a UUID")
	}
	switch {
	case o.Status == "":
		return nil, o.notFound()
	case o.Status == StatusConfirmed && o.ShipmentID == shipmentID:
		return nil, nil
	case o.Status != StatusPending:
		return nil, o.illegal("a pending order", "confirmed")
	}
	return []any{OrderConfirmed{OrderID: o.ID, ShipmentID: shipmentID}}, nil
}

// Reject decides to reject a pending or confirmed order because fulfilment
// failed.
// Rejecting a rejected order changes nothing, so that compensation can be
// repeated.
func (o *Order) Reject(reason string) ([]any, error) {
	if !ValidReason(reason) {
		return nil, invalid("reason", "must be one of insufficient_stock, destination_not_served, step_timeout, cancelled_by_customer")
	}
	switch o.Status {
	case "":
		return nil, o.notFound()
	case StatusRejected:
		return nil, nil
	case StatusPending, StatusConfirmed:
		// A confirmed order is rejected when its saga gave up on the
		// confirmation (step_timeout) and compensated, and the confirm
		// it had sent ran late: the saga's decision stands, since the
		// stock is released and the shipment cancelled already.
		return []any{OrderRejected{OrderID: o.ID, Reason: reason}}, nil
	}
	return nil, o.illegal("a pending or confirmed order", "rejected")
}

// Cancel decides to cancel a pending or confirmed order. An order that is
// shipped, rejected or already cancelled cannot be cancelled.
func (o *Order) Cancel(reason string) ([]any, error) {
	if !ValidReason(reason) {
		return nil, invalid("reason", "must be one of insufficient_stock, destination_not_served, step_timeout, cancelled_by_customer")
	}
	switch o.Status {
	case "":
		return nil, o.notFound()
	case StatusPending, StatusConfirmed:
		return []any{OrderCancelled{OrderID: o.ID, Reason: reason}}, nil
	}
	return nil, o.illegal("a pending or confirmed order", "cancelled")
}

// MarkShipped decides that a confirmed order has shipped. Marking a shipped
// order again changes nothing.
func (o *Order) MarkShipped() ([]any, error) {
	switch o.Status {
	case "":
		return nil, o.notFound()
	case StatusShipped:
		return nil, nil
	case StatusConfirmed:
		return []any{OrderShipped{OrderID: o.ID, ShipmentID: o.ShipmentID}}, nil
	}
	return nil, o.illegal("a confirmed order", "marked as shipped")
}

// notFound refuses a command on an order that was never placed. The state
// of such an order does not know its id; the caller's error names it.
func (o *Order) notFound() error {
	return domain.Refuse(domain.ErrNotFound, "the order does not exist")
}

// illegal refuses a command the order's status does not allow, saying
// which orders allow it (who) and what the command does (done).
func (o *Order) illegal(who, done string) error {
	return domain.Refuse(domain.ErrIllegalState, "order %s is %s; only %s can be %s", o.ID, o.Status, who, done)
}

func invalid(field, message string) error {
	v := &domain.ValidationError{}
	v.Add(field, message)
	return v
}
