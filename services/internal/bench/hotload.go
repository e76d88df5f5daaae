package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// The hot stream load phase measures what snapshots are for: a command on
// a stock stream of HotStreamEvents events (a hot sku's, grown by its
// orders) that the command layer does not hold in memory, against the same
// command on a fresh stream. Every measured command runs on a new handler,
// whose cache is empty, as after a restart or an eviction: a handler that
// kept the stream's state would hide the cost of loading it.

// Figures of the phase.
const (
	hotLoadRatioFigure    = "hot_stream_command_ratio"
	hotLoadLongFigure     = "hot_stream_command_ms"
	hotLoadFreshFigure    = "fresh_stream_command_ms"
	hotLoadNoSnapFigure   = "hot_stream_command_no_snapshot_ms"
	hotLoadNoSnapRatio    = "hot_stream_command_no_snapshot_ratio"
	hotLoadSnapshotFigure = "hot_stream_snapshot_kb"
)

// hotLoadMin and hotLoadMax bound the measured commands of each kind;
// between them the phase runs for Duration.
const (
	hotLoadMin = 20
	hotLoadMax = 2000
	// hotLoadPlain is how many commands run without snapshots, each of
	// which reads the whole stream.
	hotLoadPlain = 3
	// seedBatch is how many events one seeding append writes.
	seedBatch = 1000
)

// hotLoad runs the phase.
func (r *runner) hotLoad(ctx context.Context) error {
	pool, err := r.pool(ctx, 8)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		return err
	}
	defer store.Close()

	const sku = "HOT-LONG"
	stream := inventory.Stream(sku)
	n := r.cfg.HotStreamEvents
	if err := seedStock(ctx, store, stream, n-1); err != nil {
		return fmt.Errorf("seed %s: %w", stream, err)
	}
	// The command that takes the stream to n events snapshots it there,
	// as the writer does at every multiple of its interval; the measured
	// commands run with the default interval.
	if _, err := restockOnce(ctx, store, commands.Config{SnapshotEvery: n}, sku); err != nil {
		return err
	}
	cfg := commands.Config{}
	size, err := waitSnapshot(ctx, store, stream, int64(n))
	if err != nil {
		return err
	}
	r.add(hotLoadSnapshotFigure, float64(size)/1024, "KB")

	// Interleaved, so that a slow spell of the machine weighs on both.
	var long, fresh []time.Duration
	deadline := time.Now().Add(r.cfg.Duration)
	for i := 0; i < hotLoadMax && (i < hotLoadMin || time.Now().Before(deadline)); i++ {
		d, err := restockOnce(ctx, store, cfg, sku)
		if err != nil {
			return err
		}
		long = append(long, d)
		if d, err = restockOnce(ctx, store, cfg, fmt.Sprintf("HOT-FRESH-%d", i)); err != nil {
			return err
		}
		fresh = append(fresh, d)
	}
	var plain []time.Duration
	for range hotLoadPlain {
		d, err := restockOnce(ctx, store, commands.Config{SnapshotEvery: -1}, sku)
		if err != nil {
			return err
		}
		plain = append(plain, d)
	}
	l, f, p := median(long), median(fresh), median(plain)
	r.add(hotLoadLongFigure, ms(l), "ms")
	r.add(hotLoadFreshFigure, ms(f), "ms")
	r.add(hotLoadNoSnapFigure, ms(p), "ms")
	r.add(hotLoadRatioFigure, float64(l)/float64(f), "x")
	r.add(hotLoadNoSnapRatio, float64(p)/float64(f), "x")
	return nil
}

// restockOnce restocks sku by 1 on a new handler, so that the stream is
// loaded from the store, and returns how long that took.
func restockOnce(ctx context.Context, store *postgres.Store, cfg commands.Config, sku string) (time.Duration, error) {
	h := commands.NewInventory(store, cfg)
	start := time.Now()
	if _, err := h.Restock(ctx, commands.Meta{CommandID: uuid.NewString(), RequestID: "bench"}, sku, 1); err != nil {
		return 0, fmt.Errorf("restock %s: %w", sku, err)
	}
	return time.Since(start), nil
}

// waitSnapshot waits until stream has a snapshot at version want or later
// (snapshots are written on their own) and returns its size.
func waitSnapshot(ctx context.Context, store *postgres.Store, stream string, want int64) (int, error) {
	schema, _ := commands.SnapshotSchema(stream)
	deadline := time.Now().Add(time.Minute)
	for {
		v, data, err := store.LoadSnapshot(ctx, stream, schema)
		if err != nil {
			return 0, err
		}
		if v >= want {
			return len(data), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no snapshot of %s at version %d after a minute (at %d)", stream, want, v)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// seedStock appends n events to the stock stream, in batches: a restock
// large enough for every order, then, per order, its reservation and its
// consumption, as a hot sku's stream grows in a live system.
func seedStock(ctx context.Context, store *postgres.Store, stream string, n int) error {
	reg := events.NewRegistry()
	sku := stream[len(inventory.StreamPrefix):]
	ev := func(i int) any {
		if i == 0 {
			return inventory.StockRestocked{SKU: sku, Quantity: inventory.MaxRestock}
		}
		order := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "bench order %d", (i+1)/2)).String()
		if i%2 == 1 {
			return inventory.StockReserved{SKU: sku, OrderID: order, Quantity: 1}
		}
		return inventory.StockConsumed{SKU: sku, OrderID: order, Quantity: 1}
	}
	md := domain.Metadata{CorrelationID: uuid.NewString(), RequestID: "bench seed"}
	for from := 0; from < n; from += seedBatch {
		batch := make([]domain.Envelope, 0, min(seedBatch, n-from))
		for i := from; i < from+cap(batch); i++ {
			typ, version, data, err := reg.Encode(ev(i))
			if err != nil {
				return err
			}
			md.CausationID = uuid.NewString()
			batch = append(batch, domain.Envelope{ID: uuid.NewString(), Type: typ, SchemaVersion: version, Data: data, Metadata: md})
		}
		if _, err := store.Append(ctx, stream, domain.ExactVersion(int64(from)), batch); err != nil {
			return err
		}
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// hotLoadRows adds the phase's rows to the table.
func (r *runner) hotLoadRows(row func(name string, v float64, unit string, ref float64, target string, ok bool)) {
	l, f, p := r.get(hotLoadLongFigure), r.get(hotLoadFreshFigure), r.get(hotLoadNoSnapFigure)
	ratio := r.get(hotLoadRatioFigure)
	row(fmt.Sprintf("command on a %d-event stream, not cached", r.cfg.HotStreamEvents), l, "ms", 0, "-", true)
	row("  on a fresh stream (reference)", f, "ms", 0, "-", true)
	row("  long / fresh, with snapshots", ratio, "x", 0, "<= 2", ratio <= 2)
	row("  long / fresh, without snapshots", r.get(hotLoadNoSnapRatio), "x", 0, "-", true)
	row("  without snapshots", p, "ms", 0, "-", true)
	row("  snapshot size", r.get(hotLoadSnapshotFigure), "KB", 0, "-", true)
}
