package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrInvalidConsume is returned by Consume for arguments that cannot work.
var ErrInvalidConsume = errors.New("natsbus: invalid consume arguments")

// drainWait bounds the wait for each message fetched ahead when Consume
// stops.
const drainWait = time.Second

// Consume pulls the messages of cons and runs handle on each, at most
// concurrency at a time, each in its own goroutine, until ctx is done or
// the delivery ends (the consumer deleted, the connection closed). handle
// settles its message (ack, nak, term) itself; delivered is how many times
// JetStream has delivered it, this time included (1 when the metadata
// cannot be read).
//
// Consume returns once every handle it started has returned and the
// messages fetched ahead but not handled are given back to JetStream
// (nak), so that another replica runs them at once rather than after
// their ack wait. It returns ctx.Err() when ctx is done, otherwise the
// error that ended the delivery; the caller sets the consumer up again.
// Missed heartbeats while NATS is away do not end it: the iterator
// carries on once the server is back.
func Consume(ctx context.Context, cons jetstream.Consumer, concurrency int, handle func(ctx context.Context, msg jetstream.Msg, delivered int)) error {
	if cons == nil || handle == nil || concurrency <= 0 {
		return fmt.Errorf("%w: consumer %v, handler %v, concurrency %d", ErrInvalidConsume, cons != nil, handle != nil, concurrency)
	}
	name := cons.CachedInfo().Name
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		return fmt.Errorf("consume %s: %w", name, err)
	}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		handBack(it)
	}()
	slots := make(chan struct{}, concurrency)
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		switch {
		case ctx.Err() != nil:
			if msg != nil {
				_ = msg.Nak()
			}
			return ctx.Err()
		case errors.Is(err, jetstream.ErrMsgIteratorClosed),
			errors.Is(err, jetstream.ErrConsumerDeleted),
			errors.Is(err, jetstream.ErrBadRequest):
			// The iterator has stopped for good (it stops itself on the
			// last two, and the next call would say it is closed).
			return fmt.Errorf("consume %s: %w", name, err)
		case err != nil:
			// Anything else is a notice (missed heartbeats while NATS is
			// away, a leadership change): the iterator carries on.
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			_ = msg.Nak()
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			handle(ctx, msg, Delivered(msg))
		})
	}
}

// Delivered is how many times JetStream has delivered msg, this time
// included; 1 when its metadata cannot be read (a message that did not come
// from a consumer).
func Delivered(msg jetstream.Msg) int {
	if md, err := msg.Metadata(); err == nil {
		return int(md.NumDelivered)
	}
	return 1
}

// handBack stops it and gives the messages it fetched ahead back to
// JetStream at once, so that another replica need not wait for their ack
// wait to run them.
func handBack(it jetstream.MessagesContext) {
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(drainWait))
		if err != nil {
			it.Stop()
			return
		}
		_ = msg.Nak()
	}
}
