// Package shipmentview is the shipments read model: one row per shipment
// with its order, items, address and status, folded from the shipment
// streams, and the queries behind GET /api/shipments and
// GET /api/shipments/{id}.
//
// The API knows three shipment statuses (scheduled, dispatched, cancelled).
// A shipment the service refused (its destination is not served) is shown
// as cancelled, with the refusal's reason in the extra field reason; see
// docs/adr/0063-refused-shipments-in-the-read-model.md.
package shipmentview

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
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/projections"
)

// Name is the projection's name; its table is "shipments", read through the
// view rm_shipments.
const Name = "shipments"

const table = "shipments"

// StreamPrefixes are the streams the projection reads.
var StreamPrefixes = []string{shipping.StreamPrefix}

// The statuses a View shows.
const (
	StatusScheduled  = string(shipping.StatusScheduled)
	StatusDispatched = string(shipping.StatusDispatched)
	StatusCancelled  = string(shipping.StatusCancelled)
)

// View is one shipment as GET /api/shipments/{id} shows it.
type View struct {
	ShipmentID string        `json:"shipment_id"`
	OrderID    string        `json:"order_id"`
	Status     string        `json:"status"`
	Items      []order.Item  `json:"items"`
	Address    order.Address `json:"address"`
	// Reason says why a cancelled shipment was cancelled or refused
	// (destination_not_served); empty otherwise.
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Version is the version of the shipment's stream the view reflects.
	Version int64 `json:"version"`
}

// Projection folds shipment events into the shipments table.
type Projection struct {
	reg *domain.Registry
}

// New returns the shipments projection.
func New() *Projection {
	reg := domain.NewRegistry()
	if err := shipping.RegisterEvents(reg); err != nil {
		panic(err) // fixed at compile time
	}
	return &Projection{reg: reg}
}

var _ projections.Projection = (*Projection)(nil)

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Tables implements projections.Projection.
func (*Projection) Tables() []string { return []string{table} }

// Schema implements projections.Projection. Lists are newest first by
// (created_at, shipment_id), with an index per filter in that order.
// Items and address are stored as json, not jsonb: they are only ever
// returned whole, and json takes about half the time to write in a replay.
func (*Projection) Schema(t projections.Tables) projections.Schema {
	name := t.Name(table)
	return projections.Schema{
		Tables: []string{`CREATE TABLE ` + name + ` (
			shipment_id uuid        PRIMARY KEY,
			order_id    uuid        NOT NULL,
			status      text        NOT NULL,
			items       json        NOT NULL,
			address     json        NOT NULL,
			reason      text        NOT NULL,
			created_at  timestamptz NOT NULL,
			updated_at  timestamptz NOT NULL,
			version     bigint      NOT NULL
		)`},
		Indexes: []string{
			`CREATE INDEX ` + t.Index(table, "by_created") + ` ON ` + name + ` (created_at DESC, shipment_id DESC)`,
			`CREATE INDEX ` + t.Index(table, "by_order") + ` ON ` + name + ` (order_id, created_at DESC, shipment_id DESC)`,
		},
	}
}

var columns = projections.Columns{
	Table: table,
	Names: []string{"shipment_id", "order_id", "status", "items", "address", "reason", "created_at", "updated_at", "version"},
	Types: []string{"uuid", "uuid", "text", "json", "json", "text", "timestamptz", "timestamptz", "bigint"},
	Key:   1,
	// Only the event that creates the row sets the others.
	Mutable: []string{"status", "reason", "updated_at", "version"},
}

type row struct {
	id        [16]byte
	orderID   [16]byte
	status    string
	items     json.RawMessage
	address   json.RawMessage
	reason    string
	createdAt time.Time
	updatedAt time.Time
	version   int64
}

func (r *row) values() []any {
	return []any{r.id, r.orderID, r.status, r.items, r.address, r.reason, r.createdAt, r.updatedAt, r.version}
}

type change struct {
	e       domain.Envelope
	payload any
	// created is the row a ShipmentScheduled or ShipmentRefused creates,
	// built while decoding.
	created *row
}

// batch is a decoded batch: the changes per shipment, shipments in
// first-seen order.
type batch struct {
	keys  [][16]byte
	byKey map[[16]byte][]change
}

var _ projections.Decoder = (*Projection)(nil)

// Apply implements projections.Projection: decode, load the touched
// shipments in one query, fold in memory, write new and changed rows with
// one statement each.
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
		if !strings.HasPrefix(e.Stream, shipping.StreamPrefix) {
			continue
		}
		payload, err := p.reg.Decode(e)
		if err != nil {
			return nil, projections.Undecodable(e, err)
		}
		id, err := uuid.Parse(strings.TrimPrefix(e.Stream, shipping.StreamPrefix))
		if err != nil {
			return nil, projections.Undecodable(e, fmt.Errorf("stream %s: %w", e.Stream, err))
		}
		c := change{e: e, payload: payload}
		if c.created, err = createdRow(id, e, payload); err != nil {
			return nil, err
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
	rows, err := tx.Query(ctx, columns.Select(t)+" WHERE shipment_id = ANY($1)", keys)
	if err != nil {
		return nil, fmt.Errorf("load shipments: %w", err)
	}
	defer rows.Close()
	out := make(map[[16]byte]*row)
	for rows.Next() {
		r := &row{}
		if err := rows.Scan(&r.id, &r.orderID, &r.status, &r.items, &r.address, &r.reason, &r.createdAt, &r.updatedAt, &r.version); err != nil {
			return nil, fmt.Errorf("load shipments: %w", err)
		}
		out[r.id] = r
	}
	return out, rows.Err()
}

