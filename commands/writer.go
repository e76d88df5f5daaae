package commands

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
)

// This file is the single writer per stream: the commands on one stream
// within one executor queue up and one goroutine runs them, in batches, on
// the state it keeps from the previous batch. See
// docs/adr/0013-single-writer-per-stream.md.

// aggregate is the state of an aggregate, rebuilt by applying its events.
type aggregate interface {
	Apply(event any)
}

// state is the constraint on the aggregates the handlers run commands on:
// a pointer to S that applies events and copies itself.
type state[S any] interface {
	*S
	aggregate
	Clone() *S
}

// verdict is what a command's decision came to in one attempt of a batch.
type verdict int

const (
	undecided verdict = iota
	// duplicate: the stream already holds events of the command.
	duplicate
	// refused: the decision failed; call.err says why.
	refused
	// unchanged: the decision raised no events.
	unchanged
	// appending: the decision's events are in the batch's append.
	appending
	// panicked: the decision panicked; call.panicked holds the value.
	panicked
)

// call is one command waiting for its stream's writer.
type call struct {
	ctx   context.Context
	m     Meta
	id    uuid.UUID
	watch []string
	// keys name what the decision depends on beyond the state's events
	// since its snapshot (the order a reservation is for); see learn.go.
	keys   []string
	decide func(aggregate) ([]any, error)
	fresh  func() aggregate
	clone  func(aggregate) aggregate
	codec  *codec // nil for a state without snapshots

	// Set by the writer.
	deadline time.Time // end of the retry budget, from the first attempt
	verdict  verdict
	out      outcome
	err      error
	panicked any
	answered bool
	done     chan struct{}
}

// writerPanic carries a panic of a stream's writer (in a decision or in
// the store), with the writer's stack, to the caller's goroutine, where it
// is raised again.
type writerPanic struct {
	value any
	stack []byte
}

func (p writerPanic) String() string {
	return fmt.Sprintf("%v\n\nwriter goroutine:\n%s", p.value, p.stack)
}

// entry is one stream's writer and cached state.
type entry struct {
	stream string

	// Guarded by executor.mu.
	queue   []*call
	running bool
	idle    *list.Element // place in executor.lru while idle
	weight  int           // ids counted in executor.idleIDs while idle

	// Owned by the goroutine running the entry; handed over through
	// executor.mu when running changes.
	state   aggregate // nil until the first command
	version int64
	seen    map[uuid.UUID]struct{} // causation ids of the stream's events
	behind  bool                   // state must catch up before deciding
	// base is the version of the snapshot the state was loaded from (0
	// when read from the first event): seen lacks the ids of the events
	// up to it, which snapshots.lookBack finds when asked.
	base int64
}

// executor runs commands against one store.
type executor struct {
	store      EventStore
	budget     time.Duration
	maxStreams int
	maxIDs     int
	stats      *Stats
	hook       Hook
	snaps      *snapshots // nil without snapshots

	mu      sync.Mutex
	streams map[string]*entry
	lru     list.List // idle entries, most recently used first
	idleIDs int
}

