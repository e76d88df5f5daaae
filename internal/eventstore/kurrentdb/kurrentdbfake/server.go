// Package kurrentdbfake is an in-memory stand-in for a KurrentDB node, for
// tests where no KurrentDB runs. Its Server keeps the log and the streams;
// Serve puts it behind the streams service of KurrentDB's gRPC protocol, so
// that the real client library, the kurrentdb adapter and whatever runs on
// it (a whole service in serve's tests) talk to it as to a server.
//
// It is written from the server's documented behaviour and is deliberately
// unkind where the real server is lenient or unspecified:
//   - an append with Any is never deduplicated (the server does it on a
//     best-effort basis only);
//   - a forward read of $all from a position includes the event there, and
//     a subscription from a position replays it;
//   - positions are sparse, as log positions are;
//   - system events ($-streams, $-types) are interleaved with ours.
//
// Only what the adapter uses is implemented. The package is for tests; no
// production code imports it.
package kurrentdbfake

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

// ErrWrongVersion is returned by Append when the stream is not in the
// expected state (and the append is no replay of the events there).
var ErrWrongVersion = errors.New("kurrentdbfake: wrong expected version")

// Server is the node's state. It is safe for concurrent use.
type Server struct {
	mu      sync.Mutex
	log     []kurrentdb.RecordedEvent
	streams map[string][]int // stream -> indexes into log, by revision
	next    uint64           // next log position
	changed chan struct{}    // closed and replaced on every write
	appends int
	// systemEvery writes a system event before every n-th append (0: never).
	systemEvery int
}

// New returns a node holding a few system events of its own, as a fresh
// one does, that writes a statistics event before every third append.
func New() *Server {
	f := &Server{streams: make(map[string][]int), next: 1000, changed: make(chan struct{}), systemEvery: 3}
	f.writeSystemLocked("$users", "$UserCreated")
	f.writeSystemLocked("$$$users", "$metadata")
	return f
}

// SetSystemEvery makes the node write a system event before every n-th
// append; 0 turns that off.
func (f *Server) SetSystemEvery(n int) {
	f.mu.Lock()
	f.systemEvery = n
	f.mu.Unlock()
}

// WriteSystemEvents appends n statistics events, as a node does on its own.
func (f *Server) WriteSystemEvents(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.writeSystemLocked("$stats-node", "$statsCollected")
	}
}

// StreamExists reports whether stream holds any event.
func (f *Server) StreamExists(stream string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams[stream]) > 0
}

func (f *Server) writeSystemLocked(stream, typ string) {
	f.writeEventLocked(stream, kurrentdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: kurrentdb.ContentTypeJson, Data: []byte(`{}`)})
}

func (f *Server) writeEventLocked(stream string, e kurrentdb.EventData) kurrentdb.RecordedEvent {
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

// lock fails on an ended context and otherwise returns with f locked.
func (f *Server) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	return nil
}

// Append appends events to stream if it is in the given state, and returns
// the revision of the stream's last event and the commit position of the
// write, 0 for a replay, which writes nothing (the server's idempotency
// check: the events at the expected place carry the same ids).
func (f *Server) Append(ctx context.Context, stream string, state kurrentdb.StreamState, events []kurrentdb.EventData) (revision, commit uint64, err error) {
	if err := f.lock(ctx); err != nil {
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
		return 0, 0, errors.New("kurrentdbfake: unsupported stream state")
	}
	if expected < cur {
		idx := f.streams[stream]
		for i, e := range events {
			rev := expected + 1 + int64(i)
			if rev > cur || f.log[idx[rev]].EventID != e.EventID {
				return 0, 0, ErrWrongVersion
			}
		}
		return uint64(expected + int64(len(events))), 0, nil
	}
	if expected > cur {
		return 0, 0, ErrWrongVersion
	}
	f.appends++
	if f.systemEvery > 0 && f.appends%f.systemEvery == 0 {
		f.writeEventLocked("$stats-127.0.0.1:2113", kurrentdb.EventData{EventID: uuid.New(), EventType: "$statsCollected", Data: []byte(`{"cpu":1}`)})
	}
	var last kurrentdb.RecordedEvent
	for _, e := range events {
		last = f.writeEventLocked(stream, e)
	}
	return last.EventNumber, last.Position.Commit, nil
}

// ReadStream returns up to count events of stream from the given place,
// forwards or backwards. A missing stream yields no events.
func (f *Server) ReadStream(ctx context.Context, stream string, from kurrentdb.StreamPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	if err := f.lock(ctx); err != nil {
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

// ReadAll returns up to count events of $all from the given place, forwards
// (the event at from included) or backwards (before from).
func (f *Server) ReadAll(ctx context.Context, from kurrentdb.AllPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	if err := f.lock(ctx); err != nil {
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

// SubscribeAll opens a catch-up subscription to $all from the given place
// (the event at a position included), until ctx ends or the feed is closed.
func (f *Server) SubscribeAll(ctx context.Context, from kurrentdb.AllPosition, filter *kurrentdb.SubscriptionFilter) (*Feed, error) {
	if filter != nil && (len(filter.Prefixes) > 0) == (filter.Regex != "") {
		return nil, errors.New("kurrentdbfake: a filter needs prefixes or a regex, not both")
	}
	if err := f.lock(ctx); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	sub := &Feed{srv: f, filter: filter}
	if filter != nil && filter.Regex != "" {
		re, err := regexp.Compile(filter.Regex)
		if err != nil {
			return nil, err
		}
		sub.re = re
	}
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

// Feed follows the log like a catch-up subscription: events that pass the
// filter, then a checkpoint whenever it had to skip some.
// *kurrentdb.Subscription has the same two methods.
type Feed struct {
	srv    *Server
	filter *kurrentdb.SubscriptionFilter
	re     *regexp.Regexp
	ctx    context.Context
	cancel context.CancelFunc
	cursor int // index of the next record to look at
}

func (s *Feed) match(rec kurrentdb.RecordedEvent) bool {
	if s.filter == nil {
		return true
	}
	if s.filter.Type == kurrentdb.StreamFilterType {
		if s.re != nil {
			return s.re.MatchString(rec.StreamID)
		}
		for _, p := range s.filter.Prefixes {
			if strings.HasPrefix(rec.StreamID, p) {
				return true
			}
		}
		return false
	}
	if s.re != nil {
		return s.re.MatchString(rec.EventType)
	}
	for _, p := range s.filter.Prefixes {
		if strings.HasPrefix(rec.EventType, p) {
			return true
		}
	}
	return false
}

// Recv blocks until the next event, a checkpoint, or the end of the
// subscription (SubscriptionDropped).
func (s *Feed) Recv() *kurrentdb.SubscriptionEvent {
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

// Close ends the subscription.
func (s *Feed) Close() error {
	s.cancel()
	return nil
}
