package events_test

import (
	"reflect"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

func TestNewRegistryKnowsEveryEvent(t *testing.T) {
	r := events.NewRegistry()
	tests := []struct {
		payload any
		name    string
		version int
	}{
		{order.OrderPlaced{OrderID: "o", Items: []order.Item{{SKU: "A", Quantity: 1}}, Currency: "USD"}, order.TypeOrderPlaced, order.PlacedSchemaVersion},
		{order.OrderConfirmed{OrderID: "o"}, order.TypeOrderConfirmed, 1},
		{order.OrderRejected{OrderID: "o"}, order.TypeOrderRejected, 1},
		{order.OrderCancelled{OrderID: "o"}, order.TypeOrderCancelled, 1},
		{order.OrderShipped{OrderID: "o"}, order.TypeOrderShipped, 1},
		{inventory.StockRestocked{SKU: "A"}, inventory.TypeStockRestocked, 1},
		{inventory.StockReserved{SKU: "A"}, inventory.TypeStockReserved, 1},
		{inventory.StockReleased{SKU: "A"}, inventory.TypeStockReleased, 1},
		{inventory.StockConsumed{SKU: "A"}, inventory.TypeStockConsumed, 1},
		{shipping.ShipmentScheduled{ShipmentID: "s"}, shipping.TypeShipmentScheduled, 1},
		{shipping.ShipmentRefused{ShipmentID: "s"}, shipping.TypeShipmentRefused, 1},
		{shipping.ShipmentCancelled{ShipmentID: "s"}, shipping.TypeShipmentCancelled, 1},
		{shipping.ShipmentDispatched{ShipmentID: "s"}, shipping.TypeShipmentDispatched, 1},
	}
	for _, tt := range tests {
		name, v, data, err := r.Encode(tt.payload)
		if err != nil {
			t.Errorf("%T: %v", tt.payload, err)
			continue
		}
		if name != tt.name || v != tt.version {
			t.Errorf("%T encodes as %s v%d, want %s v%d", tt.payload, name, v, tt.name, tt.version)
		}
		got, err := r.Decode(domain.Envelope{Type: name, SchemaVersion: v, Data: data})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.payload) {
			t.Errorf("%s decodes as %#v, want %#v", name, got, tt.payload)
		}
	}
}
