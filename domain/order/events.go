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

	TypeOrderCommandRejected = "OrderCommandRejected"
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

// OrderCommandRejected: the order's state refused a command that must be
// answered (one a saga sent), so the order did not change. Status is the
// order's status then ("" for an order that does not exist), Reason its
// reason when it is rejected or cancelled, and Detail says why in the
// API's words.
type OrderCommandRejected struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Detail  string `json:"detail"`
}

// RegisterEvents registers the order events (all at schema version 1).
func RegisterEvents(r *domain.Registry) error {
	for name, example := range map[string]any{
		TypeOrderPlaced:    OrderPlaced{},
		TypeOrderConfirmed: OrderConfirmed{},
		TypeOrderRejected:  OrderRejected{},
		TypeOrderCancelled: OrderCancelled{},
		TypeOrderShipped:   OrderShipped{},

		TypeOrderCommandRejected: OrderCommandRejected{},
	} {
		if err := r.Register(name, 1, example); err != nil {
			return err
		}
	}
	return nil
}