func newExecutor(store EventStore, cfg Config) *executor {
	if store == nil {
		panic("commands: nil EventStore")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	return &executor{
		store:      store,
		budget:     cfg.RetryBudget,
		maxStreams: cfg.CacheStreams,
		maxIDs:     cfg.CacheIDs,
		stats:      cfg.Stats,
		hook:       cfg.Hook,
		snaps:      newSnapshots(store, cfg),
		streams:    make(map[string]*entry),
	}
}

// submit queues c on stream, starts the stream's writer unless it runs,
// and waits for c's answer or for ctx to end. When ctx ends first the
// command may still be applied, as an append in flight may still commit;
// repeating it with the same id is safe.
func (x *executor) submit(ctx context.Context, stream string, c *call) (outcome, error) {
	if err := ctx.Err(); err != nil {
		return outcome{}, err
	}
	c.ctx = ctx
	c.done = make(chan struct{})
	x.stats.queued.Add(1)
	x.mu.Lock()
	e := x.streams[stream]
	if e == nil {
		e = &entry{stream: stream}
		x.streams[stream] = e
		x.stats.cached.Add(1)
	}
	if e.idle != nil {
		x.lru.Remove(e.idle)
		e.idle = nil
		x.idleIDs -= e.weight
	}
	e.queue = append(e.queue, c)
	start := !e.running
	e.running = true
	x.mu.Unlock()
	if start {
		go x.run(e)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		select {
		case <-c.done: // answered just as ctx ended: the answer is final
		default:
			return outcome{}, ctx.Err()
		}
	}
	if c.panicked != nil {
		panic(c.panicked)
	}
	return c.out, c.err
}

// run is the writer of e: it runs the queued commands in batches until the
// queue is empty, then leaves e idle in the cache. A batch's answers are
// given after e is parked, so that a caller that got its answer finds the
// cache as the batch left it.
func (x *executor) run(e *entry) {
	for batch := x.take(e); len(batch) > 0; {
		finished := x.runBatch(e, batch)
		batch = x.take(e)
		x.answerAll(finished)
	}
}

// take returns the commands queued on e; when there are none, it marks e
// idle, to be reused or evicted.
func (x *executor) take(e *entry) []*call {
	x.mu.Lock()
	defer x.mu.Unlock()
	batch := e.queue
	e.queue = nil
	if len(batch) == 0 {
		e.running = false
		x.park(e)
	}
	return batch
}

// park puts an idle entry at the front of the cache and evicts the least
// recently used idle entries beyond the bounds. x.mu is held.
func (x *executor) park(e *entry) {
	e.weight = len(e.seen)
	e.idle = x.lru.PushFront(e)
	x.idleIDs += e.weight
	for x.lru.Len() > x.maxStreams || (x.idleIDs > x.maxIDs && x.lru.Len() > 0) {
		old := x.lru.Remove(x.lru.Back()).(*entry)
		old.idle = nil
		x.idleIDs -= old.weight
		delete(x.streams, old.stream)
		x.stats.cached.Add(-1)
	}
}

// attempt is the plan of one try at a batch: the events to append and the
// state they lead to.
type attempt struct {
	envs []domain.Envelope
	// work is the state the batch was decided on, as far as it has been
	// applied; it is e.state itself until the first event must be
	// applied before a later decision, then a clone.
	work      aggregate
	cloned    bool
	unapplied []any
	// tainted is set when a decision panicked: the state is read afresh
	// after the batch.
	tainted bool
}

// runBatch runs the commands taken from the queue together: it decides each
// in turn on the state evolving with the events of the ones before, appends
// every resulting event at the cached version in one append, and answers
// each command. On a version conflict (another process appended) it waits,
// reads the new events, takes in the commands queued meanwhile and tries
// again, until each command's retry budget is spent. It returns the calls
// still to be answered (the others were answered on the way).
func (x *executor) runBatch(e *entry, calls []*call) (finished []*call) {
	w := newWaiters(calls[0].ctx)
	defer func() { w.stop() }()
	ctx := w.ctx
	join := func(cs []*call) {
		now := time.Now()
		for _, c := range cs {
			c.deadline = now.Add(x.budget)
			w.add(c)
		}
	}
	join(calls)
	defer func() {
		if p := recover(); p != nil {
			// The state may be half changed: start again from the store.
			e.state, e.seen, e.version, e.base = nil, nil, 0, 0
			finished = nil
			for _, c := range calls {
				if !c.answered {
					c.panicked = writerPanic{p, debug.Stack()}
					finished = append(finished, c)
				}
			}
		}
	}()

	fresh := false // e.state was read from the store in this batch
	conflicts := 0
	// The ids whose look-back came with the snapshot, in this batch.
	var asked map[uuid.UUID]struct{}
	for {
		calls = x.dropGone(calls)
		if len(calls) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			// Every caller of the batch so far gave up just as the
			// remaining ones joined: give those a context of their own.
			w.stop()
			w = newWaiters(calls[0].ctx)
			for _, c := range calls {
				w.add(c)
			}
			ctx = w.ctx
		}
		if e.state == nil {
			e.state, e.seen, e.version, e.base, e.behind = calls[0].fresh(), make(map[uuid.UUID]struct{}), 0, 0, true
			asked = x.snaps.restore(ctx, e, calls[0].codec, calls)
		}
		if e.behind {
			if _, err := x.catchUp(ctx, e); err != nil {
				return x.fail(calls, err)
			}
			fresh = true
		}
		if e.base > 0 {
			if err := x.snaps.lookBack(ctx, e, calls, asked); err != nil {
				return x.fail(calls, err)
			}
			if err := x.snaps.learn(ctx, e, calls); err != nil {
				return x.fail(calls, err)
			}
		}
		a := x.decideAll(e, calls)
		if a.tainted {
			defer func() { e.state = nil }()
		}
		if len(a.envs) == 0 {
			// Nothing to append, so no append can prove that the state
			// the refusals and no-ops rest on is current: a read must,
			// unless the state was read in this batch. Another process
			// may have restocked the sku this batch refused to reserve.
			// Duplicates are certain: stored events never go away.
			if !fresh && slices.ContainsFunc(calls, func(c *call) bool { return c.verdict == refused || c.verdict == unchanged }) {
				n, err := x.catchUp(ctx, e)
				if err != nil {
					return x.fail(calls, err)
				}
				fresh = true
				if n > 0 {
					continue
				}
			}
			return calls
		}
		res, err := x.store.Append(ctx, e.stream, domain.ExactVersion(e.version), a.envs)
		if err == nil {
			x.commit(e, calls, a, res)
			return calls
		}
		isConflict := errors.Is(err, domain.ErrVersionConflict)
		if !isConflict && !errors.Is(err, domain.ErrDuplicateEventID) {
			return x.fail(calls, fmt.Errorf("append %s: %w", e.stream, err))
		}
		// Another process appended since the state was read (a duplicate
		// event id means it stored one of these very commands).
		x.stats.conflicts.Add(1)
		conflicts++
		calls = x.expire(e.stream, calls, conflicts, err)
		if len(calls) == 0 {
			return nil
		}
		if err := backoff.Sleep(ctx, x.pause(calls, conflicts)); err != nil {
			return x.fail(calls, err)
		}
		n, rerr := x.catchUp(ctx, e)
		if rerr != nil {
			return x.fail(calls, rerr)
		}
		if n == 0 && !isConflict {
			// The ids are stored but not after the cached version: no
			// retry can help.
			return x.fail(calls, fmt.Errorf("append %s: %w", e.stream, err))
		}
		fresh = true
		x.stats.retries.Add(1)
		more := x.takeQueued(e)
		join(more)
		calls = append(calls, more...)
	}
}

