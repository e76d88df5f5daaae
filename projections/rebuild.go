package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
)

// Progress is how far a rebuild is.
type Progress struct {
	// Phase is "replay" (bulk load from position zero), "catch-up"
	// (following the live appends), "swap" or "done".
	Phase string `json:"phase"`
	// Done is the global position the new version has reached; Total is
	// the source's head when it was last read.
	Done  uint64 `json:"done"`
	Total uint64 `json:"total"`
	// Events counts the events applied to the new version.
	Events          uint64  `json:"events"`
	EventsPerSecond float64 `json:"events_per_second"`
	// ETA estimates the time left from the positions covered so far.
	ETA time.Duration `json:"eta_ns"`
}

// Rebuild sizes.
const (
	// rebuildBatch is the events per replay transaction: big enough that
	// the per-transaction costs vanish, small enough to keep the folded
	// rows of one batch in memory.
	rebuildBatch = 10_000
	// caughtUp is the batch size under which a rebuild's catch-up stops
	// and the swap applies the rest under the live lock.
	caughtUp = 500
	// swapAttempts bounds the retries of a swap whose view change timed
	// out waiting for a long query.
	swapAttempts = 10
)

// Rebuild builds a new version of p's read model from position zero of src
// and swaps it in, while the active version keeps serving queries:
//
//  1. create the tables of version n+1 (primary keys only) and register them
//     as rebuilding;
//  2. replay src in large batches into them, reading ahead of the writes;
//  3. build the secondary indexes, then catch up with the live appends;
//  4. take the projection's live lock (every projector's batch transaction
//     takes it too, in every process), apply the last events, and in that
//     one transaction point the views and the registry (active version and
//     checkpoint) at version n+1;
//  5. drop version n.
//
// A rebuild that fails or is cancelled drops version n+1 and leaves version n
// active. progress, when not nil, is called after every batch. While another
// rebuild of p runs, Rebuild fails with ErrRebuildRunning.
func Rebuild(ctx context.Context, db *pgxpool.Pool, src Source, p Projection, progress func(Progress)) error {
	return RebuildWith(ctx, db, src, p, RebuildConfig{Progress: progress})
}

