// Package shipmentview is the shipments read model: one row per shipment
// with its order, items, address and status, folded from the shipment
// streams, and the queries behind GET /api/shipments and
// GET /api/shipments/{id}.
//
// The API knows three shipment statuses (scheduled, dispatched, cancelled).
// A shipment the service refused (its destination is not served) is shown
// as cancelled, with the refusal's reason in the extra field reason; see
// docs/adr/0063-refused-shipments-in-the-read-model.md. A later cancel of
// a refused or cancelled shipment (the saga's compensation reaches it too)
// leaves that reason as it was (docs/adr/0116).
package shipmentview

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/viewkit"
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
	*viewkit.Table[[16]byte, row]
}

// New returns the shipments projection.
func New() *Projection {
	return &Projection{viewkit.New(viewkit.Spec[[16]byte, row]{
		Name:     Name,
		Prefix:   shipping.StreamPrefix,
		Register: shipping.RegisterEvents,
		Columns:  columns,
		Indexes:  indexes,
		Key:      viewkit.UUIDKey,
		Create:   createdRow,
		Fold:     fold,
	})}
}

var _ projections.Projection = (*Projection)(nil)

// row is a shipment as stored, and its tags are the shipments table: see
// viewkit.Columns. Items and address are json, not jsonb: they are only
// ever returned whole, and json takes about half the time to write in a
// replay. Only the event that creates the row sets the fixed columns.
type row struct {
	ID        [16]byte        `db:"shipment_id,uuid,key"`
	OrderID   [16]byte        `db:"order_id,uuid,fixed"`
	Status    string          `db:"status,text"`
	Items     json.RawMessage `db:"items,json,fixed"`
	Address   json.RawMessage `db:"address,json,fixed"`
	Reason    string          `db:"reason,text"`
	CreatedAt time.Time       `db:"created_at,timestamptz,fixed"`
	UpdatedAt time.Time       `db:"updated_at,timestamptz"`
	Version   int64           `db:"version,bigint"`
}

var columns = viewkit.NewColumns[row](table)

// indexes serve the lists, newest first by (created_at, shipment_id), with
// an index per filter in that order.
func indexes(t projections.Tables) []string {
	return newestFirst.Indexes(t, table, viewkit.IndexOn{Name: "by_order", Column: "order_id"})
}

// view is r as the API shows it.
func (r *row) view() (View, error) {
	v := View{
		ShipmentID: uuid.UUID(r.ID).String(),
		OrderID:    uuid.UUID(r.OrderID).String(),
		Status:     r.Status,
		Reason:     r.Reason,
		CreatedAt:  r.CreatedAt.UTC(),
		UpdatedAt:  r.UpdatedAt.UTC(),
		Version:    r.Version,
	}
	if err := json.Unmarshal(r.Items, &v.Items); err != nil {
		return View{}, fmt.Errorf("shipment %s items: %w", v.ShipmentID, err)
	}
	if err := json.Unmarshal(r.Address, &v.Address); err != nil {
		return View{}, fmt.Errorf("shipment %s address: %w", v.ShipmentID, err)
	}
	return v, nil
}

// emptyAddress is shown for a refused shipment, whose event carries no
// address.
var emptyAddress = json.RawMessage(`{"name":"","line1":"","city":"","postal_code":"","country":""}`)

// createdRow returns the row an event that creates a shipment makes, or
// nil for the other events: a shipment whose first event was parked gets
// no row.
func createdRow(id [16]byte, e domain.Envelope, payload any) (*row, error) {
	at := e.RecordedAt.UTC()
	n := &row{ID: id, CreatedAt: at, UpdatedAt: at, Version: e.Version}
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
		if n.Items, err = viewkit.JSON(e, items); err != nil {
			return nil, err
		}
		if n.Address, err = viewkit.JSON(e, ev.Address); err != nil {
			return nil, err
		}
		n.OrderID, n.Status = oid, StatusScheduled
	case shipping.ShipmentRefused:
		oid, err := uuid.Parse(ev.OrderID)
		if err != nil {
			return nil, projections.Undecodable(e, fmt.Errorf("order_id: %w", err))
		}
		n.OrderID, n.Status, n.Reason = oid, StatusCancelled, ev.Reason
		n.Items, n.Address = json.RawMessage(`[]`), emptyAddress
		if len(ev.Items) > 0 {
			if n.Items, err = viewkit.JSON(e, ev.Items); err != nil {
				return nil, err
			}
		}
		if ev.Address != nil {
			if n.Address, err = viewkit.JSON(e, *ev.Address); err != nil {
				return nil, err
			}
		}
	default:
		return nil, nil
	}
	return n, nil
}

// fold applies an event newer than r to r. It changes the status the way
// the aggregate's Apply does: a ShipmentCancelled calls off only a
// scheduled shipment. The others it reaches answer a compensation that
// found nothing to call off (the event carries a note: the shipment was
// refused or cancelled already); the row keeps its status and the reason
// it was refused or cancelled for; only version and updated_at move, as
// for every event of the stream. See
// docs/adr/0116-a-noted-cancel-keeps-the-shipment-row.md.
func fold(r *row, e domain.Envelope, payload any) {
	switch ev := payload.(type) {
	case shipping.ShipmentCancelled:
		if r.Status == StatusScheduled {
			r.Status, r.Reason = StatusCancelled, ev.Reason
		}
	case shipping.ShipmentDispatched:
		r.Status = StatusDispatched
	}
	r.UpdatedAt, r.Version = e.RecordedAt.UTC(), e.Version
}

// newestFirst is the order of every list.
const newestFirst = viewkit.NewestFirst("shipment_id")

var (
	selectView = columns.SelectView()
	scanView   = viewkit.Scanner(columns, (*row).view)
)

// Get returns the shipment with id, or domain.ErrNotFound (also for an id
// that is not a UUID).
func Get(ctx context.Context, q projections.Querier, id string) (View, error) {
	return viewkit.Get(ctx, q, scanView, "shipment", id, domain.ValidUUID(id), selectView+" WHERE shipment_id = $1")
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

// List returns up to limit shipments matching f, newest first, after the
// cursor after (empty: from the start), and the cursor of the next page
// (empty on the last page). limit 0 means projections.DefaultLimit; a bad
// limit, filter or cursor is a *domain.ValidationError.
func List(ctx context.Context, q projections.Querier, f Filter, limit int, after string) ([]View, string, error) {
	p, err := viewkit.NewPage(limit, f)
	if err != nil {
		return nil, "", err
	}
	if f.OrderID != "" {
		p.Where("order_id = " + p.Arg(f.OrderID))
	}
	if err := newestFirst.After(p, after); err != nil {
		return nil, "", err
	}
	views, next, err := viewkit.List(ctx, q, scanView, p, selectView, newestFirst.OrderBy(),
		func(v View) any { return newestFirst.Cursor(v.CreatedAt, v.ShipmentID) })
	if err != nil {
		return nil, "", fmt.Errorf("list shipments: %w", err)
	}
	return views, next, nil
}
