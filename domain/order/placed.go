package order

import (
	"encoding/json"
	"fmt"
	"time"
)

// PlacedSchemaVersion is the schema version OrderPlaced events are written
// at. Version 1 had no currency and kept the recipient's name inside the
// shipping address; UpcastPlacedV1 reads it as version 2.
const PlacedSchemaVersion = 2

// DefaultCurrency is the currency of an order whose request names none,
// and of every order placed before orders recorded their currency: the
// prices of those orders were dollar cents.
const DefaultCurrency = "USD"

// placedV2 is the JSON of OrderPlaced at schema version 2. The address is
// split into who receives the order and where it goes: the destination is
// what shipping serves and routes on, the recipient is personal data that
// may be treated apart from it (masked in logs, erased on request) without
// touching where the order went. The split is lossless, so that the
// address the API shows is the two joined.
type placedV2 struct {
	OrderID     string      `json:"order_id"`
	SagaID      string      `json:"saga_id"`
	CustomerID  string      `json:"customer_id"`
	Items       []Item      `json:"items"`
	Currency    string      `json:"currency"`
	Recipient   recipient   `json:"recipient"`
	Destination destination `json:"destination"`
	TotalCents  int64       `json:"total_cents"`
	PlacedAt    time.Time   `json:"placed_at"`
}

type recipient struct {
	Name string `json:"name"`
}

type destination struct {
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// placedV1 is the JSON of OrderPlaced at schema version 1, exactly as the
// code before version 2 declared it. It must never change: stored events
// of that shape are read through it for as long as the store keeps them.
type placedV1 struct {
	OrderID         string    `json:"order_id"`
	SagaID          string    `json:"saga_id"`
	CustomerID      string    `json:"customer_id"`
	Items           []Item    `json:"items"`
	ShippingAddress Address   `json:"shipping_address"`
	TotalCents      int64     `json:"total_cents"`
	PlacedAt        time.Time `json:"placed_at"`
}

// fromV1 is the one mapping from version 1 to version 2: every field is
// kept, the address moves whole, and the currency is DefaultCurrency.
func fromV1(v placedV1) OrderPlaced {
	return OrderPlaced{
		OrderID:         v.OrderID,
		SagaID:          v.SagaID,
		CustomerID:      v.CustomerID,
		Items:           v.Items,
		Currency:        DefaultCurrency,
		ShippingAddress: v.ShippingAddress,
		TotalCents:      v.TotalCents,
		PlacedAt:        v.PlacedAt,
	}
}

// UpcastPlacedV1 turns the data of an OrderPlaced event stored at schema
// version 1 into version 2: the same order in DefaultCurrency, its
// address split into recipient and destination. Fields version 1 did not
// know are dropped, as the version 1 code dropped them.
func UpcastPlacedV1(data json.RawMessage) (json.RawMessage, error) {
	var v placedV1
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("OrderPlaced v1: %w", err)
	}
	return json.Marshal(fromV1(v))
}

// MarshalJSON writes p at schema version 2.
func (p OrderPlaced) MarshalJSON() ([]byte, error) {
	return json.Marshal(placedV2{
		OrderID:    p.OrderID,
		SagaID:     p.SagaID,
		CustomerID: p.CustomerID,
		Items:      p.Items,
		Currency:   p.Currency,
		Recipient:  recipient{Name: p.ShippingAddress.Name},
		Destination: destination{
			Line1:      p.ShippingAddress.Line1,
			Line2:      p.ShippingAddress.Line2,
			City:       p.ShippingAddress.City,
			PostalCode: p.ShippingAddress.PostalCode,
			Country:    p.ShippingAddress.Country,
		},
		TotalCents: p.TotalCents,
		PlacedAt:   p.PlacedAt,
	})
}

// UnmarshalJSON reads p from schema version 2 data. It also reads version 1
// data (told apart by its shipping_address, a key version 2 never writes),
// through the same mapping
// as UpcastPlacedV1, because a copy of an event's data kept without its
// schema version (a saga's input, taken from the OrderPlaced that started
// it) may be of either version. Readers of the store decode through the
// registry, which upcasts by the stored version.
func (p *OrderPlaced) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil // as encoding/json does for a struct
	}
	var v struct {
		placedV2
		// ShippingAddress is only in version 1 data.
		ShippingAddress *Address `json:"shipping_address"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	if v.ShippingAddress != nil {
		*p = fromV1(placedV1{
			OrderID:         v.OrderID,
			SagaID:          v.SagaID,
			CustomerID:      v.CustomerID,
			Items:           v.Items,
			ShippingAddress: *v.ShippingAddress,
			TotalCents:      v.TotalCents,
			PlacedAt:        v.PlacedAt,
		})
		return nil
	}
	*p = OrderPlaced{
		OrderID:    v.OrderID,
		SagaID:     v.SagaID,
		CustomerID: v.CustomerID,
		Items:      v.Items,
		Currency:   v.Currency,
		ShippingAddress: Address{
			Name:       v.Recipient.Name,
			Line1:      v.Destination.Line1,
			Line2:      v.Destination.Line2,
			City:       v.Destination.City,
			PostalCode: v.Destination.PostalCode,
			Country:    v.Destination.Country,
		},
		TotalCents: v.TotalCents,
		PlacedAt:   v.PlacedAt,
	}
	return nil
}