// RebuildConfig tunes RebuildWith. The zero value gives Rebuild's defaults.
type RebuildConfig struct {
	// BatchSize is the events per replay transaction. Default 10,000.
	BatchSize int
	// Progress, when not nil, is called after every batch.
	Progress func(Progress)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// RebuildWith is Rebuild with settings.
func RebuildWith(ctx context.Context, db *pgxpool.Pool, src Source, p Projection, cfg RebuildConfig) error {
	if cfg.BatchSize < 0 || cfg.BatchSize > 100_000 {
		return fmt.Errorf("rebuild %s: BatchSize %d out of range 1..100000", p.Name(), cfg.BatchSize)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = rebuildBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &rebuilder{db: db, src: src, proj: p, batch: cfg.BatchSize, progress: cfg.Progress, log: cfg.Logger}
	if err := r.run(ctx); err != nil {
		return fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	return nil
}

type rebuilder struct {
	db       *pgxpool.Pool
	src      Source
	proj     Projection
	batch    int
	progress func(Progress)
	log      *slog.Logger

	// conn holds the rebuild's session lock, and every write of the
	// rebuild runs on it, so that a rebuild needs one connection of the
	// pool plus the source's reads. (The swap must not wait for a pooled
	// connection while live projectors hold theirs waiting for its lock.)
	conn *pgxpool.Conn

	tables Tables // the version being built
	after  uint64 // position the new version has reached
	head   uint64
	events uint64
	start  time.Time
	phase  string
}

func (r *rebuilder) run(ctx context.Context) error {
	if err := Install(ctx, r.db, r.proj); err != nil {
		return err
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	if err := r.prepare(ctx); err != nil {
		return err
	}
	swapped := false
	defer func() {
		if !swapped {
			r.abandon(ctx)
		}
	}()
	r.start = time.Now()
	r.phase = "replay"
	if err := r.replay(ctx); err != nil {
		return err
	}
	if err := r.index(ctx); err != nil {
		return err
	}
	r.phase = "catch-up"
	if err := r.catchUp(ctx); err != nil {
		return err
	}
	r.phase = "swap"
	if err := r.swap(ctx); err != nil {
		return err
	}
	swapped = true
	r.phase = "done"
	r.report()
	if err := dropVersions(ctx, r.db, r.proj, r.tables.Version); err != nil {
		r.log.Warn("rebuild could not drop the old version yet; the next rebuild will", "projection", r.proj.Name(), "error", err)
	}
	return nil
}

// lock takes the rebuild's session lock on a connection held until unlock.
func (r *rebuilder) lock(ctx context.Context) (unlock func(), err error) {
	conn, err := r.db.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	key := rebuildLockKey(r.proj.Name())
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		conn.Release()
		return nil, err
	}
	if !ok {
		conn.Release()
		return nil, ErrRebuildRunning
	}
	r.conn = conn
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			// Closing the session is the other way to release its lock;
			// a pooled connection must never keep it.
			_ = conn.Hijack().Close(uctx)
			return
		}
		conn.Release()
	}, nil
}

// prepare drops what an earlier, interrupted rebuild left behind and
// creates the tables of the next version.
func (r *rebuilder) prepare(ctx context.Context) error {
	reg, err := readRegistry(ctx, r.db, r.proj.Name())
	if err != nil {
		return err
	}
	if err := dropVersions(ctx, r.db, r.proj, reg.active); err != nil {
		return err
	}
	r.tables = Tables{Version: reg.active + 1}
	return inTx(ctx, r.conn, func(tx pgx.Tx) error {
		if err := execAll(ctx, tx, r.proj.Schema(r.tables).Tables); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projection_versions SET rebuilding_version = $2, rebuild_started_at = now() WHERE name = $1`,
			r.proj.Name(), r.tables.Version)
		return err
	})
}

// abandon drops the version being built and its registration.
func (r *rebuilder) abandon(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := inTx(cctx, r.db, func(tx pgx.Tx) error {
		_, err := tx.Exec(cctx, `UPDATE projection_versions SET rebuilding_version = NULL, rebuild_started_at = NULL
			WHERE name = $1 AND rebuilding_version = $2`, r.proj.Name(), r.tables.Version)
		return err
	})
	if err == nil {
		var reg registryRow
		if reg, err = readRegistry(cctx, r.db, r.proj.Name()); err == nil {
			err = dropVersions(cctx, r.db, r.proj, reg.active)
		}
	}
	if err != nil {
		r.log.Warn("rebuild could not drop its new version; the next rebuild will", "projection", r.proj.Name(), "version", r.tables.Version, "error", err)
	}
}

type readResult struct {
	events  []domain.Envelope
	head    uint64
	err     error
	decoded any           // from Decoder.Decode, when the projection is one and it succeeded
	ready   chan struct{} // closed once decoded is set (or left nil)
}

// decoders is how many batches are decoded at once during a replay.
const decoders = 2

// replay applies src from position zero until a read comes back short, as a
// pipeline: a reader goroutine fetches batches ahead, decoder goroutines
// parse them (for a Decoder projection) and this goroutine writes them, in
// order, so that reading, parsing and writing overlap.
func (r *rebuilder) replay(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	ordered := make(chan *readResult, decoders+1)
	work := make(chan *readResult, decoders+1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(work)
		var after uint64
		for {
			res := &readResult{ready: make(chan struct{})}
			res.head, res.err = r.src.Head(rctx)
			if res.err == nil {
				res.events, res.err = r.src.ReadAll(rctx, after, r.batch)
			}
			select {
			case ordered <- res:
			case <-rctx.Done():
				return
			}
			select {
			case work <- res:
			case <-rctx.Done():
				return
			}
			if res.err != nil || len(res.events) < r.batch {
				return
			}
			after = res.events[len(res.events)-1].Position
		}
	}()
	d, isDecoder := r.proj.(Decoder)
	for range decoders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for res := range work {
				if isDecoder && res.err == nil && len(res.events) > 0 {
					// A failure is left to apply, which isolates it.
					if v, err := d.Decode(res.events); err == nil {
						res.decoded = v
					}
				}
				close(res.ready)
			}
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	for res := range ordered {
		select {
		case <-res.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if res.err != nil {
			return res.err
		}
		if res.decoded != nil && res.events[0].Position > r.after {
			err := retryTransient(ctx, func() error { return r.applyDecoded(ctx, res) })
			if err == nil {
				continue
			}
			if transient(err) || ctx.Err() != nil {
				return err
			}
			// Fall back to the event-by-event isolation of apply.
		}
		if err := r.apply(ctx, res.events, res.head); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// applyDecoded commits a batch the reader already decoded.
func (r *rebuilder) applyDecoded(ctx context.Context, res *readResult) error {
	d := r.proj.(Decoder)
	err := inTx(ctx, r.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
		return d.ApplyDecoded(ctx, tx, r.tables, res.decoded)
	})
	if err != nil {
		return err
	}
	r.head = max(r.head, res.head)
	r.after = reach(r.after, res.events, r.batch, res.head)
	r.events += uint64(len(res.events))
	r.report()
	return nil
}

// apply commits one batch of the replay or the catch-up.
func (r *rebuilder) apply(ctx context.Context, events []domain.Envelope, head uint64) error {
	r.head = max(r.head, head)
	through := reach(r.after, events, r.batch, head)
	if through <= r.after {
		return nil
	}
	rp := newRetryPolicy(0, 0)
	err := retryTransient(ctx, func() error {
		return commitIsolating(ctx, (*replayCommitter)(r), rp, trim(events, r.after), through)
	})
	if err != nil {
		return err
	}
	r.report()
	return nil
}

// retryTransient retries fn after database errors, a few times with
// backoff, so that a blip does not throw away a long rebuild.
func retryTransient(ctx context.Context, fn func() error) error {
	pause := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !transient(err) || ctx.Err() != nil || attempt == 6 {
			return err
		}
		if err := backoff.Sleep(ctx, pause); err != nil {
			return err
		}
		pause *= 2
	}
}

func (r *rebuilder) index(ctx context.Context) error {
	err := inTx(ctx, r.conn, func(tx pgx.Tx) error {
		return execAll(ctx, tx, r.proj.Schema(r.tables).Indexes)
	})
	if err != nil {
		return err
	}
	for _, t := range r.proj.Tables() {
		if _, err := r.conn.Exec(ctx, "ANALYZE "+r.tables.Name(t)); err != nil {
			return err
		}
	}
	return nil
}

// catchUp follows the appends made since the replay began until a read
// returns few enough events to apply under the live lock.
func (r *rebuilder) catchUp(ctx context.Context) error {
	for {
		head, err := r.src.Head(ctx)
		if err != nil {
			return err
		}
		events, err := r.src.ReadAll(ctx, r.after, r.batch)
		if err != nil {
			return err
		}
		if err := r.apply(ctx, events, head); err != nil {
			return err
		}
		if len(events) < min(caughtUp, r.batch) {
			return nil
		}
	}
}

// swap applies the last events and makes the new version the active one,
// in one transaction under the projection's live lock.
func (r *rebuilder) swap(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := r.trySwap(ctx)
		var pgErr *pgconn.PgError
		if err == nil || attempt == swapAttempts || !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
			return err
		}
		// A long query kept a view busy; let the queue behind it drain.
		r.log.Info("rebuild swap waited too long for a view; retrying", "projection", r.proj.Name(), "attempt", attempt)
		if err := backoff.Sleep(ctx, time.Duration(attempt)*100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (r *rebuilder) trySwap(ctx context.Context) error {
	after, events := r.after, r.events
	err := inTx(ctx, r.conn, func(tx pgx.Tx) error {
		reg, err := lockedRegistry(ctx, tx, r.proj.Name())
		if err != nil {
			return err
		}
		if reg.active+1 != r.tables.Version {
			return fmt.Errorf("active version became %d while version %d was built", reg.active, r.tables.Version)
		}
		c := &swapCommitter{r: r, tx: tx}
		rp := newRetryPolicy(0, 0)
		for {
			head, err := r.src.Head(ctx)
			if err != nil {
				return err
			}
			batch, err := r.src.ReadAll(ctx, r.after, r.batch)
			if err != nil {
				return err
			}
			r.head = max(r.head, head)
			if through := reach(r.after, batch, r.batch, head); through > r.after {
				if err := commitIsolating(ctx, c, rp, batch, through); err != nil {
					return err
				}
			}
			if len(batch) < r.batch {
				break
			}
		}
		// Queries wait for the views only from here to the commit.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '3s'"); err != nil {
			return err
		}
		if err := pointViews(ctx, tx, r.proj, r.tables); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE projection_versions SET active_version = $2, checkpoint = $3, schema_hash = $4,
			rebuilding_version = NULL, rebuild_started_at = NULL, swapped_at = now() WHERE name = $1`,
			r.proj.Name(), r.tables.Version, int64(r.after), SchemaHash(r.proj))
		return err
	})
	if err != nil {
		r.after, r.events = after, events
	}
	return err
}

