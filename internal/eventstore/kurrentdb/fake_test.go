package kurrentdb

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
)

// fakeServer is an in-memory stand-in for a KurrentDB node, written from the
// server's documented behaviour, so that the Store's logic can be tested
// where no server runs. It is deliberately unkind where the real server is
// lenient or unspecified:
//   - an append with Any is never deduplicated (the server does it on a
//     best-effort basis only);
//   - a forward read of $all from a position includes the event there, and
//     a subscription from a position replays it;
//   - positions are sparse, as log positions are;
//   - system events ($-streams, $-types) are interleaved with ours.
type fakeServer struct {
	mu      sync.Mutex
	log     []kurrentdb.RecordedEvent
	streams map[string][]int // stream -> indexes into log, by revision
	next    uint64           // next log position
	changed chan struct{}    // closed and replaced on every write
	appends int

	// failNext, when set, is returned (once) by the next call.
	failNext error
	// systemEvery writes a system event before every n-th append (0: never).
	systemEvery int
}

func newFakeServer() *fakeServer {
	f := &fakeServer{streams: make(map[string][]int), next: 1000, changed: make(chan struct{}), systemEvery: 3}
	// A fresh node has some system events of its own.
	f.writeLocked("$users", "$UserCreated", []byte(`{}`))
	f.writeLocked("$$$users", "$metadata", []byte(`{}`))
	return f
}

var errFakeWrongVersion = &kindError{kind: errWrongVersion, err: errors.New("fake: wrong expected version")}

func (f *fakeServer) takeFailure() error {
	err := f.failNext
	f.failNext = nil
	return err
}

func (f *fakeServer) writeLocked(stream, typ string, data []byte) kurrentdb.RecordedEvent {
	return f.writeEventLocked(stream, kurrentdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: kurrentdb.ContentTypeJson, Data: data})
}

func (f *fakeServer) writeEventLocked(stream string, e kurrentdb.EventData) kurrentdb.RecordedEvent {
	rec := kurrentdb.RecordedEvent{
		EventID:        e.EventID,
		EventType:      e.EventType,
		ContentType:    "application/json",
		StreamID:       stream,
		EventNumber:    uint64(len(f.streams[stream])),
		Position:       kurrentdb.Position{Commit: f.next, Prepare: f.next},
		CreatedDate:    time.Now().UTC(),
		Data:           append([]byte(nil), e.Data...),
		UserMetadata:   append([]byte(nil), e.Metadata...),
		SystemMetadata: map[string]string{"type": e.EventType},
	}
	f.streams[stream] = append(f.streams[stream], len(f.log))
	f.log = append(f.log, rec)
	f.next += 100 + uint64(len(e.Data)+len(e.Metadata))
	close(f.changed)
	f.changed = make(chan struct{})
	return rec
}

// backend returns a client of the server; dial it as often as needed.
func (f *fakeServer) backend() (backend, error) { return &fakeBackend{srv: f}, nil }

