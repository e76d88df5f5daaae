package stacktest

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// Streams reads (never writes) the event stores of a stack's services,
// to check what a service recorded beside what its API answers. Each
// store is opened on first use and closed when the test that made
// Streams ends. It is safe for concurrent use.
type Streams struct {
	t      testing.TB
	mu     sync.Mutex
	stores map[string]*postgres.Store // by database URL
}

// NewStreams returns a reader of event stores whose connections last as
// long as t.
func NewStreams(t testing.TB) *Streams {
	return &Streams{t: t, stores: make(map[string]*postgres.Store)}
}

// Read returns every event of stream in the event store of the database
// at databaseURL.
func (r *Streams) Read(t testing.TB, databaseURL, stream string) []domain.Envelope {
	t.Helper()
	st := r.store(t, databaseURL)
	evs, err := st.ReadStream(context.Background(), stream, 1, 0)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return evs
}

func (r *Streams) store(t testing.TB, databaseURL string) *postgres.Store {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.stores[databaseURL]; ok {
		return st
	}
	pool, err := pgxpool.New(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	st, err := postgres.New(context.Background(), pool, postgres.Config{})
	if err != nil {
		pool.Close()
		t.Fatal(err)
	}
	// On r.t, not t: the store outlives the subtest that opened it.
	r.t.Cleanup(func() {
		_ = st.Close()
		pool.Close()
	})
	r.stores[databaseURL] = st
	return st
}

// JetStream connects to the NATS server at url for as long as t lasts.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
