// Package commandstest helps the tests of code built on the commands
// package: an in-memory event store, replies and contention scenarios.
package commandstest

import (
	"context"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/memory"
)

// Store is the in-memory event store adapter (internal/eventstore/memory,
// which passes the same contract suite as the PostgreSQL one), with All
// for assertions on everything appended. The zero Store is not usable;
// call NewStore.
type Store struct {
	*memory.Store
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{Store: memory.New()} }

// All returns every event appended so far, in the order they were stored.
func (s *Store) All() []domain.Envelope {
	evs, _ := s.ReadAll(context.Background(), 0, 0, eventstore.Filter{})
	return evs
}
