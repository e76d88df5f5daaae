package inventory

import (
	"errors"
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
			// The snapshot holds no settled orders: the restored stock
			// asks about every order it neither holds nor knows settled,
			// and learns the ones the history (here, s) settled.
			if got := r.SettledUnknownUpTo(); got <= 0 {
				t.Fatalf("restored stock complete (unknown up to %d); want incomplete", got)
			}
			r.RestoredAt(int64(1 + 2*len(tc.orders)))
			ask := r.MustLearn(probe)
			var found []string
			for _, o := range ask {
				if _, held := s.Reservations[o]; held {
					t.Errorf("asks about %s, which it holds", o)
				}
				if s.settled.has(o) {
					found = append(found, o)
				}
			}
			held := 0
			for _, o := range probe {
				if _, ok := s.Reservations[o]; ok {
					held++
				}
			}
			if len(ask) != len(probe)-held {
				t.Errorf("asks about %d of %d orders, want all but the %d held", len(ask), len(probe), held)
			}
			r.Learn(found)
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

// TestUnmarshalSnapshotForms: the head is all of data (a trailing newline
// allowed); data of another form (an unknown member, as schema 1's JSON
// had, or settled ids after the head, as schema 2 wrote them) is refused
// with ErrBadStockSnapshot, so that the writer reads the stream from its
// start instead.
func TestUnmarshalSnapshotForms(t *testing.T) {
	id := strings.Repeat("\x01", 16)
	tests := []struct {
		name string
		data string
		ok   bool
		sku  string
	}{
		{"head", "{\"sku\":\"S\"}\n", true, "S"},
		{"no newline", `{"sku":"S"}`, true, "S"},
		{"empty", `{}`, true, ""},
		{"settled ids after the head", "{\"sku\":\"S\"}\n" + id, false, ""},
		{"unknown member", `{"sku":"S","other":1}`, false, ""},
		{"schema 2's other ids", `{"sku":"S","settled_other":["x"]}`, false, ""},
		{"two heads", `{"sku":"S"} {}`, false, ""},
		{"old JSON form", `{"sku": "S", "settled_packed_base64": "AAEC"}`, false, ""},
		{"bad head", "{\"sku\":\n", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Stock
			err := s.UnmarshalSnapshot([]byte(tc.data))
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrBadStockSnapshot)) {
				t.Fatalf("UnmarshalSnapshot = %v, want ok %v (or ErrBadStockSnapshot)", err, tc.ok)
			}
			if tc.ok && (s.SKU != tc.sku || s.SettledUnknownUpTo() == 0) {
				t.Errorf("restored sku %q, settled unknown up to %d; want %q, marked incomplete", s.SKU, s.SettledUnknownUpTo(), tc.sku)
			}
		})
	}
}

// TestCloneSharesNoSettledState: settling on a clone does not reach the
// original, also on a Stock restored from a snapshot.
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
