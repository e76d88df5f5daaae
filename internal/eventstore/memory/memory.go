// Package memory is an in-process event store for fast tests. It honours the
// full eventstore contract (optimistic concurrency, idempotent re-append,
// global order, low-latency subscriptions) but keeps nothing across restarts.
package memory

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// Store is an in-memory event store. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	all     []domain.Envelope // index i holds position i+1
	streams map[string][]int  // stream -> indexes into all
	ids     map[string]int    // event id -> index into all
	changed chan struct{}     // closed and replaced on every append
	closed  bool
}

// New returns an empty store.
func New() *Store {
	return &Store{
		streams: make(map[string][]int),
		ids:     make(map[string]int),
		changed: make(chan struct{}),
	}
}

var _ eventstore.Store = (*Store)(nil)

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (domain.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return domain.AppendResult{}, err
	}
	if err := eventstore.CheckAppend(stream, expected, events); err != nil {
		return domain.AppendResult{}, err
	}
	// Ids are stored in lower case, as the other adapters do, so that a
	// retry spelling them otherwise is still recognised.
	lower := make([]domain.Envelope, len(events))
	for i, e := range events {
		e.ID = strings.ToLower(e.ID)
		lower[i] = e
	}
	events = lower
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return domain.AppendResult{}, eventstore.ErrClosed
	}
	current := int64(len(s.streams[stream]))
	if res, done, err := eventstore.Replayed(stream, expected, events, s.lookup); err != nil || done {
		if err != nil {
			err = fmt.Errorf("append %s: %w", stream, err)
		}
		return res, err
	}
	if expected != domain.AnyVersion && int64(expected) != current {
		return domain.AppendResult{}, fmt.Errorf("append %s: expected version %d, stream is at %d: %w", stream, expected, current, eventstore.ErrVersionConflict)
	}
	now := time.Now().UTC()
	for i, e := range events {
		e.Stream = stream
		e.Version = current + int64(i) + 1
		e.Position = uint64(len(s.all)) + 1
		e.RecordedAt = now
		e.Data = append([]byte(nil), e.Data...)
		s.ids[e.ID] = len(s.all)
		s.streams[stream] = append(s.streams[stream], len(s.all))
		s.all = append(s.all, e)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	last := s.all[len(s.all)-1]
	return domain.AppendResult{NextVersion: last.Version, Position: last.Position}, nil
}

// lookup reports where an event id is stored.
func (s *Store) lookup(id string) (eventstore.Recorded, bool) {
	i, ok := s.ids[id]
	if !ok {
		return eventstore.Recorded{}, false
	}
	e := s.all[i]
	return eventstore.Recorded{Stream: e.Stream, Version: e.Version, Position: e.Position}, true
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if from < 1 {
		from = 1
	}
	idx := s.streams[stream]
	var out []domain.Envelope
	for v := from; v <= int64(len(idx)) && (max <= 0 || len(out) < max); v++ {
		out = append(out, s.all[idx[v-1]])
	}
	return out, nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after uint64, max int, filter eventstore.Filter) ([]domain.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []domain.Envelope
	for i := after; i < uint64(len(s.all)) && (max <= 0 || len(out) < max); i++ {
		if e := s.all[i]; filter.Match(e.Stream) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return uint64(len(s.all)), ctx.Err()
}

// Subscribe implements eventstore.Store.
func (s *Store) Subscribe(ctx context.Context, after uint64, filter eventstore.Filter) (eventstore.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &subscription{store: s, next: after, filter: filter, done: make(chan struct{})}, nil
}

// Close implements eventstore.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.changed)
	}
	return nil
}

type subscription struct {
	store  *Store
	next   uint64 // position of the last delivered event
	filter eventstore.Filter
	done   chan struct{}
	once   sync.Once
}

func (sub *subscription) Next(ctx context.Context) (domain.Envelope, error) {
	for {
		select {
		case <-sub.done:
			return domain.Envelope{}, eventstore.ErrClosed
		default:
		}
		s := sub.store
		s.mu.RLock()
		for sub.next < uint64(len(s.all)) {
			e := s.all[sub.next]
			sub.next++
			if sub.filter.Match(e.Stream) {
				s.mu.RUnlock()
				return e, nil
			}
		}
		closed, changed := s.closed, s.changed
		s.mu.RUnlock()
		if closed {
			return domain.Envelope{}, eventstore.ErrClosed
		}
		select {
		case <-changed:
		case <-sub.done:
			return domain.Envelope{}, eventstore.ErrClosed
		case <-ctx.Done():
			return domain.Envelope{}, ctx.Err()
		}
	}
}

func (sub *subscription) Close() error {
	sub.once.Do(func() { close(sub.done) })
	return nil
}

var _ eventstore.Finder = (*Store)(nil)

// FindEvents implements eventstore.Finder by scanning every event: the
// memory store is for tests and tools, where the store is small.
func (s *Store) FindEvents(ctx context.Context, q eventstore.EventQuery) ([]domain.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []domain.Envelope
	if q.Empty() {
		return out, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.all {
		if q.Match(e) {
			out = append(out, e)
			if len(out) == q.Limit() {
				break
			}
		}
	}
	return out, nil
}
