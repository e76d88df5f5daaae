// Package commandstest provides an in-memory event store for tests of code
// built on the commands package, where the real adapters (under
// services/internal) cannot be imported. It keeps the adapter contract that
// matters to command handlers: optimistic concurrency on the stream version
// and idempotent re-append of already stored event ids.
package commandstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/orderflow/orderflow/domain"
)

// Store is an in-memory event store, safe for concurrent use. The zero
// Store is not usable; call NewStore.
type Store struct {
	mu      sync.Mutex
	streams map[string][]domain.Envelope
	ids     map[string]place
	all     []domain.Envelope
}

// place is where an event id is stored.
type place struct {
	stream  string
	version int64
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{streams: make(map[string][]domain.Envelope), ids: make(map[string]place)}
}

// Append adds events to stream when its version matches expected, else it
// fails with domain.ErrVersionConflict. Appending events whose ids are all
// stored in this stream, in this order, where this append would put them
// (anywhere for domain.AnyVersion), is a no-op that reports the stored
// version; any other reuse of a stored id fails with
// domain.ErrDuplicateEventID.
func (s *Store) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (domain.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return domain.AppendResult{}, err
	}
	if err := checkAppend(stream, expected, events); err != nil {
		return domain.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	if res, stored, err := s.reappend(stream, expected, events); stored {
		return res, err
	}
	current := int64(len(s.streams[stream]))
	if expected != domain.AnyVersion && int64(expected) != current {
		return domain.AppendResult{}, fmt.Errorf("append %s: expected version %d, stream is at %d: %w", stream, expected, current, domain.ErrVersionConflict)
	}
	now := time.Now().UTC()
	for i, e := range events {
		e.Stream = stream
		e.Version = current + int64(i) + 1
		e.Position = uint64(len(s.all)) + 1
		e.RecordedAt = now
		e.Data = bytes.Clone(e.Data)
		s.streams[stream] = append(s.streams[stream], e)
		s.all = append(s.all, e)
		s.ids[e.ID] = place{stream, e.Version}
	}
	last := s.all[len(s.all)-1]
	return domain.AppendResult{NextVersion: last.Version, Position: last.Position}, nil
}

// reappend handles an append whose event ids are already stored; stored
// reports whether any of them is.
func (s *Store) reappend(stream string, expected domain.ExpectedVersion, events []domain.Envelope) (res domain.AppendResult, stored bool, err error) {
	first, ok := s.ids[events[0].ID]
	for _, e := range events {
		if _, ok := s.ids[e.ID]; ok {
			stored = true
		}
	}
	if !stored {
		return res, false, nil
	}
	dup := fmt.Errorf("append %s: event %s: %w", stream, events[0].ID, domain.ErrDuplicateEventID)
	if !ok || first.stream != stream || (expected != domain.AnyVersion && first.version != int64(expected)+1) {
		return res, true, dup
	}
	for i, e := range events {
		if p, ok := s.ids[e.ID]; !ok || p != (place{stream, first.version + int64(i)}) {
			return res, true, dup
		}
	}
	last := s.streams[stream][first.version+int64(len(events))-2]
	return domain.AppendResult{NextVersion: last.Version, Position: last.Position}, true, nil
}

func checkAppend(stream string, expected domain.ExpectedVersion, events []domain.Envelope) error {
	if stream == "" {
		return errors.New("append: empty stream name")
	}
	if expected < domain.AnyVersion {
		return fmt.Errorf("append %s: invalid expected version %d", stream, expected)
	}
	if len(events) == 0 {
		return fmt.Errorf("append %s: no events", stream)
	}
	seen := make(map[string]bool, len(events))
	for _, e := range events {
		if !domain.ValidUUID(e.ID) {
			return fmt.Errorf("append %s: event id %q is not a UUID", stream, e.ID)
		}
		if e.Type == "" {
			return fmt.Errorf("append %s: event %s has no type", stream, e.ID)
		}
		if seen[e.ID] {
			return fmt.Errorf("append %s: event %s twice in one append: %w", stream, e.ID, domain.ErrDuplicateEventID)
		}
		seen[e.ID] = true
	}
	return nil
}

// ReadStream returns up to max events of stream with Version >= from, in
// version order. A missing stream yields no events and no error.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]domain.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("read %s: max %d, want > 0", stream, limit)
	}
	from = max(from, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	events := s.streams[stream]
	if from > int64(len(events)) {
		return nil, nil
	}
	events = events[from-1:]
	if len(events) > limit {
		events = events[:limit]
	}
	return clone(events), nil
}

// All returns every stored event in global order.
func (s *Store) All() []domain.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.all)
}

func clone(events []domain.Envelope) []domain.Envelope {
	out := make([]domain.Envelope, len(events))
	for i, e := range events {
		e.Data = bytes.Clone(e.Data)
		out[i] = e
	}
	return out
}
