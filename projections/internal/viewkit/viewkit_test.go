package viewkit

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/eventtest"
)

// count is a row that counts the restocks of a sku.
type count struct {
	SKU     string `db:"sku,text,key"`
	N       int    `db:"n,int"`
	Version int64  `db:"version,bigint"`
}

var errBadKey = errors.New("bad key")

func counter() *Table[string, count] {
	return New(Spec[string, count]{
		Name:     "counts",
		Prefix:   inventory.StreamPrefix,
		Register: inventory.RegisterEvents,
		Columns:  NewColumns[count]("counts"),
		Key: func(id string) (string, error) {
			if id == "BAD" {
				return "", errBadKey
			}
			return id, nil
		},
		Create: func(sku string, e domain.Envelope, payload any) (*count, error) {
			if _, ok := payload.(inventory.StockRestocked); !ok {
				return nil, nil
			}
			return &count{SKU: sku, N: 1, Version: e.Version}, nil
		},
		Fold: func(c *count, e domain.Envelope, payload any) {
			if _, ok := payload.(inventory.StockRestocked); ok {
				c.N++
			}
			c.Version = e.Version
		},
	})
}

var (
	_ projections.Decoder    = (*Table[string, count])(nil)
	_ projections.Projection = (*Table[string, count])(nil)
)

func TestDecodeGroupsByRowInFirstSeenOrder(t *testing.T) {
	restock := func(sku string, v int64) domain.Envelope {
		return eventtest.Envelope(t, inventory.Stream(sku), v, inventory.StockRestocked{SKU: sku, Quantity: 1})
	}
	other := restock("X", 1)
	other.Stream = "order-1"
	d, err := counter().Decode([]domain.Envelope{restock("B", 1), other, restock("A", 1), restock("B", 2)})
	if err != nil {
		t.Fatal(err)
	}
	b := d.(*Batch[string, count])
	if fmt.Sprint(b.Keys) != "[B A]" || len(b.changes["B"]) != 2 || len(b.changes["A"]) != 1 {
		t.Errorf("keys %v, changes %v", b.Keys, b.changes)
	}
	_, err = counter().Decode([]domain.Envelope{restock("BAD", 1)})
	if !errors.Is(err, projections.ErrUndecodable) || !errors.Is(err, errBadKey) {
		t.Errorf("bad key: %v, want ErrUndecodable wrapping the key's error", err)
	}
}

func TestReplay(t *testing.T) {
	s := inventory.Stream("S")
	restocked := func(v int64) domain.Envelope {
		return eventtest.Envelope(t, s, v, inventory.StockRestocked{SKU: "S", Quantity: 1})
	}
	reserved := eventtest.Envelope(t, s, 1, inventory.StockReserved{SKU: "S", Quantity: 1})
	tests := []struct {
		name        string
		stored      *count
		events      []domain.Envelope
		want        *count
		wantChanged bool
	}{
		{"created then folded", nil, []domain.Envelope{restocked(1), restocked(2)}, &count{"S", 2, 2}, true},
		{"no row started", nil, []domain.Envelope{reserved}, nil, false},
		{"older events skipped", &count{"S", 5, 2}, []domain.Envelope{restocked(1), restocked(2), restocked(3)}, &count{"S", 6, 3}, true},
		{"all reflected", &count{"S", 5, 3}, []domain.Envelope{restocked(3)}, &count{"S", 5, 3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before count
			if tt.stored != nil {
				before = *tt.stored
			}
			got, changed, err := counter().Replay(tt.stored, tt.events...)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged || (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("got %+v (changed %v), want %+v (changed %v)", got, changed, tt.want, tt.wantChanged)
			}
			if tt.stored != nil && *tt.stored != before {
				t.Errorf("stored row changed to %+v", *tt.stored)
			}
		})
	}
	// A created row is copied: replaying the same batch twice gives the
	// same row, as a rebuild that retries a decoded batch needs.
	tb := counter()
	events := []domain.Envelope{restocked(1), restocked(2)}
	d, err := tb.Decode(events)
	if err != nil {
		t.Fatal(err)
	}
	b := d.(*Batch[string, count])
	first, _ := tb.fold(nil, b.changes["S"])
	second, _ := tb.fold(nil, b.changes["S"])
	if *first != *second || first == second {
		t.Errorf("folding a batch twice: %+v then %+v", first, second)
	}
}

func TestNewPage(t *testing.T) {
	bad := errors.New("bad filter")
	tests := []struct {
		name      string
		limit     int
		filter    interface{ Validate() error }
		wantLimit int
		wantField string // of the *domain.ValidationError
		wantErr   error
	}{
		{"default", 0, nil, projections.DefaultLimit, "", nil},
		{"given", 7, filter{}, 7, "", nil},
		{"limit before filter", -1, filter{bad}, 0, "limit", nil},
		{"bad filter", 7, filter{bad}, 0, "", bad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPage(tt.limit, tt.filter)
			var v *domain.ValidationError
			switch {
			case tt.wantField != "":
				if !errors.As(err, &v) || v.Fields[0].Field != tt.wantField {
					t.Errorf("err %v, want a validation error on %s", err, tt.wantField)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err %v, want %v", err, tt.wantErr)
				}
			case err != nil || p.limit != tt.wantLimit:
				t.Errorf("NewPage: %+v, %v; want limit %d", p, err, tt.wantLimit)
			}
		})
	}
}

type filter struct{ err error }

func (f filter) Validate() error { return f.err }

func TestNewestFirstAfter(t *testing.T) {
	const o = NewestFirst("order_id")
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	id := "0b6f5c1e-2f0a-4c43-9d6b-6f1c1b8c0a11"
	cursor := projections.EncodeCursor(o.Cursor(at, id))

	p := &Page{}
	p.Where("status = " + p.Arg("pending"))
	if err := o.After(p, cursor); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(p.where, p.args); got != fmt.Sprint([]string{"status = $1", "(created_at, order_id) < ($2, $3)"}, []any{"pending", at, id}) {
		t.Errorf("page %s", got)
	}
	if err := o.After(&Page{}, ""); err != nil {
		t.Errorf("empty cursor: %v", err)
	}
	for _, bad := range []string{"%%", projections.EncodeCursor(o.Cursor(time.Time{}, id)), projections.EncodeCursor(o.Cursor(at, "x"))} {
		var v *domain.ValidationError
		if err := o.After(&Page{}, bad); !errors.As(err, &v) {
			t.Errorf("cursor %q: %v, want a validation error", bad, err)
		}
	}
	if got := o.OrderBy(); got != "created_at DESC, order_id DESC" {
		t.Errorf("OrderBy %q", got)
	}
}

func TestNewestFirstIndexes(t *testing.T) {
	const o = NewestFirst("order_id")
	tables := projections.Tables{Version: 2}
	tests := []struct {
		name    string
		filters []IndexOn
		want    []string
	}{
		{"unfiltered only", nil, []string{
			`CREATE INDEX "orders_v2_by_created" ON "orders_v2" (created_at DESC, order_id DESC)`,
		}},
		{"one index per filter, in order", []IndexOn{{"by_customer", "customer_id"}, {"by_status", "status"}}, []string{
			`CREATE INDEX "orders_v2_by_created" ON "orders_v2" (created_at DESC, order_id DESC)`,
			`CREATE INDEX "orders_v2_by_customer" ON "orders_v2" (customer_id, created_at DESC, order_id DESC)`,
			`CREATE INDEX "orders_v2_by_status" ON "orders_v2" (status, created_at DESC, order_id DESC)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := o.Indexes(tables, "orders", tt.filters...)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Indexes:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
