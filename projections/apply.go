package projections

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
)

// transient reports whether err is about reaching the database rather than
// about the events: such a batch is retried as a whole after a backoff and
// nothing is parked because of it.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUndecodable) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrOutOfOrder) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"40", // serialization failure, deadlock
			"53", // insufficient resources
			"57", // operator intervention: shutdown, statement timeout
			"58": // system error
			return true
		}
		// lock_not_available (a lock_timeout) and idle-in-transaction timeout.
		return pgErr.Code == "55P03" || pgErr.Code == "25P03"
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	return pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

// committer writes one batch, or parks one event, in a transaction of its
// own: the live projector, a rebuild and the JetStream projector each have
// one.
type committer interface {
	// commit applies events and moves the checkpoint to through.
	commit(ctx context.Context, events []domain.Envelope, through uint64) error
	// park records e as parked because of cause, and moves the checkpoint
	// past it to through.
	park(ctx context.Context, e domain.Envelope, cause error, through uint64) error
	// ping tells whether the database answers, so that an event is not
	// parked for a failure that was really the database's.
	ping(ctx context.Context) error
}

// retryPolicy bounds the retries of one failing event before it is parked.
type retryPolicy struct {
	retries int
	delay   time.Duration
}

// newRetryPolicy reads a config's Retries and RetryDelay: zero means the
// defaults, 2 retries 50ms apart, and negative retries mean none.
func newRetryPolicy(retries int, delay time.Duration) retryPolicy {
	switch {
	case retries == 0:
		retries = 2
	case retries < 0:
		retries = 0
	}
	if delay == 0 {
		delay = 50 * time.Millisecond
	}
	return retryPolicy{retries: retries, delay: delay}
}

// commitIsolating commits events through c. When the batch fails because of
// its content, it is split in halves, recursively, until the failing event
// is alone; that event is retried on its own and then parked, and the rest
// of the batch is committed around it. A transient error ends the attempt:
// the caller retries from its checkpoint after a backoff.
func commitIsolating(ctx context.Context, c committer, rp retryPolicy, events []domain.Envelope, through uint64) error {
	err := c.commit(ctx, events, through)
	if err == nil || abortive(err) || ctx.Err() != nil {
		return err
	}
	return isolate(ctx, c, rp, events, through, err)
}

// abortive reports errors that end an attempt without blaming any event.
func abortive(err error) bool {
	return transient(err) || errors.Is(err, errCheckpointMoved) || errors.Is(err, ErrSchemaChanged)
}

func isolate(ctx context.Context, c committer, rp retryPolicy, events []domain.Envelope, through uint64, cause error) error {
	if len(events) > 1 {
		mid := len(events) / 2
		left, right := events[:mid], events[mid:]
		if err := commitIsolating(ctx, c, rp, left, left[len(left)-1].Position); err != nil {
			return err
		}
		return commitIsolating(ctx, c, rp, right, through)
	}
	if len(events) == 0 {
		return cause
	}
	e := events[0]
	if !errors.Is(cause, ErrUndecodable) {
		for range rp.retries {
			if err := backoff.Sleep(ctx, rp.delay); err != nil {
				return err
			}
			err := c.commit(ctx, events, through)
			if err == nil || abortive(err) {
				return err
			}
			cause = err
		}
	}
	if err := c.ping(ctx); err != nil {
		return err
	}
	return c.park(ctx, e, cause, through)
}

// errCheckpointMoved is returned by a commit that found the registry's
// checkpoint behind the projector's (an operator reset it): the projector
// must read again from there.
var errCheckpointMoved = errors.New("checkpoint moved")

// trim drops the events at or before checkpoint, which a rebuild's swap has
// already applied to the version that is now active.
func trim(events []domain.Envelope, checkpoint uint64) []domain.Envelope {
	i := 0
	for i < len(events) && events[i].Position <= checkpoint {
		i++
	}
	return events[i:]
}
