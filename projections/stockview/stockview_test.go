package stockview

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/eventtest"
	"github.com/orderflow/orderflow/projections/internal/viewkit"
)

func TestDecode(t *testing.T) {
	p := New()
	d, err := p.Decode([]domain.Envelope{
		{ID: uuid.NewString(), Stream: "order-1", Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(`{}`)},
		{ID: uuid.NewString(), Stream: inventory.Stream("SKU-1"), Version: 1, Type: inventory.TypeStockRestocked, SchemaVersion: 1, Data: []byte(`{"sku":"SKU-1","quantity":3}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b := d.(*viewkit.Batch[string, row]); len(b.Keys) != 1 || b.Keys[0] != "SKU-1" {
		t.Errorf("decoded keys %v, want only SKU-1", b.Keys)
	}
	_, err = p.Decode([]domain.Envelope{{ID: "x", Stream: inventory.Stream("SKU-1"), Type: inventory.TypeStockReserved, SchemaVersion: 1, Data: []byte(`{"quantity":"many"}`)}})
	if !errors.Is(err, projections.ErrUndecodable) {
		t.Errorf("bad payload: %v, want ErrUndecodable", err)
	}
}

func TestAvailableNeverNegative(t *testing.T) {
	r := &row{sku: "S", onHand: 2, reserved: 5}
	if got := r.Values()[3]; got != int64(0) {
		t.Errorf("available = %v, want 0", got)
	}
}

func TestFold(t *testing.T) {
	s := inventory.Stream("SKU-1")
	events := []domain.Envelope{
		eventtest.Envelope(t, s, 1, inventory.StockRestocked{SKU: "SKU-1", Quantity: 5}),
		eventtest.Envelope(t, s, 2, inventory.StockReserved{SKU: "SKU-1", Quantity: 3}),
		eventtest.Envelope(t, s, 3, inventory.StockConsumed{SKU: "SKU-1", Quantity: 2}),
		eventtest.Envelope(t, s, 4, inventory.StockReleased{SKU: "SKU-1", Quantity: 1}),
	}
	p := New()
	tests := []struct {
		name        string
		stored      *row
		events      []domain.Envelope
		wantChanged bool
		want        row
	}{
		{"new sku", nil, events, true, row{sku: "SKU-1", onHand: 3, reserved: 0, version: 4, updatedAt: events[3].RecordedAt}},
		{"partly reflected", &row{sku: "SKU-1", onHand: 5, reserved: 3, version: 2}, events, true,
			row{sku: "SKU-1", onHand: 3, reserved: 0, version: 4, updatedAt: events[3].RecordedAt}},
		{"all reflected", &row{sku: "SKU-1", onHand: 3, version: 4}, events, false, row{sku: "SKU-1", onHand: 3, version: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before row
			if tt.stored != nil {
				before = *tt.stored
			}
			r, changed, err := p.Replay(tt.stored, tt.events...)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged || *r != tt.want {
				t.Errorf("row %+v (changed %v), want %+v (changed %v)", *r, changed, tt.want, tt.wantChanged)
			}
			if tt.stored != nil && *tt.stored != before {
				t.Errorf("Replay changed the stored row to %+v", *tt.stored)
			}
		})
	}
}
