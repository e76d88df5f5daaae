// Package postgres is the PostgreSQL event store, the embedded default.
//
// Events live in one table, es_events, keyed by a global position. Appends
// from many goroutines are group-committed: a committer takes every append
// queued at that moment and writes them in one transaction, so concurrent
// writers share a commit (and its fsync) instead of paying one each.
//
// The global order is gap-safe. Every appending transaction takes one
// transaction-scoped advisory lock before it reads the head position, and
// keeps it until it has committed, so positions are handed out contiguously
// and become visible in order: a reader that sees position n+1 also sees n.
// The plain BIGSERIAL alternative hands out numbers at insert time and lets a
// later number commit first, which makes catch-up readers skip events (see
// docs/adr/0001-gap-safe-global-order.md).
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// appendLockKey is the advisory lock every appending transaction holds until
// commit; its value is arbitrary but fixed ("orderflw" in ASCII).
const appendLockKey int64 = 0x6f7264657266_6c77

// notifyChannel is the LISTEN/NOTIFY channel that wakes subscribers.
const notifyChannel = "es_events"

// Config tunes the store. The zero value is valid and gives the defaults.
type Config struct {
	// Committers is how many group-commit transactions may be in progress
	// at once (one commits while the next gathers and waits for the lock).
	// Default 2.
	Committers int
	// MaxBatchEvents caps the events written by one group commit.
	// Default 4096.
	MaxBatchEvents int
	// PollInterval is how often an idle subscription re-reads the store in
	// case a notification was lost (e.g. while the listener reconnected).
	// Default 1s.
	PollInterval time.Duration
	// ReadBatch is how many events a subscription reads at once. Default 512.
	ReadBatch int
}

func (c *Config) setDefaults() {
	if c.Committers == 0 {
		c.Committers = 2
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = 4096
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.ReadBatch == 0 {
		c.ReadBatch = 512
	}
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	switch {
	case c.Committers < 0 || c.Committers > 16:
		return fmt.Errorf("postgres event store: Committers %d out of range 1..16", c.Committers)
	case c.MaxBatchEvents < 0:
		return fmt.Errorf("postgres event store: MaxBatchEvents %d is negative", c.MaxBatchEvents)
	case c.PollInterval < 0:
		return fmt.Errorf("postgres event store: PollInterval %s is negative", c.PollInterval)
	case c.ReadBatch < 0:
		return fmt.Errorf("postgres event store: ReadBatch %d is negative", c.ReadBatch)
	}
	return nil
}

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config

	queue    chan *appendReq
	stop     chan struct{}
	wg       sync.WaitGroup
	turn     sync.Mutex // held by the committer gathering the next batch
	lastSize int        // requests in the last batch, for lingering; guarded by turn

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever new events may exist
	woken    uint64        // the highest head broadcast so far
	closed   bool
	listener *listener
}

var _ eventstore.Store = (*Store)(nil)

// Migrate creates the store's tables if they do not exist yet.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	entries, err := migrations.ReadDir("migrations")
	if err != nil {
		return fmt.Errorf("event store migrations: %w", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("event store migrations: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// Concurrent starts of the same service must not race on CREATE TABLE.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", appendLockKey+1); err != nil {
		return fmt.Errorf("event store migrations: %w", err)
	}
	for _, e := range entries {
		sql, err := migrations.ReadFile("migrations/" + e.Name())
		if err != nil {
			return fmt.Errorf("event store migration %s: %w", e.Name(), err)
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("event store migration %s: %w", e.Name(), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("event store migrations: %w", err)
	}
	return nil
}

// New returns a store on pool, whose database must have been migrated with
// Migrate. Close stops its committers; the pool stays the caller's.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("postgres event store: %w", err)
	}
	s := &Store{
		pool:    pool,
		cfg:     cfg,
		queue:   make(chan *appendReq, 4*cfg.MaxBatchEvents),
		stop:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	for i := 0; i < cfg.Committers; i++ {
		s.wg.Add(1)
		go s.commitLoop()
	}
	return s, nil
}

// Close stops the committers and the notification listener. Appends queued
// but not yet written fail with eventstore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	close(s.changed)
	l := s.listener
	s.mu.Unlock()
	if l != nil {
		l.stop()
	}
	s.wg.Wait()
	for {
		select {
		case r := <-s.queue:
			r.done <- appendResp{err: eventstore.ErrClosed}
		default:
			return nil
		}
	}
}

// broadcast wakes every waiting subscription because the events up to
// position head have committed; head 0 means "something may have changed".
// Every commit of this store is announced twice, directly and through its
// own NOTIFY, and a head already announced is skipped, so subscribers read
// once per commit. Skipping is safe for any head at or below one already
// announced: positions commit in order, so those events were visible to the
// reads that the earlier wake-up caused.
func (s *Store) broadcast(head uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || (head != 0 && head <= s.woken) {
		return
	}
	s.woken = max(s.woken, head)
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitChan returns the channel closed at the next broadcast.
func (s *Store) waitChan() (<-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed, s.closed
}

const selectColumns = "position, event_id::text, stream, version, type, schema_version, data, metadata, recorded_at"

func scanEvents(rows pgx.Rows, max int) ([]domain.Envelope, error) {
	defer rows.Close()
	// Most reads are the polls of subscribers and single streams and find
	// a few events: a capacity sized for the largest page (1,024 envelopes,
	// ~200 KB) on every poll made the services collect garbage several
	// times more often (the saga bench, ADR 0112). append grows it.
	out := make([]domain.Envelope, 0, min(max, 16))
	for rows.Next() {
		var (
			e    domain.Envelope
			pos  int64
			meta []byte
			data []byte
		)
		if err := rows.Scan(&pos, &e.ID, &e.Stream, &e.Version, &e.Type, &e.SchemaVersion, &data, &meta, &e.RecordedAt); err != nil {
			return nil, err
		}
		e.Position = uint64(pos)
		e.Data = data
		e.RecordedAt = e.RecordedAt.UTC()
		if len(meta) > 0 {
			if err := json.Unmarshal(meta, &e.Metadata); err != nil {
				return nil, fmt.Errorf("event %s: metadata: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	if max <= 0 {
		max = 1 << 30
	}
	rows, err := s.pool.Query(ctx, "SELECT "+selectColumns+" FROM es_events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3", stream, from, max)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	evs, err := scanEvents(rows, max)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return evs, nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after uint64, max int, filter eventstore.Filter) ([]domain.Envelope, error) {
	if max <= 0 {
		max = 1 << 30
	}
	var (
		rows pgx.Rows
		err  error
	)
	if len(filter.StreamPrefixes) == 0 {
		rows, err = s.pool.Query(ctx, "SELECT "+selectColumns+" FROM es_events WHERE position > $1 ORDER BY position LIMIT $2", int64(after), max)
	} else {
		rows, err = s.pool.Query(ctx, "SELECT "+selectColumns+" FROM es_events WHERE position > $1 AND stream LIKE ANY($3) ORDER BY position LIMIT $2", int64(after), max, likePatterns(filter.StreamPrefixes))
	}
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, err)
	}
	evs, err := scanEvents(rows, max)
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, err)
	}
	return evs, nil
}

// likePatterns turns stream prefixes into LIKE patterns, escaping the
// pattern characters a prefix may contain.
func likePatterns(prefixes []string) []string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = r.Replace(p) + "%"
	}
	return out
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	var head int64
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM es_events").Scan(&head); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	return uint64(head), nil
}
