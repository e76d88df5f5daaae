package kurrentdb

import (
	"context"
	"errors"
	"io"

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
	close() error
}

// feed is an open subscription; *kurrentdb.Subscription is one.
type feed interface {
	Recv() *kurrentdb.SubscriptionEvent
	Close() error
}

// clientBackend is the backend over the real client.
type clientBackend struct {
	c *kurrentdb.Client
}

func (b *clientBackend) appendEvents(ctx context.Context, stream string, state kurrentdb.StreamState, events []kurrentdb.EventData) (uint64, uint64, error) {
	res, err := b.c.AppendToStream(ctx, stream, kurrentdb.AppendToStreamOptions{StreamState: state}, events...)
	if err != nil {
		return 0, 0, classify(err)
	}
	return res.NextExpectedVersion, res.CommitPosition, nil
}

func (b *clientBackend) readStream(ctx context.Context, stream string, from kurrentdb.StreamPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	opts := kurrentdb.ReadStreamOptions{From: from, Direction: direction(backwards)}
	rs, err := b.c.ReadStream(ctx, stream, opts, count)
	if err != nil {
		return nil, missingIsEmpty(classify(err))
	}
	defer rs.Close()
	return drain(rs)
}

func (b *clientBackend) readAll(ctx context.Context, from kurrentdb.AllPosition, backwards bool, count uint64) ([]kurrentdb.RecordedEvent, error) {
	opts := kurrentdb.ReadAllOptions{From: from, Direction: direction(backwards)}
	rs, err := b.c.ReadAll(ctx, opts, count)
	if err != nil {
		return nil, classify(err)
	}
	defer rs.Close()
	return drain(rs)
}

func (b *clientBackend) subscribeAll(ctx context.Context, from kurrentdb.AllPosition, filter *kurrentdb.SubscriptionFilter) (feed, error) {
	sub, err := b.c.SubscribeToAll(ctx, kurrentdb.SubscribeToAllOptions{From: from, Filter: filter})
	if err != nil {
		return nil, classify(err)
	}
	return sub, nil
}

func (b *clientBackend) close() error { return b.c.Close() }

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
