// Package orderview is the orders read model: one row per order with its
// status, items, address and the ids of its saga and shipment, folded from
// the order streams, and the queries behind GET /api/orders and
// GET /api/orders/{id}.
package orderview

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/viewkit"
)

// Name is the projection's name; its table is "orders", read through the
// view rm_orders.
const Name = "orders"

const table = "orders"

// StreamPrefixes are the streams the projection reads.
var StreamPrefixes = []string{order.StreamPrefix}

// View is one order as GET /api/orders/{id} shows it.
type View struct {
	OrderID    string       `json:"order_id"`
	CustomerID string       `json:"customer_id"`
	Status     string       `json:"status"`
	Items      []order.Item `json:"items"`
	TotalCents int64        `json:"total_cents"`
	// Currency is the ISO 4217 code of the prices (an addition to the
	// API's order, from OrderPlaced version 2; "USD" for older orders).
	Currency        string        `json:"currency"`
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
	*viewkit.Table[[16]byte, row]
}

// New returns the orders projection.
func New() *Projection {
	return &Projection{viewkit.New(viewkit.Spec[[16]byte, row]{
		Name:     Name,
		Prefix:   order.StreamPrefix,
		Register: order.RegisterEvents,
		Columns:  columns,
		Indexes:  indexes,
		Key:      viewkit.UUIDKey,
		Create:   create,
		Fold:     fold,
	})}
}

var _ projections.Projection = (*Projection)(nil)

// row is an order as stored, and its tags are the orders table: see
// viewkit.Columns. The JSON columns stay encoded unless an event replaces
// them. Items and address are json, not jsonb: they are only ever returned
// whole, and json takes about half the time to write in a replay. Only
// OrderPlaced, which creates the row, sets the fixed columns. The address
// column holds the address whole, as the API shows it, whatever the
// version of the OrderPlaced it came from (version 2 stores it split).
type row struct {
	ID         [16]byte        `db:"order_id,uuid,key"`
	CustomerID string          `db:"customer_id,text,fixed"`
	Status     string          `db:"status,text"`
	Items      json.RawMessage `db:"items,json,fixed"`
	Total      int64           `db:"total_cents,bigint,fixed"`
	Currency   string          `db:"currency,text,fixed"`
	Address    json.RawMessage `db:"shipping_address,json,fixed"`
	SagaID     [16]byte        `db:"saga_id,uuid,fixed"`
	ShipmentID string          `db:"shipment_id,text"`
	Reason     string          `db:"reason,text"`
	CreatedAt  time.Time       `db:"created_at,timestamptz,fixed"`
	UpdatedAt  time.Time       `db:"updated_at,timestamptz"`
	Version    int64           `db:"version,bigint"`
}

var columns = viewkit.NewColumns[row](table)

// indexes serve the lists: every list is ordered newest first by
// (created_at, order_id), and each filter has an index in that order, so
// a page is one index range scan.
func indexes(t projections.Tables) []string {
	return newestFirst.Indexes(t, table,
		viewkit.IndexOn{Name: "by_customer", Column: "customer_id"},
		viewkit.IndexOn{Name: "by_status", Column: "status"})
}

// view is r as the API shows it.
func (r *row) view() (View, error) {
	v := View{
		OrderID:    uuid.UUID(r.ID).String(),
		CustomerID: r.CustomerID,
		Status:     r.Status,
		TotalCents: r.Total,
		Currency:   r.Currency,
		SagaID:     uuid.UUID(r.SagaID).String(),
		ShipmentID: r.ShipmentID,
		Reason:     r.Reason,
		CreatedAt:  r.CreatedAt.UTC(),
		UpdatedAt:  r.UpdatedAt.UTC(),
		Version:    r.Version,
	}
	if err := json.Unmarshal(r.Items, &v.Items); err != nil {
		return View{}, fmt.Errorf("order %s items: %w", v.OrderID, err)
	}
	if err := json.Unmarshal(r.Address, &v.ShippingAddress); err != nil {
		return View{}, fmt.Errorf("order %s address: %w", v.OrderID, err)
	}
	return v, nil
}