func (r *rebuilder) report() {
	if r.progress == nil {
		return
	}
	elapsed := time.Since(r.start).Seconds()
	p := Progress{Phase: r.phase, Done: r.after, Total: max(r.head, r.after), Events: r.events}
	if elapsed > 0 {
		p.EventsPerSecond = float64(r.events) / elapsed
		if perSecond := float64(r.after) / elapsed; perSecond > 0 {
			p.ETA = time.Duration(float64(p.Total-p.Done) / perSecond * float64(time.Second))
		}
	}
	r.progress(p)
}

// replayCommitter writes the new version's batches. Nobody reads these
// tables before the swap, so no lock is needed, and their commits need not
// wait for the WAL flush: a crash loses the whole rebuild anyway, and the
// swap's synchronous commit flushes everything before it.
type replayCommitter rebuilder

func (c *replayCommitter) commit(ctx context.Context, events []domain.Envelope, through uint64) error {
	r := (*rebuilder)(c)
	events = trim(events, r.after)
	err := inTx(ctx, r.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		return r.proj.Apply(ctx, tx, r.tables, events)
	})
	if err == nil {
		r.after = max(r.after, through)
		r.events += uint64(len(events))
	}
	return err
}

func (c *replayCommitter) park(ctx context.Context, e domain.Envelope, cause error, through uint64) error {
	r := (*rebuilder)(c)
	err := inTx(ctx, r.conn, func(tx pgx.Tx) error {
		ok, err := insertParked(ctx, tx, r.proj.Name(), e.ID, e.Position, e.Stream, e.Type, cause)
		if ok {
			logParked(r.log, r.proj.Name(), e.ID, e.Position, e.Type, cause)
		}
		return err
	})
	if err == nil {
		r.after = max(r.after, through)
	}
	return err
}

