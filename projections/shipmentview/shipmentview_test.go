package shipmentview

import (
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/projections/internal/eventtest"
)

func TestRefusedShipmentShowsCancelledWithReason(t *testing.T) {
	id, oid := uuid.New(), uuid.NewString()
	s := shipping.Stream(id.String())
	r, changed, err := New().Replay(nil,
		eventtest.Envelope(t, s, 1, shipping.ShipmentRefused{ShipmentID: id.String(), OrderID: oid, Reason: shipping.ReasonDestinationNotServed}),
		// Cancelling a refused shipment is a no-op the aggregate never
		// records; an out-of-date duplicate must change nothing either.
		eventtest.Envelope(t, s, 1, shipping.ShipmentCancelled{ShipmentID: id.String(), OrderID: oid, Reason: "late"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !changed || r.status != StatusCancelled || r.reason != shipping.ReasonDestinationNotServed || string(r.items) != "[]" || r.version != 1 {
		t.Errorf("refused shipment row %+v", r)
	}
}
