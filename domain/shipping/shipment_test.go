package shipping_test

import (
	"reflect"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/aggtest"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

const (
	shipmentID = "9c8b7a6d-5e4f-4d3c-8b2a-1f0e9d8c7b6a"
	orderID    = "0b5e8a4c-1f7e-4f51-9d0c-2f4e5a6b7c8d"
	otherID    = "11111111-2222-4333-8444-555555555555"
)

type shipmentCase = aggtest.Case[shipping.Shipment]

func items() []order.Item { return []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}} }

func address(country string) order.Address {
	return order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: country}
}

func served(t testing.TB) shipping.Destinations {
	t.Helper()
	d, err := shipping.NewDestinations(shipping.DefaultCountries())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func command(country string) shipping.ScheduleShipment {
	return shipping.ScheduleShipment{ShipmentID: shipmentID, OrderID: orderID, Items: items(), Address: address(country)}
}

var (
	scheduled  = shipping.ShipmentScheduled{ShipmentID: shipmentID, OrderID: orderID, Items: items(), Address: address("US")}
	refused    = shipping.ShipmentRefused{ShipmentID: shipmentID, OrderID: orderID, Reason: shipping.ReasonDestinationNotServed}
	cancelled  = shipping.ShipmentCancelled{ShipmentID: shipmentID, OrderID: orderID, Reason: order.ReasonStepTimeout}
	dispatched = shipping.ShipmentDispatched{ShipmentID: shipmentID, OrderID: orderID}
)

func status(want shipping.Status) func(testing.TB, *shipping.Shipment) {
	return func(t testing.TB, s *shipping.Shipment) {
		t.Helper()
		if s.Status != want {
			t.Errorf("status = %q, want %q", s.Status, want)
		}
	}
}

func TestSchedule(t *testing.T) {
	d := served(t)
	schedule := func(c shipping.ScheduleShipment) func(*shipping.Shipment) ([]any, error) {
		return func(s *shipping.Shipment) ([]any, error) { return s.Schedule(c, d) }
	}
	bad := command("US")
	bad.ShipmentID, bad.OrderID, bad.Items = "s", "o", []order.Item{{SKU: "SKU 1", Quantity: 0}}
	bad.Address.City = ""
	aggtest.Run(t, []shipmentCase{
		{Name: "served destination is scheduled", When: schedule(command("US")), Then: []any{scheduled},
			Check: func(t testing.TB, s *shipping.Shipment) {
				if s.Status != shipping.StatusScheduled || s.ID != shipmentID || s.OrderID != orderID || !reflect.DeepEqual(s.Items, items()) {
					t.Errorf("state = %+v", s)
				}
			}},
		{Name: "unserved destination is refused", When: schedule(command("BR")), Then: []any{refusedFor(command("BR"))}, Check: status(shipping.StatusRefused)},
		{Name: "scheduling again for the same order is a no-op", Given: []any{scheduled}, When: schedule(command("US")), Check: status(shipping.StatusScheduled)},
		{Name: "refusing again for the same order is a no-op", Given: []any{refused}, When: schedule(command("BR")), Check: status(shipping.StatusRefused)},
		{Name: "shipment id taken by another order", Given: []any{scheduled}, When: func(s *shipping.Shipment) ([]any, error) {
			c := command("US")
			c.OrderID = otherID
			return s.Schedule(c, d)
		}, WantErr: domain.ErrIllegalState},
		{Name: "cancelled shipment is not scheduled again", Given: []any{scheduled, cancelled}, When: schedule(command("US")), WantErr: domain.ErrIllegalState},
		{Name: "every invalid field is reported", When: schedule(bad),
			WantFields: []string{"shipment_id", "order_id", "items[0].sku", "items[0].quantity", "address.city"}},
		{Name: "a country that is not a code is invalid, not refused", When: schedule(command("ZZ")), WantFields: []string{"address.country"}},
		{Name: "no destinations configured refuses everything", When: func(s *shipping.Shipment) ([]any, error) {
			return s.Schedule(command("US"), shipping.Destinations{})
		}, Then: []any{refusedFor(command("US"))}},
	})
}

// refusedFor is the refusal of a schedule request, which keeps what was
// asked for.
func refusedFor(c shipping.ScheduleShipment) shipping.ShipmentRefused {
	r := refused
	addr := c.Address
	r.Items, r.Address = c.Items, &addr
	return r
}

func TestRefuse(t *testing.T) {
	refuse := func(reason string) func(*shipping.Shipment) ([]any, error) {
		return func(s *shipping.Shipment) ([]any, error) { return s.Refuse(shipmentID, orderID, reason) }
	}
	aggtest.Run(t, []shipmentCase{
		{Name: "new shipment is refused", When: refuse(shipping.ReasonDestinationNotServed), Then: []any{refused}, Check: status(shipping.StatusRefused)},
		{Name: "refusing twice is a no-op", Given: []any{refused}, When: refuse(shipping.ReasonDestinationNotServed)},
		{Name: "scheduled shipment", Given: []any{scheduled}, When: refuse(shipping.ReasonDestinationNotServed), WantErr: domain.ErrIllegalState},
		{Name: "other reason", When: refuse(order.ReasonStepTimeout), WantFields: []string{"reason"}},
		{Name: "bad ids", When: func(s *shipping.Shipment) ([]any, error) {
			return s.Refuse("", "x", shipping.ReasonDestinationNotServed)
		}, WantFields: []string{"shipment_id", "order_id"}},
	})
}

func TestCancel(t *testing.T) {
	cancel := func(reason string) func(*shipping.Shipment) ([]any, error) {
		return func(s *shipping.Shipment) ([]any, error) { return s.Cancel(reason) }
	}
	aggtest.Run(t, []shipmentCase{
		{Name: "scheduled shipment is cancelled", Given: []any{scheduled}, When: cancel(order.ReasonStepTimeout), Then: []any{cancelled}, Check: status(shipping.StatusCancelled)},
		{Name: "dispatched shipment", Given: []any{scheduled, dispatched}, When: cancel(order.ReasonStepTimeout), WantErr: domain.ErrIllegalState},
		{Name: "cancelled shipment is a no-op", Given: []any{scheduled, cancelled}, When: cancel(order.ReasonStepTimeout), Check: status(shipping.StatusCancelled)},
		{Name: "refused shipment is a no-op", Given: []any{refused}, When: cancel(order.ReasonStepTimeout), Check: status(shipping.StatusRefused)},
		{Name: "unknown shipment is a no-op", When: cancel(order.ReasonStepTimeout), Check: status("")},
		{Name: "reason is required", Given: []any{scheduled}, When: cancel(" "), WantFields: []string{"reason"}},
	})
}

func TestDispatch(t *testing.T) {
	dispatch := func(s *shipping.Shipment) ([]any, error) { return s.Dispatch() }
	aggtest.Run(t, []shipmentCase{
		{Name: "scheduled shipment is dispatched", Given: []any{scheduled}, When: dispatch, Then: []any{dispatched}, Check: status(shipping.StatusDispatched)},
		{Name: "dispatched shipment", Given: []any{scheduled, dispatched}, When: dispatch, WantErr: domain.ErrIllegalState},
		{Name: "cancelled shipment", Given: []any{scheduled, cancelled}, When: dispatch, WantErr: domain.ErrIllegalState},
		{Name: "refused shipment", Given: []any{refused}, When: dispatch, WantErr: domain.ErrIllegalState},
		{Name: "unknown shipment", When: dispatch, WantErr: domain.ErrNotFound},
	})
}

func TestDestinations(t *testing.T) {
	d := served(t)
	for _, c := range shipping.DefaultCountries() {
		if !d.Serves(c) {
			t.Errorf("default destinations do not serve %s", c)
		}
	}
	if n := len(shipping.DefaultCountries()); n != 23 {
		t.Errorf("%d default countries, want 23", n)
	}
	for _, c := range []string{"BR", "CN", "us", ""} {
		if d.Serves(c) {
			t.Errorf("default destinations serve %q", c)
		}
	}
	if _, err := shipping.NewDestinations([]string{"US", "UK"}); err == nil {
		t.Error("NewDestinations accepted UK, which is not an ISO code")
	}
}

func TestEventsRoundTripThroughRegistry(t *testing.T) {
	aggtest.RoundTrip(t, shipping.RegisterEvents, scheduled, refused, refusedFor(command("BR")), cancelled, dispatched)
}
