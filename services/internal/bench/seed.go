package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/order"
)

// Appender is the part of an event store seeding needs.
type Appender interface {
	Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (domain.AppendResult, error)
}

// SeedOrders fills store with at least n order events: orders placed and
// then, as in a live system, mostly confirmed and shipped, some rejected or
// cancelled. Every event is produced by the order aggregate's own decisions,
// so projections see exactly what the command side would write. Each order's
// events go in one append; writers run concurrently so group commit applies.
// progress, if not nil, is called with the events written so far.
func SeedOrders(ctx context.Context, store Appender, n int, writers int, progress func(done int64)) error {
	if writers <= 0 {
		writers = 32
	}
	reg := events.NewRegistry()
	var (
		written atomic.Int64
		next    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		first   error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for written.Load() < int64(n) && ctx.Err() == nil {
				i := next.Add(1)
				evs, err := orderHistory(reg, rng, base.Add(time.Duration(i)*time.Second))
				if err != nil {
					fail(err)
					cancel()
					return
				}
				stream := evs[0].Stream
				for k := range evs {
					evs[k].Stream = ""
				}
				if _, err := store.Append(ctx, stream, domain.NoStream, evs); err != nil {
					fail(fmt.Errorf("seed %s: %w", stream, err))
					cancel()
					return
				}
				done := written.Add(int64(len(evs)))
				if progress != nil && done/10_000 != (done-int64(len(evs)))/10_000 {
					progress(done)
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if progress != nil {
		progress(written.Load())
	}
	return ctx.Err()
}

// orderHistory decides one order's life with the aggregate and returns its
// events, Stream set to the order's stream.
func orderHistory(reg *domain.Registry, rng *rand.Rand, at time.Time) ([]domain.Envelope, error) {
	var o order.Order
	id := uuid.NewString()
	items := make([]order.Item, 1+rng.IntN(3))
	for i := range items {
		items[i] = order.Item{SKU: fmt.Sprintf("SKU-%d-%d", rng.IntN(5000), i), Quantity: 1 + rng.IntN(5), UnitPriceCents: int64(100 + rng.IntN(50_000))}
	}
	var payloads []any
	decide := func(evs []any, err error) error {
		if err != nil {
			return err
		}
		for _, e := range evs {
			o.Apply(e)
		}
		payloads = append(payloads, evs...)
		return nil
	}
	err := decide(o.Place(order.PlaceOrder{
		OrderID: id, SagaID: uuid.NewString(), CustomerID: fmt.Sprintf("c-%d", rng.IntN(20_000)), Items: items,
		Address: order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		At:      at,
	}))
	switch r := rng.IntN(10); {
	case err != nil:
	case r < 7:
		if err = decide(o.Confirm(uuid.NewString())); err == nil && r < 5 {
			err = decide(o.MarkShipped())
		}
	case r < 9:
		err = decide(o.Reject(order.ReasonInsufficientStock))
	default:
		err = decide(o.Cancel(order.ReasonCancelledByCustomer))
	}
	if err != nil {
		return nil, fmt.Errorf("seed order: %w", err)
	}
	out := make([]domain.Envelope, len(payloads))
	for i, p := range payloads {
		typ, ver, data, err := reg.Encode(p)
		if err != nil {
			return nil, fmt.Errorf("seed order: %w", err)
		}
		out[i] = domain.Envelope{ID: uuid.NewString(), Stream: order.Stream(id), Type: typ, SchemaVersion: ver, Data: data,
			Metadata: domain.Metadata{CorrelationID: id, CausationID: id}}
	}
	return out, nil
}
