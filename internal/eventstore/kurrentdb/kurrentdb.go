// Package kurrentdb is the event store adapter for KurrentDB (formerly
// EventStoreDB), built on the KurrentDB gRPC client. It maps the eventstore
// contract onto KurrentDB's own model: our 1-based stream versions are
// KurrentDB stream revisions plus one, the global order is the $all stream
// and an event's Position is its $all commit position. docs/adr/0030 explains
// the mapping and its limits.
package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// Config tunes the adapter. The zero value is usable: zero fields take the
// defaults below.
type Config struct {
	// ReadBatch is how many events one read request asks for when a call
	// has to page (ReadStream without a limit, ReadAll, Head). Default 512.
	ReadBatch int
	// AnyVersionScan is how many of a stream's newest events an append with
	// AnyVersion checks for its event ids before appending, so that a retry
	// is a no-op even when the server's own best-effort check for such
	// appends has forgotten the ids. Default 32; negative turns the scan
	// off and leaves idempotency of AnyVersion appends to the server.
	AnyVersionScan int
	// SubscriptionBuffer is how many events a subscription reads ahead of
	// its consumer. Default 256.
	SubscriptionBuffer int
	// Logger receives the client library's diagnostics; nil discards them.
	// The library reports expected events (a subscription closed by us) as
	// errors, so they are logged at warning level.
	Logger *slog.Logger
}

const (
	defaultReadBatch          = 512
	defaultAnyVersionScan     = 32
	defaultSubscriptionBuffer = 256
	maxReadBatch              = 4096
	headFirstRead             = 16
)

func (c Config) withDefaults() Config {
	if c.ReadBatch == 0 {
		c.ReadBatch = defaultReadBatch
	}
	if c.AnyVersionScan == 0 {
		c.AnyVersionScan = defaultAnyVersionScan
	}
	if c.SubscriptionBuffer == 0 {
		c.SubscriptionBuffer = defaultSubscriptionBuffer
	}
	return c
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.ReadBatch < 0 || c.ReadBatch > maxReadBatch {
		errs = append(errs, fmt.Errorf("ReadBatch %d: want 1..%d (0 for the default)", c.ReadBatch, maxReadBatch))
	}
	if c.AnyVersionScan > maxReadBatch {
		errs = append(errs, fmt.Errorf("AnyVersionScan %d: want at most %d", c.AnyVersionScan, maxReadBatch))
	}
	if c.SubscriptionBuffer < 0 {
		errs = append(errs, fmt.Errorf("SubscriptionBuffer %d: want >= 0", c.SubscriptionBuffer))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kurrentdb config: %w", err)
	}
	return nil
}

// Store is the KurrentDB event store. It is safe for concurrent use.
type Store struct {
	cfg  Config
	dial func() (backend, error)

	// mu guards be and closed. Every call holds it for reading while it
	// uses be, so replacing or closing the client (write lock) never
	// happens under a request in flight: the client library is not safe
	// against that.
	mu     sync.RWMutex
	be     backend
	closed bool
	// current is be, readable without mu: Close abandons it when a call
	// stuck in it keeps mu from being locked.
	current atomic.Value // of backendRef

	subsMu sync.Mutex
	subs   map[*subscription]struct{}
}

var _ eventstore.Store = (*Store)(nil)

// New connects to the KurrentDB named by connString, e.g.
// "kurrentdb://localhost:2113?tls=false", and checks that it answers.
func New(ctx context.Context, connString string, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conf, err := kurrentdb.ParseConnectionString(connString)
	if err != nil {
		// The parse error may quote the string, which can hold a password.
		return nil, errors.New("kurrentdb: invalid connection string")
	}
	conf.Logger = clientLogger(cfg.Logger)
	dial := func() (backend, error) {
		c, err := kurrentdb.NewClient(conf)
		if err != nil {
			return nil, fmt.Errorf("kurrentdb: new client: %w", err)
		}
		return newClientBackend(c), nil
	}
	s, err := newStore(cfg, dial)
	if err != nil {
		return nil, err
	}
	if _, err := s.Head(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("kurrentdb: connect: %w", err)
	}
	return s, nil
}

// CheckConnectionString reports, without connecting, whether New can use
// connString: a KurrentDB connection string (kurrentdb://, esdb://, their
// +discover forms and the client's other schemes) the client parses.
func CheckConnectionString(connString string) error {
	if _, err := kurrentdb.ParseConnectionString(connString); err != nil {
		// The parse error may quote the string, which can hold a password.
		return errors.New("kurrentdb: invalid connection string")
	}
	return nil
}

// newStore builds a Store over the backends dial returns; the tests pass a
// fake.
func newStore(cfg Config, dial func() (backend, error)) (*Store, error) {
	be, err := dial()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, dial: dial, be: be, subs: make(map[*subscription]struct{})}
	s.current.Store(backendRef{be})
	return s, nil
}

