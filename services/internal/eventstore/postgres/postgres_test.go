package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/eventstore"
	"github.com/orderflow/orderflow/services/internal/eventstore/eventstoretest"
	"github.com/orderflow/orderflow/services/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/services/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newStore returns a store on a fresh, migrated database.
func newStore(t *testing.T, cfg postgres.Config) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pcfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// Migrating twice must be harmless: every service start does it.
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	s, err := postgres.New(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, pool
}

func TestContract(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		s, _ := newStore(t, postgres.Config{})
		return s
	})
}

func TestEventIDStoredElsewhereIsRejected(t *testing.T) {
	s, _ := newStore(t, postgres.Config{})
	ctx := context.Background()
	e := domain.Envelope{ID: "6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e01", Type: "E", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, "a", domain.NoStream, []domain.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "b", domain.NoStream, []domain.Envelope{e}); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Fatalf("same id in another stream: err = %v, want ErrDuplicateEventID", err)
	}
	if evs, _ := s.ReadStream(ctx, "b", 1, 0); len(evs) != 0 {
		t.Fatalf("stream b has %d events", len(evs))
	}
}

// TestOtherProcessWakesSubscriber checks the LISTEN/NOTIFY path: an append
// by a second store on the same database (as another process would) reaches
// a subscriber of the first without waiting for the poll.
func TestOtherProcessWakesSubscriber(t *testing.T) {
	s1, pool := newStore(t, postgres.Config{PollInterval: time.Hour})
	s2, err := postgres.New(context.Background(), pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := s1.Subscribe(ctx, 0, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Let the listener connect before appending.
	time.Sleep(200 * time.Millisecond)
	e := domain.Envelope{ID: "6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e02", Type: "E", Data: []byte(`{}`)}
	if _, err := s2.Append(ctx, "x", domain.NoStream, []domain.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	got, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("subscriber was not woken by another store's append: %v", err)
	}
	if got.ID != e.ID {
		t.Fatalf("got %s, want %s", got.ID, e.ID)
	}
}
