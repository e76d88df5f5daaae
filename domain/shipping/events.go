package shipping

import (
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
)

// Event type names, as stored in domain.Envelope.Type.
const (
	TypeShipmentScheduled  = "ShipmentScheduled"
	TypeShipmentRefused    = "ShipmentRefused"
	TypeShipmentCancelled  = "ShipmentCancelled"
	TypeShipmentDispatched = "ShipmentDispatched"

	TypeShipmentCommandRejected = "ShipmentCommandRejected"
)

// ShipmentScheduled: an order's items will ship to Address.
type ShipmentScheduled struct {
	ShipmentID string        `json:"shipment_id"`
	OrderID    string        `json:"order_id"`
	Items      []order.Item  `json:"items"`
	Address    order.Address `json:"address"`
}

// ShipmentRefused: the shipment was not scheduled; Reason is
// destination_not_served.
type ShipmentRefused struct {
	ShipmentID string `json:"shipment_id"`
	OrderID    string `json:"order_id"`
	Reason     string `json:"reason"`
	// Items and Address are what was asked for, when the refusal came from
	// a schedule request; a refusal recorded on its own has neither.
	Items   []order.Item   `json:"items,omitempty"`
	Address *order.Address `json:"address,omitempty"`
}

// ShipmentCancelled: a scheduled shipment was called off. Note is set when
// the event answers a cancel that found nothing to call off (the shipment
// was cancelled or refused already, or never scheduled; see the Note
// constants): it then changes nothing, except that a shipment never
// scheduled can no longer be.
type ShipmentCancelled struct {
	ShipmentID string `json:"shipment_id"`
	OrderID    string `json:"order_id"`
	Reason     string `json:"reason"`
	Note       string `json:"note,omitempty"`
}

// ShipmentDispatched: the shipment left the warehouse.
type ShipmentDispatched struct {
	ShipmentID string `json:"shipment_id"`
	OrderID    string `json:"order_id"`
}

// ShipmentCommandRejected: the shipment's state refused a command that
// must be answered (one a saga sent), so the shipment did not change.
// Status is the shipment's status then, Detail says why in the API's
// words.
type ShipmentCommandRejected struct {
	ShipmentID string `json:"shipment_id"`
	OrderID    string `json:"order_id,omitempty"`
	Status     string `json:"status"`
	Detail     string `json:"detail"`
}

// RegisterEvents registers the shipment events (all at schema version 1).
func RegisterEvents(r *domain.Registry) error {
	for name, example := range map[string]any{
		TypeShipmentScheduled:  ShipmentScheduled{},
		TypeShipmentRefused:    ShipmentRefused{},
		TypeShipmentCancelled:  ShipmentCancelled{},
		TypeShipmentDispatched: ShipmentDispatched{},

		TypeShipmentCommandRejected: ShipmentCommandRejected{},
	} {
		if err := r.Register(name, 1, example); err != nil {
			return err
		}
	}
	return nil
}