// takeQueued returns the commands queued on e while it runs.
func (x *executor) takeQueued(e *entry) []*call {
	x.mu.Lock()
	defer x.mu.Unlock()
	q := e.queue
	e.queue = nil
	return q
}

// decideAll decides every call in turn, each on the state left by the
// events of the ones before, and collects their events. The cached state
// is not changed: events are applied to a clone, made only when a later
// decision needs them.
func (x *executor) decideAll(e *entry, calls []*call) attempt {
	a := attempt{work: e.state}
	pending := make(map[uuid.UUID]struct{})
	seen := func(id uuid.UUID) bool {
		_, ok := e.seen[id]
		if !ok {
			_, ok = pending[id]
		}
		return ok
	}
	for _, c := range calls {
		c.verdict, c.err, c.panicked = undecided, nil, nil
		c.out = outcome{Result: Result{Stream: e.stream, Version: e.version + int64(len(a.envs))}}
		for _, w := range c.watch {
			if id, err := uuid.Parse(w); err == nil && seen(id) {
				if c.out.seen == nil {
					c.out.seen = make(map[string]bool)
				}
				c.out.seen[w] = true
			}
		}
		if seen(c.id) {
			c.verdict, c.out.Duplicate = duplicate, true
			continue
		}
		if len(a.unapplied) > 0 {
			if !a.cloned {
				a.work, a.cloned = c.clone(a.work), true
			}
			for _, ev := range a.unapplied {
				a.work.Apply(ev)
			}
			a.unapplied = nil
		}
		evs, err := decideSafely(c, a.work)
		switch {
		case c.panicked != nil:
			c.verdict = panicked
			// A decision that panicked may have changed the state it
			// was given, maybe the cached one.
			a.tainted = true
			continue
		case err != nil:
			c.verdict, c.err = refused, decisionError(e.stream, err)
			continue
		case len(evs) == 0:
			c.verdict = unchanged
			continue
		}
		envs, err := envelopes(c.m, e.stream, evs)
		if err != nil {
			c.verdict, c.err = refused, err
			continue
		}
		c.verdict = appending
		c.out.types = make([]string, len(envs))
		for i, env := range envs {
			c.out.types[i] = env.Type
		}
		a.envs = append(a.envs, envs...)
		a.unapplied = append(a.unapplied, evs...)
		pending[c.id] = struct{}{}
		c.out.Version = e.version + int64(len(a.envs))
	}
	return a
}

// decideSafely runs c's decision, turning a panic into c.panicked so that
// one faulty command cannot take the others of its batch down.
func decideSafely(c *call, st aggregate) (evs []any, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.panicked = writerPanic{p, debug.Stack()}
		}
	}()
	return c.decide(st)
}

// commit records a successful append in the cache and in the calls.
func (x *executor) commit(e *entry, calls []*call, a attempt, res domain.AppendResult) {
	for _, ev := range a.unapplied {
		a.work.Apply(ev)
	}
	e.state = a.work
	from := e.version
	e.version += int64(len(a.envs))
	if res.NextVersion != e.version {
		// The store disagrees about where the events went; trust it
		// rather than the cache.
		e.state = nil
	} else if !a.tainted && x.snaps.due(from, e.version) {
		// A decision that panicked may have changed the state: no
		// snapshot of it.
		x.snaps.take(e.stream, e.version, e.state, calls[0].codec)
	}
	n := 0
	for _, c := range calls {
		if c.verdict == appending {
			c.out.appended = true
			e.seen[c.id] = struct{}{}
			n++
		}
	}
	x.stats.appends.Add(1)
	x.stats.appended.Add(uint64(n))
}

