package shipmentview

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/eventtest"
)

// TestFoldKeepsWhyAShipmentWillNotShip folds the shipment streams the
// services write, as the aggregate applies them: a cancel calls off only a
// scheduled shipment; one that reaches a refused or cancelled shipment (the
// saga's compensation, answered with a note) leaves the reason it was
// refused or cancelled for, and only moves the row's version.
func TestFoldKeepsWhyAShipmentWillNotShip(t *testing.T) {
	id, oid := uuid.New(), uuid.NewString()
	sid := id.String()
	s := shipping.Stream(sid)
	addr := order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "AQ"}
	items := []order.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}}
	var (
		refused   = shipping.ShipmentRefused{ShipmentID: sid, OrderID: oid, Reason: shipping.ReasonDestinationNotServed}
		asked     = shipping.ShipmentRefused{ShipmentID: sid, OrderID: oid, Reason: shipping.ReasonDestinationNotServed, Items: items, Address: &addr}
		scheduled = shipping.ShipmentScheduled{ShipmentID: sid, OrderID: oid, Items: items, Address: addr}
		byTimeout = shipping.ShipmentCancelled{ShipmentID: sid, OrderID: oid, Reason: order.ReasonStepTimeout}
		cancel    = func(reason, note string) shipping.ShipmentCancelled {
			return shipping.ShipmentCancelled{ShipmentID: sid, OrderID: oid, Reason: reason, Note: note}
		}
	)
	tests := []struct {
		name   string
		events []any // versions 1, 2, ...
		// dup, when set, is delivered again with the version of the
		// last of events (an out-of-date duplicate).
		dup         any
		wantStatus  string
		wantReason  string
		wantVersion int64
		wantItems   string
	}{
		{"refused", []any{refused}, nil, StatusCancelled, shipping.ReasonDestinationNotServed, 1, "[]"},
		{"refused, then the compensation's cancel with a note", []any{refused, cancel(order.ReasonDestinationNotServed, shipping.NoteRefused)},
			nil, StatusCancelled, shipping.ReasonDestinationNotServed, 2, "[]"},
		{"refused, then a cancel for another reason with a note", []any{asked, cancel(order.ReasonStepTimeout, shipping.NoteRefused)},
			nil, StatusCancelled, shipping.ReasonDestinationNotServed, 2, `[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]`},
		{"refused, then a cancel with no note", []any{refused, cancel(order.ReasonCancelledByCustomer, "")},
			nil, StatusCancelled, shipping.ReasonDestinationNotServed, 2, "[]"},
		{"refused, then an out-of-date duplicate cancel", []any{refused}, cancel("late", ""),
			StatusCancelled, shipping.ReasonDestinationNotServed, 1, "[]"},
		{"scheduled, then cancelled", []any{scheduled, byTimeout},
			nil, StatusCancelled, order.ReasonStepTimeout, 2, `[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]`},
		{"cancelled, then cancelled again with a note", []any{scheduled, byTimeout, cancel(order.ReasonCancelledByCustomer, shipping.NoteAlreadyCancelled)},
			nil, StatusCancelled, order.ReasonStepTimeout, 3, `[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]`},
		{"dispatched, then a cancel", []any{scheduled, shipping.ShipmentDispatched{ShipmentID: sid, OrderID: oid}, cancel(order.ReasonStepTimeout, "")},
			nil, StatusDispatched, "", 3, `[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var envs []domain.Envelope
			for i, e := range tt.events {
				envs = append(envs, eventtest.Envelope(t, s, int64(i+1), e))
			}
			if tt.dup != nil {
				envs = append(envs, eventtest.Envelope(t, s, int64(len(tt.events)), tt.dup))
			}
			r, changed, err := New().Replay(nil, envs...)
			if err != nil {
				t.Fatal(err)
			}
			if !changed || r == nil {
				t.Fatalf("no row (changed %v)", changed)
			}
			if r.Status != tt.wantStatus || r.Reason != tt.wantReason || r.Version != tt.wantVersion || string(r.Items) != tt.wantItems {
				t.Errorf("row: status %s, reason %q, version %d, items %s; want %s, %q, %d, %s",
					r.Status, r.Reason, r.Version, r.Items, tt.wantStatus, tt.wantReason, tt.wantVersion, tt.wantItems)
			}
			if last := envs[len(envs)-1]; tt.dup == nil && !r.UpdatedAt.Equal(last.RecordedAt) {
				t.Errorf("updated_at %v, want the last event's %v", r.UpdatedAt, last.RecordedAt)
			}
			// The aggregate, folded from the same events, agrees on why
			// the shipment will not ship.
			var agg shipping.Shipment
			for _, e := range tt.events {
				agg.Apply(e)
			}
			if agg.Reason != r.Reason {
				t.Errorf("the aggregate's reason is %q, the row's %q", agg.Reason, r.Reason)
			}
		})
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
