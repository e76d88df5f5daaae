package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// Subscribe implements eventstore.Store with a catch-up subscription to
// $all, filtered on the server by stream prefix. The subscription lives until
// Close, the Store's Close, or the end of ctx; a dropped connection ends it
// with an error and the caller subscribes again from the last position it
// processed.
func (s *Store) Subscribe(ctx context.Context, after uint64, filter eventstore.Filter) (eventstore.Subscription, error) {
	be, err := s.acquire()
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	sub, err := s.subscribe(ctx, be, after, filter)
	s.release()
	if err != nil {
		return nil, fmt.Errorf("subscribe after %d: %w", after, s.fail(ctx, be, err))
	}
	return sub, nil
}

// subscribe runs under the read lock, so Close sees the subscription.
func (s *Store) subscribe(ctx context.Context, be backend, after uint64, filter eventstore.Filter) (*subscription, error) {
	subCtx, cancel := context.WithCancel(ctx)
	f, err := be.subscribeAll(subCtx, allPosition(after), subscriptionFilter(filter))
	if err != nil {
		cancel()
		return nil, err
	}
	sub := &subscription{
		store:  s,
		feed:   f,
		filter: filter,
		last:   after,
		ctx:    subCtx,
		cancel: cancel,
		events: make(chan domain.Envelope, s.cfg.SubscriptionBuffer),
		done:   make(chan struct{}),
	}
	s.subsMu.Lock()
	s.subs[sub] = struct{}{}
	s.subsMu.Unlock()
	go sub.run()
	return sub, nil
}

// subscription pumps the feed into a channel so that Next can honour its
// context: the client's Recv blocks without one. The pump goroutine is owned
// by the subscription and ends when it is closed or its context ends.
type subscription struct {
	store  *Store
	feed   feed
	filter eventstore.Filter
	last   uint64 // position of the last event seen; used by run only

	ctx    context.Context
	cancel context.CancelFunc
	events chan domain.Envelope // closed by run when it ends
	err    error                // why run ended; read after events is closed
	done   chan struct{}        // closed when run has returned
	closed atomic.Bool
	once   sync.Once
}

func (sub *subscription) run() {
	defer close(sub.done)
	defer close(sub.events)
	for {
		ev := sub.feed.Recv()
		switch {
		case ev == nil:
			sub.err = sub.ended(errors.New("empty subscription event"))
			return
		case ev.SubscriptionDropped != nil:
			sub.err = sub.ended(ev.SubscriptionDropped.Error)
			return
		case ev.EventAppeared != nil:
			rec := ev.EventAppeared.OriginalEvent()
			if rec == nil {
				continue
			}
			r := *rec
			if ev.EventAppeared.Commit != nil {
				r.Position.Commit = *ev.EventAppeared.Commit
			}
			pos := positionOf(r)
			if pos <= sub.last {
				// The server may replay the event at the start
				// position; every other event comes in order.
				continue
			}
			sub.last = pos
			if isSystem(r) || !sub.filter.Match(r.StreamID) {
				continue
			}
			select {
			case sub.events <- toEnvelope(r):
			case <-sub.ctx.Done():
				sub.err = sub.ended(sub.ctx.Err())
				return
			}
		}
		// Checkpoints, caught-up and fell-behind notices carry nothing
		// for us.
	}
}

// ended is the error Next reports once the subscription is over.
func (sub *subscription) ended(cause error) error {
	switch {
	case sub.closed.Load():
		return eventstore.ErrClosed
	case sub.ctx.Err() != nil:
		return sub.ctx.Err()
	default:
		return fmt.Errorf("kurrentdb subscription dropped: %w", classify(cause))
	}
}

// Next implements eventstore.Subscription.
func (sub *subscription) Next(ctx context.Context) (domain.Envelope, error) {
	if sub.closed.Load() {
		return domain.Envelope{}, eventstore.ErrClosed
	}
	select {
	case e, ok := <-sub.events:
		if !ok {
			return domain.Envelope{}, sub.err
		}
		return e, nil
	case <-ctx.Done():
		return domain.Envelope{}, ctx.Err()
	}
}

// Close implements eventstore.Subscription. It returns once the pump has
// stopped.
func (sub *subscription) Close() error {
	sub.once.Do(func() {
		sub.closed.Store(true)
		sub.cancel()
		// The client's Close only cancels the stream; it cannot fail.
		_ = sub.feed.Close()
		<-sub.done
		sub.store.subsMu.Lock()
		delete(sub.store.subs, sub)
		sub.store.subsMu.Unlock()
	})
	return nil
}
