package postgres

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// Subscribe implements eventstore.Store. Subscribers wake up when this
// process commits an append and, through LISTEN/NOTIFY, when another process
// does; a slow poll covers notifications lost while the listener reconnects.
func (s *Store) Subscribe(ctx context.Context, after uint64, filter eventstore.Filter) (eventstore.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, eventstore.ErrClosed
	}
	if s.listener == nil {
		s.listener = newListener(s)
	}
	s.mu.Unlock()
	return &subscription{store: s, after: after, filter: filter, done: make(chan struct{})}, nil
}

type subscription struct {
	store  *Store
	after  uint64
	filter eventstore.Filter
	buf    []domain.Envelope
	// caughtUp is set when the last read found everything there was: it
	// is the wake-up channel taken before that read, and no read is
	// needed until it is closed.
	caughtUp <-chan struct{}
	done     chan struct{}
	once     sync.Once
}

func (sub *subscription) Next(ctx context.Context) (domain.Envelope, error) {
	s := sub.store
	for {
		select {
		case <-sub.done:
			return domain.Envelope{}, eventstore.ErrClosed
		default:
		}
		if len(sub.buf) > 0 {
			e := sub.buf[0]
			sub.buf = sub.buf[1:]
			sub.after = e.Position
			return e, nil
		}
		if sub.caughtUp == nil {
			// Take the wake-up channel before reading, so a commit
			// between the read and the wait is not missed.
			wake, closed := s.waitChan()
			if closed {
				return domain.Envelope{}, eventstore.ErrClosed
			}
			evs, err := s.ReadAll(ctx, sub.after, s.cfg.ReadBatch, sub.filter)
			if err != nil {
				return domain.Envelope{}, err
			}
			sub.buf = evs
			if len(evs) < s.cfg.ReadBatch {
				sub.caughtUp = wake
			}
			continue
		}
		t := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-sub.caughtUp:
		case <-t.C:
		case <-sub.done:
			t.Stop()
			return domain.Envelope{}, eventstore.ErrClosed
		case <-ctx.Done():
			t.Stop()
			return domain.Envelope{}, ctx.Err()
		}
		t.Stop()
		sub.caughtUp = nil
	}
}

func (sub *subscription) Close() error {
	sub.once.Do(func() { close(sub.done) })
	return nil
}

// listener holds a dedicated connection (outside the pool) that LISTENs for
// commits by other processes and wakes this store's subscribers.
type listener struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newListener(s *Store) *listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		backoff := 50 * time.Millisecond
		for ctx.Err() == nil {
			if err := l.listen(ctx, s); err == nil || ctx.Err() != nil {
				return
			}
			// Whatever was committed while we were away is found by the
			// subscribers' next read.
			s.broadcast(0)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
	return l
}

func (l *listener) listen(ctx context.Context, s *Store) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	s.broadcast(0)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		// The payload is the commit's head; one that does not parse
		// wakes everyone.
		head, _ := strconv.ParseUint(n.Payload, 10, 64)
		s.broadcast(head)
	}
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
