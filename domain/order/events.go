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
//
// It is stored at schema version 2 (PlacedSchemaVersion), whose JSON is
// that of version 1 with a currency and with the shipping address split
// into the recipient (who) and the destination (where); see MarshalJSON.
// Version 1 events are read through UpcastPlacedV1. The Go value keeps the
// address whole, as the API and the shipping context know it.
type OrderPlaced struct {
	OrderID    string
	SagaID     string
	CustomerID string
	Items      []Item
	// Currency is the ISO 4217 code of every price of the order, e.g.
	// "USD"; orders placed before it was recorded are in DefaultCurrency.
	Currency        string
	ShippingAddress Address
	TotalCents      int64
	PlacedAt        time.Time
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

// RegisterEvents registers the order events: OrderPlaced at schema version
// 2 with its upcaster from version 1, the others at version 1.
func RegisterEvents(r *domain.Registry) error {
	if err := r.Register(TypeOrderPlaced, PlacedSchemaVersion, OrderPlaced{}); err != nil {
		return err
	}
	if err := r.RegisterUpcaster(TypeOrderPlaced, 1, UpcastPlacedV1); err != nil {
		return err
	}
	for name, example := range map[string]any{
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
