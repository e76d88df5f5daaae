package inventory

import "github.com/orderflow/orderflow/domain"

// Event type names, as stored in domain.Envelope.Type.
const (
	TypeStockRestocked = "StockRestocked"
	TypeStockReserved  = "StockReserved"
	TypeStockReleased  = "StockReleased"
	TypeStockConsumed  = "StockConsumed"

	TypeStockReservationAccepted = "StockReservationAccepted"
	TypeStockReservationRejected = "StockReservationRejected"
	TypeStockReservationReleased = "StockReservationReleased"
	TypeStockReservationConsumed = "StockReservationConsumed"
)

// StockRestocked: Quantity units of SKU arrived.
type StockRestocked struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// StockReserved: Quantity units of SKU are held for an order.
type StockReserved struct {
	SKU      string `json:"sku"`
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// StockReleased: an order's reservation went back to the available stock.
type StockReleased struct {
	SKU      string `json:"sku"`
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// StockConsumed: an order's reservation was shipped; it leaves both on hand
// and reserved.
type StockConsumed struct {
	SKU      string `json:"sku"`
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// StockReservationAccepted: every line of an order is held, on the
// stock of its sku. It answers a reserve command.
type StockReservationAccepted struct {
	OrderID string `json:"order_id"`
	Lines   []Line `json:"lines"`
}

// StockReservationRejected: an order's reservation was not granted and
// nothing is held for it. Reason is insufficient_stock (SKU had Available
// units for Requested; a sku never restocked has 0) or
// reservation_settled. It answers a reserve command.
type StockReservationRejected struct {
	OrderID   string `json:"order_id"`
	Reason    string `json:"reason"`
	SKU       string `json:"sku,omitempty"`
	Requested int    `json:"requested"`
	Available int    `json:"available"`
}

// StockReservationReleased: whatever the order held went back to the
// available stock (possibly nothing). It answers a release command.
type StockReservationReleased struct {
	OrderID string `json:"order_id"`
}

// StockReservationConsumed: whatever the order held left with its
// shipment (possibly nothing). It answers a consume command.
type StockReservationConsumed struct {
	OrderID string `json:"order_id"`
}

// RegisterEvents registers the stock and reservation events (all at
// schema version 1).
func RegisterEvents(r *domain.Registry) error {
	for name, example := range map[string]any{
		TypeStockRestocked: StockRestocked{},
		TypeStockReserved:  StockReserved{},
		TypeStockReleased:  StockReleased{},
		TypeStockConsumed:  StockConsumed{},

		TypeStockReservationAccepted: StockReservationAccepted{},
		TypeStockReservationRejected: StockReservationRejected{},
		TypeStockReservationReleased: StockReservationReleased{},
		TypeStockReservationConsumed: StockReservationConsumed{},
	} {
		if err := r.Register(name, 1, example); err != nil {
			return err
		}
	}
	return nil
}
