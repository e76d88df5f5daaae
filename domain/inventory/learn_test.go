package inventory

import (
	"errors"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/domain"
)

// TestRestoredStockLearnsSettledOrders: a Stock restored from its snapshot
// asks about exactly the orders it neither holds nor knows settled, and
// once told, decides every reservation as the Stock read from its first
// event: settled before the snapshot, settled after it, held, never seen.
func TestRestoredStockLearnsSettledOrders(t *testing.T) {
	o := ids(5)
	before, after, held, never := o[0], o[1], o[2], o[3]
	full := &Stock{}
	history := []any{
		StockRestocked{SKU: "S", Quantity: 10},
		StockReserved{SKU: "S", OrderID: before, Quantity: 1},
		StockConsumed{SKU: "S", OrderID: before, Quantity: 1},
		StockReserved{SKU: "S", OrderID: held, Quantity: 1},
	}
	later := []any{
		StockReserved{SKU: "S", OrderID: after, Quantity: 1},
		StockReleased{SKU: "S", OrderID: after, Quantity: 1},
	}
	for _, ev := range history {
		full.Apply(ev)
	}
	data, err := full.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var r Stock
	if err := r.UnmarshalSnapshot(data); err != nil {
		t.Fatal(err)
	}
	r.RestoredAt(int64(len(history)))
	for _, ev := range later {
		full.Apply(ev)
		r.Apply(ev)
	}
	if got := r.SettledUnknownUpTo(); got != int64(len(history)) {
		t.Errorf("unknown up to %d, want %d", got, len(history))
	}
	if got, want := r.MustLearn([]string{before, after, held, never}), []string{before, never}; !slices.Equal(got, want) {
		t.Fatalf("MustLearn = %v, want %v", got, want)
	}
	// The store's answer: of those asked, the ones settled up to the
	// snapshot.
	r.Learn([]string{before})
	if got := r.MustLearn([]string{before, after, held, never}); !slices.Equal(got, []string{never}) {
		t.Errorf("after learning, MustLearn = %v, want [%s]", got, never)
	}
	tests := []struct {
		name    string
		order   string
		refused bool
	}{
		{"settled before the snapshot", before, true},
		{"settled after the snapshot", after, true},
		{"held", held, false},
		{"never seen", never, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, wantErr := full.Reserve(tc.order, 1)
			got, err := r.Reserve(tc.order, 1)
			if !slices.Equal(got, want) || (err != nil) != tc.refused || (wantErr != nil) != tc.refused {
				t.Fatalf("restored %v %v, read from the start %v %v; want refused %v", got, err, want, wantErr, tc.refused)
			}
			if tc.refused && !errors.Is(err, domain.ErrIllegalState) {
				t.Errorf("refusal %v, want %v", err, domain.ErrIllegalState)
			}
		})
	}
	if (&Stock{}).MustLearn([]string{never}) != nil {
		t.Error("a Stock read from its first event asks to learn")
	}
}
