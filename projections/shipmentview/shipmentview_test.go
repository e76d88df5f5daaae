package shipmentview

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/projections"
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
	if !changed || r.Status != StatusCancelled || r.Reason != shipping.ReasonDestinationNotServed || string(r.Items) != "[]" || r.Version != 1 {
		t.Errorf("refused shipment row %+v", r)
	}
}

// TestColumns pins the table the row's tags declare. The schema hash is
// the one of the DDL written by hand before the tags declared it: a change
// makes every deployment rebuild the read model, so it must be deliberate.
func TestColumns(t *testing.T) {
	if got, want := projections.SchemaHash(New()), "bc6239490ac4a30c"; got != want {
		t.Errorf("schema hash %s, want %s; schema:\n%s", got, want, New().Schema(projections.Tables{Version: 1}))
	}
	if got, want := columns.Updated(), []string{"status", "reason", "updated_at", "version"}; !slices.Equal(got, want) {
		t.Errorf("updates write %v, want %v", got, want)
	}
}
