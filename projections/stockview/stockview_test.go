package stockview

import (
	"errors"
	"slices"
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
	s := inventory.Stream("S")
	r, _, err := New().Replay(&row{SKU: "S", OnHand: 2, Reserved: 2, Version: 1},
		eventtest.Envelope(t, s, 2, inventory.StockReserved{SKU: "S", Quantity: 3}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Reserved != 5 || r.Available != 0 {
		t.Errorf("reserved %d, available %d; want 5 and 0", r.Reserved, r.Available)
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
		{"new sku", nil, events, true, row{SKU: "SKU-1", OnHand: 3, Reserved: 0, Available: 3, Version: 4, UpdatedAt: events[3].RecordedAt}},
		{"partly reflected", &row{SKU: "SKU-1", OnHand: 5, Reserved: 3, Available: 2, Version: 2}, events, true,
			row{SKU: "SKU-1", OnHand: 3, Reserved: 0, Available: 3, Version: 4, UpdatedAt: events[3].RecordedAt}},
		{"all reflected", &row{SKU: "SKU-1", OnHand: 3, Available: 3, Version: 4}, events, false, row{SKU: "SKU-1", OnHand: 3, Available: 3, Version: 4}},
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

// TestColumns pins the table the row's tags declare. The schema hash is
// the one of the DDL written by hand before the tags declared it: a change
// makes every deployment rebuild the read model, so it must be deliberate.
func TestColumns(t *testing.T) {
	if got, want := projections.SchemaHash(New()), "a31d6ea645f94b49"; got != want {
		t.Errorf("schema hash %s, want %s; schema:\n%s", got, want, New().Schema(projections.Tables{Version: 1}))
	}
	if got, want := columns.Updated(), []string{"on_hand", "reserved", "available", "version", "updated_at"}; !slices.Equal(got, want) {
		t.Errorf("updates write %v, want %v", got, want)
	}
}
