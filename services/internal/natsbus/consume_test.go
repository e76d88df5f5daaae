package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
)

// consumeFixture is a stream of n messages on a server of the test's own
// and a durable pull consumer on it.
func consumeFixture(t *testing.T, n int) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	ctx := ctxT(t)
	_, js := connect(t, natsbustest.Server(t))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CONSUME", Subjects: []string{"t.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, fmt.Sprintf("t.%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "CONSUME", jetstream.ConsumerConfig{
		Durable:   "consume-test",
		AckPolicy: jetstream.AckExplicitPolicy,
		// Long enough that a message not handed back is not seen again
		// within the test.
		AckWait: 5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return js, cons
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Past 30 s: a pull request the server never saw (a machine running
	// two suites at once, say) is only issued again once the iterator
	// misses the server's heartbeats, which takes up to 30 s; one such
	// stall once failed a 20 s wait.
	deadline := time.Now().Add(75 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startConsume runs Consume in the background. stop cancels it and
// returns what it returned; done is closed when it has returned, and
// result then holds what it returned.
func startConsume(t *testing.T, cons jetstream.Consumer, concurrency int, handle func(context.Context, jetstream.Msg, int)) (stop func() error, done <-chan struct{}, result *error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var err error
	go func() {
		defer close(finished)
		err = natsbus.Consume(ctx, cons, concurrency, handle)
	}()
	stop = func() error {
		cancel()
		select {
		case <-finished:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("Consume did not return after its context was cancelled")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop, finished, &err
}

func TestConsumeInvalid(t *testing.T) {
	_, cons := consumeFixture(t, 0)
	handle := func(context.Context, jetstream.Msg, int) {}
	tests := []struct {
		name        string
		cons        jetstream.Consumer
		concurrency int
		handle      func(context.Context, jetstream.Msg, int)
	}{
		{"no consumer", nil, 1, handle},
		{"no handler", cons, 1, nil},
		{"zero concurrency", cons, 0, handle},
		{"negative concurrency", cons, -1, handle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := natsbus.Consume(ctxT(t), tt.cons, tt.concurrency, tt.handle)
			if !errors.Is(err, natsbus.ErrInvalidConsume) {
				t.Fatalf("Consume = %v, want ErrInvalidConsume", err)
			}
		})
	}
}

// Every message is handled, never more than concurrency at once, and a
// message asked for again comes back with its delivery count.
func TestConsumeHandlesWithinConcurrency(t *testing.T) {
	const n, concurrency = 20, 3
	_, cons := consumeFixture(t, n)
	gate := make(chan struct{})
	var inflight, most atomic.Int32
	var mu sync.Mutex
	acked := make(map[string]int) // body -> delivery count when acked
	stop, _, _ := startConsume(t, cons, concurrency, func(ctx context.Context, msg jetstream.Msg, delivered int) {
		now := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		select {
		case <-gate:
		case <-ctx.Done():
			_ = msg.Nak()
			return
		}
		if string(msg.Data()) == "0" && delivered == 1 {
			_ = msg.Nak()
			return
		}
		mu.Lock()
		acked[string(msg.Data())] = delivered
		mu.Unlock()
		_ = msg.Ack()
	})

	waitFor(t, "the slots to fill", func() bool { return inflight.Load() == concurrency })
	close(gate)
	waitFor(t, "every message acked", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == n
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume after cancel = %v, want context.Canceled", err)
	}
	if got := most.Load(); got != concurrency {
		t.Fatalf("at most %d handlers at once, want %d", got, concurrency)
	}
	if got := acked["0"]; got != 2 {
		t.Fatalf("message asked for again acked on delivery %d, want 2", got)
	}
	if got := acked["1"]; got != 1 {
		t.Fatalf("message acked at once on delivery %d, want 1", got)
	}
}

// Messages fetched ahead but not handled when Consume stops go back at
// once: another consumer instance gets every one of them without waiting
// for the (long) ack wait.
func TestConsumeHandsBackFetchedAhead(t *testing.T) {
	const n, concurrency = 10, 2
	js, cons := consumeFixture(t, n)
	var started atomic.Int32
	stop, _, _ := startConsume(t, cons, concurrency, func(ctx context.Context, msg jetstream.Msg, _ int) {
		started.Add(1)
		<-ctx.Done()
		_ = msg.Nak()
	})
	waitFor(t, "the slots to fill", func() bool { return started.Load() == concurrency })
	waitFor(t, "messages fetched ahead", func() bool {
		// Beyond the handlers' and the one waiting for a slot, at least
		// one lies in the iterator's buffer: only handing back returns it.
		info, err := cons.Info(ctxT(t))
		return err == nil && info.NumAckPending >= concurrency+2
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume after cancel = %v, want context.Canceled", err)
	}
	if got := started.Load(); got != concurrency {
		t.Fatalf("%d handlers started, want %d", got, concurrency)
	}

	again, err := js.Consumer(ctxT(t), "CONSUME", "consume-test")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := again.Fetch(n, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		_ = msg.Ack()
	}
	if got != n {
		t.Fatalf("fetched %d messages after Consume stopped, want all %d handed back", got, n)
	}
}

// Deleting the consumer ends the delivery: Consume returns an error of
// its own, not the context's, for its caller to set the consumer up again.
func TestConsumeEndsWhenConsumerDeleted(t *testing.T) {
	js, cons := consumeFixture(t, 0)
	_, done, result := startConsume(t, cons, 2, func(_ context.Context, msg jetstream.Msg, _ int) { _ = msg.Ack() })
	// Let the pull request reach the server before the consumer goes.
	waitFor(t, "a pull request waiting", func() bool {
		info, err := cons.Info(ctxT(t))
		return err == nil && info.NumWaiting > 0
	})
	if err := js.DeleteConsumer(ctxT(t), "CONSUME", "consume-test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		err := *result
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("Consume after the consumer was deleted = %v, want its delivery error", err)
		}
		if !errors.Is(err, jetstream.ErrConsumerDeleted) && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			t.Fatalf("Consume = %v, want ErrConsumerDeleted or ErrMsgIteratorClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Consume still runs 20s after its consumer was deleted")
	}
}
