// Package orderview is the orders read model: one row per order with its
// status, items, address and the ids of its saga and shipment, folded from
// the order streams, and the queries behind GET /api/orders and
// GET /api/orders/{id}.
package orderview

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/projections"
)

// Name is the projection's name; its table is "orders", read through the
// view rm_orders.
const Name = "orders"

const table = "orders"

// StreamPrefixes are the streams the projection reads.
var StreamPrefixes = []string{order.StreamPrefix}

// View is one order as GET /api/orders/{id} shows it.
type View struct {
	OrderID         string        `json:"order_id"`
	CustomerID      string        `json:"customer_id"`
	Status          string        `json:"status"`
	Items           []order.Item  `json:"items"`
	TotalCents      int64         `json:"total_cents"`
	ShippingAddress order.Address `json:"shipping_address"`
	SagaID          string        `json:"saga_id"`
	// ShipmentID is empty until the order is confirmed.
	ShipmentID string `json:"shipment_id"`
	// Reason is set for rejected and cancelled orders.
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Version is the version of the order's stream the view reflects.
	Version int64 `json:"version"`
}

// Projection folds order events into the orders table.
type Projection struct {
	reg *domain.Registry
}

// New returns the orders projection.
func New() *Projection {
	reg := domain.NewRegistry()
	if err := order.RegisterEvents(reg); err != nil {
		panic(err) // fixed at compile time
	}
	return &Projection{reg: reg}
}

var _ projections.Projection = (*Projection)(nil)

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Tables implements projections.Projection.
func (*Projection) Tables() []string { return []string{table} }

// Schema implements projections.Projection. Every list is ordered newest
// first by (created_at, order_id), and each filter has an index in that
// order, so a page is one index range scan.
// Items and address are stored as json, not jsonb: they are only ever
// returned whole, and json takes about half the time to write in a replay.
func (*Projection) Schema(t projections.Tables) projections.Schema {
	name := t.Name(table)
	return projections.Schema{
		Tables: []string{`CREATE TABLE ` + name + ` (
			order_id         uuid        PRIMARY KEY,
			customer_id      text        NOT NULL,
			status           text        NOT NULL,
			items            json        NOT NULL,
			total_cents      bigint      NOT NULL,
			shipping_address json        NOT NULL,
			saga_id          uuid        NOT NULL,
			shipment_id      text        NOT NULL,
			reason           text        NOT NULL,
			created_at       timestamptz NOT NULL,
			updated_at       timestamptz NOT NULL,
			version          bigint      NOT NULL
		)`},
		Indexes: []string{
			`CREATE INDEX ` + t.Index(table, "by_created") + ` ON ` + name + ` (created_at DESC, order_id DESC)`,
			`CREATE INDEX ` + t.Index(table, "by_customer") + ` ON ` + name + ` (customer_id, created_at DESC, order_id DESC)`,
			`CREATE INDEX ` + t.Index(table, "by_status") + ` ON ` + name + ` (status, created_at DESC, order_id DESC)`,
		},
	}
}

var columns = projections.Columns{
	Table: table,
	Names: []string{"order_id", "customer_id", "status", "items", "total_cents", "shipping_address",
		"saga_id", "shipment_id", "reason", "created_at", "updated_at", "version"},
	Types: []string{"uuid", "text", "text", "json", "bigint", "json",
		"uuid", "text", "text", "timestamptz", "timestamptz", "bigint"},
	Key: 1,
	// Only OrderPlaced, which creates the row, sets the others.
	Mutable: []string{"status", "shipment_id", "reason", "updated_at", "version"},
}

// row is an order as stored; the JSON columns stay encoded unless an event
// replaces them.
type row struct {
	id         [16]byte
	customerID string
	status     string
	items      json.RawMessage
	total      int64
	address    json.RawMessage
	sagaID     [16]byte
	shipmentID string
	reason     string
	createdAt  time.Time
	updatedAt  time.Time
	version    int64
}

func (r *row) values() []any {
	return []any{r.id, r.customerID, r.status, r.items, r.total, r.address,
		r.sagaID, r.shipmentID, r.reason, r.createdAt, r.updatedAt, r.version}
}

func (r *row) scan(rows pgx.Rows) error {
	return rows.Scan(&r.id, &r.customerID, &r.status, &r.items, &r.total, &r.address,
		&r.sagaID, &r.shipmentID, &r.reason, &r.createdAt, &r.updatedAt, &r.version)
}

