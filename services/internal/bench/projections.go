package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/projsource"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
)

// storeDB opens a fresh database with the event store and the projection
// runtime installed.
func (r *runner) storeDB(ctx context.Context) (*pgxpool.Pool, *postgres.Store, *projsource.Source, error) {
	pool, err := r.pool(ctx, 24)
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	src, err := projsource.New(store, eventstore.Filter{StreamPrefixes: []string{"order-"}}, projsource.Config{})
	if err != nil {
		store.Close()
		pool.Close()
		return nil, nil, nil, err
	}
	if err := projections.Install(ctx, pool, orderview.New()); err != nil {
		store.Close()
		pool.Close()
		return nil, nil, nil, err
	}
	return pool, store, src, nil
}

// replay seeds the store with ReplayEvents order events and measures a
// rebuild of the orders read model from position zero.
func (r *runner) replay(ctx context.Context) error {
	pool, store, src, err := r.storeDB(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	defer store.Close()
	start := time.Now()
	every := newTicker(2 * time.Second)
	var seedMu sync.Mutex
	if err := SeedOrders(ctx, store, r.cfg.ReplayEvents, 32, func(done int64) {
		seedMu.Lock()
		defer seedMu.Unlock()
		if every.due() {
			fmt.Fprintf(r.w, "  seeding: %d of %d events\n", min(done, int64(r.cfg.ReplayEvents)), r.cfg.ReplayEvents)
		}
	}); err != nil {
		return err
	}
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.w, "  seeded %d events in %s\n", head, time.Since(start).Round(100*time.Millisecond))

	var last projections.Progress
	start = time.Now()
	err = projections.RebuildWith(ctx, pool, src, orderview.New(), projections.RebuildConfig{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Progress: func(p projections.Progress) {
			last = p
			if every.due() {
				fmt.Fprintf(r.w, "  replaying: %d of %d events, %.0f events/s\n", p.Done, p.Total, p.EventsPerSecond)
			}
		},
	})
	if err != nil {
		return err
	}
	d := time.Since(start)
	fmt.Fprintf(r.w, "  replayed %d events in %s\n", last.Done, d.Round(100*time.Millisecond))
	var orders int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+projections.View("orders")).Scan(&orders); err != nil {
		return fmt.Errorf("count rebuilt orders: %w", err)
	}
	if orders == 0 {
		return fmt.Errorf("replay produced an empty read model")
	}
	r.add("replay_1m_eps", float64(head)/d.Seconds(), "events/s")
	return nil
}

// lag runs the live orders projector while appending LagRate events/s and
// measures, per append, the time from the append's return (its commit) to
// the moment the projection's committed checkpoint covers it, read from
// the database by another connection.
func (r *runner) lag(ctx context.Context) error {
	pool, store, src, err := r.storeDB(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	defer store.Close()
	proj, err := projections.NewProjector(pool, src, orderview.New(), projections.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = proj.Run(pctx) })
	defer wg.Wait()
	defer stop()

	type mark struct {
		pos uint64
		at  time.Time
	}
	var (
		mu    sync.Mutex
		marks []mark
		lats  []time.Duration
		werr  error
	)
	// The first second warms the projector up and is not measured.
	warm := time.Now().Add(time.Second)
	// Poll the committed checkpoint and settle the appends it covers. The
	// projector announces no commit, and reading the checkpoint from another
	// connection is what a query would see; a poll every 0.5ms plus the
	// query's round trip keeps the measurement's resolution near 1ms,
	// well under the figures and the 100ms target.
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for pctx.Err() == nil {
			var cp int64
			if err := pool.QueryRow(pctx, "SELECT checkpoint FROM projection_versions WHERE name = $1", orderview.Name).Scan(&cp); err == nil {
				now := time.Now()
				mu.Lock()
				i := 0
				for ; i < len(marks) && marks[i].pos <= uint64(cp); i++ {
					if marks[i].at.After(warm) {
						lats = append(lats, now.Sub(marks[i].at))
					}
				}
				marks = marks[i:]
				mu.Unlock()
			}
			time.Sleep(500 * time.Microsecond)
		}
	}()

	reg := events.NewRegistry()
	rng := rand.New(rand.NewPCG(7, 7))
	base := time.Now().UTC()
	tick := 10 * time.Millisecond
	deadline := warm.Add(r.cfg.Duration)
	var written float64
	start := time.Now()
	var awg sync.WaitGroup
	sem := make(chan struct{}, 32)
	t := time.NewTicker(tick)
	for now := range t.C {
		if now.After(deadline) {
			break
		}
		// The target follows the clock, not the ticks, which a busy
		// machine may drop.
		want := float64(r.cfg.LagRate) * now.Sub(start).Seconds()
		for written < want {
			evs, err := orderHistory(reg, rng, base)
			if err != nil {
				t.Stop()
				return err
			}
			written += float64(len(evs))
			stream := evs[0].Stream
			sem <- struct{}{}
			awg.Go(func() {
				defer func() { <-sem }()
				res, err := store.Append(ctx, stream, domain.NoStream, evs)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					werr = err
					return
				}
				// Appends return out of order; keep marks sorted by position.
				m := mark{res.Position, time.Now()}
				i, _ := slices.BinarySearchFunc(marks, m.pos, func(a mark, p uint64) int {
					return int(int64(a.pos) - int64(p))
				})
				marks = slices.Insert(marks, i, m)
			})
		}
	}
	t.Stop()
	awg.Wait()
	elapsed := time.Since(start)
	// Let the projector settle the last appends.
	for range 200 {
		mu.Lock()
		n := len(marks)
		mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-pollDone
	if werr != nil {
		return werr
	}
	mu.Lock()
	defer mu.Unlock()
	if len(marks) > 0 {
		return fmt.Errorf("%d appends never became visible in the read model", len(marks))
	}
	slices.Sort(lats)
	fmt.Fprintf(r.w, "  appended %.0f events in %s (%.0f events/s), %d appends measured\n", written, elapsed.Round(100*time.Millisecond), written/elapsed.Seconds(), len(lats))
	r.add("projection_lag_rate_eps", written/elapsed.Seconds(), "events/s")
	r.add("projection_lag_p50_ms", ms(pct(lats, 0.50)), "ms")
	r.add("projection_lag_p99_ms", ms(pct(lats, 0.99)), "ms")
	return nil
}

// ticker says when a periodic progress line is due.
type ticker struct {
	every time.Duration
	next  time.Time
}

func newTicker(every time.Duration) *ticker {
	return &ticker{every: every, next: time.Now().Add(every)}
}

func (t *ticker) due() bool {
	if now := time.Now(); now.After(t.next) {
		t.next = now.Add(t.every)
		return true
	}
	return false
}
