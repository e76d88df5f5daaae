package projections

import (
	"context"
	"sync"
	"time"
)

// Status is what a projection is doing.
type Status string

// The statuses of the operations API.
const (
	StatusLive       Status = "live"
	StatusRebuilding Status = "rebuilding"
	StatusStopped    Status = "stopped"
)

// Stats is the progress of one projection, in the shape of the items of
// GET /admin/projections (plus a few fields operators find useful).
type Stats struct {
	Name string `json:"name"`
	// Checkpoint is the global position of the last event applied to the
	// active version (the stream sequence, for a JetStream projection).
	Checkpoint uint64 `json:"checkpoint"`
	// Head is the newest position of the source.
	Head uint64 `json:"head"`
	// Lag is Head - Checkpoint, never negative.
	Lag             uint64  `json:"lag"`
	Status          Status  `json:"status"`
	EventsPerSecond float64 `json:"events_per_second"`
	// Parked counts the events this projection parked.
	Parked int64 `json:"parked"`
	// ActiveVersion is the version of the tables serving queries.
	ActiveVersion int `json:"active_version"`
	// Rebuild is the progress of a rebuild running in this process.
	Rebuild *Progress `json:"rebuild,omitempty"`
}

func lag(head, checkpoint uint64) uint64 {
	if head > checkpoint {
		return head - checkpoint
	}
	return 0
}

// rateMeter measures events per second over the last few seconds.
type rateMeter struct {
	mu      sync.Mutex
	buckets [8]float64
	start   int64 // unix second of buckets[0]'s slot
}

const rateWindow = 8

func (m *rateMeter) add(now time.Time, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance(now.Unix())
	m.buckets[now.Unix()%rateWindow] += float64(n)
}

// advance clears the buckets of the seconds since the last call.
func (m *rateMeter) advance(sec int64) {
	if m.start == 0 || sec-m.start >= 2*rateWindow {
		m.buckets = [rateWindow]float64{}
		m.start = sec - rateWindow + 1
		return
	}
	for m.start+rateWindow-1 < sec {
		m.start++
		m.buckets[(m.start+rateWindow-1)%rateWindow] = 0
	}
}

// rate is the mean over the window's complete seconds.
func (m *rateMeter) rate(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	sec := now.Unix()
	m.advance(sec)
	var sum float64
	for i := int64(1); i < rateWindow; i++ {
		sum += m.buckets[(sec-i)%rateWindow]
	}
	return sum / (rateWindow - 1)
}

// Header tells a source's head position; every Source is one.
type Header interface {
	Head(ctx context.Context) (uint64, error)
}

// ListStats reads the progress of every installed projection from the
// database, for tools that do not run the projectors themselves (the CLI).
// head gives the event store's head (nil: reported as the checkpoint, as it
// is for projections fed by JetStream, whose checkpoint is a stream
// sequence). A projection is live when a projector wrote its heartbeat in
// the last 30 seconds, rebuilding while a rebuild holds its lock, else
// stopped.
func ListStats(ctx context.Context, q Querier, head Header) ([]Stats, error) {
	var h uint64
	if head != nil {
		var err error
		if h, err = head.Head(ctx); err != nil {
			return nil, err
		}
	}
	rows, err := q.Query(ctx, `SELECT v.name, v.active_version, v.checkpoint, v.rebuilding_version IS NOT NULL,
			coalesce(v.heartbeat_at > now() - $1::interval, false), v.events_per_second,
			(SELECT count(*) FROM projection_parked p WHERE p.projection = v.name), v.feed = 'jetstream'
		FROM projection_versions v ORDER BY v.name`, staleAfter)
	if err != nil {
		return nil, err
	}
	var out []Stats
	for rows.Next() {
		var (
			s                     Stats
			cp                    int64
			rebuilding, heartbeat bool
			jetstream             bool
		)
		if err := rows.Scan(&s.Name, &s.ActiveVersion, &cp, &rebuilding, &heartbeat, &s.EventsPerSecond, &s.Parked, &jetstream); err != nil {
			rows.Close()
			return nil, err
		}
		s.Checkpoint = uint64(cp)
		s.Head = h
		if head == nil || jetstream {
			s.Head = s.Checkpoint
		}
		s.Lag = lag(s.Head, s.Checkpoint)
		s.Status = StatusStopped
		if heartbeat {
			s.Status = StatusLive
		} else {
			s.EventsPerSecond = 0
		}
		if rebuilding {
			s.Status = StatusRebuilding
		}
		out = append(out, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// A rebuild that died leaves its registration behind; it only counts
	// while its session lock is held.
	for i, s := range out {
		if s.Status != StatusRebuilding {
			continue
		}
		held, err := lockHeld(ctx, q, rebuildLockKey(s.Name))
		if err != nil {
			return nil, err
		}
		if !held {
			out[i].Status = StatusStopped
		}
	}
	return out, nil
}

// lockHeld reports whether anyone holds the session-level advisory lock key
// in the current database. PostgreSQL shows a bigint key as its high half in
// classid and its low half in objid.
func lockHeld(ctx context.Context, q Querier, key int64) (bool, error) {
	var held bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid = $1::bigint::oid AND objid = $2::bigint::oid)`,
		int64(uint32(uint64(key)>>32)), int64(uint32(uint64(key)))).Scan(&held)
	return held, err
}

// staleAfter is how old a heartbeat may be for its projector to count as
// live; projectors write one at least every heartbeatEvery.
const (
	heartbeatEvery = 5 * time.Second
	staleAfter     = 30 * time.Second
)
