package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/eventstoretest"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T, cfg postgres.Config) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	return pgtest.New(t, cfg)
}

// TestMigrateTwice checks that migrating a database in use is harmless:
// every service start does it.
func TestMigrateTwice(t *testing.T) {
	s, pool := newStore(t, postgres.Config{})
	ctx := context.Background()
	e := domain.Envelope{ID: "6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e03", Type: "E", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, "m", domain.NoStream, []domain.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if evs, err := s.ReadStream(ctx, "m", 1, 0); err != nil || len(evs) != 1 || evs[0].ID != e.ID {
		t.Fatalf("after a second migrate the stream holds %v (%v), want the one event", evs, err)
	}
	if res, err := s.Append(ctx, "m", domain.ExactVersion(1), []domain.Envelope{{ID: "6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e04", Type: "E"}}); err != nil || res.NextVersion != 2 {
		t.Fatalf("append after a second migrate = %+v, %v; want version 2", res, err)
	}
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
