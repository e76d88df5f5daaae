package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
	"github.com/orderflow/orderflow/projections/shipmentview"
	"github.com/orderflow/orderflow/projections/stockview"
)

// start runs the three read models on env until the test ends.
func start(t *testing.T, env *projsourcetest.Env) {
	t.Helper()
	r := projections.NewRunner(env.Pool, nil)
	for _, add := range []struct {
		p        projections.Projection
		prefixes []string
	}{
		{orderview.New(), orderview.StreamPrefixes},
		{stockview.New(), stockview.StreamPrefixes},
		{shipmentview.New(), shipmentview.StreamPrefixes},
	} {
		if err := r.Add(add.p, env.Source(t, add.prefixes...), projections.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
}

// caughtUp waits until every read model has applied the store's head.
func caughtUp(t *testing.T, env *projsourcetest.Env) {
	t.Helper()
	head := env.Head(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var behind int
		err := env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM projection_versions WHERE checkpoint < $1", int64(head)).Scan(&behind)
		if err == nil && behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("read models did not reach %d: %v, %d behind", head, err, behind)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var addr = order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}

func placedAt(id, customer string, at time.Time) order.OrderPlaced {
	return order.OrderPlaced{OrderID: id, SagaID: uuid.NewString(), CustomerID: customer,
		Items:           []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}, {SKU: "SKU-2", Quantity: 1, UnitPriceCents: 500}},
		ShippingAddress: addr, TotalCents: 3098, PlacedAt: at}
}

func recordedAt(t *testing.T, env *projsourcetest.Env, stream string, version int64) time.Time {
	t.Helper()
	var at time.Time
	if err := env.Pool.QueryRow(context.Background(), "SELECT recorded_at FROM es_events WHERE stream = $1 AND version = $2", stream, version).Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at.UTC()
}

func fieldOf(err error) string {
	var v *domain.ValidationError
	if !errors.As(err, &v) || !errors.Is(err, domain.ErrInvalid) || len(v.Fields) == 0 {
		return ""
	}
	return v.Fields[0].Field
}

func TestOrderView(t *testing.T) {
	env := projsourcetest.New(t)
	start(t, env)
	ctx := context.Background()
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	shipped, rejected, cancelled, pending := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	shipment := uuid.NewString()
	p := placedAt(shipped, "c-42", at)
	env.Append(t, order.Stream(shipped), p)
	env.Append(t, order.Stream(shipped), order.OrderConfirmed{OrderID: shipped, ShipmentID: shipment})
	env.Append(t, order.Stream(shipped), order.OrderShipped{OrderID: shipped, ShipmentID: shipment})
	env.Append(t, order.Stream(rejected), placedAt(rejected, "c-42", at.Add(time.Second)),
		order.OrderRejected{OrderID: rejected, Reason: order.ReasonInsufficientStock})
	env.Append(t, order.Stream(cancelled), placedAt(cancelled, "c-7", at.Add(2*time.Second)))
	env.Append(t, order.Stream(cancelled), order.OrderConfirmed{OrderID: cancelled, ShipmentID: uuid.NewString()},
		order.OrderCancelled{OrderID: cancelled, Reason: order.ReasonCancelledByCustomer})
	env.Append(t, order.Stream(pending), placedAt(pending, "c-7", at.Add(3*time.Second)))
	caughtUp(t, env)

	got, err := orderview.Get(ctx, env.Pool, shipped)
	if err != nil {
		t.Fatal(err)
	}
	want := orderview.View{OrderID: shipped, CustomerID: "c-42", Status: "shipped", Items: p.Items, TotalCents: 3098,
		ShippingAddress: addr, SagaID: p.SagaID, ShipmentID: shipment, Reason: "",
		CreatedAt: at.Truncate(time.Microsecond), UpdatedAt: recordedAt(t, env, order.Stream(shipped), 3), Version: 3}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("shipped order:\n got %+v\nwant %+v", got, want)
	}
	for _, c := range []struct {
		id, status, reason, shipment string
		version                      int64
	}{
		{rejected, "rejected", order.ReasonInsufficientStock, "", 2},
		{cancelled, "cancelled", order.ReasonCancelledByCustomer, "*", 3},
		{pending, "pending", "", "", 1},
	} {
		v, err := orderview.Get(ctx, env.Pool, c.id)
		if err != nil || v.Status != c.status || v.Reason != c.reason || v.Version != c.version || (c.shipment == "" && v.ShipmentID != "") {
			t.Errorf("order %s: %+v, %v; want %s/%q at version %d", c.id, v, err, c.status, c.reason, c.version)
		}
	}
	for _, id := range []string{uuid.NewString(), "not-a-uuid", ""} {
		if _, err := orderview.Get(ctx, env.Pool, id); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", id, err)
		}
	}

	for _, c := range []struct {
		name string
		f    orderview.Filter
		want []string
	}{
		{"all, newest first", orderview.Filter{}, []string{pending, cancelled, rejected, shipped}},
		{"by customer", orderview.Filter{CustomerID: "c-42"}, []string{rejected, shipped}},
		{"by status", orderview.Filter{Status: "cancelled"}, []string{cancelled}},
		{"by both", orderview.Filter{CustomerID: "c-7", Status: "pending"}, []string{pending}},
		{"nothing matches", orderview.Filter{CustomerID: "c-404"}, nil},
	} {
		views, next, err := orderview.List(ctx, env.Pool, c.f, 0, "")
		if err != nil || next != "" {
			t.Errorf("%s: next %q, err %v", c.name, next, err)
			continue
		}
		var ids []string
		for _, v := range views {
			ids = append(ids, v.OrderID)
		}
		if !slices.Equal(ids, c.want) {
			t.Errorf("%s: %v, want %v", c.name, ids, c.want)
		}
	}
}

