// Package eventstore defines the contract every event store adapter
// (postgres, kurrentdb, memory) fulfils, and the types they share. The
// contract is checked by the eventstoretest suite, which runs against each
// adapter.
//
// Streams hold an aggregate's events in version order (1, 2, 3, ...). All
// events of a store also form one global order by Position, which readers and
// subscribers follow; adapters guarantee that a reader of the global order
// never skips an event that commits late under concurrent writers.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/orderflow/orderflow/domain"
)

// Sentinel errors, aliases of the domain ones so errors.Is works across layers.
var (
	ErrVersionConflict  = domain.ErrVersionConflict
	ErrDuplicateEventID = domain.ErrDuplicateEventID
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("event store closed")
)

// AppendResult reports where an append put its events.
type AppendResult = domain.AppendResult

// Store is the full port of an event store adapter.
type Store interface {
	// Append adds events to stream if the stream's version matches expected.
	// A stale expectation fails with ErrVersionConflict. Appending events
	// whose ids are all already stored in this stream, in the same order and
	// at the place this append would put them (or any place for
	// AnyVersion), is a no-op that reports success with the stored versions.
	Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (AppendResult, error)
	// ReadStream returns up to max events of stream with Version >= from, in
	// version order. A missing stream yields no events and no error.
	ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error)
	// ReadAll returns up to max events with Position > after, in global order.
	ReadAll(ctx context.Context, after uint64, max int, filter Filter) ([]domain.Envelope, error)
	// Head returns the position of the newest event in the global order
	// (0 when the store is empty).
	Head(ctx context.Context) (uint64, error)
	// Subscribe follows the global order from after, first catching up and
	// then receiving new events as they commit, with low latency.
	Subscribe(ctx context.Context, after uint64, filter Filter) (Subscription, error)
	// Close releases the adapter's resources.
	Close() error
}

// Subscription delivers events of the global order one at a time.
type Subscription interface {
	// Next blocks until the next event is available, ctx is done or the
	// subscription fails.
	Next(ctx context.Context) (domain.Envelope, error)
	// Close stops the subscription.
	Close() error
}

// Filter restricts the global order to streams with one of the prefixes; an
// empty filter matches everything.
type Filter struct {
	StreamPrefixes []string
}

// Match reports whether stream passes the filter.
func (f Filter) Match(stream string) bool {
	if len(f.StreamPrefixes) == 0 {
		return true
	}
	for _, p := range f.StreamPrefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// MaxEventSize is the largest Data accepted for one event (payload plus
// metadata stay within the adapters' limits).
const MaxEventSize = 4 << 20

// ErrInvalidAppend is returned for an append that no store could accept: an
// empty stream name, no events, an event without an id or type, or a payload
// over MaxEventSize.
var ErrInvalidAppend = errors.New("invalid append")

// CheckAppend validates an append's arguments the same way for every adapter.
func CheckAppend(stream string, expected domain.ExpectedVersion, events []domain.Envelope) error {
	switch {
	case stream == "":
		return fmt.Errorf("append: empty stream name: %w", ErrInvalidAppend)
	case len(stream) > 500:
		return fmt.Errorf("append: stream name longer than 500 bytes: %w", ErrInvalidAppend)
	case len(events) == 0:
		return fmt.Errorf("append %s: no events: %w", stream, ErrInvalidAppend)
	case expected < domain.AnyVersion:
		return fmt.Errorf("append %s: expected version %d: %w", stream, expected, ErrInvalidAppend)
	}
	seen := make(map[string]struct{}, len(events))
	for i, e := range events {
		if !domain.ValidUUID(e.ID) {
			return fmt.Errorf("append %s: event %d: id %q is not a UUID: %w", stream, i, e.ID, ErrInvalidAppend)
		}
		if _, dup := seen[e.ID]; dup {
			return fmt.Errorf("append %s: event %d: id %s repeated in one append: %w", stream, i, e.ID, ErrInvalidAppend)
		}
		seen[e.ID] = struct{}{}
		if e.Type == "" {
			return fmt.Errorf("append %s: event %d: empty type: %w", stream, i, ErrInvalidAppend)
		}
		if len(e.Data) > MaxEventSize {
			return fmt.Errorf("append %s: event %d: %d bytes exceeds %d: %w", stream, i, len(e.Data), MaxEventSize, ErrInvalidAppend)
		}
	}
	return nil
}

// Recorded is where an event is stored.
type Recorded struct {
	Stream   string
	Version  int64
	Position uint64
}

// Replayed applies Append's idempotency rule, so that every adapter decides
// it alike. lookup reports where an event id is already stored, if anywhere.
// done is true when the append is a retry of one that landed: every id is
// stored in stream at consecutive versions, the first one where expected
// would have put it (any place for AnyVersion); res then reports the stored
// versions. An id stored in any other way is ErrDuplicateEventID. events must
// have passed CheckAppend.
func Replayed(stream string, expected domain.ExpectedVersion, events []domain.Envelope, lookup func(id string) (Recorded, bool)) (res AppendResult, done bool, err error) {
	first, seen := lookup(events[0].ID)
	if !seen {
		for _, e := range events[1:] {
			if _, dup := lookup(e.ID); dup {
				return AppendResult{}, false, fmt.Errorf("event %s already stored: %w", e.ID, ErrDuplicateEventID)
			}
		}
		return AppendResult{}, false, nil
	}
	ok := first.Stream == stream && (expected == domain.AnyVersion || int64(expected) == first.Version-1)
	last := first
	for i, e := range events[1:] {
		if !ok {
			break
		}
		last, ok = lookup(e.ID)
		ok = ok && last.Stream == stream && last.Version == first.Version+int64(i)+1
	}
	if !ok {
		return AppendResult{}, false, fmt.Errorf("event %s already stored, but not as this append: %w", events[0].ID, ErrDuplicateEventID)
	}
	return AppendResult{NextVersion: last.Version, Position: last.Position}, true, nil
}
