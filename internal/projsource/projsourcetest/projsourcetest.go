// Package projsourcetest sets up what the integration tests of the
// projections (projections/*_test.go) need: a real
// PostgreSQL database with the postgres event store, sources over it, and a
// generator of realistic event histories (orders, stock and shipments
// interleaved the way the saga produces them).
package projsourcetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/projsource"
	"github.com/orderflow/orderflow/internal/testenv"
)

// Env is one test's database with an event store in it. The read models
// live in the same database, as in a service.
type Env struct {
	Pool  *pgxpool.Pool
	Store *postgres.Store
	Reg   *domain.Registry
}

// New gives the test a fresh database with a migrated event store; both are
// closed at cleanup.
func New(t testing.TB) *Env {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(ctx, pool, postgres.Config{PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return &Env{Pool: pool, Store: store, Reg: events.NewRegistry()}
}

// Source returns a source over the store's streams with the prefixes.
func (e *Env) Source(t testing.TB, prefixes ...string) *projsource.Source {
	t.Helper()
	s, err := projsource.New(e.Store, eventstore.Filter{StreamPrefixes: prefixes}, projsource.Config{PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Envelope encodes payload as a new event.
func (e *Env) Envelope(t testing.TB, payload any) domain.Envelope {
	t.Helper()
	name, v, data, err := e.Reg.Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	return domain.Envelope{ID: uuid.NewString(), Type: name, SchemaVersion: v, Data: data,
		Metadata: domain.Metadata{CorrelationID: "test"}}
}

// Append appends payloads to stream as one append and returns the stored
// position of the last one.
func (e *Env) Append(t testing.TB, stream string, payloads ...any) uint64 {
	t.Helper()
	evs := make([]domain.Envelope, len(payloads))
	for i, p := range payloads {
		evs[i] = e.Envelope(t, p)
	}
	return e.AppendEnvelopes(t, stream, evs...)
}

// AppendEnvelopes appends ready-made envelopes to stream.
func (e *Env) AppendEnvelopes(t testing.TB, stream string, evs ...domain.Envelope) uint64 {
	t.Helper()
	res, err := e.Store.Append(context.Background(), stream, domain.AnyVersion, evs)
	if err != nil {
		t.Fatalf("append %s: %v", stream, err)
	}
	return res.Position
}

// Head returns the store's head.
func (e *Env) Head(t testing.TB) uint64 {
	t.Helper()
	h, err := e.Store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Step is one append of a history: events for one stream.
type Step struct {
	Stream   string
	Payloads []any
}

// History generates the events of n orders going through the fulfilment
// saga, with the orders' steps interleaved at random: stock restocks,
// reservations, scheduled or refused shipments, confirmations, dispatches,
// cancellations and rejections. skus is the size of the sku pool. About 64
// orders are in flight at a time.
func History(rng *rand.Rand, n, skus int) []Step { return HistoryWindow(rng, n, skus, 64) }

// HistoryWindow is History with window orders in flight at a time (1: each
// order's life is contiguous).
func HistoryWindow(rng *rand.Rand, n, skus, window int) []Step {
	var steps []Step
	skuName := func(i int) string { return fmt.Sprintf("SKU-%03d", i) }
	for i := range skus {
		steps = append(steps, Step{Stream: inventory.Stream(skuName(i)), Payloads: []any{inventory.StockRestocked{SKU: skuName(i), Quantity: 1_000_000}}})
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	lives := make([][]Step, n)
	for i := range n {
		oid, sid, saga := uuid.NewString(), uuid.NewString(), uuid.NewString()
		items := make([]order.Item, 1+rng.IntN(3))
		used := map[int]bool{}
		for j := range items {
			k := rng.IntN(skus)
			for used[k] {
				k = (k + 1) % skus
			}
			used[k] = true
			items[j] = order.Item{SKU: skuName(k), Quantity: 1 + rng.IntN(5), UnitPriceCents: int64(100 + rng.IntN(10_000))}
		}
		var total int64
		for _, it := range items {
			total += int64(it.Quantity) * it.UnitPriceCents
		}
		country := "US"
		if rng.IntN(10) == 0 {
			country = "ZZ"
		}
		addr := order.Address{Name: "Ada L.", Line1: fmt.Sprintf("%d Main St", i), City: "Springfield", PostalCode: "12345", Country: country}
		placed := order.OrderPlaced{OrderID: oid, SagaID: saga, CustomerID: fmt.Sprintf("c-%d", rng.IntN(20)), Items: items,
			ShippingAddress: addr, TotalCents: total, PlacedAt: base.Add(time.Duration(i) * time.Millisecond)}
		life := []Step{{Stream: order.Stream(oid), Payloads: []any{placed}}}
		stock := func(mk func(it order.Item) any) {
			for _, it := range items {
				life = append(life, Step{Stream: inventory.Stream(it.SKU), Payloads: []any{mk(it)}})
			}
		}
		stock(func(it order.Item) any {
			return inventory.StockReserved{SKU: it.SKU, OrderID: oid, Quantity: it.Quantity}
		})
		if country == "ZZ" {
			life = append(life,
				Step{Stream: shipping.Stream(sid), Payloads: []any{shipping.ShipmentRefused{ShipmentID: sid, OrderID: oid, Reason: shipping.ReasonDestinationNotServed}}})
			stock(func(it order.Item) any {
				return inventory.StockReleased{SKU: it.SKU, OrderID: oid, Quantity: it.Quantity}
			})
			life = append(life, Step{Stream: order.Stream(oid), Payloads: []any{order.OrderRejected{OrderID: oid, Reason: order.ReasonDestinationNotServed}}})
			lives[i] = life
			continue
		}
		life = append(life,
			Step{Stream: shipping.Stream(sid), Payloads: []any{shipping.ShipmentScheduled{ShipmentID: sid, OrderID: oid, Items: items, Address: addr}}},
			Step{Stream: order.Stream(oid), Payloads: []any{order.OrderConfirmed{OrderID: oid, ShipmentID: sid}}})
		switch rng.IntN(4) {
		case 0: // still confirmed
		case 1:
			life = append(life, Step{Stream: shipping.Stream(sid), Payloads: []any{shipping.ShipmentCancelled{ShipmentID: sid, OrderID: oid, Reason: order.ReasonCancelledByCustomer}}})
			stock(func(it order.Item) any {
				return inventory.StockReleased{SKU: it.SKU, OrderID: oid, Quantity: it.Quantity}
			})
			life = append(life, Step{Stream: order.Stream(oid), Payloads: []any{order.OrderCancelled{OrderID: oid, Reason: order.ReasonCancelledByCustomer}}})
		default:
			life = append(life, Step{Stream: shipping.Stream(sid), Payloads: []any{shipping.ShipmentDispatched{ShipmentID: sid, OrderID: oid}}})
			stock(func(it order.Item) any {
				return inventory.StockConsumed{SKU: it.SKU, OrderID: oid, Quantity: it.Quantity}
			})
			life = append(life, Step{Stream: order.Stream(oid), Payloads: []any{order.OrderShipped{OrderID: oid, ShipmentID: sid}}})
		}
		lives[i] = life
	}
	// Interleave the way a running system does: about window orders are
	// in flight at once, each step taken from one of them at random.
	active := 0
	for len(lives) > 0 {
		active = min(max(active, window), len(lives))
		k := rng.IntN(active)
		steps = append(steps, lives[k][0])
		lives[k] = lives[k][1:]
		if len(lives[k]) == 0 {
			// Keep the in-flight orders at the front: the finished one's
			// slot takes the next order waiting.
			copy(lives[k:], lives[k+1:])
			lives = lives[:len(lives)-1]
		}
	}
	return steps
}

// AppendSteps appends every step as its own append, the way command
// handlers write, and returns the number of events.
func (e *Env) AppendSteps(t testing.TB, steps []Step) int {
	t.Helper()
	n := 0
	for _, s := range steps {
		e.Append(t, s.Stream, s.Payloads...)
		n += len(s.Payloads)
	}
	return n
}

// AppendStepsConcurrently appends the steps from several goroutines, each
// owning the streams that hash to it so that every stream keeps its order,
// and returns the number of events.
func (e *Env) AppendStepsConcurrently(t testing.TB, steps []Step, writers int) int {
	t.Helper()
	n, err := e.AppendConcurrently(steps, writers)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// AppendConcurrently is AppendStepsConcurrently for goroutines other than
// the test's: it returns the error instead of failing the test.
func (e *Env) AppendConcurrently(steps []Step, writers int) (int, error) {
	parts := make([][]Step, writers)
	for _, s := range steps {
		h := 0
		for _, c := range s.Stream {
			h = h*31 + int(c)
		}
		k := (h%writers + writers) % writers
		parts[k] = append(parts[k], s)
	}
	errs := make(chan error, writers)
	n := 0
	for _, p := range parts {
		for _, s := range p {
			n += len(s.Payloads)
		}
		go func() {
			for _, s := range p {
				evs := make([]domain.Envelope, len(s.Payloads))
				for i, pl := range s.Payloads {
					name, v, data, err := e.Reg.Encode(pl)
					if err != nil {
						errs <- err
						return
					}
					evs[i] = domain.Envelope{ID: uuid.NewString(), Type: name, SchemaVersion: v, Data: data}
				}
				if _, err := e.Store.Append(context.Background(), s.Stream, domain.AnyVersion, evs); err != nil {
					errs <- fmt.Errorf("append %s: %w", s.Stream, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range writers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return n, first
}
