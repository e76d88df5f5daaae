package coordinator

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/orderflow/orderflow/sagas"
)

// entry is a saga's state and the version of its stream it reflects, and
// the trace context of the decision that last appended to it: a deadline
// fired later continues that trace.
type entry struct {
	st                      *sagas.State
	version                 int64
	traceParent, traceState string
}

// stateCache keeps the states of the most recently decided sagas, so that
// a decision need not read the saga's whole stream. A state is taken out
// while a decision works on it and put back after, so it is never shared.
type stateCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cached, most recent first
	byID  map[string]*list.Element
}

// cached is a kept state and the saga it is of.
type cached struct {
	id string
	entry
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, order: list.New(), byID: make(map[string]*list.Element)}
}

// take removes and returns the state kept for id.
func (c *stateCache) take(id string) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return entry{}, false
	}
	c.order.Remove(el)
	delete(c.byID, id)
	return el.Value.(*cached).entry, true
}

// put keeps e for id, evicting the least recently used state when full.
func (c *stateCache) put(id string, e entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		el.Value.(*cached).entry = e
		c.order.MoveToFront(el)
	} else {
		c.byID[id] = c.order.PushFront(&cached{id: id, entry: e})
	}
	for c.order.Len() > c.max {
		old := c.order.Remove(c.order.Back()).(*cached)
		delete(c.byID, old.id)
	}
}

// trace returns the trace context kept with id's state, leaving the state
// where it is.
func (c *stateCache) trace(id string) (parent, state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		e := el.Value.(*cached).entry
		return e.traceParent, e.traceState
	}
	return "", ""
}

func (c *stateCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// Stats counts what a coordinator did since it was created. Its fields
// are read with Snapshot.
type Stats struct {
	decisions   atomic.Uint64
	appended    atomic.Uint64
	conflicts   atomic.Uint64
	started     atomic.Uint64
	commands    atomic.Uint64
	completed   atomic.Uint64
	compensated atomic.Uint64
	failed      atomic.Uint64
	retried     atomic.Uint64
	deadlines   atomic.Uint64
	received    atomic.Uint64
	ignored     atomic.Uint64
	notStarted  atomic.Uint64
	dropped     atomic.Uint64
	parked      atomic.Uint64
	redelivered atomic.Uint64
	leaseHeld   atomic.Bool
}

// StatsSnapshot is the value of a coordinator's Stats at one moment.
type StatsSnapshot struct {
	// Decisions counts the decisions that appended events, Appended the
	// events, Conflicts the appends lost to another replica (each decided
	// again).
	Decisions, Appended, Conflicts uint64
	// Started, Commands, Completed, Compensated and Failed count the
	// SagaStarted, CommandIssued, SagaCompleted, SagaCompensated and
	// SagaFailed events appended; Retried the operators' retries.
	Started, Commands, Completed, Compensated, Failed, Retried uint64
	// Deadlines counts the passed deadlines decided on.
	Deadlines uint64
	// Received counts the events delivered by JetStream (redeliveries
	// included); Ignored those that named no saga; NotStarted the
	// deliveries of events whose saga had not started (asked for again),
	// Dropped those given up on; Parked the events that can never be
	// decided on; Redelivered the deliveries asked for again after a
	// failure.
	Received, Ignored, NotStarted, Dropped, Parked, Redelivered uint64
	// LeaseHeld is true while this replica fires the deadlines.
	LeaseHeld bool
	// CachedSagas is the number of saga states kept in memory.
	CachedSagas int
}

// Stats returns the coordinator's counts.
func (c *Coordinator) Stats() StatsSnapshot {
	s := &c.stats
	return StatsSnapshot{
		Decisions: s.decisions.Load(), Appended: s.appended.Load(), Conflicts: s.conflicts.Load(),
		Started: s.started.Load(), Commands: s.commands.Load(), Completed: s.completed.Load(),
		Compensated: s.compensated.Load(), Failed: s.failed.Load(), Retried: s.retried.Load(),
		Deadlines: s.deadlines.Load(), Received: s.received.Load(), Ignored: s.ignored.Load(),
		NotStarted: s.notStarted.Load(), Dropped: s.dropped.Load(), Parked: s.parked.Load(),
		Redelivered: s.redelivered.Load(), LeaseHeld: s.leaseHeld.Load(), CachedSagas: c.cache.len(),
	}
}
