package commands

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// This file lets a state restored from a snapshot that leaves facts out
// learn the ones a batch's decisions need, from the store, before they
// decide. The Stock's snapshot holds no settled orders (a hot sku's were a
// megabyte read at every load): a reservation for an order the Stock
// neither holds nor knows settled asks the store whether it settled before
// the snapshot. See
// docs/adr/0159-settled-orders-looked-up-instead-of-snapshotted.md.

// SettledOrderStore answers which orders settled on a stock stream before
// a version. A SnapshotStore (or EventStore) that does not implement it
// cannot restore a Stock from a snapshot: such stocks load from their
// first event, as without snapshots.
type SettledOrderStore interface {
	// SettledOrders returns those of orderIDs, as spelled in the events,
	// whose reservation was released or consumed on stream at a version
	// up to upTo.
	SettledOrders(ctx context.Context, stream string, orderIDs []string, upTo int64) ([]string, error)
}

// learner is a state whose snapshot leaves facts out. The writer tells it
// the snapshot's version when it restores it, and, before a batch decides
// on it, asks it which of the calls' keys it must learn about, looks them
// up in the store at versions up to the snapshot's and tells it what it
// found. Facts after the snapshot come with the events, as always.
type learner interface {
	// RestoredAt records that the state was restored from a snapshot at
	// version.
	RestoredAt(version int64)
	// MustLearn returns those of keys the state cannot decide on without
	// the facts before the snapshot; nil when it holds them all.
	MustLearn(keys []string) []string
	// Learn records the keys the store found.
	Learn(found []string)
}

// isLearner reports whether the states of type S leave facts out of their
// snapshots.
func isLearner[S any, P state[S]]() bool {
	_, ok := any(P(new(S))).(learner)
	return ok
}

// executeKeyed is execute for a decision that depends on facts about keys
// (the order a reservation is for): a state restored from a snapshot
// learns them before the batch decides.
func executeKeyed[S any, P state[S]](ctx context.Context, x *executor, m Meta, stream string, keys []string, decide func(P) ([]any, error), watch ...string) (outcome, error) {
	id, err := uuid.Parse(m.CommandID)
	if err != nil {
		return execute(ctx, x, m, stream, decide, watch...)
	}
	return x.submit(ctx, stream, &call{
		m:      m,
		id:     id,
		watch:  watch,
		keys:   keys,
		decide: func(a aggregate) ([]any, error) { return decide(a.(P)) },
		fresh:  func() aggregate { return P(new(S)) },
		clone:  func(a aggregate) aggregate { return P(a.(P).Clone()) },
		codec:  codecOf[S](),
	})
}

// learn makes e's state, restored from a snapshot at e.base, learn what
// the calls' decisions need from before the snapshot: one query for the
// whole batch, none when the state needs nothing. Exactness: the query
// reads the stream at versions up to e.base, exactly the history the
// snapshot left out; the events after it are in the state already, and
// the append that follows is conditional on the state's version, so
// nothing can settle unseen between the query and the append.
func (s *snapshots) learn(ctx context.Context, e *entry, calls []*call) error {
	l, ok := e.state.(learner)
	if !ok {
		return nil
	}
	var keys []string
	for _, c := range calls {
		keys = append(keys, c.keys...)
	}
	ask := l.MustLearn(keys)
	if len(ask) == 0 {
		return nil
	}
	slices.Sort(ask)
	ask = slices.Compact(ask)
	found, err := s.settled.SettledOrders(ctx, e.stream, ask, e.base)
	if err != nil {
		return fmt.Errorf("look up settled orders in %s: %w", e.stream, err)
	}
	l.Learn(found)
	return nil
}
