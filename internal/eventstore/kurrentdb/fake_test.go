package kurrentdb

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/orderflow/orderflow/internal/eventstore/kurrentdb/kurrentdbfake"
)

// fakeServer is the in-memory node of kurrentdbfake, which the Store reaches
// either directly, through fakeBackend (the Store's own logic without the
// client library), or over gRPC through the real client (startGRPCFake).
type fakeServer struct {
	*kurrentdbfake.Server
}

func newFakeServer() *fakeServer { return &fakeServer{kurrentdbfake.New()} }

// backend returns a client of the server; dial it as often as needed.
func (f *fakeServer) backend() (backend, error) { return &fakeBackend{srv: f.Server}, nil }

// startGRPCFake serves srv on a loopback port for the test and returns a
// connection string for it.
func startGRPCFake(t *testing.T, srv *fakeServer) string {
	t.Helper()
	return kurrentdbfake.Start(t, srv.Server)
}

// serveGRPCFake serves srv on addr until stop is called.
func serveGRPCFake(t *testing.T, srv *fakeServer, addr string) (string, func()) {
	t.Helper()
	got, stop, err := kurrentdbfake.Serve(srv.Server, addr)
	if err != nil {
		t.Fatal(err)
	}
	return got, stop
}

// fakeBackend is a backend over the server, with the error kinds the
// client backend reports.
type fakeBackend struct {
	srv    *kurrentdbfake.Server
	mu     sync.Mutex
	closed bool
}

func (b *fakeBackend) check() error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return &kindError{kind: errDead, err: errors.New("fake: client closed")}
	}
	return nil
}

func (b *fakeBackend) appendEvents(ctx context.Context, stream string, state kurrentdb.StreamState, events []kurrentdb.EventData) (uint64, uint64, error) {
	if err := b.check(); err != nil {
		return 0, 0, err
	}
	rev, commit, err := b.srv.Append(ctx, stream, state, events)
	if errors.Is(err, kurrentdbfake.ErrWrongVersion) {
		return 0, 0, &kindError{kind: errWrongVersion, err: err}
	}
	return rev, commit, err
}

func (b *fakeBackend) readStream(ctx context.Context, stream string, from kurrentdb.StreamPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	return b.srv.ReadStream(ctx, stream, from, backwards, count)
}

func (b *fakeBackend) readAll(ctx context.Context, from kurrentdb.AllPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	return b.srv.ReadAll(ctx, from, backwards, count)
}

func (b *fakeBackend) subscribeAll(ctx context.Context, from kurrentdb.AllPosition, filter *kurrentdb.SubscriptionFilter) (feed, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	f, err := b.srv.SubscribeAll(ctx, from, filter)
	if err != nil {
		// A nil *Feed in the interface would not be a nil feed.
		return nil, err
	}
	return f, nil
}

func (b *fakeBackend) abandon() { _ = b.close() }

func (b *fakeBackend) close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