// expire answers, with a version conflict, the calls whose retry budget is
// spent, and returns the others.
func (x *executor) expire(stream string, calls []*call, conflicts int, err error) []*call {
	now := time.Now()
	keep := calls[:0]
	for _, c := range calls {
		if now.Before(c.deadline) {
			keep = append(keep, c)
			continue
		}
		c.out = outcome{}
		c.err = fmt.Errorf("append %s: still conflicting when its retry budget of %s was spent (%d conflicts in this batch): %w",
			stream, x.budget, conflicts, err)
		x.stats.surfaced.Add(1)
		x.answer(c)
	}
	return keep
}

// pause is the wait before the next attempt: exponential in the conflicts
// so far, with jitter so that writers that collided do not collide again
// in step, and no longer than the longest remaining budget.
func (x *executor) pause(calls []*call, conflicts int) time.Duration {
	d := conflictBackoff.Jittered(conflicts)
	var last time.Time
	for _, c := range calls {
		if c.deadline.After(last) {
			last = c.deadline
		}
	}
	return max(0, min(d, time.Until(last)))
}

// dropGone answers the calls whose caller gave up and returns the others,
// so that no command is decided after its caller stopped waiting.
func (x *executor) dropGone(calls []*call) []*call {
	keep := calls[:0]
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.out, c.err = outcome{}, err
			x.answer(c)
			continue
		}
		keep = append(keep, c)
	}
	return keep
}

// fail sets err as the answer of every call but the duplicates, which are
// certain whatever the store says now, and returns the calls.
func (x *executor) fail(calls []*call, err error) []*call {
	for _, c := range calls {
		if c.verdict == duplicate || c.verdict == panicked {
			continue
		}
		c.out, c.err = outcome{}, err
	}
	return calls
}

func (x *executor) answerAll(calls []*call) {
	for _, c := range calls {
		x.answer(c)
	}
}

func (x *executor) answer(c *call) {
	if c.answered {
		return
	}
	c.answered = true
	x.stats.queued.Add(-1)
	close(c.done)
}

// catchUp applies to e.state the events of the stream after e.version and
// remembers their causation ids; it returns how many there were. After an
// error the state stays consistent with e.version, and e.behind makes the
// next batch read again first.
func (x *executor) catchUp(ctx context.Context, e *entry) (int, error) {
	e.behind = true
	version, n, err := readInto(ctx, x.store, e.stream, e.state, e.version, func(ev domain.Envelope) {
		if id, err := uuid.Parse(ev.Metadata.CausationID); err == nil {
			e.seen[id] = struct{}{}
		}
	})
	e.version = version
	if err == nil {
		e.behind = false
	}
	return n, err
}

// readInto applies to st the events of stream after version, which st
// already reflects, calling visit with each, and returns the stream's new
// version and how many events it applied. On an error the version returned
// is that of the last event applied.
func readInto(ctx context.Context, store EventStore, stream string, st aggregate, version int64, visit func(domain.Envelope)) (int64, int, error) {
	n := 0
	for {
		page, err := store.ReadStream(ctx, stream, version+1, readPage)
		if err != nil {
			return version, n, fmt.Errorf("read %s: %w", stream, err)
		}
		for _, ev := range page {
			if ev.Version != version+1 {
				return version, n, fmt.Errorf("read %s: got version %d after %d", stream, ev.Version, version)
			}
			payload, err := registry.Decode(ev)
			if err != nil {
				return version, n, fmt.Errorf("read %s: %w", stream, err)
			}
			st.Apply(payload)
			version = ev.Version
			n++
			if visit != nil {
				visit(ev)
			}
		}
		if len(page) < readPage {
			return version, n, nil
		}
	}
}

// waiters gives a batch a context that lives as long as one of its callers
// waits: no single caller's cancellation stops the others' commands, and a
// store call stuck after everyone gave up is abandoned.
type waiters struct {
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	live   int
	stops  []func() bool
}

func newWaiters(base context.Context) *waiters {
	ctx, cancel := context.WithCancel(context.WithoutCancel(base))
	return &waiters{ctx: ctx, cancel: cancel}
}

func (w *waiters) add(c *call) {
	w.mu.Lock()
	w.live++
	w.mu.Unlock()
	w.stops = append(w.stops, context.AfterFunc(c.ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.live--; w.live == 0 {
			w.cancel()
		}
	}))
}

func (w *waiters) stop() {
	for _, s := range w.stops {
		s()
	}
	w.cancel()
}