// create returns the row an OrderPlaced creates, or nil for the other
// events: an order that was never placed (its OrderPlaced was parked) gets
// no row.
func create(id [16]byte, e domain.Envelope, payload any) (*row, error) {
	if ev, ok := payload.(order.OrderPlaced); ok {
		return placedRow(id, e, ev)
	}
	return nil, nil
}

// fold applies an event newer than r to r.
func fold(r *row, e domain.Envelope, payload any) {
	switch ev := payload.(type) {
	case order.OrderPlaced:
		// A second OrderPlaced in one stream is not a decision the
		// aggregate makes; only the version moves.
	case order.OrderConfirmed:
		r.Status = string(order.StatusConfirmed)
		r.ShipmentID = ev.ShipmentID
	case order.OrderRejected:
		r.Status = string(order.StatusRejected)
		r.Reason = ev.Reason
	case order.OrderCancelled:
		r.Status = string(order.StatusCancelled)
		r.Reason = ev.Reason
	case order.OrderShipped:
		r.Status = string(order.StatusShipped)
		if ev.ShipmentID != "" {
			r.ShipmentID = ev.ShipmentID
		}
	}
	r.UpdatedAt = e.RecordedAt.UTC()
	r.Version = e.Version
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
	itemsJSON, err := viewkit.JSON(e, items)
	if err != nil {
		return nil, err
	}
	addrJSON, err := viewkit.JSON(e, ev.ShippingAddress)
	if err != nil {
		return nil, err
	}
	created := ev.PlacedAt
	if created.IsZero() {
		created = e.RecordedAt
	}
	return &row{
		ID:         id,
		CustomerID: ev.CustomerID,
		Status:     string(order.StatusPending),
		Items:      itemsJSON,
		Total:      ev.TotalCents,
		Currency:   ev.Currency,
		Address:    addrJSON,
		SagaID:     sagaID,
		// PostgreSQL keeps microseconds; truncating here keeps a row the
		// same whether it was just written or read back.
		CreatedAt: created.UTC().Truncate(time.Microsecond),
		UpdatedAt: e.RecordedAt.UTC(),
		Version:   e.Version,
	}, nil
}

// Get returns the order with id, or domain.ErrNotFound (also for an id
// that is not a UUID, which no order has).
func Get(ctx context.Context, q projections.Querier, id string) (View, error) {
	return viewkit.Get(ctx, q, scanView, "order", id, domain.ValidUUID(id), selectView+" WHERE order_id = $1")
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

// List returns up to limit orders matching f, newest first, after the
// cursor after (empty: from the start), and the cursor of the next page
// (empty on the last page). limit 0 means projections.DefaultLimit; a bad
// limit, filter or cursor is a *domain.ValidationError.
func List(ctx context.Context, q projections.Querier, f Filter, limit int, after string) ([]View, string, error) {
	p, err := viewkit.NewPage(limit, f)
	if err != nil {
		return nil, "", err
	}
	if f.CustomerID != "" {
		p.Where("customer_id = " + p.Arg(f.CustomerID))
	}
	if f.Status != "" {
		p.Where("status = " + p.Arg(f.Status))
	}
	if err := newestFirst.After(p, after); err != nil {
		return nil, "", err
	}
	views, next, err := viewkit.List(ctx, q, scanView, p, selectView, newestFirst.OrderBy(),
		func(v View) any { return newestFirst.Cursor(v.CreatedAt, v.OrderID) })
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	return views, next, nil
}

// newestFirst is the order of every list.
const newestFirst = viewkit.NewestFirst("order_id")

var (
	selectView = columns.SelectView()
	scanView   = viewkit.Scanner(columns, (*row).view)
)
