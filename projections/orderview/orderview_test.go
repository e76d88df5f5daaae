package orderview

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/eventtest"
	"github.com/orderflow/orderflow/projections/internal/viewkit"
)

func TestDecode(t *testing.T) {
	id := uuid.NewString()
	p := New()
	good := eventtest.Envelope(t, order.Stream(id), 1, order.OrderPlaced{OrderID: id, SagaID: uuid.NewString(), CustomerID: "c"})
	other := eventtest.Envelope(t, "stock-SKU-1", 1, order.OrderConfirmed{})
	d, err := p.Decode([]domain.Envelope{good, other})
	if err != nil {
		t.Fatal(err)
	}
	if b := d.(*viewkit.Batch[[16]byte, row]); len(b.Keys) != 1 {
		t.Errorf("decoded %d orders, want 1 (other streams are ignored)", len(b.Keys))
	}
	for name, bad := range map[string]domain.Envelope{
		"broken json":   {ID: "a", Stream: order.Stream(id), Type: order.TypeOrderPlaced, SchemaVersion: 1, Data: json.RawMessage(`{`)},
		"unknown type":  {ID: "b", Stream: order.Stream(id), Type: "OrderLost", SchemaVersion: 1, Data: json.RawMessage(`{}`)},
		"newer schema":  {ID: "c", Stream: order.Stream(id), Type: order.TypeOrderShipped, SchemaVersion: 9, Data: json.RawMessage(`{}`)},
		"bad stream id": eventtest.Envelope(t, "order-x", 1, order.OrderShipped{}),
		"bad saga id":   eventtest.Envelope(t, order.Stream(id), 1, order.OrderPlaced{OrderID: id, SagaID: "nope"}),
	} {
		if _, err := p.Decode([]domain.Envelope{bad}); !errors.Is(err, projections.ErrUndecodable) {
			t.Errorf("%s: %v, want ErrUndecodable", name, err)
		}
	}
}

func TestFoldSkipsWhatTheRowReflects(t *testing.T) {
	id := uuid.New()
	s := order.Stream(id.String())
	events := []domain.Envelope{
		eventtest.Envelope(t, s, 1, order.OrderPlaced{OrderID: id.String(), SagaID: uuid.NewString(), CustomerID: "c", PlacedAt: time.Now()}),
		eventtest.Envelope(t, s, 2, order.OrderConfirmed{OrderID: id.String(), ShipmentID: "s-1"}),
		eventtest.Envelope(t, s, 3, order.OrderCancelled{OrderID: id.String(), Reason: order.ReasonStepTimeout}),
	}
	p := New()
	r, changed, err := p.Replay(nil, events...)
	if err != nil {
		t.Fatal(err)
	}
	if !changed || r.Status != "cancelled" || r.Reason != order.ReasonStepTimeout || r.ShipmentID != "s-1" || r.Version != 3 || string(r.Items) != "[]" {
		t.Errorf("folded row %+v (changed %v)", r, changed)
	}
	again, changed, err := p.Replay(r, events...)
	if err != nil {
		t.Fatal(err)
	}
	if changed || !reflect.DeepEqual(again, r) {
		t.Errorf("events up to version 3 applied again to a row at version 3: %+v", again)
	}
	if r, changed, err := p.Replay(nil, events[1]); err != nil || changed || r != nil {
		t.Errorf("an OrderConfirmed created an order that was never placed: %+v, %v", r, err)
	}
}

// TestColumns pins the table the row's tags declare. A change of the
// schema hash makes every deployment rebuild the read model, so it must be
// deliberate: it was e941a7773d83e2e2 for the DDL written by hand before
// the tags declared it, and changed when the currency column came with
// OrderPlaced version 2 (docs/adr/0152).
func TestColumns(t *testing.T) {
	if got, want := projections.SchemaHash(New()), "78a28250de5d80ee"; got != want {
		t.Errorf("schema hash %s, want %s; schema:\n%s", got, want, New().Schema(projections.Tables{Version: 1}))
	}
	if got, want := columns.Updated(), []string{"status", "shipment_id", "reason", "updated_at", "version"}; !slices.Equal(got, want) {
		t.Errorf("updates write %v, want %v", got, want)
	}
}
