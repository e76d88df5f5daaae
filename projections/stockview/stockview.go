// Package stockview is the inventory read model: one row per sku with the
// quantities on hand, reserved and available, folded from the stock
// streams, and the queries behind GET /api/inventory and
// GET /api/inventory/{sku}.
package stockview

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/projections"
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
	reg *domain.Registry
}

// New returns the stock projection.
func New() *Projection {
	reg := domain.NewRegistry()
	if err := inventory.RegisterEvents(reg); err != nil {
		panic(err) // fixed at compile time
	}
	return &Projection{reg: reg}
}

var _ projections.Projection = (*Projection)(nil)

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Tables implements projections.Projection.
func (*Projection) Tables() []string { return []string{table} }

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

func (r *row) values() []any {
	return []any{r.sku, r.onHand, r.reserved, max(r.onHand-r.reserved, 0), r.version, r.updatedAt}
}

type change struct {
	e       domain.Envelope
	payload any
}

// batch is a decoded batch: the changes per sku, skus in first-seen order.
type batch struct {
	keys  []string
	byKey map[string][]change
}

var _ projections.Decoder = (*Projection)(nil)

// Apply implements projections.Projection: decode, load the touched skus in
// one query, fold in memory, write new and changed rows with one statement
// each.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, t projections.Tables, events []domain.Envelope) error {
	b, err := p.Decode(events)
	if err != nil {
		return err
	}
	return p.ApplyDecoded(ctx, tx, t, b)
}

// Decode implements projections.Decoder.
func (p *Projection) Decode(events []domain.Envelope) (any, error) {
	b := &batch{byKey: make(map[string][]change)}
	for _, e := range events {
		if !strings.HasPrefix(e.Stream, inventory.StreamPrefix) {
			continue
		}
		payload, err := p.reg.Decode(e)
		if err != nil {
			return nil, projections.Undecodable(e, err)
		}
		sku := strings.TrimPrefix(e.Stream, inventory.StreamPrefix)
		if _, ok := b.byKey[sku]; !ok {
			b.keys = append(b.keys, sku)
		}
		b.byKey[sku] = append(b.byKey[sku], change{e, payload})
	}
	return b, nil
}

// ApplyDecoded implements projections.Decoder.
func (p *Projection) ApplyDecoded(ctx context.Context, tx pgx.Tx, t projections.Tables, decoded any) error {
	b := decoded.(*batch)
	if len(b.keys) == 0 {
		return nil
	}
	stored, err := load(ctx, tx, t, b.keys)
	if err != nil {
		return err
	}
	var inserts, updates [][]any
	for _, sku := range b.keys {
		r, exists := stored[sku]
		if !exists {
			r = &row{sku: sku}
		}
		changed := false
		for _, c := range b.byKey[sku] {
			if c.e.Version <= r.version {
				continue // already reflected
			}
			switch ev := c.payload.(type) {
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
			r.version = c.e.Version
			r.updatedAt = c.e.RecordedAt.UTC()
			changed = true
		}
		switch {
		case !changed:
		case exists:
			updates = append(updates, r.values())
		default:
			inserts = append(inserts, r.values())
		}
	}
	if err := columns.Insert(ctx, tx, t, inserts); err != nil {
		return err
	}
	return columns.Update(ctx, tx, t, updates)
}

func load(ctx context.Context, tx pgx.Tx, t projections.Tables, skus []string) (map[string]*row, error) {
	rows, err := tx.Query(ctx, "SELECT sku, on_hand, reserved, version, updated_at FROM "+t.Name(table)+" WHERE sku = ANY($1)", skus)
	if err != nil {
		return nil, fmt.Errorf("load stock: %w", err)
	}
	defer rows.Close()
	out := make(map[string]*row, len(skus))
	for rows.Next() {
		r := &row{}
		if err := rows.Scan(&r.sku, &r.onHand, &r.reserved, &r.version, &r.updatedAt); err != nil {
			return nil, fmt.Errorf("load stock: %w", err)
		}
		out[r.sku] = r
	}
	return out, rows.Err()
}

const selectView = "SELECT sku, on_hand, reserved, available, version, updated_at FROM rm_stock"

// Get returns the stock of sku, or domain.ErrNotFound (also for a string
// that is not a valid sku, which no stock has).
func Get(ctx context.Context, q projections.Querier, sku string) (View, error) {
	if !domain.ValidExternalID(sku) {
		return View{}, fmt.Errorf("sku %q: %w", sku, domain.ErrNotFound)
	}
	views, err := query(ctx, q, selectView+" WHERE sku = $1", sku)
	if err != nil {
		return View{}, fmt.Errorf("get sku %s: %w", sku, err)
	}
	if len(views) == 0 {
		return View{}, fmt.Errorf("sku %s: %w", sku, domain.ErrNotFound)
	}
	return views[0], nil
}

type cursor struct {
	SKU string `json:"sku"`
}

// List returns up to limit skus in sku order (bytewise), after the cursor
// after (empty: from the start), and the cursor of the next page (empty on
// the last page). limit 0 means projections.DefaultLimit; a bad limit or
// cursor is a *domain.ValidationError.
func List(ctx context.Context, q projections.Querier, limit int, after string) ([]View, string, error) {
	limit, err := projections.PageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	sql, args := selectView, []any{}
	if after != "" {
		var c cursor
		if err := projections.DecodeCursor(after, &c, func() bool { return domain.ValidExternalID(c.SKU) }); err != nil {
			return nil, "", err
		}
		sql += " WHERE sku > $1"
		args = append(args, c.SKU)
	}
	args = append(args, limit+1)
	sql += fmt.Sprintf(" ORDER BY sku LIMIT $%d", len(args))
	views, err := query(ctx, q, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list stock: %w", err)
	}
	next := ""
	if len(views) > limit {
		views = views[:limit]
		next = projections.EncodeCursor(cursor{SKU: views[limit-1].SKU})
	}
	return views, next, nil
}

func query(ctx context.Context, q projections.Querier, sql string, args ...any) ([]View, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	views := []View{}
	for rows.Next() {
		var v View
		if err := rows.Scan(&v.SKU, &v.OnHand, &v.Reserved, &v.Available, &v.Version, &v.UpdatedAt); err != nil {
			return nil, err
		}
		v.UpdatedAt = v.UpdatedAt.UTC()
		views = append(views, v)
	}
	return views, rows.Err()
}
