// Package projsource adapts an event store (eventstore.Store) to the
// projections.Source port: the store's global order restricted to a
// projection's streams, with a Wait that wakes up as soon as the store
// commits something new instead of polling on a fixed period.
package projsource

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/projections"
)

// Config tunes a Source. The zero value gives the defaults.
type Config struct {
	// PollInterval bounds one Wait: a projector re-reads at least this
	// often even if no wake-up arrives. Default 1s.
	PollInterval time.Duration
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	if c.PollInterval < 0 {
		return fmt.Errorf("projsource: negative PollInterval %s", c.PollInterval)
	}
	return nil
}

// Source is the global order of store, restricted by filter.
type Source struct {
	store  eventstore.Store
	filter eventstore.Filter
	poll   time.Duration
}

var _ projections.Source = (*Source)(nil)

// New returns a source reading store's events that pass filter.
func New(store eventstore.Store, filter eventstore.Filter, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("projsource: nil store")
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	return &Source{store: store, filter: filter, poll: cfg.PollInterval}, nil
}

// ReadAll implements projections.Source.
func (s *Source) ReadAll(ctx context.Context, after uint64, max int) ([]domain.Envelope, error) {
	return s.store.ReadAll(ctx, after, max, s.filter)
}

// Head implements projections.Source: the newest position of the whole
// store, which the projector may move a filtered checkpoint up to.
func (s *Source) Head(ctx context.Context) (uint64, error) {
	return s.store.Head(ctx)
}

// Wait implements projections.Source with a subscription from after: its
// first event means there is something to read. The subscription's own
// wake-ups (in-process commits, LISTEN/NOTIFY for the postgres store) make
// this return within milliseconds of an append; the poll interval covers a
// store without them.
func (s *Source) Wait(ctx context.Context, after uint64) error {
	wctx, cancel := context.WithTimeout(ctx, s.poll)
	defer cancel()
	sub, err := s.store.Subscribe(wctx, after, s.filter)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return fmt.Errorf("subscribe after %d: %w", after, err)
	}
	defer sub.Close()
	if _, err := sub.Next(wctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return fmt.Errorf("wait after %d: %w", after, err)
	}
	return nil
}
