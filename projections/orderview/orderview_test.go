package orderview

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/projections"
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

func TestDecode(t *testing.T) {
	id := uuid.NewString()
	p := New()
	good := envelope(t, order.Stream(id), 1, order.OrderPlaced{OrderID: id, SagaID: uuid.NewString(), CustomerID: "c"})
	other := envelope(t, "stock-SKU-1", 1, order.OrderConfirmed{})
	d, err := p.Decode([]domain.Envelope{good, other})
	if err != nil {
		t.Fatal(err)
	}
	if b := d.(*batch); len(b.keys) != 1 {
		t.Errorf("decoded %d orders, want 1 (other streams are ignored)", len(b.keys))
	}
	for name, bad := range map[string]domain.Envelope{
		"broken json":   {ID: "a", Stream: order.Stream(id), Type: order.TypeOrderPlaced, SchemaVersion: 1, Data: json.RawMessage(`{`)},
		"unknown type":  {ID: "b", Stream: order.Stream(id), Type: "OrderLost", SchemaVersion: 1, Data: json.RawMessage(`{}`)},
		"newer schema":  {ID: "c", Stream: order.Stream(id), Type: order.TypeOrderShipped, SchemaVersion: 9, Data: json.RawMessage(`{}`)},
		"bad stream id": envelope(t, "order-x", 1, order.OrderShipped{}),
		"bad saga id":   envelope(t, order.Stream(id), 1, order.OrderPlaced{OrderID: id, SagaID: "nope"}),
	} {
		if _, err := p.Decode([]domain.Envelope{bad}); !errors.Is(err, projections.ErrUndecodable) {
			t.Errorf("%s: %v, want ErrUndecodable", name, err)
		}
	}
}

func TestFoldSkipsWhatTheRowReflects(t *testing.T) {
	id := uuid.New()
	s := order.Stream(id.String())
	placed := envelope(t, s, 1, order.OrderPlaced{OrderID: id.String(), SagaID: uuid.NewString(), CustomerID: "c", PlacedAt: time.Now()})
	d, err := New().Decode([]domain.Envelope{placed,
		envelope(t, s, 2, order.OrderConfirmed{OrderID: id.String(), ShipmentID: "s-1"}),
		envelope(t, s, 3, order.OrderCancelled{OrderID: id.String(), Reason: order.ReasonStepTimeout})})
	if err != nil {
		t.Fatal(err)
	}
	changes := d.(*batch).byKey[id]
	var r *row
	for _, c := range changes {
		r = fold(r, c)
	}
	if r.status != "cancelled" || r.reason != order.ReasonStepTimeout || r.shipmentID != "s-1" || r.version != 3 || string(r.items) != "[]" {
		t.Errorf("folded row %+v", r)
	}
	for _, c := range changes {
		if fold(r, c) != nil {
			t.Errorf("version %d applied again to a row at version 3", c.e.Version)
		}
	}
	if fold(nil, changes[1]) != nil {
		t.Error("an OrderConfirmed created an order that was never placed")
	}
}