// emptyAddress is shown for a refused shipment, whose event carries no
// address.
var emptyAddress = json.RawMessage(`{"name":"","line1":"","city":"","postal_code":"","country":""}`)

// createdRow returns the row an event that creates a shipment makes, or
// nil for the other events.
func createdRow(id [16]byte, e domain.Envelope, payload any) (*row, error) {
	at := e.RecordedAt.UTC()
	n := &row{id: id, createdAt: at, updatedAt: at, version: e.Version}
	switch ev := payload.(type) {
	case shipping.ShipmentScheduled:
		oid, err := uuid.Parse(ev.OrderID)
		if err != nil {
			return nil, projections.Undecodable(e, fmt.Errorf("order_id: %w", err))
		}
		items := ev.Items
		if items == nil {
			items = []order.Item{}
		}
		if n.items, err = json.Marshal(items); err != nil {
			return nil, projections.Undecodable(e, err)
		}
		if n.address, err = json.Marshal(ev.Address); err != nil {
			return nil, projections.Undecodable(e, err)
		}
		n.orderID, n.status = oid, StatusScheduled
	case shipping.ShipmentRefused:
		oid, err := uuid.Parse(ev.OrderID)
		if err != nil {
			return nil, projections.Undecodable(e, fmt.Errorf("order_id: %w", err))
		}
		n.orderID, n.status, n.reason = oid, StatusCancelled, ev.Reason
		n.items, n.address = json.RawMessage(`[]`), emptyAddress
	default:
		return nil, nil
	}
	return n, nil
}

// fold applies one event to r (nil: no such shipment yet) and returns the
// new row, or nil when the event changes nothing: it is already reflected,
// or it concerns a shipment that was never created (its first event was
// parked). It never modifies r.
func fold(r *row, c change) *row {
	e := c.e
	if r != nil && e.Version <= r.version {
		return nil
	}
	if r == nil {
		return c.created
	}
	n := *r
	switch ev := c.payload.(type) {
	case shipping.ShipmentCancelled:
		n.status, n.reason = StatusCancelled, ev.Reason
	case shipping.ShipmentDispatched:
		n.status = StatusDispatched
	}
	n.updatedAt, n.version = e.RecordedAt.UTC(), e.Version
	return &n
}

var selectView = `SELECT shipment_id::text, order_id::text, status, items, address, reason, created_at, updated_at, version FROM ` +
	projections.View(table)

// Get returns the shipment with id, or domain.ErrNotFound (also for an id
// that is not a UUID).
func Get(ctx context.Context, q projections.Querier, id string) (View, error) {
	if !domain.ValidUUID(id) {
		return View{}, fmt.Errorf("shipment %q: %w", id, domain.ErrNotFound)
	}
	views, err := query(ctx, q, selectView+" WHERE shipment_id = $1", id)
	if err != nil {
		return View{}, fmt.Errorf("get shipment %s: %w", id, err)
	}
	if len(views) == 0 {
		return View{}, fmt.Errorf("shipment %s: %w", id, domain.ErrNotFound)
	}
	return views[0], nil
}

// Filter narrows List; an empty OrderID matches every shipment.
type Filter struct {
	OrderID string
}

// Validate reports an order id no shipment can have.
func (f Filter) Validate() error {
	if f.OrderID != "" && !domain.ValidUUID(f.OrderID) {
		v := &domain.ValidationError{}
		v.Add("order_id", "must be a UUID")
		return v
	}
	return nil
}

type cursor struct {
	CreatedAt  time.Time `json:"t"`
	ShipmentID string    `json:"id"`
}

// List returns up to limit shipments matching f, newest first, after the
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
	if f.OrderID != "" {
		where = append(where, "order_id = "+arg(f.OrderID))
	}
	if after != "" {
		var c cursor
		if err := projections.DecodeCursor(after, &c, func() bool { return !c.CreatedAt.IsZero() && domain.ValidUUID(c.ShipmentID) }); err != nil {
			return nil, "", err
		}
		where = append(where, fmt.Sprintf("(created_at, shipment_id) < (%s, %s)", arg(c.CreatedAt), arg(c.ShipmentID)))
	}
	sql := selectView
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY created_at DESC, shipment_id DESC LIMIT " + arg(limit+1)
	views, err := query(ctx, q, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list shipments: %w", err)
	}
	next := ""
	if len(views) > limit {
		views = views[:limit]
		last := views[limit-1]
		next = projections.EncodeCursor(cursor{CreatedAt: last.CreatedAt, ShipmentID: last.ShipmentID})
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
		var (
			v              View
			items, address []byte
		)
		if err := rows.Scan(&v.ShipmentID, &v.OrderID, &v.Status, &items, &address, &v.Reason, &v.CreatedAt, &v.UpdatedAt, &v.Version); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(items, &v.Items); err != nil {
			return nil, fmt.Errorf("shipment %s items: %w", v.ShipmentID, err)
		}
		if err := json.Unmarshal(address, &v.Address); err != nil {
			return nil, fmt.Errorf("shipment %s address: %w", v.ShipmentID, err)
		}
		v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
		views = append(views, v)
	}
	return views, rows.Err()
}