func TestListValidation(t *testing.T) {
	env := projsourcetest.New(t)
	start(t, env)
	ctx := context.Background()
	caughtUp(t, env)
	garbage := []string{"zzz", "!!!", "eyJ0IjoieCJ9", "bnVsbA", "e30"} // bad base64, {"t":"x"}, null, {}
	for _, c := range []struct {
		name  string
		err   error
		field string
	}{
		{"orders limit too big", second(orderview.List(ctx, env.Pool, orderview.Filter{}, 501, "")), "limit"},
		{"orders limit negative", second(orderview.List(ctx, env.Pool, orderview.Filter{}, -1, "")), "limit"},
		{"orders bad status", second(orderview.List(ctx, env.Pool, orderview.Filter{Status: "lost"}, 10, "")), "status"},
		{"orders bad customer", second(orderview.List(ctx, env.Pool, orderview.Filter{CustomerID: "c 42"}, 10, "")), "customer_id"},
		{"stock limit", second(stockview.List(ctx, env.Pool, 1000, "")), "limit"},
		{"shipments bad order", second(shipmentview.List(ctx, env.Pool, shipmentview.Filter{OrderID: "x"}, 10, "")), "order_id"},
		{"shipments limit", second(shipmentview.List(ctx, env.Pool, shipmentview.Filter{}, 501, "")), "limit"},
	} {
		if got := fieldOf(c.err); got != c.field {
			t.Errorf("%s: %v, want a validation error on %q", c.name, c.err, c.field)
		}
	}
	for _, g := range garbage {
		for name, err := range map[string]error{
			"orders":    second(orderview.List(ctx, env.Pool, orderview.Filter{}, 10, g)),
			"stock":     second(stockview.List(ctx, env.Pool, 10, g)),
			"shipments": second(shipmentview.List(ctx, env.Pool, shipmentview.Filter{}, 10, g)),
		} {
			if fieldOf(err) != "after" {
				t.Errorf("%s with cursor %q: %v, want a validation error on after", name, g, err)
			}
		}
	}
	// A cursor of one list is no cursor of another.
	if fieldOf(second(stockview.List(ctx, env.Pool, 10, projections.EncodeCursor(map[string]string{"t": "2025-01-01T00:00:00Z", "id": uuid.NewString()})))) != "after" {
		t.Error("stock accepted an orders cursor")
	}
}

func second[A, B any](_ A, _ B, err error) error { return err }

