package stockview

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/projections"
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
	if b := d.(*batch); len(b.keys) != 1 || b.keys[0] != "SKU-1" {
		t.Errorf("decoded keys %v, want only SKU-1", b.keys)
	}
	_, err = p.Decode([]domain.Envelope{{ID: "x", Stream: inventory.Stream("SKU-1"), Type: inventory.TypeStockReserved, SchemaVersion: 1, Data: []byte(`{"quantity":"many"}`)}})
	if !errors.Is(err, projections.ErrUndecodable) {
		t.Errorf("bad payload: %v, want ErrUndecodable", err)
	}
}

func TestAvailableNeverNegative(t *testing.T) {
	r := &row{sku: "S", onHand: 2, reserved: 5}
	if got := r.values()[3]; got != int64(0) {
		t.Errorf("available = %v, want 0", got)
	}
}