type change struct {
	e       domain.Envelope
	payload any
	// placed is the row an OrderPlaced creates, built while decoding.
	placed *row
}

// batch is a decoded batch: the changes per order, orders in first-seen
// order.
type batch struct {
	keys  [][16]byte
	byKey map[[16]byte][]change
}

var _ projections.Decoder = (*Projection)(nil)

// Apply implements projections.Projection: decode the batch, load the
// orders it touches in one query, fold in memory, then write the new orders
// and the changed ones with one statement each.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, t projections.Tables, events []domain.Envelope) error {
	b, err := p.Decode(events)
	if err != nil {
		return err
	}
	return p.ApplyDecoded(ctx, tx, t, b)
}

// Decode implements projections.Decoder.
func (p *Projection) Decode(events []domain.Envelope) (any, error) {
	b := &batch{byKey: make(map[[16]byte][]change)}
	for _, e := range events {
		if !strings.HasPrefix(e.Stream, order.StreamPrefix) {
			continue
		}
		payload, err := p.reg.Decode(e)
		if err != nil {
			return nil, projections.Undecodable(e, err)
		}
		id, err := uuid.Parse(strings.TrimPrefix(e.Stream, order.StreamPrefix))
		if err != nil {
			return nil, projections.Undecodable(e, fmt.Errorf("stream %s: %w", e.Stream, err))
		}
		c := change{e: e, payload: payload}
		if ev, ok := payload.(order.OrderPlaced); ok {
			if c.placed, err = placedRow(id, e, ev); err != nil {
				return nil, err
			}
		}
		if _, ok := b.byKey[id]; !ok {
			b.keys = append(b.keys, id)
		}
		b.byKey[id] = append(b.byKey[id], c)
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
	for _, id := range b.keys {
		r, exists := stored[id]
		changed := false
		for _, c := range b.byKey[id] {
			if next := fold(r, c); next != nil {
				r, changed = next, true
			}
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

func load(ctx context.Context, tx pgx.Tx, t projections.Tables, keys [][16]byte) (map[[16]byte]*row, error) {
	rows, err := tx.Query(ctx, columns.Select(t)+" WHERE order_id = ANY($1)", keys)
	if err != nil {
		return nil, fmt.Errorf("load orders: %w", err)
	}
	defer rows.Close()
	out := make(map[[16]byte]*row)
	for rows.Next() {
		r := &row{}
		if err := r.scan(rows); err != nil {
			return nil, fmt.Errorf("load orders: %w", err)
		}
		out[r.id] = r
	}
	return out, rows.Err()
}

// fold applies one event to r (nil: no such order yet) and returns the new
// row, or nil when the event changes nothing: it is already reflected (its
// version is not newer), or it concerns an order that was never placed,
// which only happens when its OrderPlaced was parked. It never modifies r.
func fold(r *row, c change) *row {
	e := c.e
	if r != nil && e.Version <= r.version {
		return nil
	}
	if r == nil {
		return c.placed
	}
	n := *r
	switch ev := c.payload.(type) {
	case order.OrderPlaced:
		// A second OrderPlaced in one stream is not a decision the
		// aggregate makes; only the version moves.
	case order.OrderConfirmed:
		n.status = string(order.StatusConfirmed)
		n.shipmentID = ev.ShipmentID
	case order.OrderRejected:
		n.status = string(order.StatusRejected)
		n.reason = ev.Reason
	case order.OrderCancelled:
		n.status = string(order.StatusCancelled)
		n.reason = ev.Reason
	case order.OrderShipped:
		n.status = string(order.StatusShipped)
		if ev.ShipmentID != "" {
			n.shipmentID = ev.ShipmentID
		}
	}
	n.updatedAt = e.RecordedAt.UTC()
	n.version = e.Version
	return &n
}

func placedRow(id [16]byte, e domain.Envelope, ev order.OrderPlaced) (*row, error) {
	sagaID, err := uuid.Parse(ev.SagaID)
	if err != nil {
		return nil, projections.Undecodable(e, fmt.Errorf("saga_id: %w", err))
	}
	items := ev.Items
	if items == nil {
		items = []order.Item{}
	}
	itemsJSON, err := json.Marshal(items)
	if err != nil {
		return nil, projections.Undecodable(e, err)
	}
	addrJSON, err := json.Marshal(ev.ShippingAddress)
	if err != nil {
		return nil, projections.Undecodable(e, err)
	}
	created := ev.PlacedAt
	if created.IsZero() {
		created = e.RecordedAt
	}
	return &row{
		id:         id,
		customerID: ev.CustomerID,
		status:     string(order.StatusPending),
		items:      itemsJSON,
		total:      ev.TotalCents,
		address:    addrJSON,
		sagaID:     sagaID,
		// PostgreSQL keeps microseconds; truncating here keeps a row the
		// same whether it was just written or read back.
		createdAt: created.UTC().Truncate(time.Microsecond),
		updatedAt: e.RecordedAt.UTC(),
		version:   e.Version,
	}, nil
}

// Get returns the order with id, or domain.ErrNotFound (also for an id
// that is not a UUID, which no order has).
func Get(ctx context.Context, q projections.Querier, id string) (View, error) {
	if !domain.ValidUUID(id) {
		return View{}, fmt.Errorf("order %q: %w", id, domain.ErrNotFound)
	}
	rows, err := q.Query(ctx, selectView+" WHERE order_id = $1", id)
	if err != nil {
		return View{}, fmt.Errorf("get order %s: %w", id, err)
	}
	views, err := scanViews(rows)
	if err != nil {
		return View{}, fmt.Errorf("get order %s: %w", id, err)
	}
	if len(views) == 0 {
		return View{}, fmt.Errorf("order %s: %w", id, domain.ErrNotFound)
	}
	return views[0], nil
}

// Filter narrows List; empty fields match everything.
type Filter struct {
	CustomerID string
	Status     string
}

// Validate reports filter values no order can match as field errors.
func (f Filter) Validate() error {
	var v domain.ValidationError
	if f.CustomerID != "" && !domain.ValidExternalID(f.CustomerID) {
		v.Add("customer_id", domain.ExternalIDRule)
	}
	switch order.Status(f.Status) {
	case "", order.StatusPending, order.StatusConfirmed, order.StatusRejected, order.StatusCancelled, order.StatusShipped:
	default:
		v.Add("status", "must be one of pending, confirmed, rejected, cancelled, shipped")
	}
	return v.Err()
}

// cursor is the key of the last order of a page.
type cursor struct {
	CreatedAt time.Time `json:"t"`
	OrderID   string    `json:"id"`
}

// List returns up to limit orders matching f, newest first, after the
// cursor after (empty: from the start), and the cursor of the next page
// (empty on the last page). limit 0 means projections.DefaultLimit; a bad
// limit, filter or cursor is a *domain.ValidationError.
func List(ctx context.Context, q projections.Querier, f Filter, limit int, after string) ([]View, string, error) {
	limit, err := projections.PageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.CustomerID != "" {
		where = append(where, "customer_id = "+arg(f.CustomerID))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(f.Status))
	}
	if after != "" {
		var c cursor
		if err := projections.DecodeCursor(after, &c, func() bool { return !c.CreatedAt.IsZero() && domain.ValidUUID(c.OrderID) }); err != nil {
			return nil, "", err
		}
		where = append(where, fmt.Sprintf("(created_at, order_id) < (%s, %s)", arg(c.CreatedAt), arg(c.OrderID)))
	}
	sql := selectView
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY created_at DESC, order_id DESC LIMIT " + arg(limit+1)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	views, err := scanViews(rows)
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	next := ""
	if len(views) > limit {
		views = views[:limit]
		last := views[limit-1]
		next = projections.EncodeCursor(cursor{CreatedAt: last.CreatedAt, OrderID: last.OrderID})
	}
	return views, next, nil
}

var selectView = `SELECT order_id::text, customer_id, status, items, total_cents, shipping_address,
	saga_id::text, shipment_id, reason, created_at, updated_at, version FROM ` + projections.View(table)

func scanViews(rows pgx.Rows) ([]View, error) {
	defer rows.Close()
	views := []View{}
	for rows.Next() {
		var (
			v              View
			items, address []byte
		)
		if err := rows.Scan(&v.OrderID, &v.CustomerID, &v.Status, &items, &v.TotalCents, &address,
			&v.SagaID, &v.ShipmentID, &v.Reason, &v.CreatedAt, &v.UpdatedAt, &v.Version); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(items, &v.Items); err != nil {
			return nil, fmt.Errorf("order %s items: %w", v.OrderID, err)
		}
		if err := json.Unmarshal(address, &v.ShippingAddress); err != nil {
			return nil, fmt.Errorf("order %s address: %w", v.OrderID, err)
		}
		v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
		views = append(views, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return views, nil
}
