// Package stockview is the inventory read model: one row per sku with the
// quantities on hand, reserved and available, folded from the stock
// streams, and the queries behind GET /api/inventory and
// GET /api/inventory/{sku}.
package stockview

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/viewkit"
)

// Name is the projection's name; its table is "stock", read through the
// view rm_stock.
const Name = "stock"

const table = "stock"

// StreamPrefixes are the streams the projection reads.
var StreamPrefixes = []string{inventory.StreamPrefix}

// View is one sku as GET /api/inventory/{sku} shows it.
type View struct {
	SKU      string `json:"sku"`
	OnHand   int64  `json:"on_hand"`
	Reserved int64  `json:"reserved"`
	// Available is OnHand - Reserved, never below 0.
	Available int64 `json:"available"`
	// Version is the version of the sku's stream the view reflects.
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Projection folds stock events into the stock table.
type Projection struct {
	*viewkit.Table[string, row]
}

// New returns the stock projection. The list is ordered by sku, the
// primary key, so the table needs no other index.
func New() *Projection {
	return &Projection{viewkit.New(viewkit.Spec[string, row]{
		Name:     Name,
		Prefix:   inventory.StreamPrefix,
		Register: inventory.RegisterEvents,
		Columns:  columns,
		Key:      viewkit.StringKey,
		Create:   create,
		Fold:     fold,
	})}
}

var _ projections.Projection = (*Projection)(nil)

// row is a sku as stored, and its tags are the stock table: see
// viewkit.Columns. Skus sort bytewise (collation C), as the list pages
// them.
type row struct {
	SKU      string `db:"sku,text,key,collate=C"`
	OnHand   int64  `db:"on_hand,bigint"`
	Reserved int64  `db:"reserved,bigint"`
	// Available is OnHand - Reserved, never below 0; fold keeps it so.
	Available int64     `db:"available,bigint"`
	Version   int64     `db:"version,bigint"`
	UpdatedAt time.Time `db:"updated_at,timestamptz"`
}

var columns = viewkit.NewColumns[row](table)

// view is r as the API shows it.
func (r *row) view() (View, error) {
	return View{SKU: r.SKU, OnHand: r.OnHand, Reserved: r.Reserved, Available: r.Available,
		Version: r.Version, UpdatedAt: r.UpdatedAt.UTC()}, nil
}

// create returns the row of a sku not stored yet after its first event:
// every event starts from no stock.
func create(sku string, e domain.Envelope, payload any) (*row, error) {
	r := &row{SKU: sku}
	fold(r, e, payload)
	return r, nil
}

// fold applies an event newer than r to r.
func fold(r *row, e domain.Envelope, payload any) {
	switch ev := payload.(type) {
	case inventory.StockRestocked:
		r.OnHand += int64(ev.Quantity)
	case inventory.StockReserved:
		r.Reserved += int64(ev.Quantity)
	case inventory.StockReleased:
		r.Reserved -= int64(ev.Quantity)
	case inventory.StockConsumed:
		r.Reserved -= int64(ev.Quantity)
		r.OnHand -= int64(ev.Quantity)
	}
	r.Available = max(r.OnHand-r.Reserved, 0)
	r.Version = e.Version
	r.UpdatedAt = e.RecordedAt.UTC()
}

var (
	selectView = columns.SelectView()
	scanView   = viewkit.Scanner(columns, (*row).view)
)

// Get returns the stock of sku, or domain.ErrNotFound (also for a string
// that is not a valid sku, which no stock has).
func Get(ctx context.Context, q projections.Querier, sku string) (View, error) {
	return viewkit.Get(ctx, q, scanView, "sku", sku, domain.ValidExternalID(sku), selectView+" WHERE sku = $1")
}

type cursor struct {
	SKU string `json:"sku"`
}

// List returns up to limit skus in sku order (bytewise), after the cursor
// after (empty: from the start), and the cursor of the next page (empty on
// the last page). limit 0 means projections.DefaultLimit; a bad limit or
// cursor is a *domain.ValidationError.
func List(ctx context.Context, q projections.Querier, limit int, after string) ([]View, string, error) {
	p, err := viewkit.NewPage(limit, nil)
	if err != nil {
		return nil, "", err
	}
	if after != "" {
		var c cursor
		if err := projections.DecodeCursor(after, &c, func() bool { return domain.ValidExternalID(c.SKU) }); err != nil {
			return nil, "", err
		}
		p.Where("sku > " + p.Arg(c.SKU))
	}
	views, next, err := viewkit.List(ctx, q, scanView, p, selectView, "sku",
		func(v View) any { return cursor{SKU: v.SKU} })
	if err != nil {
		return nil, "", fmt.Errorf("list stock: %w", err)
	}
	return views, next, nil
}
