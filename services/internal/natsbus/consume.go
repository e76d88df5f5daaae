package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
//
// Every delivery past the first is counted under the consumer's name (see
// Redeliveries).
// Missed heartbeats while NATS is away do not end it: the iterator
// carries on once the server is back.
// pullExpiry is how long one pull request waits at the consumer's leader.
// The client learns that its requests are gone (a leader on a node that
// died took them along, and the new leader has none) only by missing two
// of the heartbeats the server sends every half of this, so it bounds a
// consumer's stall after a NATS node dies: 30s by default, which let
// every saga step sent meanwhile run out of time.
const pullExpiry = 5 * time.Second

func Consume(ctx context.Context, cons jetstream.Consumer, concurrency int, handle func(ctx context.Context, msg jetstream.Msg, delivered int)) error {
	if cons == nil || handle == nil || concurrency <= 0 {
		return fmt.Errorf("%w: consumer %v, handler %v, concurrency %d", ErrInvalidConsume, cons != nil, handle != nil, concurrency)
	}
	name := cons.CachedInfo().Name
	redelivered := redeliveryCounter(name)
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency), jetstream.PullExpiry(pullExpiry))
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
		delivered := Delivered(msg)
		if delivered > 1 {
			redelivered.Add(1)
		}
		wg.Go(func() {
			defer func() { <-slots }()
			handle(ctx, msg, delivered)
		})
	}
}

// redeliveries maps a consumer's name to its *atomic.Uint64 count of
// deliveries past the first. It is kept per process rather than passed
// in: Consume's callers need not wire anything for the figure to exist,
// and a process runs one service, whose /metrics shows it.
var redeliveries sync.Map

// redeliveryCounter returns the count of consumer name, created at 0 so
// that a consumer shows before its first redelivery.
func redeliveryCounter(name string) *atomic.Uint64 {
	if c, ok := redeliveries.Load(name); ok {
		return c.(*atomic.Uint64)
	}
	c, _ := redeliveries.LoadOrStore(name, new(atomic.Uint64))
	return c.(*atomic.Uint64)
}

// ConsumerCount is a count kept for one JetStream consumer.
type ConsumerCount struct {
	Consumer string
	Count    uint64
}

// Redeliveries returns, for every consumer Consume has run in this
// process, how many messages it received again (JetStream's delivery
// count above 1: an ack wait that ran out, a nak, a replica that stopped
// before acknowledging), sorted by consumer name. A rising count is work
// done twice, and, past a handful, a consumer that cannot keep up with its
// ack wait or a message that keeps failing.
func Redeliveries() []ConsumerCount {
	var out []ConsumerCount
	redeliveries.Range(func(k, v any) bool {
		out = append(out, ConsumerCount{Consumer: k.(string), Count: v.(*atomic.Uint64).Load()})
		return true
	})
	slices.SortFunc(out, func(a, b ConsumerCount) int { return strings.Compare(a.Consumer, b.Consumer) })
	return out
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

// RestartPause is the wait before ConsumeDurable sets its consumer up
// again after a session failed (NATS away, the consumer deleted).
const RestartPause = time.Second

// ConsumeDurable creates or updates the durable consumer cfg on stream and
// runs Consume on it, setting it up again RestartPause after each failure,
// until ctx is done; then it returns once the handlers it started have
// returned. Failures are logged on log at warn level, naming what.
func ConsumeDurable(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, concurrency int, log *slog.Logger,
	handle func(ctx context.Context, msg jetstream.Msg, delivered int)) {
	for {
		err := consumeOnce(ctx, js, stream, cfg, concurrency, handle)
		if ctx.Err() != nil {
			return
		}
		log.Warn("consumer stopped; starting again", "durable", cfg.Durable, "stream", stream, "error", err, "pause", RestartPause)
		t := time.NewTimer(RestartPause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

func consumeOnce(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, concurrency int,
	handle func(ctx context.Context, msg jetstream.Msg, delivered int)) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return Consume(ctx, cons, concurrency, handle)
}

// maxParkedBody bounds the body of a parked message in its log line.
const maxParkedBody = 4096

// Park terminates msg so that it is never delivered again, and logs at
// error level what an operator needs to publish it again once the cause is
// fixed: what (the log message), the subject, message id, delivery count,
// cause, attrs and the body's first 4 KiB.
func Park(log *slog.Logger, what string, msg jetstream.Msg, delivered int, cause error, attrs ...any) {
	body := msg.Data()
	if len(body) > maxParkedBody {
		body = body[:maxParkedBody]
	}
	line := []any{"subject", msg.Subject(), "delivery", delivered, "error", cause}
	if h := msg.Headers(); h != nil {
		line = append(line, "msg_id", h.Get(HeaderMsgID))
	}
	line = append(append(line, attrs...), "body", string(body))
	log.Error(what, line...)
	reason := cause.Error()
	if len(reason) > 200 {
		reason = reason[:200]
	}
	_ = msg.TermWithReason("parked: " + reason)
}