// backendRef holds a backend in an atomic.Value, which needs one concrete
// type.
type backendRef struct{ be backend }

// closeGrace is how long Close waits for the calls in flight before it
// abandons the client they are in.
const closeGrace = 5 * time.Second

func clientLogger(l *slog.Logger) kurrentdb.LoggingFunc {
	if l == nil {
		return kurrentdb.NoopLogging()
	}
	return func(level kurrentdb.LogLevel, format string, args ...any) {
		lvl := slog.LevelWarn
		switch level {
		case kurrentdb.LogDebug:
			lvl = slog.LevelDebug
		case kurrentdb.LogInfo:
			lvl = slog.LevelInfo
		}
		l.Log(context.Background(), lvl, fmt.Sprintf(format, args...), "component", "kurrentdb-client")
	}
}

// acquire returns the backend for one call; release must be called when the
// call no longer uses it.
func (s *Store) acquire() (backend, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, eventstore.ErrClosed
	}
	return s.be, nil
}

func (s *Store) release() { s.mu.RUnlock() }

// fail finishes a failed call: it prefers the context's error (the client
// reports a cancelled call as an unclassified gRPC error) and replaces a
// client that gave up on its connection. It must be called after release.
func (s *Store) fail(ctx context.Context, be backend, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, errDead) {
		s.renew(be)
	}
	return err
}

// renew replaces a dead backend with a new one; the next call connects
// afresh. If dialling fails the old one stays and the next failure retries.
func (s *Store) renew(dead backend) {
	// Calls stuck in the dead client (see clientBackend) would hold the
	// read lock, and the lock below, forever.
	dead.abandon()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.be != dead {
		return
	}
	nb, err := s.dial()
	if err != nil {
		return
	}
	_ = dead.close()
	s.be = nb
	s.current.Store(backendRef{nb})
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (eventstore.AppendResult, error) {
	if err := eventstore.CheckAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	data, err := toEventData(stream, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	state, err := expectedState(expected)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	be, err := s.acquire()
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	res, err := s.append(ctx, be, stream, expected, state, data, events)
	s.release()
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, s.fail(ctx, be, err))
	}
	return res, nil
}

func (s *Store) append(ctx context.Context, be backend, stream string, expected domain.ExpectedVersion, state kurrentdb.StreamState, data []kurrentdb.EventData, events []domain.Envelope) (eventstore.AppendResult, error) {
	if expected == domain.AnyVersion && s.cfg.AnyVersionScan > 0 {
		tail, err := be.readStream(ctx, stream, kurrentdb.End{}, true, uint64(s.cfg.AnyVersionScan))
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("scan for a replay: %w", err)
		}
		if res, done, err := replayed(stream, tail, events); done || err != nil {
			return res, err
		}
	}
	// For exact expectations and NoStream the server's own check makes a
	// replay idempotent: when the events at the expected place carry the
	// same ids it reports success with their revision and writes nothing.
	rev, commit, err := be.appendEvents(ctx, stream, state, data)
	if errors.Is(err, errWrongVersion) {
		return eventstore.AppendResult{}, fmt.Errorf("expected version %d: %w: %w", expected, eventstore.ErrVersionConflict, err)
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return eventstore.AppendResult{NextVersion: versionOf(rev), Position: s.positionAt(ctx, be, stream, rev, commit)}, nil
}

// positionAt is the $all position of the stream's event at revision rev.
// Reading it back costs one small read but does not depend on how the server
// reports positions for multi-event or replayed appends (it reports none for
// a replay). If the read fails, the commit position from the append's reply
// (or 0, "unknown", which the contract allows) stands in.
func (s *Store) positionAt(ctx context.Context, be backend, stream string, rev, fallback uint64) uint64 {
	evs, err := be.readStream(ctx, stream, kurrentdb.StreamRevision{Value: rev}, false, 1)
	if err == nil && len(evs) == 1 && evs[0].EventNumber == rev {
		if p := positionOf(evs[0]); p != 0 {
			return p
		}
	}
	return fallback
}

// replayed decides an AnyVersion append of events to stream against the
// stream's newest events (tail, newest first) by the shared rule: done is
// true when every id is already stored in order, in which case the append is
// a no-op reporting where they are. An id stored otherwise is
// ErrDuplicateEventID.
func replayed(stream string, tail []kurrentdb.RecordedEvent, events []domain.Envelope) (eventstore.AppendResult, bool, error) {
	if len(tail) == 0 {
		return eventstore.AppendResult{}, false, nil
	}
	byID := make(map[uuid.UUID]eventstore.Recorded, len(tail))
	for _, rec := range tail {
		byID[rec.EventID] = eventstore.Recorded{Stream: stream, Version: versionOf(rec.EventNumber), Position: positionOf(rec)}
	}
	return eventstore.Replayed(stream, domain.AnyVersion, events, func(id string) (eventstore.Recorded, bool) {
		u, err := uuid.Parse(id)
		if err != nil {
			return eventstore.Recorded{}, false
		}
		r, ok := byID[u]
		return r, ok
	})
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	be, err := s.acquire()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	out, err := s.readStream(ctx, be, stream, from, max)
	s.release()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, s.fail(ctx, be, err))
	}
	return out, nil
}

