// Package coordinator runs the saga engine (package sagas) against the
// world: it is the sagas service's runtime. It
//
//   - consumes, with one durable JetStream consumer shared by every
//     replica, the events the registered definitions react to (the
//     events that start a saga, the replies to its commands, the events
//     that call it off or let a waiting step run), finds the saga each
//     names (by the start trigger, else by the event's correlation id,
//     which is the saga id), lets the engine decide, and appends the
//     decision to the saga's stream with the expected version before it
//     acknowledges the event; a conflict with another replica reloads the
//     saga and decides again;
//   - fires deadlines: one replica at a time (a lease, a PostgreSQL
//     advisory lock held on a connection of its own) reads the sagas whose
//     deadline has passed from the saga read model (projections/sagaview,
//     derived from the saga streams) and lets the engine decide what the
//     passed deadline means;
//   - resumes a failed saga when an operator asks (Retry) and reads a
//     saga's state for inspection (Load).
//
// A decision's commands reach their receivers through the sagas service's
// relay, which publishes the CommandIssued events of the saga streams on
// commands.<context>.<name>: the event store is the outbox, so a process
// killed after an append and before anything else still has its decision
// carried out. Every saga event carries the saga id as correlation id and
// the id of the event that caused it as causation id. See
// docs/adr/0105-coordinator-runtime.md.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

// Store is the part of the event store the coordinator uses: the saga
// streams live in the sagas service's own store.
type Store interface {
	Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (domain.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error)
}

// ErrInvalidConfig is wrapped by Config.Validate errors.
var ErrInvalidConfig = errors.New("coordinator: invalid config")

// Defaults of Config.
const (
	DefaultDurable                = "sagas-coordinator"
	DefaultConcurrency            = 32
	DefaultAckWait                = 5 * time.Second
	DefaultPollInterval           = time.Second
	DefaultDeadlineBatch          = 256
	DefaultNotStartedRedeliveries = 30
	DefaultMaxDeliver             = 10
	DefaultStandbyPoll            = time.Second
	DefaultCacheSize              = 10_000

	// maxConflicts bounds the decisions taken again after losing a race
	// with another replica on one event; past it the event is redelivered.
	maxConflicts = 20
	// stripes is the number of locks that serialise the decisions on one
	// saga inside a process.
	stripes = 1024
)

// Config tunes a Coordinator. The zero value gives the defaults.
type Config struct {
	// Timing is the timeouts and retry budgets the default definitions
	// are built with; zero means sagas.DefaultTiming(). Tests shorten it.
	Timing sagas.Timing
	// Definitions replaces the catalogue of saga definitions; nil means
	// sagas.DefaultDefinitions(Timing).
	Definitions *sagas.Definitions
	// Durable names the JetStream consumer the replicas share; default
	// "sagas-coordinator".
	Durable string
	// Concurrency is how many events are decided at once in this replica
	// (decisions on one saga take turns); default 32.
	Concurrency int
	// AckWait is how long JetStream waits for an event's ack before it
	// delivers it again, to any replica; default 5s. It is what a killed
	// replica's fetched events wait before a survivor decides them, so it
	// is short: a decision takes milliseconds, and a redelivered event
	// decides nothing twice.
	AckWait time.Duration
	// PollInterval bounds the wait between two looks for passed deadlines;
	// default 1s. A deadline this replica set is also looked for when it
	// passes.
	PollInterval time.Duration
	// DeadlineBatch caps the sagas woken up by one look; default 256.
	DeadlineBatch int
	// NotStartedRedeliveries is how often an outside event (a customer's
	// cancel, a dispatch) naming a saga that has not started is delivered
	// before it is dropped: it may be decided on before the event that
	// starts its saga; default 30, about two minutes.
	NotStartedRedeliveries int
	// MaxDeliver is how often an event whose decision fails for an
	// unexpected reason (neither a dependency that is down nor a conflict)
	// is delivered before it is parked; default 10.
	MaxDeliver int
	// StandbyPoll is how often a replica without the deadline lease tries
	// to take it; default 1s.
	StandbyPoll time.Duration
	// CacheSize bounds the saga states kept in memory between decisions;
	// default 10,000.
	CacheSize int
	// Topology is what the coordinator passes to natsbus.EnsureTopology
	// before it consumes (the streams' replicas); it must agree with
	// that of the relays (ADR 0147). Zero is the single-server default.
	Topology natsbus.TopologyConfig
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Durable != "" && !natsbus.ValidSource(c.Durable) {
		errs = append(errs, fmt.Errorf("durable name %q is not a subject token", c.Durable))
	}
	if c.Concurrency < 0 || c.DeadlineBatch < 0 || c.NotStartedRedeliveries < 0 || c.MaxDeliver < 0 || c.CacheSize < 0 {
		errs = append(errs, errors.New("negative count"))
	}
	if c.AckWait < 0 || c.PollInterval < 0 || c.StandbyPoll < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	if c.Timing.Timeout < 0 {
		errs = append(errs, errors.New("negative saga timeout"))
	}
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Definitions == nil && c.Timing.Timeout > 0 {
		// The definitions check their timing when they are registered.
		if err := checkTiming(c.Timing); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// checkTiming registers the default definitions with t, which fails when
// t cannot be used.
func checkTiming(t sagas.Timing) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("saga timing: %v", r)
		}
	}()
	sagas.DefaultDefinitions(t)
	return nil
}

