package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
)

// Runner owns the projectors of one service: it runs them, reports their
// progress and starts rebuilds on request (the operations API's
// GET /admin/projections and POST /admin/projections/{name}/replay).
type Runner struct {
	db  *pgxpool.Pool
	log *slog.Logger
	// owner runs the DDL: installing projections and rebuilding them. It
	// is db unless WithOwner says otherwise.
	owner *pgxpool.Pool

	mu       sync.Mutex
	entries  []*entry
	byName   map[string]*entry
	runCtx   context.Context // set while Run runs
	wg       sync.WaitGroup  // the rebuilds Run owns
	started  bool
	finished bool
}

type entry struct {
	proj   Projection
	src    Source // nil for a JetStream projection
	runner interface {
		Run(context.Context) error
		Stats() Stats
	}
	// rebuild is the progress of the rebuild running in this process.
	rebuild *Progress
	lastErr error
}

// RunnerOption configures a Runner.
type RunnerOption func(*Runner)

// WithOwner makes the runner create and replace the read models' tables
// and views (Install, the rebuilds it starts) through owner, a pool
// connected as the owner of the read models, while the projectors write
// rows through the runner's db, whose role may have DML rights only. A
// rebuild runs entirely on owner: its swap changes views and rows in one
// transaction.
func WithOwner(owner *pgxpool.Pool) RunnerOption {
	return func(r *Runner) {
		if owner != nil {
			r.owner = owner
		}
	}
}

// NewRunner returns a runner writing to db; logger nil means slog.Default().
func NewRunner(db *pgxpool.Pool, logger *slog.Logger, opts ...RunnerOption) *Runner {
	if logger == nil {
		logger = slog.Default()
	}
	r := &Runner{db: db, owner: db, log: logger, byName: make(map[string]*entry)}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Add registers a projection fed by src from the service's own store.
func (r *Runner) Add(p Projection, src Source, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	pr, err := NewProjector(r.db, src, p, cfg)
	if err != nil {
		return err
	}
	return r.add(&entry{proj: p, src: src, runner: pr})
}

// AddJetStream registers a projection fed by the events of other contexts
// through JetStream. It cannot be rebuilt from a Source.
func (r *Runner) AddJetStream(p Projection, js jetstream.JetStream, cfg JetStreamConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	pr, err := NewJetStreamProjector(r.db, js, p, cfg)
	if err != nil {
		return err
	}
	return r.add(&entry{proj: p, runner: pr})
}

func (r *Runner) add(e *entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("projection runner: Add after Run")
	}
	name := e.proj.Name()
	if _, dup := r.byName[name]; dup {
		return fmt.Errorf("projection runner: %s added twice", name)
	}
	r.entries = append(r.entries, e)
	r.byName[name] = e
	return nil
}

// Install installs every registered projection (its tables, views and
// registry row), so that a service can serve queries from the moment it
// starts. Run does the same on its own, retrying while the database is
// unreachable.
func (r *Runner) Install(ctx context.Context) error {
	r.mu.Lock()
	entries := append([]*entry(nil), r.entries...)
	r.mu.Unlock()
	for _, e := range entries {
		if err := Install(ctx, r.owner, e.proj); err != nil {
			return err
		}
	}
	return nil
}

// Run runs every projector until ctx is done, then waits for the projectors
// and any rebuild it started to stop and returns nil. Database errors are
// retried by the projectors; they never end Run.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("projection runner: Run called twice")
	}
	r.started = true
	r.runCtx = ctx
	entries := append([]*entry(nil), r.entries...)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.finished = true
		r.mu.Unlock()
	}()
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.runner.Run(ctx) // returns nil when ctx is done
		}()
		if e.src != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.rebuildIfSchemaChanged(ctx, e)
			}()
		}
	}
	wg.Wait()
	r.wg.Wait()
	return nil
}

// rebuildIfSchemaChanged starts a rebuild of e when its active version was
// built for another schema than the code's (see SchemaHash); its projector
// waits for that rebuild instead of writing to tables of the wrong shape.
func (r *Runner) rebuildIfSchemaChanged(ctx context.Context, e *entry) {
	pause := 100 * time.Millisecond
	for {
		err := Install(ctx, r.owner, e.proj)
		if err == nil {
			var reg registryRow
			if reg, err = readRegistry(ctx, r.db, e.proj.Name()); err == nil {
				if reg.schemaHash == "" || reg.schemaHash == SchemaHash(e.proj) {
					return
				}
				r.log.Info("projection schema changed; rebuilding it", "projection", e.proj.Name())
				if err := r.StartRebuild(e.proj.Name()); err != nil && !errors.Is(err, ErrRebuildRunning) {
					r.log.Error("could not start the rebuild of a changed projection", "projection", e.proj.Name(), "error", err)
				}
				return
			}
		}
		if backoff.Sleep(ctx, pause) != nil {
			return
		}
		pause = min(2*pause, 10*time.Second)
	}
}

// Stats reports every projection's progress, in the order they were added.
func (r *Runner) Stats() []Stats {
	r.mu.Lock()
	entries := append([]*entry(nil), r.entries...)
	r.mu.Unlock()
	out := make([]Stats, 0, len(entries))
	for _, e := range entries {
		s := e.runner.Stats()
		r.mu.Lock()
		if e.rebuild != nil {
			p := *e.rebuild
			s.Rebuild = &p
			s.Status = StatusRebuilding
		}
		r.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// StartRebuild starts rebuilding projection name in the background and
// returns at once. It fails with domain.ErrNotFound for an unknown name,
// with an error wrapping domain.ErrIllegalState when a rebuild of it is
// already running here or when it is fed by JetStream, and when Run is not
// running. A rebuild that another process runs is detected by the rebuild
// itself, which then fails and is logged.
func (r *Runner) StartRebuild(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byName[name]
	switch {
	case !ok:
		return fmt.Errorf("projection %q: %w", name, domain.ErrNotFound)
	case r.runCtx == nil || r.finished || r.runCtx.Err() != nil:
		return errors.New("projection runner is not running")
	case e.src == nil:
		return fmt.Errorf("projection %s is fed by JetStream and cannot be replayed from the store: %w", name, domain.ErrIllegalState)
	case e.rebuild != nil:
		return ErrRebuildRunning
	}
	e.rebuild = &Progress{Phase: "starting"}
	ctx := r.runCtx
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		start := time.Now()
		err := Rebuild(ctx, r.owner, e.src, e.proj, func(p Progress) {
			r.mu.Lock()
			e.rebuild = &p
			r.mu.Unlock()
		})
		r.mu.Lock()
		e.rebuild = nil
		e.lastErr = err
		r.mu.Unlock()
		if err != nil {
			r.log.Error("projection rebuild failed; the old version keeps serving", "projection", name, "error", err)
			return
		}
		r.log.Info("projection rebuilt and swapped in", "projection", name, "duration", time.Since(start))
	}()
	return nil
}

// LastRebuildError returns the error of the last rebuild of name started
// by this runner (nil after a success or before any).
func (r *Runner) LastRebuildError(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byName[name]; ok {
		return e.lastErr
	}
	return nil
}
