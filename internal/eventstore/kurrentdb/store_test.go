package kurrentdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// The tests here drive the Store over the fake server (fake_test.go) through
// the paths the contract suite does not reach: AnyVersion replays the server
// would miss, system events, paging edges, subscription lifetime and client
// replacement.

func fakeStore(t *testing.T, srv *fakeServer, cfg Config) *Store {
	t.Helper()
	s, err := newStore(cfg.withDefaults(), srv.backend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newEvents(n int) []domain.Envelope {
	out := make([]domain.Envelope, n)
	for i := range out {
		out[i] = domain.Envelope{ID: uuid.NewString(), Type: "E", SchemaVersion: 1, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	return out
}

func mustAppendT(t *testing.T, s *Store, stream string, exp domain.ExpectedVersion, evs []domain.Envelope) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(testCtx(t), stream, exp, evs)
	if err != nil {
		t.Fatalf("append %s: %v", stream, err)
	}
	return res
}

func streamLen(t *testing.T, s *Store, stream string) int {
	t.Helper()
	evs, err := s.ReadStream(testCtx(t), stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// The fake, like a server whose best-effort check has forgotten the ids,
// stores an AnyVersion replay again; the adapter's scan prevents that, and
// with the scan off the duplicates show what it guards against.
func TestAnyVersionReplay(t *testing.T) {
	tests := []struct {
		name string
		scan int
		want int
	}{
		{"scan on", 0, 2},
		{"scan off", -1, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeStore(t, newFakeServer(), Config{AnyVersionScan: tc.scan})
			evs := newEvents(2)
			first := mustAppendT(t, s, "order-1", domain.NoStream, evs)
			again := mustAppendT(t, s, "order-1", domain.AnyVersion, evs)
			if got := streamLen(t, s, "order-1"); got != tc.want {
				t.Fatalf("stream has %d events after an AnyVersion replay, want %d", got, tc.want)
			}
			if tc.want == 2 && again != first {
				t.Fatalf("replay result %+v, want the first append's %+v", again, first)
			}
		})
	}
}

func TestAnyVersionDuplicateElsewhere(t *testing.T) {
	s := fakeStore(t, newFakeServer(), Config{})
	evs := newEvents(3)
	mustAppendT(t, s, "order-1", domain.NoStream, evs)
	tests := []struct {
		name string
		evs  []domain.Envelope
	}{
		{"stored id not first", []domain.Envelope{newEvents(1)[0], evs[1]}},
		{"stored ids out of order", []domain.Envelope{evs[2], evs[1]}},
		{"replay then a new event", []domain.Envelope{evs[2], newEvents(1)[0]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(testCtx(t), "order-1", domain.AnyVersion, tc.evs)
			if !errors.Is(err, eventstore.ErrDuplicateEventID) {
				t.Fatalf("err = %v, want ErrDuplicateEventID", err)
			}
		})
	}
	if got := streamLen(t, s, "order-1"); got != 3 {
		t.Fatalf("stream has %d events, want 3", got)
	}
}

func TestExactReplayReportsStoredPosition(t *testing.T) {
	s := fakeStore(t, newFakeServer(), Config{})
	evs := newEvents(2)
	first := mustAppendT(t, s, "order-1", domain.NoStream, evs)
	mustAppendT(t, s, "order-1", domain.ExactVersion(2), newEvents(1))
	// The server answers a replay without a position; the adapter reads it.
	again := mustAppendT(t, s, "order-1", domain.NoStream, evs)
	if again != first {
		t.Fatalf("replay = %+v, want %+v", again, first)
	}
	// A partial overlap is not a replay.
	_, err := s.Append(testCtx(t), "order-1", domain.NoStream, []domain.Envelope{evs[0], newEvents(1)[0]})
	if !errors.Is(err, eventstore.ErrVersionConflict) {
		t.Fatalf("partial replay: err = %v, want ErrVersionConflict", err)
	}
}

func TestSystemEventsHidden(t *testing.T) {
	srv := newFakeServer()
	srv.SetSystemEvery(1)
	s := fakeStore(t, srv, Config{ReadBatch: 40})
	var want []uint64
	for i := range 5 {
		res := mustAppendT(t, s, fmt.Sprintf("order-%d", i%2), domain.AnyVersion, newEvents(1))
		want = append(want, res.Position)
	}
	// More system events than Head's first backwards read holds.
	srv.WriteSystemEvents(3*headFirstRead + 1)

	all, err := s.ReadAll(testCtx(t), 0, 0, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, e := range all {
		got = append(got, e.Position)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ReadAll positions %v, want only our events %v", got, want)
	}
	for max := 1; max <= len(want); max++ {
		page, err := s.ReadAll(testCtx(t), want[0], max, eventstore.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if n := min(max, len(want)-1); len(page) != n || page[0].Position != want[1] {
			t.Fatalf("ReadAll(after the first, max %d) = %d events, want %d starting at %d", max, len(page), n, want[1])
		}
	}
	head, err := s.Head(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if head != want[len(want)-1] {
		t.Fatalf("Head = %d, want %d (the last non-system event)", head, want[len(want)-1])
	}

	sub, err := s.Subscribe(testCtx(t), 0, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i, p := range want {
		e, err := sub.Next(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if e.Position != p {
			t.Fatalf("subscription event %d at %d, want %d", i, e.Position, p)
		}
	}
}

func TestHeadOfEmptyStore(t *testing.T) {
	s := fakeStore(t, newFakeServer(), Config{ReadBatch: 1})
	head, err := s.Head(testCtx(t))
	if err != nil || head != 0 {
		t.Fatalf("Head of a server holding only system events = %d, %v; want 0", head, err)
	}
}

func TestReadAllPaging(t *testing.T) {
	s := fakeStore(t, newFakeServer(), Config{ReadBatch: 3})
	var ids []string
	for i := range 10 {
		evs := newEvents(1)
		mustAppendT(t, s, fmt.Sprintf("p-%d", i%3), domain.AnyVersion, evs)
		ids = append(ids, evs[0].ID)
	}
	mustAppendT(t, s, "other", domain.AnyVersion, newEvents(4))
	tests := []struct {
		after int // index of the event to read after; -1 for the start
		max   int
		want  []string
	}{
		{-1, 0, ids},
		{-1, 4, ids[:4]},
		{2, 5, ids[3:8]},
		{8, 0, ids[9:]},
		{9, 0, nil},
	}
	all, err := s.ReadAll(testCtx(t), 0, 0, eventstore.Filter{StreamPrefixes: []string{"p-"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		var after uint64
		if tc.after >= 0 {
			after = all[tc.after].Position
		}
		got, err := s.ReadAll(testCtx(t), after, tc.max, eventstore.Filter{StreamPrefixes: []string{"p-"}})
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, e := range got {
			gotIDs = append(gotIDs, e.ID)
		}
		if fmt.Sprint(gotIDs) != fmt.Sprint(tc.want) {
			t.Errorf("ReadAll(after #%d, max %d) = %v, want %v", tc.after, tc.max, gotIDs, tc.want)
		}
	}
}

func TestReadStreamPagesBeyondBatch(t *testing.T) {
	s := fakeStore(t, newFakeServer(), Config{ReadBatch: 4})
	mustAppendT(t, s, "long", domain.NoStream, newEvents(10))
	got, err := s.ReadStream(testCtx(t), "long", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 || got[0].Version != 2 || got[8].Version != 10 {
		t.Fatalf("ReadStream(from 2) = %d events (%v..), want versions 2..10", len(got), got)
	}
}

// A subscription from a position must not repeat the event there, though
// the fake (like some servers) sends it again.
func TestSubscribeAfterPosition(t *testing.T) {
	s := fakeStore(t, newFakeServer(), Config{})
	res := mustAppendT(t, s, "s-1", domain.NoStream, newEvents(3))
	mustAppendT(t, s, "s-1", domain.ExactVersion(3), newEvents(1))
	sub, err := s.Subscribe(testCtx(t), res.Position, eventstore.Filter{StreamPrefixes: []string{"s-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	e, err := sub.Next(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != 4 {
		t.Fatalf("first event after position %d has version %d, want 4", res.Position, e.Version)
	}
}

func TestSubscriptionLifetime(t *testing.T) {
	t.Run("Next honours its context", func(t *testing.T) {
		s := fakeStore(t, newFakeServer(), Config{})
		sub, err := s.Subscribe(testCtx(t), 0, eventstore.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next on an idle subscription: %v, want DeadlineExceeded", err)
		}
		// The subscription survives a Next that gave up.
		evs := newEvents(1)
		mustAppendT(t, s, "late", domain.NoStream, evs)
		e, err := sub.Next(testCtx(t))
		if err != nil || e.ID != evs[0].ID {
			t.Fatalf("Next after a timeout = %v, %v; want event %s", e.ID, err, evs[0].ID)
		}
	})
	t.Run("ends with the Subscribe context", func(t *testing.T) {
		s := fakeStore(t, newFakeServer(), Config{})
		ctx, cancel := context.WithCancel(context.Background())
		sub, err := s.Subscribe(ctx, 0, eventstore.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		cancel()
		if _, err := sub.Next(testCtx(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after the subscription's context ended: %v, want context.Canceled", err)
		}
	})
	t.Run("Store.Close ends subscriptions and calls", func(t *testing.T) {
		s := fakeStore(t, newFakeServer(), Config{})
		sub, err := s.Subscribe(testCtx(t), 0, eventstore.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		next := make(chan error, 1)
		go func() {
			_, err := sub.Next(testCtx(t))
			next <- err
		}()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-next:
			if !errors.Is(err, eventstore.ErrClosed) {
				t.Fatalf("blocked Next after Store.Close: %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Next still blocked after Store.Close")
		}
		if _, err := s.Append(testCtx(t), "x", domain.AnyVersion, newEvents(1)); !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Append after Close: %v, want ErrClosed", err)
		}
		if _, err := s.Subscribe(testCtx(t), 0, eventstore.Filter{}); !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// The client library gives up for good after a failed discovery and answers
// every later call with "connection closed"; the Store dials a new client.
func TestDeadClientIsReplaced(t *testing.T) {
	srv := newFakeServer()
	var dials atomic.Int32
	s, err := newStore(Config{}.withDefaults(), func() (backend, error) {
		dials.Add(1)
		return srv.backend()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dead := s.be
	_ = dead.close()
	_, err = s.Append(testCtx(t), "a", domain.NoStream, newEvents(1))
	if !errors.Is(err, errDead) {
		t.Fatalf("append on a dead client: %v, want the connection-closed error", err)
	}
	if dials.Load() != 2 || s.be == dead {
		t.Fatalf("dials = %d and backend replaced = %v, want a second dial", dials.Load(), s.be != dead)
	}
	mustAppendT(t, s, "a", domain.NoStream, newEvents(1))
}

func TestCancelledContext(t *testing.T) {
	s := fakeStore(t, newFakeServer(), Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "a", domain.NoStream, newEvents(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append: %v, want context.Canceled", err)
	}
	if _, err := s.ReadAll(ctx, 0, 0, eventstore.Filter{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAll: %v, want context.Canceled", err)
	}
	if got := streamLen(t, s, "a"); got != 0 {
		t.Fatalf("a cancelled append stored %d events", got)
	}
}

func TestFailedReadBackKeepsAppend(t *testing.T) {
	srv := newFakeServer()
	s := fakeStore(t, srv, Config{})
	// Make the read-back after the append fail: the append stands and
	// reports the commit position the server gave.
	s.be = &failingReads{backend: s.be}
	res := mustAppendT(t, s, "a", domain.NoStream, newEvents(2))
	if res.NextVersion != 2 || res.Position == 0 {
		t.Fatalf("append = %+v, want version 2 with the server's position", res)
	}
}

type failingReads struct{ backend }

func (f *failingReads) readStream(context.Context, string, kurrentdb.StreamPosition, bool, uint64) ([]kurrentdb.RecordedEvent, error) {
	return nil, errors.New("read failed")
}

// The real client gives up for good once a discovery fails while the server
// is down; after the server is back the Store must work again, which it
// does by replacing that client.
func TestReconnectsAfterServerRestart(t *testing.T) {
	srv := newFakeServer()
	addr, stop := serveGRPCFake(t, srv, "127.0.0.1:0")
	defer stop()
	s, err := New(testCtx(t), "kurrentdb://"+addr+"?tls=false&maxDiscoverAttempts=1&discoveryInterval=10", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppendT(t, s, "r-1", domain.NoStream, newEvents(1))

	stop()
	for i := range 3 {
		if _, err := s.Append(testCtx(t), "r-1", domain.AnyVersion, newEvents(1)); err == nil {
			t.Fatalf("append %d succeeded with the server down", i)
		}
	}
	_, stop2 := serveGRPCFake(t, srv, addr)
	defer stop2()
	var lastErr error
	for range 5 {
		if _, lastErr = s.Append(testCtx(t), "r-1", domain.ExactVersion(1), newEvents(1)); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("appends still fail after the server came back: %v", lastErr)
	}
	if n := streamLen(t, s, "r-1"); n != 2 {
		t.Fatalf("stream has %d events, want 2", n)
	}
}
