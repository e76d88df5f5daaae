package coordinator

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/projections/sagaview"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// leaseCheck is how often the holder of the deadline lease checks that
// its connection, and so its lock, is still there.
const leaseCheck = time.Second

// DeadlineLeaseKey is the PostgreSQL advisory lock whose holder fires the
// deadlines of the sagas of its database.
var DeadlineLeaseKey = func() int64 {
	h := fnv.New64a()
	h.Write([]byte("orderflow sagas deadlines"))
	return int64(h.Sum64())
}()

// runDeadlines fires passed deadlines while this replica holds the lease,
// and waits for the lease while another one does, until ctx ends.
func (c *Coordinator) runDeadlines(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	standingBy := false
	pause := c.cfg.StandbyPoll
	for ctx.Err() == nil {
		held, err := c.tryLease(ctx, &conn)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("deadline lease: cannot try it; retrying", "error", err, "in", pause)
			if backoff.Sleep(ctx, pause) != nil {
				return
			}
			pause = min(2*pause, 10*time.Second)
		case !held:
			pause = c.cfg.StandbyPoll
			if !standingBy {
				c.log.Info("deadline poller standing by: another coordinator holds the lease")
				standingBy = true
			}
			if backoff.Sleep(ctx, c.cfg.StandbyPoll) != nil {
				return
			}
		default:
			pause, standingBy = c.cfg.StandbyPoll, false
			c.log.Info("deadline poller active: this coordinator holds the lease")
			c.stats.leaseHeld.Store(true)
			c.holdAndPoll(ctx, conn)
			c.stats.leaseHeld.Store(false)
			conn = nil // closed by holdAndPoll, which released the lease
		}
	}
}

// tryLease tries the lease once on *conn, a connection of its own
// (outside the pool, which it would hold forever), opened when nil and
// kept between tries; a connection that fails is closed and set to nil.
func (c *Coordinator) tryLease(ctx context.Context, conn **pgx.Conn) (bool, error) {
	if *conn == nil {
		cn, err := pgx.ConnectConfig(ctx, c.pool.Config().ConnConfig.Copy())
		if err != nil {
			return false, fmt.Errorf("deadline lease connection: %w", err)
		}
		*conn = cn
	}
	var ok bool
	if err := (*conn).QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", DeadlineLeaseKey).Scan(&ok); err != nil {
		closeConn(*conn)
		*conn = nil
		return false, fmt.Errorf("deadline lease: %w", err)
	}
	return ok, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// holdAndPoll fires deadlines until ctx ends or the lease's connection
// fails (its lock is then gone, and another replica may hold it), then
// releases the lease.
func (c *Coordinator) holdAndPoll(ctx context.Context, conn *pgx.Conn) {
	lctx, lost := context.WithCancel(ctx)
	defer lost()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer lost()
		t := time.NewTicker(leaseCheck)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(lctx, 5*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && lctx.Err() == nil {
				c.log.Warn("deadline lease lost: its connection failed", "error", err)
				return
			}
		}
	})
	c.pollDeadlines(lctx)
	lost()
	wg.Wait()
	closeConn(conn) // ends the session, which releases the lock
}

// skipped remembers a saga whose deadline was just decided on, so that
// its row, which the read model brings up to date a moment later, does
// not wake it up again meanwhile.
type skipped struct {
	// version is the stream's version after the decision: a row behind
	// it is stale.
	version int64
	// until ends the wait for a row that is up to date but still due
	// (nothing was decided), so that such a saga is not woken up in a
	// loop.
	until time.Time
}

// pollDeadlines wakes up the sagas whose deadline has passed, as the saga
// read model says, until ctx ends: each is decided on (sagas.OnDeadline)
// with its stream's newest state. It looks again when the next deadline
// of the read model or of a decision of this replica comes, and at least
// every PollInterval.
func (c *Coordinator) pollDeadlines(ctx context.Context) {
	skip := make(map[string]skipped)
	for ctx.Err() == nil {
		now := time.Now()
		due, err := sagaview.DueBy(ctx, c.pool, now, c.cfg.DeadlineBatch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("deadlines: cannot read the sagas due; retrying", "error", err)
			if backoff.Sleep(ctx, c.cfg.PollInterval) != nil {
				return
			}
			continue
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			slots = make(chan struct{}, c.cfg.Concurrency)
			fired int
		)
		stillDue := make(map[string]skipped, len(due))
		for _, d := range due {
			if s, ok := skip[d.SagaID]; ok && (d.Version < s.version || now.Before(s.until)) {
				stillDue[d.SagaID] = s
				continue
			}
			fired++
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				res, err := c.fireDeadline(ctx, d.SagaID)
				var s skipped
				switch {
				case err != nil:
					if ctx.Err() == nil {
						c.log.Warn("deadline: decision failed; will try again", "saga_id", d.SagaID, "error", err)
					}
					s.until = time.Now().Add(c.cfg.PollInterval)
				case res.appended > 0:
					s.version = res.version
				default:
					s = skipped{version: res.version, until: time.Now().Add(c.cfg.PollInterval)}
				}
				mu.Lock()
				stillDue[d.SagaID] = s
				mu.Unlock()
			})
		}
		wg.Wait()
		skip = stillDue // a saga no longer due needs no memory
		if fired > 0 && len(due) == c.cfg.DeadlineBatch {
			continue // more may be due
		}
		c.waitForDeadline(ctx, now)
	}
}

// fireDeadline decides on saga sagaID's passed deadline, in a span that
// continues the trace of the saga's last decision when this replica still
// holds its state (after a restart, the deadline starts a trace of its
// own).
func (c *Coordinator) fireDeadline(ctx context.Context, sagaID string) (result, error) {
	parent, state := c.cache.trace(sagaID)
	ctx = telemetry.Extract(ctx, parent, state)
	ctx, span := tracer.Start(ctx, "deadline", trace.SpanKindInternal)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(telemetry.KeySagaID.String(sagaID))
	}
	parent, state = telemetry.Inject(ctx)
	res, err := c.decide(ctx, sagaID, cause{traceParent: parent, traceState: state}, func(def *sagas.Definition, st *sagas.State, now time.Time) ([]any, error) {
		if !st.Started() {
			return nil, nil
		}
		return sagas.OnDeadline(def, st, now)
	})
	if err == nil && res.appended > 0 {
		c.stats.deadlines.Add(1)
	}
	if err != nil {
		telemetry.Fail(span, err)
	}
	return res, err
}

// waitForDeadline returns at the earliest of: the next deadline in the
// read model, a deadline a decision of this replica set (wakeAt), now +
// PollInterval, or ctx's end. It looks a few milliseconds after a
// deadline, by when the read model has the row of a deadline just set.
func (c *Coordinator) waitForDeadline(ctx context.Context, now time.Time) {
	until := now.Add(c.cfg.PollInterval)
	if next, ok, err := sagaview.NextDeadline(ctx, c.pool); err == nil && ok && next.After(now) && next.Before(until) {
		until = next
	}
	for {
		c.wakeMu.Lock()
		if !c.nextWake.IsZero() && c.nextWake.Before(until) {
			until = c.nextWake
		}
		c.wakeMu.Unlock()
		t := time.NewTimer(time.Until(until) + 5*time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.wake:
			t.Stop() // an earlier deadline may have been set: wait again
		case <-t.C:
			c.wakeMu.Lock()
			if !c.nextWake.After(time.Now()) {
				c.nextWake = time.Time{} // looked for now
			}
			c.wakeMu.Unlock()
			return
		}
	}
}
