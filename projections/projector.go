package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
)

// Config tunes a Projector. The zero value gives the defaults.
type Config struct {
	// BatchSize caps the events applied in one transaction. Default 1000.
	BatchSize int
	// Linger is how long a projector that read a partial batch waits for
	// more events before applying it, trading a little latency for fewer
	// transactions under a trickle of appends. Default 2ms; negative
	// disables it.
	Linger time.Duration
	// Retries is how often an event that fails on its own is retried
	// before it is parked. Default 2; negative means none.
	Retries int
	// RetryDelay is the pause before each of those retries. Default 50ms.
	RetryDelay time.Duration
	// MinBackoff and MaxBackoff bound the pause after a database error.
	// Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives parked events and database errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 0 || c.BatchSize > 100_000:
		return fmt.Errorf("projector: BatchSize %d out of range 1..100000", c.BatchSize)
	case c.RetryDelay < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0:
		return errors.New("projector: negative delay")
	case c.MaxBackoff != 0 && c.MinBackoff > c.MaxBackoff:
		return errors.New("projector: MinBackoff above MaxBackoff")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.Linger == 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Projector keeps one projection up to date with a Source. Every batch is
// applied in one transaction that also moves the checkpoint, under the
// projection's advisory lock, so several processes may run the same
// projector: they take turns, and none applies an event twice.
type Projector struct {
	db   *pgxpool.Pool
	src  Source
	proj Projection
	hash string
	cfg  Config
	live

	// after is the checkpoint of the last commit and lastBeat the time of
	// that commit; only Run's goroutine touches them.
	after    uint64
	lastBeat time.Time

	waiting atomic.Bool // for a rebuild to bring the schema in line
}

// NewProjector returns a projector of p fed by src, writing to db.
func NewProjector(db *pgxpool.Pool, src Source, p Projection, cfg Config) (*Projector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil || src == nil || p == nil {
		return nil, errors.New("projector: nil database, source or projection")
	}
	cfg.setDefaults()
	return &Projector{db: db, src: src, proj: p, hash: SchemaHash(p), cfg: cfg,
		live: live{name: p.Name(), log: cfg.Logger, stats: Stats{Name: p.Name(), Status: StatusStopped}}}, nil
}

// Name is the projection's name.
func (p *Projector) Name() string { return p.proj.Name() }

// Stats reports the projector's progress.
func (p *Projector) Stats() Stats {
	s := p.snapshot(p.waiting.Load())
	s.Lag = lag(s.Head, s.Checkpoint)
	return s
}

// Run applies events until ctx is done, then returns nil. Database and
// source errors are logged and retried with backoff; they never end Run.
func (p *Projector) Run(ctx context.Context) error {
	return p.runRetrying(ctx, "projector", p.cfg.MinBackoff, p.cfg.MaxBackoff, p.run)
}

// run installs the projection, loads its checkpoint and applies batches
// until an error; progress resets the caller's backoff.
func (p *Projector) run(ctx context.Context, progress func()) error {
	if err := Install(ctx, p.db, p.proj); err != nil {
		return err
	}
	reg, err := p.awaitSchema(ctx)
	if err != nil {
		return err
	}
	p.after = reg.checkpoint
	p.noteRegistry(reg)
	if err := p.loadParked(ctx, p.db); err != nil {
		return err
	}
	for {
		moved, err := p.step(ctx)
		if moved {
			progress()
		}
		if err != nil {
			if !errors.Is(err, errCheckpointMoved) {
				return err
			}
			reg, err := readRegistry(ctx, p.db, p.Name())
			if err != nil {
				return err
			}
			p.after = reg.checkpoint
		}
	}
}

// awaitSchema reads the registry, and while the active version was built
// for another schema, waits for a rebuild to swap in one built by this code
// (the Runner starts it; see SchemaHash). An empty fingerprint, from a
// registry written before fingerprints existed, is adopted.
func (p *Projector) awaitSchema(ctx context.Context) (registryRow, error) {
	logged := false
	defer p.waiting.Store(false)
	for {
		reg, err := readRegistry(ctx, p.db, p.Name())
		if err != nil {
			return reg, err
		}
		p.noteRegistry(reg)
		if reg.schemaHash == "" {
			if _, err := p.db.Exec(ctx, "UPDATE projection_versions SET schema_hash = $2 WHERE name = $1 AND schema_hash = ''", p.Name(), p.hash); err != nil {
				return reg, err
			}
			continue
		}
		if reg.schemaHash == p.hash {
			return reg, nil
		}
		p.waiting.Store(true)
		if !logged {
			p.cfg.Logger.Warn("projection schema changed; waiting for a rebuild before applying events", "projection", p.Name(),
				"active_version", reg.active, "active_schema", reg.schemaHash, "code_schema", p.hash)
			logged = true
		}
		if err := backoff.Sleep(ctx, 2*time.Second); err != nil {
			return reg, err
		}
	}
}

// step applies the next batch and, once caught up with the source, waits
// for more (writing a heartbeat now and then while idle). It reports
// whether the checkpoint moved.
func (p *Projector) step(ctx context.Context) (bool, error) {
	head, err := p.src.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("head: %w", err)
	}
	p.noteHead(head)
	events, err := p.src.ReadAll(ctx, p.after, p.cfg.BatchSize)
	if err != nil {
		return false, fmt.Errorf("read after %d: %w", p.after, err)
	}
	if n := len(events); n > 0 && n < p.cfg.BatchSize && p.cfg.Linger > 0 {
		if err := backoff.Sleep(ctx, p.cfg.Linger); err != nil {
			return false, err
		}
		more, err := p.src.ReadAll(ctx, events[n-1].Position, p.cfg.BatchSize-n)
		if err != nil {
			return false, fmt.Errorf("read after %d: %w", events[n-1].Position, err)
		}
		events = append(events, more...)
	}
	through := reach(p.after, events, p.cfg.BatchSize, head)
	moved := through > p.after
	switch {
	case moved:
		if err := commitIsolating(ctx, p, p.retryPolicy(), events, through); err != nil {
			return false, err
		}
		if len(events) == p.cfg.BatchSize {
			return true, nil // a full batch: more are probably waiting
		}
		// A short batch caught up with the head: reading again now would
		// find nothing. Wait's first read covers what committed meanwhile.
	case time.Since(p.lastBeat) >= heartbeatEvery:
		if err := p.commit(ctx, nil, p.after); err != nil {
			return false, err
		}
	}
	if err := p.src.Wait(ctx, p.after); err != nil {
		return moved, fmt.Errorf("wait after %d: %w", p.after, err)
	}
	return moved, nil
}