type fakeBackend struct {
	srv    *fakeServer
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

// lock does what every call does first: it fails on a closed client, an ended
// context or an injected failure, and otherwise returns the server locked.
func (b *fakeBackend) lock(ctx context.Context) (*fakeServer, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f := b.srv
	f.mu.Lock()
	if err := f.takeFailure(); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	return f, nil
}

func (b *fakeBackend) appendEvents(ctx context.Context, stream string, state kurrentdb.StreamState, events []kurrentdb.EventData) (uint64, uint64, error) {
	f, err := b.lock(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer f.mu.Unlock()
	cur := int64(len(f.streams[stream])) - 1
	var expected int64
	switch s := state.(type) {
	case kurrentdb.Any:
		expected = cur
	case kurrentdb.NoStream:
		expected = -1
	case kurrentdb.StreamRevision:
		expected = int64(s.Value)
	default:
		return 0, 0, errors.New("fake: unsupported stream state")
	}
	if expected < cur {
		// The server's idempotency check: the events at the expected
		// place carry the same ids.
		idx := f.streams[stream]
		for i, e := range events {
			rev := expected + 1 + int64(i)
			if rev > cur || f.log[idx[rev]].EventID != e.EventID {
				return 0, 0, errFakeWrongVersion
			}
		}
		return uint64(expected + int64(len(events))), 0, nil
	}
	if expected > cur {
		return 0, 0, errFakeWrongVersion
	}
	f.appends++
	if f.systemEvery > 0 && f.appends%f.systemEvery == 0 {
		f.writeLocked("$stats-127.0.0.1:2113", "$statsCollected", []byte(`{"cpu":1}`))
	}
	var last kurrentdb.RecordedEvent
	for _, e := range events {
		last = f.writeEventLocked(stream, e)
	}
	return last.EventNumber, last.Position.Commit, nil
}

func (b *fakeBackend) readStream(ctx context.Context, stream string, from kurrentdb.StreamPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	f, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	idx := f.streams[stream]
	n := int64(len(idx))
	var start int64
	switch p := from.(type) {
	case kurrentdb.Start:
		start = 0
	case kurrentdb.End:
		start = n - 1
	case kurrentdb.StreamRevision:
		start = int64(p.Value)
	}
	var out []kurrentdb.RecordedEvent
	step := int64(1)
	if backwards {
		step = -1
		start = min(start, n-1)
	}
	for r := start; r >= 0 && r < n && uint64(len(out)) < count; r += step {
		out = append(out, f.log[idx[r]])
	}
	return out, nil
}

func (b *fakeBackend) readAll(ctx context.Context, from kurrentdb.AllPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	f, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	var out []kurrentdb.RecordedEvent
	if !backwards {
		for _, rec := range f.log {
			if p, ok := from.(kurrentdb.Position); ok && rec.Position.Commit < p.Commit {
				continue
			}
			if _, end := from.(kurrentdb.End); end || uint64(len(out)) == count {
				break
			}
			out = append(out, rec)
		}
		return out, nil
	}
	for i := len(f.log) - 1; i >= 0 && uint64(len(out)) < count; i-- {
		rec := f.log[i]
		if p, ok := from.(kurrentdb.Position); ok && rec.Position.Commit >= p.Commit {
			continue
		}
		if _, start := from.(kurrentdb.Start); start {
			break
		}
		out = append(out, rec)
	}
	return out, nil
}

func (b *fakeBackend) subscribeAll(ctx context.Context, from kurrentdb.AllPosition, filter *kurrentdb.SubscriptionFilter) (feed, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	if filter != nil && (len(filter.Prefixes) > 0) == (filter.Regex != "") {
		return nil, errors.New("fake: a filter needs prefixes or a regex, not both")
	}
	f := b.srv
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailure(); err != nil {
		return nil, err
	}
	sub := &fakeFeed{srv: f, filter: filter}
	sub.ctx, sub.cancel = context.WithCancel(ctx)
	switch p := from.(type) {
	case kurrentdb.End:
		sub.cursor = len(f.log)
	case kurrentdb.Position:
		for sub.cursor < len(f.log) && f.log[sub.cursor].Position.Commit < p.Commit {
			sub.cursor++
		}
	}
	return sub, nil
}

func (b *fakeBackend) close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// fakeFeed follows the fake log like a catch-up subscription: events that
// pass the filter, then a checkpoint whenever it had to skip some.
type fakeFeed struct {
	srv    *fakeServer
	filter *kurrentdb.SubscriptionFilter
	ctx    context.Context
	cancel context.CancelFunc
	cursor int // index of the next record to look at
}

func (s *fakeFeed) match(rec kurrentdb.RecordedEvent) bool {
	if s.filter == nil {
		return true
	}
	if s.filter.Type == kurrentdb.StreamFilterType {
		for _, p := range s.filter.Prefixes {
			if strings.HasPrefix(rec.StreamID, p) {
				return true
			}
		}
		return false
	}
	return regexp.MustCompile(s.filter.Regex).MatchString(rec.EventType)
}

func (s *fakeFeed) Recv() *kurrentdb.SubscriptionEvent {
	for {
		s.srv.mu.Lock()
		skipped := false
		for s.cursor < len(s.srv.log) {
			rec := s.srv.log[s.cursor]
			s.cursor++
			if s.match(rec) {
				s.srv.mu.Unlock()
				commit := rec.Position.Commit
				return &kurrentdb.SubscriptionEvent{EventAppeared: &kurrentdb.ResolvedEvent{Event: &rec, Commit: &commit}}
			}
			skipped = true
		}
		changed := s.srv.changed
		s.srv.mu.Unlock()
		if skipped {
			return &kurrentdb.SubscriptionEvent{CheckPointReached: &kurrentdb.Position{}}
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
			return &kurrentdb.SubscriptionEvent{SubscriptionDropped: &kurrentdb.SubscriptionDropped{Error: s.ctx.Err()}}
		}
	}
}

func (s *fakeFeed) Close() error {
	s.cancel()
	return nil
}
