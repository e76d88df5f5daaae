package kurrentdb

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
)

// backend is the part of a KurrentDB client the Store uses, in a shape that
// a fake can implement: the client's read and subscription handles cannot be
// built outside its package. Errors carry the kinds of mapping.go.
type backend interface {
	// appendEvents appends with the given expected state and returns the
	// revision of the stream's last event and the commit position the
	// server reported (0 when it reported none, as for an idempotent
	// replay).
	appendEvents(ctx context.Context, stream string, state kurrentdb.StreamState, events []kurrentdb.EventData) (revision, commit uint64, err error)
	// readStream returns up to count events of stream from the given
	// place, forwards or backwards. A missing stream yields no events.
	readStream(ctx context.Context, stream string, from kurrentdb.StreamPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error)
	// readAll returns up to count events of $all from the given place,
	// forwards (the event at from included) or backwards.
	readAll(ctx context.Context, from kurrentdb.AllPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error)
	// subscribeAll opens a catch-up subscription to $all after from.
	subscribeAll(ctx context.Context, from kurrentdb.AllPosition, filter *kurrentdb.SubscriptionFilter) (feed, error)
	// abandon makes the calls in progress return at once (errDead) and
	// later ones fail: the Store gives the backend up.
	abandon()
	close() error
}

// feed is an open subscription; *kurrentdb.Subscription is one.
type feed interface {
	Recv() *kurrentdb.SubscriptionEvent
	Close() error
}

// clientBackend is the backend over the real client.
//
// The client (v1.4.0) hands out connections from one goroutine over an
// unbuffered channel, without a context. When a node discovery fails that
// goroutine ends for good, and every call already waiting to be handed a
// connection then waits forever, whatever its context. So each call runs
// in a goroutine of its own and the caller leaves when its context ends or
// the backend is abandoned; a call left behind is counted as stuck, and
// the client is closed only once no call is stuck in it (closing its
// channel under a waiting call would make that call panic).
type clientBackend struct {
	c         *kurrentdb.Client
	abandoned chan struct{} // closed by abandon
	once      sync.Once

	mu      sync.Mutex
	stuck   int  // calls left behind that have not returned yet
	closing bool // close was called; the last stuck call closes the client
}

func newClientBackend(c *kurrentdb.Client) *clientBackend {
	return &clientBackend{c: c, abandoned: make(chan struct{})}
}

var errAbandoned = &kindError{kind: errDead, err: errors.New("kurrentdb: client abandoned")}

// call runs f, which uses the client, and returns its error, or returns
// early when ctx ends or the backend is abandoned.
func (b *clientBackend) call(ctx context.Context, f func() error) error {
	select {
	case <-b.abandoned:
		return errAbandoned
	default:
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		b.leave(done)
		return ctx.Err()
	case <-b.abandoned:
		b.leave(done)
		return errAbandoned
	}
}

// leave counts a call whose caller left until it returns, if ever.
func (b *clientBackend) leave(done <-chan error) {
	b.mu.Lock()
	b.stuck++
	b.mu.Unlock()
	go func() {
		<-done
		b.mu.Lock()
		b.stuck--
		closeNow := b.closing && b.stuck == 0
		b.mu.Unlock()
		if closeNow {
			_ = b.c.Close()
		}
	}()
}

func (b *clientBackend) appendEvents(ctx context.Context, stream string, state kurrentdb.StreamState, events []kurrentdb.EventData) (uint64, uint64, error) {
	// Locals, not named results: a call left behind may still set them.
	var revision, commit uint64
	err := b.call(ctx, func() error {
		res, err := b.c.AppendToStream(ctx, stream, kurrentdb.AppendToStreamOptions{StreamState: state}, events...)
		if err != nil {
			return classify(err)
		}
		revision, commit = res.NextExpectedVersion, res.CommitPosition
		return nil
	})
	if err != nil {
		// Not revision and commit: a call left behind may still set them.
		return 0, 0, err
	}
	return revision, commit, nil
}

func (b *clientBackend) readStream(ctx context.Context, stream string, from kurrentdb.StreamPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	var out []kurrentdb.RecordedEvent // a local: a call left behind may still set it
	err := b.call(ctx, func() error {
		opts := kurrentdb.ReadStreamOptions{From: from, Direction: direction(backwards)}
		rs, err := b.c.ReadStream(ctx, stream, opts, count)
		if err != nil {
			return missingIsEmpty(classify(err))
		}
		defer rs.Close()
		out, err = drain(rs)
		return err
	})
	if err != nil {
		// Not out: a call left behind may still set it.
		return nil, err
	}
	return out, nil
}

func (b *clientBackend) readAll(ctx context.Context, from kurrentdb.AllPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	var out []kurrentdb.RecordedEvent // a local: a call left behind may still set it
	err := b.call(ctx, func() error {
		opts := kurrentdb.ReadAllOptions{From: from, Direction: direction(backwards)}
		rs, err := b.c.ReadAll(ctx, opts, count)
		if err != nil {
			return classify(err)
		}
		defer rs.Close()
		out, err = drain(rs)
		return err
	})
	if err != nil {
		// Not out: a call left behind may still set it.
		return nil, err
	}
	return out, nil
}

func (b *clientBackend) subscribeAll(ctx context.Context, from kurrentdb.AllPosition, filter *kurrentdb.SubscriptionFilter) (feed, error) {
	var sub *kurrentdb.Subscription
	err := b.call(ctx, func() error {
		s, err := b.c.SubscribeToAll(ctx, kurrentdb.SubscribeToAllOptions{From: from, Filter: filter})
		if err != nil {
			return classify(err)
		}
		sub = s
		return nil
	})
	if err != nil {
		// A subscription opened after its caller left ends with ctx,
		// which the Store cancels on this error.
		return nil, err
	}
	return sub, nil
}

func (b *clientBackend) abandon() { b.once.Do(func() { close(b.abandoned) }) }

func (b *clientBackend) close() error {
	b.abandon()
	b.mu.Lock()
	b.closing = true
	now := b.stuck == 0
	b.mu.Unlock()
	if now {
		return b.c.Close()
	}
	return nil
}

func direction(backwards bool) kurrentdb.Direction {
	if backwards {
		return kurrentdb.Backwards
	}
	return kurrentdb.Forwards
}

// drain reads a finite read to its end. Links are not resolved, so each
// event is the recorded event itself; the commit position of a $all read is
// taken from the read's own position field when the server sent one.
func drain(rs *kurrentdb.ReadStream) ([]kurrentdb.RecordedEvent, error) {
	var out []kurrentdb.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, missingIsEmpty(classify(err))
		}
		rec := ev.OriginalEvent()
		if rec == nil {
			continue
		}
		r := *rec
		if ev.Commit != nil {
			r.Position.Commit = *ev.Commit
		}
		out = append(out, r)
	}
}

// missingIsEmpty turns "stream not found" into no error: reading a stream
// that was never written yields no events.
func missingIsEmpty(err error) error {
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}