func (c *replayCommitter) ping(ctx context.Context) error { return c.conn.Ping(ctx) }

// swapCommitter applies the last events inside the swap transaction, each
// attempt in a savepoint so that a failing event can be isolated there.
type swapCommitter struct {
	r  *rebuilder
	tx pgx.Tx
}

func (c *swapCommitter) commit(ctx context.Context, events []domain.Envelope, through uint64) error {
	events = trim(events, c.r.after)
	sp, err := c.tx.Begin(ctx)
	if err != nil {
		return err
	}
	if len(events) > 0 {
		if err := c.r.proj.Apply(ctx, sp, c.r.tables, events); err != nil {
			_ = sp.Rollback(ctx)
			return err
		}
	}
	if err := sp.Commit(ctx); err != nil {
		return err
	}
	c.r.after = max(c.r.after, through)
	c.r.events += uint64(len(events))
	return nil
}

func (c *swapCommitter) park(ctx context.Context, e domain.Envelope, cause error, through uint64) error {
	ok, err := insertParked(ctx, c.tx, c.r.proj.Name(), e.ID, e.Position, e.Stream, e.Type, cause)
	if err != nil {
		return err
	}
	if ok {
		logParked(c.r.log, c.r.proj.Name(), e.ID, e.Position, e.Type, cause)
	}
	c.r.after = max(c.r.after, through)
	return nil
}

func (c *swapCommitter) ping(ctx context.Context) error { return c.r.conn.Ping(ctx) }
