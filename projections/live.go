package projections

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/backoff"
)

// live is what the two kinds of projector share: the loop that restarts
// one after errors, and the progress that Stats reports.
type live struct {
	name string
	log  *slog.Logger
	rate rateMeter

	mu         sync.Mutex
	stats      Stats
	running    bool
	parked     atomic.Int64
	rebuilding atomic.Bool
}

// runRetrying calls run until ctx is done, then returns nil. After each
// failure it logs what failed and pauses, first for first, then twice as
// long each time up to most; progress reported by run starts over at
// first.
func (l *live) runRetrying(ctx context.Context, what string, first, most time.Duration, run func(ctx context.Context, progress func()) error) error {
	l.setRunning(true)
	defer l.setRunning(false)
	pause := first
	for {
		err := run(ctx, func() { pause = first })
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn(what+" failed; retrying", "projection", l.name, "error", err, "backoff", pause)
		if backoff.Sleep(ctx, pause) != nil {
			return nil
		}
		pause = min(2*pause, most)
	}
}

func (l *live) setRunning(b bool) {
	l.mu.Lock()
	l.running = b
	l.mu.Unlock()
}

// snapshot returns the stats with the parked events, the rate and the
// status filled in; a projector that is waiting counts as stopped.
func (l *live) snapshot(waiting bool) Stats {
	l.mu.Lock()
	s := l.stats
	running := l.running
	l.mu.Unlock()
	s.Parked = l.parked.Load()
	s.EventsPerSecond = l.rate.rate(time.Now())
	switch {
	case l.rebuilding.Load():
		s.Status = StatusRebuilding
	case running && !waiting:
		s.Status = StatusLive
	default:
		s.Status = StatusStopped
	}
	return s
}

// loadParked counts the events parked so far, by any process.
func (l *live) loadParked(ctx context.Context, db *pgxpool.Pool) error {
	var parked int64
	if err := db.QueryRow(ctx, "SELECT count(*) FROM projection_parked WHERE projection = $1", l.name).Scan(&parked); err != nil {
		return err
	}
	l.parked.Store(parked)
	return nil
}

// noteParked counts and logs an event this projector parked.
func (l *live) noteParked(eventID string, position uint64, typ string, cause error) {
	l.parked.Add(1)
	logParked(l.log, l.name, eventID, position, typ, cause)
}

func logParked(l *slog.Logger, projection, eventID string, position uint64, typ string, cause error) {
	l.Error("projection parked an event it cannot apply", "projection", projection,
		"event_id", eventID, "position", position, "type", typ, "error", cause)
}
