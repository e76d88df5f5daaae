// Package stockview is the inventory read model: one row per sku with the
// quantities on hand, reserved and available, folded from the stock
// streams, and the queries behind GET /api/inventory and
// GET /api/inventory/{sku}.
package stockview

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
	*viewkit.Table[string, row, *row]
}

// New returns the stock projection.
func New() *Projection {
	return &Projection{viewkit.New(viewkit.Spec[string, row, *row]{
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

// Schema implements projections.Projection. The list is ordered by sku,
// the primary key, so it needs no other index.
func (*Projection) Schema(t projections.Tables) projections.Schema {
	return projections.Schema{
		Tables: []string{`CREATE TABLE ` + t.Name(table) + ` (
			sku        text        PRIMARY KEY COLLATE "C",
			on_hand    bigint      NOT NULL,
			reserved   bigint      NOT NULL,
			available  bigint      NOT NULL,
			version    bigint      NOT NULL,
			updated_at timestamptz NOT NULL
		)`},
	}
}

var columns = projections.Columns{
	Table: table,
	Names: []string{"sku", "on_hand", "reserved", "available", "version", "updated_at"},
	Types: []string{"text", "bigint", "bigint", "bigint", "bigint", "timestamptz"},
	Key:   1,
}

type row struct {
	sku              string
	onHand, reserved int64
	version          int64
	updatedAt        time.Time
}

// Key implements viewkit.Row.
func (r *row) Key() string { return r.sku }

// Version implements viewkit.Row.
func (r *row) Version() int64 { return r.version }

// Values implements viewkit.Row.
func (r *row) Values() []any {
	return []any{r.sku, r.onHand, r.reserved, max(r.onHand-r.reserved, 0), r.version, r.updatedAt}
}

// Scan implements viewkit.Row; available is derived, so it is skipped.
func (r *row) Scan(rows pgx.Rows) error {
	return rows.Scan(&r.sku, &r.onHand, &r.reserved, nil, &r.version, &r.updatedAt)
}

// create returns the row of a sku not stored yet after its first event:
// every event starts from no stock.
func create(sku string, e domain.Envelope, payload any) (*row, error) {
	r := &row{sku: sku}
	fold(r, e, payload)
	return r, nil
}

// fold applies an event newer than r to r.
func fold(r *row, e domain.Envelope, payload any) {
	switch ev := payload.(type) {
	case inventory.StockRestocked:
		r.onHand += int64(ev.Quantity)
	case inventory.StockReserved:
		r.reserved += int64(ev.Quantity)
	case inventory.StockReleased:
		r.reserved -= int64(ev.Quantity)
	case inventory.StockConsumed:
		r.reserved -= int64(ev.Quantity)
		r.onHand -= int64(ev.Quantity)
	}
	r.version = e.Version
	r.updatedAt = e.RecordedAt.UTC()
}

const selectView = "SELECT sku, on_hand, reserved, available, version, updated_at FROM rm_stock"

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

func scanView(rows pgx.Rows) (View, error) {
	var v View
	err := rows.Scan(&v.SKU, &v.OnHand, &v.Reserved, &v.Available, &v.Version, &v.UpdatedAt)
	v.UpdatedAt = v.UpdatedAt.UTC()
	return v, err
}
