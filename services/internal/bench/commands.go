package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// restocks runs CommandCallers goroutines that restock skus by 1 through
// the inventory command handler on the PostgreSQL store until the phase
// ends; sku picks the sku of a caller's n-th command. It returns the
// commands that succeeded, the elapsed time, how many failed with a version
// conflict (errors surfaced to callers) and the handler's counts. Any other
// failure ends the phase with an error.
func (r *runner) restocks(ctx context.Context, sku func(caller, n int) string) (int64, time.Duration, int64, commands.StatsSnapshot, error) {
	pool, err := r.pool(ctx, 16)
	if err != nil {
		return 0, 0, 0, commands.StatsSnapshot{}, err
	}
	defer pool.Close()
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		return 0, 0, 0, commands.StatsSnapshot{}, err
	}
	defer store.Close()
	stats := new(commands.Stats)
	h := commands.NewInventory(store, commands.Config{Stats: stats})

	var (
		done, surfaced atomic.Int64
		mu             sync.Mutex
		firstErr       error
		wg             sync.WaitGroup
	)
	deadline := time.Now().Add(r.cfg.Duration)
	start := time.Now()
	for c := range r.cfg.CommandCallers {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				_, err := h.Restock(ctx, commands.Meta{CommandID: uuid.NewString(), RequestID: "bench"}, sku(c, n), 1)
				switch {
				case err == nil:
					done.Add(1)
				case errors.Is(err, domain.ErrVersionConflict):
					surfaced.Add(1)
				default:
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return done.Load(), time.Since(start), surfaced.Load(), stats.Snapshot(), firstErr
}

// hotStream measures commands on one stream from CommandCallers callers:
// they queue on the stream's writer and share appends.
func (r *runner) hotStream(ctx context.Context) error {
	n, d, surfaced, st, err := r.restocks(ctx, func(int, int) string { return "HOT" })
	if err != nil {
		return err
	}
	r.add("hot_stream_commands_per_s", float64(n)/d.Seconds(), "commands/s")
	r.add("hot_stream_conflicts_surfaced", float64(surfaced), "count")
	if st.Appends > 0 {
		r.add("hot_stream_commands_per_append", float64(st.AppendedCommands)/float64(st.Appends), "commands")
	}
	return nil
}

// spreadStreams is how many streams the reference phase spreads its
// commands over.
const spreadStreams = 1000

// spread is the reference of hotStream: the same callers and commands, on
// 1,000 streams, where they seldom meet.
func (r *runner) spread(ctx context.Context) error {
	callers := r.cfg.CommandCallers
	n, d, surfaced, _, err := r.restocks(ctx, func(c, n int) string {
		return fmt.Sprintf("SKU-%04d", (c+n*callers)%spreadStreams)
	})
	if err != nil {
		return err
	}
	if surfaced > 0 {
		return fmt.Errorf("%d commands on distinct streams failed with a version conflict", surfaced)
	}
	r.add("spread_commands_per_s", float64(n)/d.Seconds(), "commands/s")
	return nil
}