// Paging with every limit from 1 to past the end visits each row once, in
// order, and ends with an empty cursor; filters page the same way.
func TestPagination(t *testing.T) {
	env := projsourcetest.New(t)
	start(t, env)
	ctx := context.Background()
	base := time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	var all []string
	for i := range 120 {
		id := uuid.NewString()
		// Ten orders share each timestamp, so the key's second part decides.
		env.Append(t, order.Stream(id), placedAt(id, fmt.Sprintf("c-%d", i%3), base.Add(time.Duration(i/10)*time.Second)))
		all = append(all, id)
	}
	for i := range 7 {
		env.Append(t, inventory.Stream(fmt.Sprintf("SKU-%02d", 7-i)), inventory.StockRestocked{SKU: fmt.Sprintf("SKU-%02d", 7-i), Quantity: 1})
	}
	caughtUp(t, env)

	for _, c := range []struct {
		limit int
		f     orderview.Filter
		total int
	}{
		{50, orderview.Filter{}, 120},
		{0, orderview.Filter{}, 120},
		{1, orderview.Filter{CustomerID: "c-1"}, 40},
		{7, orderview.Filter{Status: "pending"}, 120},
		{500, orderview.Filter{}, 120},
		{40, orderview.Filter{CustomerID: "c-2", Status: "pending"}, 40},
	} {
		var (
			seen  []orderview.View
			after string
			pages int
		)
		for {
			views, next, err := orderview.List(ctx, env.Pool, c.f, c.limit, after)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			limit := c.limit
			if limit == 0 {
				limit = projections.DefaultLimit
			}
			if len(views) > limit || (next != "" && len(views) != limit) {
				t.Fatalf("limit %d: a page of %d with next %q", c.limit, len(views), next)
			}
			seen = append(seen, views...)
			if next == "" {
				break
			}
			after = next
		}
		if len(seen) != c.total {
			t.Errorf("limit %d %+v: %d orders over %d pages, want %d", c.limit, c.f, len(seen), pages, c.total)
		}
		ids := map[string]bool{}
		for i, v := range seen {
			if ids[v.OrderID] {
				t.Fatalf("limit %d: order %s listed twice", c.limit, v.OrderID)
			}
			ids[v.OrderID] = true
			if i > 0 {
				p := seen[i-1]
				if p.CreatedAt.Before(v.CreatedAt) || p.CreatedAt.Equal(v.CreatedAt) && p.OrderID < v.OrderID {
					t.Fatalf("limit %d: %s listed after %s, not newest first", c.limit, v.OrderID, p.OrderID)
				}
			}
			if (c.f.CustomerID != "" && v.CustomerID != c.f.CustomerID) || (c.f.Status != "" && v.Status != c.f.Status) {
				t.Fatalf("order %+v does not match filter %+v", v, c.f)
			}
		}
	}

	var skus []string
	after := ""
	for {
		views, next, err := stockview.List(ctx, env.Pool, 3, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range views {
			skus = append(skus, v.SKU)
		}
		if next == "" {
			break
		}
		after = next
	}
	if want := []string{"SKU-01", "SKU-02", "SKU-03", "SKU-04", "SKU-05", "SKU-06", "SKU-07"}; !slices.Equal(skus, want) {
		t.Errorf("stock pages %v, want %v", skus, want)
	}
}

// Each list filter is served by an index: with sequential scans priced out,
// the plan must still be an index scan.
func TestListFiltersUseIndexes(t *testing.T) {
	env := projsourcetest.New(t)
	start(t, env)
	caughtUp(t, env)
	ctx := context.Background()
	for _, c := range []struct{ sql, index string }{
		{"SELECT * FROM rm_orders WHERE customer_id = 'c-1' ORDER BY created_at DESC, order_id DESC LIMIT 51", "orders_v1_by_customer"},
		{"SELECT * FROM rm_orders WHERE status = 'pending' ORDER BY created_at DESC, order_id DESC LIMIT 51", "orders_v1_by_status"},
		{"SELECT * FROM rm_orders ORDER BY created_at DESC, order_id DESC LIMIT 51", "orders_v1_by_created"},
		{"SELECT * FROM rm_shipments WHERE order_id = '" + uuid.NewString() + "' ORDER BY created_at DESC, shipment_id DESC LIMIT 51", "shipments_v1_by_order"},
		{"SELECT * FROM rm_stock WHERE sku > 'A' ORDER BY sku LIMIT 51", "stock_v1_pkey"},
	} {
		err := pgx.BeginFunc(ctx, env.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, "EXPLAIN "+c.sql)
			if err != nil {
				return err
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			if plan := strings.Join(lines, "\n"); !strings.Contains(plan, c.index) {
				t.Errorf("%s\nplan does not use %s:\n%s", c.sql, c.index, plan)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestStockView(t *testing.T) {
	env := projsourcetest.New(t)
	start(t, env)
	ctx := context.Background()
	o1, o2 := uuid.NewString(), uuid.NewString()
	s := inventory.Stream("SKU-1")
	env.Append(t, s, inventory.StockRestocked{SKU: "SKU-1", Quantity: 10})
	env.Append(t, s, inventory.StockReserved{SKU: "SKU-1", OrderID: o1, Quantity: 3})
	env.Append(t, s, inventory.StockReserved{SKU: "SKU-1", OrderID: o2, Quantity: 4}, inventory.StockReleased{SKU: "SKU-1", OrderID: o2, Quantity: 4})
	env.Append(t, s, inventory.StockConsumed{SKU: "SKU-1", OrderID: o1, Quantity: 3}, inventory.StockRestocked{SKU: "SKU-1", Quantity: 5})
	env.Append(t, inventory.Stream("SKU-2"), inventory.StockRestocked{SKU: "SKU-2", Quantity: 2}, inventory.StockReserved{SKU: "SKU-2", OrderID: o1, Quantity: 2})
	caughtUp(t, env)

	for _, want := range []stockview.View{
		{SKU: "SKU-1", OnHand: 12, Reserved: 0, Available: 12, Version: 6, UpdatedAt: recordedAt(t, env, s, 6)},
		{SKU: "SKU-2", OnHand: 2, Reserved: 2, Available: 0, Version: 2, UpdatedAt: recordedAt(t, env, inventory.Stream("SKU-2"), 2)},
	} {
		got, err := stockview.Get(ctx, env.Pool, want.SKU)
		if err != nil || got != want {
			t.Errorf("stock %s: %+v, %v; want %+v", want.SKU, got, err, want)
		}
	}
	for _, sku := range []string{"SKU-404", "not a sku", ""} {
		if _, err := stockview.Get(ctx, env.Pool, sku); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", sku, err)
		}
	}
}

func TestShipmentView(t *testing.T) {
	env := projsourcetest.New(t)
	start(t, env)
	ctx := context.Background()
	items := []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}}
	o1, o2 := uuid.NewString(), uuid.NewString()
	dispatched, cancelled, refused, scheduled := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	env.Append(t, shipping.Stream(dispatched), shipping.ShipmentScheduled{ShipmentID: dispatched, OrderID: o1, Items: items, Address: addr})
	env.Append(t, shipping.Stream(dispatched), shipping.ShipmentDispatched{ShipmentID: dispatched, OrderID: o1})
	env.Append(t, shipping.Stream(cancelled), shipping.ShipmentScheduled{ShipmentID: cancelled, OrderID: o2, Items: items, Address: addr},
		shipping.ShipmentCancelled{ShipmentID: cancelled, OrderID: o2, Reason: order.ReasonCancelledByCustomer})
	env.Append(t, shipping.Stream(refused), shipping.ShipmentRefused{ShipmentID: refused, OrderID: o2, Reason: shipping.ReasonDestinationNotServed})
	env.Append(t, shipping.Stream(scheduled), shipping.ShipmentScheduled{ShipmentID: scheduled, OrderID: o2, Items: items, Address: addr})
	// A refused shipment that the saga's compensation reaches later (a
	// schedule step that timed out): the cancel is answered with a note and
	// must not replace the refusal's reason.
	o3, refusedThenCancelled := uuid.NewString(), uuid.NewString()
	env.Append(t, shipping.Stream(refusedThenCancelled), shipping.ShipmentRefused{ShipmentID: refusedThenCancelled, OrderID: o3, Reason: shipping.ReasonDestinationNotServed})
	env.Append(t, shipping.Stream(refusedThenCancelled), shipping.ShipmentCancelled{ShipmentID: refusedThenCancelled, OrderID: o3,
		Reason: order.ReasonStepTimeout, Note: shipping.NoteRefused})
	caughtUp(t, env)

	got, err := shipmentview.Get(ctx, env.Pool, dispatched)
	want := shipmentview.View{ShipmentID: dispatched, OrderID: o1, Status: "dispatched", Items: items, Address: addr,
		CreatedAt: recordedAt(t, env, shipping.Stream(dispatched), 1), UpdatedAt: recordedAt(t, env, shipping.Stream(dispatched), 2), Version: 2}
	if err != nil || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("dispatched shipment:\n got %+v, %v\nwant %+v", got, err, want)
	}
	for _, c := range []struct{ id, status, reason string }{
		{cancelled, "cancelled", order.ReasonCancelledByCustomer},
		{refused, "cancelled", shipping.ReasonDestinationNotServed},
		{scheduled, "scheduled", ""},
		{refusedThenCancelled, "cancelled", shipping.ReasonDestinationNotServed},
	} {
		v, err := shipmentview.Get(ctx, env.Pool, c.id)
		if err != nil || v.Status != c.status || v.Reason != c.reason || v.Items == nil {
			t.Errorf("shipment %s: %+v, %v; want %s with reason %q", c.id, v, err, c.status, c.reason)
		}
	}
	if v, err := shipmentview.Get(ctx, env.Pool, refusedThenCancelled); err != nil || v.Version != 2 ||
		!v.UpdatedAt.Equal(recordedAt(t, env, shipping.Stream(refusedThenCancelled), 2)) {
		t.Errorf("refused then cancelled: %+v, %v; want version 2, updated by the cancel", v, err)
	}
	views, next, err := shipmentview.List(ctx, env.Pool, shipmentview.Filter{OrderID: o2}, 0, "")
	var ids []string
	for _, v := range views {
		ids = append(ids, v.ShipmentID)
	}
	if err != nil || next != "" || !slices.Equal(ids, []string{scheduled, refused, cancelled}) {
		t.Errorf("shipments of order 2: %v, %q, %v; want scheduled, refused, cancelled (newest first)", ids, next, err)
	}
	if _, err := shipmentview.Get(ctx, env.Pool, "nope"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get(nope): %v, want ErrNotFound", err)
	}
}
