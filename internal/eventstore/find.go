package eventstore

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/orderflow/orderflow/domain"
)

// ErrUnsupported is returned by an adapter asked for something it cannot
// answer without reading its whole store (see Finder).
var ErrUnsupported = errors.New("not supported by this event store")

// MaxFound bounds the events one FindEvents call returns, whatever Max
// says: an operator's view of one journey, not an export.
const MaxFound = 1000

// EventQuery selects events by their metadata and ids: an event matches
// when its correlation id is CorrelationID (compared without regard to
// case, as ids are UUIDs) or its id is one of EventIDs. Empty fields match
// nothing.
type EventQuery struct {
	CorrelationID string
	EventIDs      []string
	// Max caps the events returned; 0 or more than MaxFound is MaxFound.
	Max int
}

// Limit is the number of events q may return.
func (q EventQuery) Limit() int {
	if q.Max <= 0 || q.Max > MaxFound {
		return MaxFound
	}
	return q.Max
}

// Empty reports whether q can match no event at all.
func (q EventQuery) Empty() bool { return q.CorrelationID == "" && len(q.EventIDs) == 0 }

// Match reports whether e is selected by q.
func (q EventQuery) Match(e domain.Envelope) bool {
	if q.CorrelationID != "" && strings.EqualFold(e.Metadata.CorrelationID, q.CorrelationID) {
		return true
	}
	return slices.ContainsFunc(q.EventIDs, func(id string) bool { return strings.EqualFold(id, e.ID) })
}

// Finder is the optional port of a store that can find the events of one
// correlation (one order's journey, say) without reading the global
// order: the operator's console asks every service for the events of a
// correlation id and stitches them. A Store that does not implement it,
// or answers ErrUnsupported, cannot be asked.
type Finder interface {
	// FindEvents returns up to q.Limit() events matching q, in global
	// order (oldest first).
	FindEvents(ctx context.Context, q EventQuery) ([]domain.Envelope, error)
}
