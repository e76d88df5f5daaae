package inventory

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// stockWith returns a stock on which orders reserved 1 each and then the
// first settled of them were consumed.
func stockWith(orders []string, settled int) *Stock {
	s := &Stock{}
	s.Apply(StockRestocked{SKU: "S", Quantity: 100})
	for i, o := range orders {
		s.Apply(StockReserved{SKU: "S", OrderID: o, Quantity: 1})
		if i < settled {
			s.Apply(StockConsumed{SKU: "S", OrderID: o, Quantity: 1})
		}
	}
	return s
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", (i*7919)%1000, i)
	}
	return out
}

// TestStockSnapshotRoundTrip: a stock restored from its snapshot answers
// every reservation as the stock it was taken from, whatever form its
// settled orders had, and a snapshot of the restored stock, after more
// orders settled, is the snapshot of the stock that never was encoded.
func TestStockSnapshotRoundTrip(t *testing.T) {
	mixed := append(ids(5), strings.ToUpper(ids(6)[5]), "not-a-uuid")
	tests := []struct {
		name    string
		orders  []string
		settled int
	}{
		{"empty", nil, 0},
		{"nothing settled", ids(3), 0},
		{"some settled", ids(10), 6},
		{"other spellings", mixed, len(mixed)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := stockWith(tc.orders, tc.settled)
			data, err := s.MarshalSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			var r Stock
			if err := r.UnmarshalSnapshot(data); err != nil {
				t.Fatal(err)
			}
			probe := append(append([]string{}, tc.orders...), ids(20)...)
			probe = append(probe, strings.ToUpper(ids(1)[0]))
			for _, o := range probe {
				want, wantErr := s.Reserve(o, 1)
				got, gotErr := r.Reserve(o, 1)
				if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Errorf("reserve %s: restored %v %v, want %v %v", o, got, gotErr, want, wantErr)
				}
			}
			// More settle on both; their snapshots still agree.
			for _, st := range []*Stock{s, &r} {
				st.Apply(StockReserved{SKU: "S", OrderID: ids(30)[29], Quantity: 1})
				st.Apply(StockReleased{SKU: "S", OrderID: ids(30)[29], Quantity: 1})
			}
			a, _ := s.MarshalSnapshot()
			b, _ := r.MarshalSnapshot()
			if string(a) != string(b) {
				t.Errorf("snapshots differ:\n%s\n%s", a, b)
			}
		})
	}
}

// TestCutPacked: the packed ids are cut out only from an object whose last
// member they are, as encoding/json and jsonb write it; anything else is
// left to the JSON decoder.
func TestCutPacked(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		ok     bool
		rest   string
		packed string
	}{
		{"encoding/json", `{"sku":"S","settled_packed_base64":"AAEC"}`, true, `{"sku":"S"}`, "AAEC"},
		{"jsonb", `{"sku": "S", "on_hand": 1, "settled_packed_base64": "AAEC"}`, true, `{"sku": "S", "on_hand": 1}`, "AAEC"},
		{"alone", `{"settled_packed_base64": "AAEC"}`, true, `{}`, "AAEC"},
		{"null", `{"sku": "S", "settled_packed_base64": null}`, false, "", ""},
		{"not last", `{"settled_packed_base64": "AAEC", "sku": "S"}`, false, "", ""},
		{"missing", `{"sku": "S"}`, false, "", ""},
		{"escaped", `{"settled_packed_base64": "AA\u0045C"}`, false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rest, packed, ok := cutPacked([]byte(tc.data))
			if ok != tc.ok || string(rest) != tc.rest || string(packed) != tc.packed {
				t.Errorf("cutPacked = %q %q %v, want %q %q %v", rest, packed, ok, tc.rest, tc.packed, tc.ok)
			}
		})
	}
}

// TestCloneSharesNoSettledState: settling on a clone does not reach the
// original, also once the set is packed.
func TestCloneSharesNoSettledState(t *testing.T) {
	s := stockWith(ids(4), 2)
	data, _ := s.MarshalSnapshot()
	var r Stock
	if err := r.UnmarshalSnapshot(data); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Stock{s, &r} {
		c := st.Clone()
		c.Apply(StockConsumed{SKU: "S", OrderID: ids(4)[3], Quantity: 1})
		if !c.settled.has(ids(4)[3]) || st.settled.has(ids(4)[3]) {
			t.Errorf("settled on the clone: clone %v, original %v; want true, false", c.settled.has(ids(4)[3]), st.settled.has(ids(4)[3]))
		}
	}
}
