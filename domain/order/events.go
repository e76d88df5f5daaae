package order

import (
	"time"

	"github.com/orderflow/orderflow/domain"
)

// Event type names, as stored in domain.Envelope.Type.
const (
	TypeOrderPlaced    = "OrderPlaced"
	TypeOrderConfirmed = "OrderConfirmed"
	TypeOrderRejected  = "OrderRejected"
	TypeOrderCancelled = "OrderCancelled"
	TypeOrderShipped   = "OrderShipped"
)

// OrderPlaced: a customer placed an order; it is pending until its saga
// confirms or rejects it.
type OrderPlaced struct {
	OrderID         string    `json:"order_id"`
	SagaID          string    `json:"saga_id"`
	CustomerID      string    `json:"customer_id"`
	Items           []Item    `json:"items"`
	ShippingAddress Address   `json:"shipping_address"`
	TotalCents      int64     `json:"total_cents"`
	PlacedAt        time.Time `json:"placed_at"`
}

// OrderConfirmed: stock is reserved and a shipment scheduled.
type OrderConfirmed struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
}

// OrderRejected: fulfilment failed; Reason says why.
type OrderRejected struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// OrderCancelled: the order was called off (by the customer, or by a
// timeout) before it shipped.
type OrderCancelled struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// OrderShipped: the order's shipment was dispatched.
type OrderShipped struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
}

// RegisterEvents registers the order events (all at schema version 1).
func RegisterEvents(r *domain.Registry) error {
	for name, example := range map[string]any{
		TypeOrderPlaced:    OrderPlaced{},
		TypeOrderConfirmed: OrderConfirmed{},
		TypeOrderRejected:  OrderRejected{},
		TypeOrderCancelled: OrderCancelled{},
		TypeOrderShipped:   OrderShipped{},
	} {
		if err := r.Register(name, 1, example); err != nil {
			return err
		}
	}
	return nil
}
