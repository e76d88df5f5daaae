package inventory

import "github.com/orderflow/orderflow/domain"

// Event type names, as stored in domain.Envelope.Type.
const (
	TypeStockRestocked = "StockRestocked"
	TypeStockReserved  = "StockReserved"
	TypeStockReleased  = "StockReleased"
	TypeStockConsumed  = "StockConsumed"
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

// RegisterEvents registers the stock events (all at schema version 1).
func RegisterEvents(r *domain.Registry) error {
	for name, example := range map[string]any{
		TypeStockRestocked: StockRestocked{},
		TypeStockReserved:  StockReserved{},
		TypeStockReleased:  StockReleased{},
		TypeStockConsumed:  StockConsumed{},
	} {
		if err := r.Register(name, 1, example); err != nil {
			return err
		}
	}
	return nil
}