// reach is the position a read of up to limit events after after, which
// returned events, covers: its last event's, or the head read before it
// when it came back short. A short read saw every matching event up to that
// head (the store's order is gap-free), so a filtered projection moves its
// checkpoint over the other streams' events too.
func reach(after uint64, events []domain.Envelope, limit int, head uint64) uint64 {
	through := after
	if n := len(events); n > 0 {
		through = events[n-1].Position
	}
	if len(events) < limit {
		through = max(through, head)
	}
	return through
}

func (p *Projector) retryPolicy() retryPolicy {
	return newRetryPolicy(p.cfg.Retries, p.cfg.RetryDelay)
}

// commit implements committer: it applies events to the active version and
// moves the checkpoint to through, in one transaction under the live lock.
func (p *Projector) commit(ctx context.Context, events []domain.Envelope, through uint64) error {
	return p.inBatchTx(ctx, through, func(tx pgx.Tx, t Tables, cp uint64) (int, error) {
		events = trim(events, cp)
		if len(events) == 0 {
			return 0, nil
		}
		if err := p.proj.Apply(ctx, tx, t, events); err != nil {
			return 0, fmt.Errorf("apply %d events at %d..%d: %w", len(events), events[0].Position, events[len(events)-1].Position, err)
		}
		return len(events), nil
	})
}

// park implements committer.
func (p *Projector) park(ctx context.Context, e domain.Envelope, cause error, through uint64) error {
	parked := false
	err := p.inBatchTx(ctx, through, func(tx pgx.Tx, _ Tables, cp uint64) (int, error) {
		if e.Position <= cp {
			return 0, nil
		}
		ok, err := insertParked(ctx, tx, p.Name(), e.ID, e.Position, e.Stream, e.Type, cause)
		parked = ok
		return 0, err
	})
	if err == nil && parked {
		p.noteParked(e.ID, e.Position, e.Type, cause)
	}
	return err
}

// ping implements committer.
func (p *Projector) ping(ctx context.Context) error { return p.db.Ping(ctx) }

// inBatchTx runs fn in a transaction holding the projection's live lock,
// with the tables of the active version and the registry's checkpoint,
// then moves the checkpoint to through and commits. A checkpoint behind the
// projector's (an operator reset it) ends the attempt with
// errCheckpointMoved; one ahead of it (a rebuild swapped in a version that
// is further along) is where fn must start.
func (p *Projector) inBatchTx(ctx context.Context, through uint64, fn func(pgx.Tx, Tables, uint64) (int, error)) error {
	var (
		reg     registryRow
		applied int
	)
	err := inTx(ctx, p.db, func(tx pgx.Tx) error {
		var err error
		if reg, err = lockedRegistry(ctx, tx, p.Name()); err != nil {
			return err
		}
		if reg.schemaHash != p.hash {
			return ErrSchemaChanged
		}
		if reg.checkpoint < p.after {
			return errCheckpointMoved
		}
		if applied, err = fn(tx, Tables{Version: reg.active}, reg.checkpoint); err != nil {
			return err
		}
		through = max(through, reg.checkpoint)
		rate := p.rate.rate(time.Now())
		_, err = tx.Exec(ctx, `UPDATE projection_versions SET checkpoint = $2, heartbeat_at = now(), events_per_second = $3 WHERE name = $1`,
			p.Name(), int64(through), rate)
		return err
	})
	if err != nil {
		return err
	}
	now := time.Now()
	p.after = through
	p.lastBeat = now
	p.rate.add(now, applied)
	p.noteRegistry(registryRow{active: reg.active, checkpoint: through, rebuilding: reg.rebuilding})
	return nil
}

func (p *Projector) noteRegistry(r registryRow) {
	p.mu.Lock()
	p.stats.Checkpoint = r.checkpoint
	p.stats.ActiveVersion = r.active
	p.stats.Head = max(p.stats.Head, r.checkpoint)
	p.mu.Unlock()
	p.rebuilding.Store(r.rebuilding)
}

func (p *Projector) noteHead(h uint64) {
	p.mu.Lock()
	p.stats.Head = h
	p.mu.Unlock()
}

// insertParked records a parked event; it reports false when the event
// was parked already (by another process, or before a rebuild).
func insertParked(ctx context.Context, tx pgx.Tx, projection, eventID string, position uint64, stream, typ string, cause error) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO projection_parked (projection, event_id, position, stream, type, error)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		projection, eventID, int64(position), stream, typ, cause.Error())
	if err != nil {
		return false, fmt.Errorf("park event %s: %w", eventID, err)
	}
	return tag.RowsAffected() == 1, nil
}
