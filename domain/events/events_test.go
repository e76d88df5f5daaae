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
	}{
		{order.OrderPlaced{OrderID: "o", Items: []order.Item{{SKU: "A", Quantity: 1}}}, order.TypeOrderPlaced},
		{order.OrderConfirmed{OrderID: "o"}, order.TypeOrderConfirmed},
		{order.OrderRejected{OrderID: "o"}, order.TypeOrderRejected},
		{order.OrderCancelled{OrderID: "o"}, order.TypeOrderCancelled},
		{order.OrderShipped{OrderID: "o"}, order.TypeOrderShipped},
		{inventory.StockRestocked{SKU: "A"}, inventory.TypeStockRestocked},
		{inventory.StockReserved{SKU: "A"}, inventory.TypeStockReserved},
		{inventory.StockReleased{SKU: "A"}, inventory.TypeStockReleased},
		{inventory.StockConsumed{SKU: "A"}, inventory.TypeStockConsumed},
		{shipping.ShipmentScheduled{ShipmentID: "s"}, shipping.TypeShipmentScheduled},
		{shipping.ShipmentRefused{ShipmentID: "s"}, shipping.TypeShipmentRefused},
		{shipping.ShipmentCancelled{ShipmentID: "s"}, shipping.TypeShipmentCancelled},
		{shipping.ShipmentDispatched{ShipmentID: "s"}, shipping.TypeShipmentDispatched},
	}
	for _, tt := range tests {
		name, v, data, err := r.Encode(tt.payload)
		if err != nil {
			t.Errorf("%T: %v", tt.payload, err)
			continue
		}
		if name != tt.name || v != 1 {
			t.Errorf("%T encodes as %s v%d, want %s v1", tt.payload, name, v, tt.name)
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