func (s *Store) readStream(ctx context.Context, be backend, stream string, from int64, max int) ([]domain.Envelope, error) {
	if from < 1 {
		from = 1
	}
	var out []domain.Envelope
	rev := uint64(from - 1)
	for max <= 0 || len(out) < max {
		count := s.cfg.ReadBatch
		if max > 0 {
			count = min(count, max-len(out))
		}
		page, err := be.readStream(ctx, stream, kurrentdb.StreamRevision{Value: rev}, false, uint64(count))
		if err != nil {
			return nil, err
		}
		for _, rec := range page {
			out = append(out, toEnvelope(rec))
		}
		if len(page) < count {
			break
		}
		rev = page[len(page)-1].EventNumber + 1
	}
	return out, nil
}

// ReadAll implements eventstore.Store. KurrentDB's client offers no
// server-side filter for reads of $all, so the filter and the exclusion of
// system events are applied here, page by page.
func (s *Store) ReadAll(ctx context.Context, after uint64, max int, filter eventstore.Filter) ([]domain.Envelope, error) {
	be, err := s.acquire()
	if err != nil {
		return nil, fmt.Errorf("read all: %w", err)
	}
	out, err := s.readAll(ctx, be, after, max, filter)
	s.release()
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, s.fail(ctx, be, err))
	}
	return out, nil
}

func (s *Store) readAll(ctx context.Context, be backend, after uint64, max int, filter eventstore.Filter) ([]domain.Envelope, error) {
	var out []domain.Envelope
	last := after
	for {
		count := s.cfg.ReadBatch
		if max > 0 && len(filter.StreamPrefixes) == 0 {
			// Without a filter nearly every event counts, so a small
			// request does (one more for the event at last, which the
			// read repeats).
			count = min(count, max-len(out)+1)
		}
		page, err := be.readAll(ctx, allPosition(last), false, uint64(count))
		if err != nil {
			return nil, err
		}
		progressed := false
		for _, rec := range page {
			pos := positionOf(rec)
			if pos <= last {
				// The read starts at the event at last, which the
				// previous page (or the caller) already had.
				continue
			}
			last, progressed = pos, true
			if isSystem(rec) || !filter.Match(rec.StreamID) {
				continue
			}
			out = append(out, toEnvelope(rec))
			if max > 0 && len(out) == max {
				return out, nil
			}
		}
		if len(page) < count || !progressed {
			return out, nil
		}
	}
}

// Head implements eventstore.Store: the position of the newest event that is
// not a system event, found by reading $all backwards.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	be, err := s.acquire()
	if err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	head, err := s.head(ctx, be)
	s.release()
	if err != nil {
		return 0, fmt.Errorf("head: %w", s.fail(ctx, be, err))
	}
	return head, nil
}

func (s *Store) head(ctx context.Context, be backend) (uint64, error) {
	var from kurrentdb.AllPosition = kurrentdb.End{}
	var oldest uint64 // position of the oldest event seen so far, 0 before the first page
	// The newest event is nearly always ours: start with a small read and
	// grow it while only system events turn up.
	count := min(headFirstRead, s.cfg.ReadBatch)
	for {
		page, err := be.readAll(ctx, from, true, uint64(count))
		if err != nil {
			return 0, err
		}
		progressed := false
		for _, rec := range page {
			pos := positionOf(rec)
			if oldest != 0 && pos >= oldest {
				continue
			}
			oldest, progressed = pos, true
			if !isSystem(rec) {
				return pos, nil
			}
			from = kurrentdb.Position{Commit: rec.Position.Commit, Prepare: rec.Position.Prepare}
		}
		if len(page) < count || !progressed {
			return 0, nil
		}
		count = min(2*count, s.cfg.ReadBatch)
	}
}

// Close implements eventstore.Store: it waits for calls in flight (up to
// closeGrace, then they fail), ends every open subscription and closes the
// client.
func (s *Store) Close() error {
	locked := make(chan struct{})
	go func() {
		s.mu.Lock()
		close(locked)
	}()
	select {
	case <-locked:
	case <-time.After(closeGrace):
		s.current.Load().(backendRef).be.abandon()
		<-locked
	}
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	be := s.be
	s.mu.Unlock()

	// Subscribe registers under the read lock, so every subscription is
	// in s.subs by now and no new one can start.
	s.subsMu.Lock()
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.subsMu.Unlock()
	for _, sub := range subs {
		sub.Close()
	}
	return be.close()
}
