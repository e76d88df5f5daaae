package shipmentview

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/shipping"
)

func envelope(t *testing.T, stream string, version int64, payload any) domain.Envelope {
	t.Helper()
	name, v, data, err := events.NewRegistry().Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	return domain.Envelope{ID: uuid.NewString(), Stream: stream, Version: version, Type: name, SchemaVersion: v, Data: data,
		RecordedAt: time.Date(2025, 1, 1, 0, 0, int(version), 0, time.UTC)}
}

func TestRefusedShipmentShowsCancelledWithReason(t *testing.T) {
	id, oid := uuid.New(), uuid.NewString()
	s := shipping.Stream(id.String())
	d, err := New().Decode([]domain.Envelope{
		envelope(t, s, 1, shipping.ShipmentRefused{ShipmentID: id.String(), OrderID: oid, Reason: shipping.ReasonDestinationNotServed}),
		// Cancelling a refused shipment is a no-op the aggregate never
		// records; an out-of-date duplicate must change nothing either.
		envelope(t, s, 1, shipping.ShipmentCancelled{ShipmentID: id.String(), OrderID: oid, Reason: "late"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	var r *row
	for _, c := range d.(*batch).byKey[id] {
		if n := fold(r, c); n != nil {
			r = n
		}
	}
	if r.status != StatusCancelled || r.reason != shipping.ReasonDestinationNotServed || string(r.items) != "[]" || r.version != 1 {
		t.Errorf("refused shipment row %+v", r)
	}
}