func (c Config) withDefaults() Config {
	if c.Timing.Timeout == 0 {
		c.Timing = sagas.DefaultTiming()
	}
	if c.Definitions == nil {
		c.Definitions = sagas.DefaultDefinitions(c.Timing)
	}
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.DeadlineBatch == 0 {
		c.DeadlineBatch = DefaultDeadlineBatch
	}
	if c.NotStartedRedeliveries == 0 {
		c.NotStartedRedeliveries = DefaultNotStartedRedeliveries
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.StandbyPoll == 0 {
		c.StandbyPoll = DefaultStandbyPoll
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Coordinator decides for the sagas of one store. It is safe for
// concurrent use; Run runs its consumer and its deadline poller.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	store Store
	pool  *pgxpool.Pool
	defs  *sagas.Definitions
	reg   *domain.Registry
	// outside holds the types of the events that may name a saga before
	// it has started (see outsideEvents).
	outside map[string]bool

	locks [stripes]sync.Mutex
	cache *stateCache

	stats   Stats
	steps   stepMetrics // see metrics.go
	running atomic.Bool

	// wake carries a signal when a decision set a deadline earlier than
	// the poller's next look (see wakeAt).
	wake     chan struct{}
	wakeMu   sync.Mutex
	nextWake time.Time
}

// New returns a coordinator of the sagas in store; pool is the sagas
// service's database, where the saga read model (sagaview) is.
func New(store Store, pool *pgxpool.Pool, cfg Config) (*Coordinator, error) {
	if store == nil || pool == nil {
		return nil, fmt.Errorf("%w: nil store or pool", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Coordinator{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "coordinator"),
		store:   store,
		pool:    pool,
		defs:    cfg.Definitions,
		outside: outsideEvents(cfg.Definitions),
		reg:     sagas.NewRegistry(),
		cache:   newStateCache(cfg.CacheSize),
		wake:    make(chan struct{}, 1),
	}, nil
}

// Definitions returns the catalogue the coordinator runs.
func (c *Coordinator) Definitions() *sagas.Definitions { return c.defs }

// Load reads saga sagaID from its stream (not from memory, so that what
// an operator sees is what is stored) and returns its state and the
// stream's version. A saga without events is domain.ErrNotFound.
func (c *Coordinator) Load(ctx context.Context, sagaID string) (*sagas.State, int64, error) {
	if !domain.ValidUUID(sagaID) {
		return nil, 0, fmt.Errorf("saga %q: %w", sagaID, domain.ErrNotFound)
	}
	st, version, err := c.read(ctx, strings.ToLower(sagaID))
	if err != nil {
		return nil, 0, err
	}
	if !st.Started() {
		return nil, 0, fmt.Errorf("saga %s: %w", sagaID, domain.ErrNotFound)
	}
	return st, version, nil
}

// Meta is what an operator's request adds to the events it causes.
type Meta struct {
	// CommandID is the request's command id, the causation of the events.
	CommandID   string
	RequestID   string
	TraceParent string
	TraceState  string
}

// Retry resumes the failed saga sagaID (sagas.Retry): its parked action is
// sent again with a fresh budget. It returns the saga's status after the
// decision. A saga that does not exist is domain.ErrNotFound; one that is
// not failed is a *domain.Refusal wrapping domain.ErrIllegalState.
func (c *Coordinator) Retry(ctx context.Context, m Meta, sagaID string) (sagas.Status, error) {
	if !domain.ValidUUID(sagaID) {
		return "", fmt.Errorf("saga %q: %w", sagaID, domain.ErrNotFound)
	}
	res, err := c.decide(ctx, strings.ToLower(sagaID), cause{
		id: m.CommandID, requestID: m.RequestID, traceParent: m.TraceParent, traceState: m.TraceState,
	}, func(def *sagas.Definition, st *sagas.State, now time.Time) ([]any, error) {
		if !st.Started() {
			return nil, fmt.Errorf("saga %s: %w", sagaID, domain.ErrNotFound)
		}
		return sagas.Retry(def, st, now)
	})
	if err != nil {
		return "", err
	}
	if res.appended > 0 {
		c.stats.retried.Add(1)
	}
	return res.status, nil
}

// cause is what caused a decision: the event (or request) whose id the
// decided events carry as causation, and its trace context.
type cause struct {
	id          string
	requestID   string
	traceParent string
	traceState  string
}

// result is what a decision left: the saga's status and stream version,
// and how many events it appended.
type result struct {
	status   sagas.Status
	version  int64
	appended int
}

// decideFunc is one decision of the engine on st; def is nil when the
// saga has not started.
type decideFunc func(def *sagas.Definition, st *sagas.State, now time.Time) ([]any, error)

// decide runs fn on saga sagaID and appends what it decides with the
// stream's version as expected version. Decisions on one saga take turns
// inside the process, on the state kept from the last one; another
// replica may have appended since, which an append's conflict reveals (the
// new events are read and the decision is taken again), and so does a
// decision that appends nothing or fails, taken on a kept state: it is
// taken again once on the stream's newest state, so that no reply or
// deadline is ignored for having been judged on a stale state.
func (c *Coordinator) decide(ctx context.Context, sagaID string, why cause, fn decideFunc) (result, error) {
	mu := &c.locks[stripe(sagaID)]
	mu.Lock()
	defer mu.Unlock()
	e, fresh, err := c.current(ctx, sagaID)
	if err != nil {
		return result{}, err
	}
	for attempt := 1; ; attempt++ {
		var def *sagas.Definition
		if e.st.Started() {
			if def, err = c.defs.For(e.st); err != nil {
				return result{}, err
			}
		}
		events, err := fn(def, e.st, time.Now().UTC())
		if err != nil || len(events) == 0 {
			if !fresh {
				grew, cerr := c.catchUp(ctx, sagaID, &e)
				if cerr != nil {
					return result{}, cerr
				}
				fresh = true
				if grew {
					continue
				}
			}
			// The decisions leave the state they are given alone.
			c.keep(sagaID, e)
			return result{status: e.st.Status(), version: e.version}, err
		}
		envs, decoded, err := c.encode(sagaID, events, why)
		if err != nil {
			return result{}, err
		}
		_, err = c.store.Append(ctx, sagas.Stream(sagaID), domain.ExactVersion(e.version), envs)
		if errors.Is(err, domain.ErrVersionConflict) && attempt < maxConflicts && ctx.Err() == nil {
			// Another replica decided first: decide again on what it
			// decided.
			c.stats.conflicts.Add(1)
			if err := backoff.Sleep(ctx, time.Duration(rand.Int64N(int64(attempt)*int64(2*time.Millisecond)))); err != nil {
				return result{}, err
			}
			if _, err := c.catchUp(ctx, sagaID, &e); err != nil {
				return result{}, err
			}
			fresh = true
			continue
		}
		if err != nil {
			// Whether it landed is unknown: the state is read again next
			// time.
			return result{}, fmt.Errorf("saga %s: append %d events: %w", sagaID, len(envs), err)
		}
		crashPoint(CrashAfterAppend) // tests only: see crashpoint.go
		for _, d := range decoded {
			e.st.Apply(d)
		}
		e.version += int64(len(envs))
		if why.traceParent != "" {
			e.traceParent, e.traceState = why.traceParent, why.traceState
		}
		c.keep(sagaID, e)
		c.recorded(sagaID, e.st, events)
		return result{status: e.st.Status(), version: e.version, appended: len(envs)}, nil
	}
}

// current returns the saga's state and stream version, from memory
// (fresh false) or read from the stream (fresh true). It is taken out of
// memory; decide keeps it again once it is what the stream holds.
func (c *Coordinator) current(ctx context.Context, sagaID string) (entry, bool, error) {
	if e, ok := c.cache.take(sagaID); ok {
		return e, false, nil
	}
	st, v, err := c.read(ctx, sagaID)
	if err != nil {
		return entry{}, false, err
	}
	return entry{st: st, version: v}, true, nil
}

// keep remembers e as the saga's state; a saga that has not started is
// not remembered (nothing is known of it).
func (c *Coordinator) keep(sagaID string, e entry) {
	if e.st.Started() {
		c.cache.put(sagaID, e)
	}
}

// catchUp applies the events appended to the saga's stream after e's
// version and reports whether there were any.
func (c *Coordinator) catchUp(ctx context.Context, sagaID string, e *entry) (bool, error) {
	stream := sagas.Stream(sagaID)
	evs, err := c.store.ReadStream(ctx, stream, e.version+1, 0)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", stream, err)
	}
	for _, ev := range evs {
		payload, err := c.reg.Decode(ev)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", stream, err)
		}
		e.st.Apply(payload)
		e.version = ev.Version
	}
	return len(evs) > 0, nil
}

// read folds the saga's stream into a state.
func (c *Coordinator) read(ctx context.Context, sagaID string) (*sagas.State, int64, error) {
	e := entry{st: &sagas.State{}}
	if _, err := c.catchUp(ctx, sagaID, &e); err != nil {
		return nil, 0, err
	}
	return e.st, e.version, nil
}

// encode turns decided events into envelopes for the saga's stream, and
// returns them decoded again: the state in memory is advanced with what a
// reload would read, not with the values the engine built.
func (c *Coordinator) encode(sagaID string, events []any, why cause) ([]domain.Envelope, []any, error) {
	envs := make([]domain.Envelope, len(events))
	decoded := make([]any, len(events))
	for i, ev := range events {
		name, sv, data, err := c.reg.Encode(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("saga %s: %w", sagaID, err)
		}
		envs[i] = domain.Envelope{
			ID: uuid.NewString(), Type: name, SchemaVersion: sv, Data: data,
			Metadata: domain.Metadata{
				CorrelationID: sagaID, CausationID: why.id, RequestID: why.requestID,
				TraceParent: why.traceParent, TraceState: why.traceState,
			},
		}
		if decoded[i], err = c.reg.Decode(envs[i]); err != nil {
			return nil, nil, fmt.Errorf("saga %s: %w", sagaID, err)
		}
	}
	return envs, decoded, nil
}

// recorded counts what a decision did, logs a saga parked for an
// operator, and wakes the deadline poller when the saga's deadline comes
// before the poller's next look.
func (c *Coordinator) recorded(sagaID string, st *sagas.State, events []any) {
	c.stats.decisions.Add(1)
	c.stats.appended.Add(uint64(len(events)))
	for _, ev := range events {
		switch e := ev.(type) {
		case sagas.SagaStarted:
			c.stats.started.Add(1)
		case sagas.CommandIssued:
			c.stats.commands.Add(1)
		case sagas.SagaCompleted:
			c.stats.completed.Add(1)
		case sagas.SagaCompensated:
			c.stats.compensated.Add(1)
		case sagas.SagaFailed:
			c.stats.failed.Add(1)
			name, _ := st.Definition()
			c.log.Error("saga parked as failed: it needs an operator (POST /api/sagas/{id}/retry)",
				"saga_id", sagaID, "saga", name, "order_id", st.OrderID(), "action", e.Step,
				"compensation", e.Compensation, "reason", e.Reason, "detail", e.Detail)
		}
	}
	c.observeSteps(st, events) // the steps it ended: see metrics.go
	if at, ok := st.Deadline(); ok {
		c.wakeAt(at)
	}
}

// wakeAt asks the deadline poller to look again at t if that is earlier
// than it planned.
func (c *Coordinator) wakeAt(t time.Time) {
	c.wakeMu.Lock()
	if !c.nextWake.IsZero() && !t.Before(c.nextWake) {
		c.wakeMu.Unlock()
		return
	}
	c.nextWake = t
	c.wakeMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// stripe maps a saga id to one of the locks.
func stripe(sagaID string) int {
	h := fnv.New32a()
	h.Write([]byte(sagaID))
	return int(h.Sum32() % stripes)
}
