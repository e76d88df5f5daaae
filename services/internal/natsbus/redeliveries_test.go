package natsbus_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
)

// redeliveries returns the count Redeliveries has for consumer, and
// whether it has one.
func redeliveries(consumer string) (uint64, bool) {
	for _, c := range natsbus.Redeliveries() {
		if c.Consumer == consumer {
			return c.Count, true
		}
	}
	return 0, false
}

// TestConsumeCountsRedeliveries: every delivery past a message's first is
// counted under its consumer's name, and only those; a consumer shows
// (at 0) as soon as Consume runs it.
func TestConsumeCountsRedeliveries(t *testing.T) {
	tests := []struct {
		name string
		// naks is how often message i is asked for again before it is
		// acknowledged.
		naks func(i int) int
		want uint64
	}{
		{"none asked for again", func(int) int { return 0 }, 0},
		{"each once", func(int) int { return 1 }, 5},
		{"one three times", func(i int) int {
			if i == 2 {
				return 3
			}
			return 0
		}, 3},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const n = 5
			// The count lives as long as the process: a name of this run
			// alone keeps -count=N runs apart.
			durable := "redelivery-test-" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			cons := redeliveryFixture(t, durable, n)

			var mu sync.Mutex
			acked := make(map[int]int) // message -> its delivery count when acked
			startConsume(t, cons, 2, func(_ context.Context, msg jetstream.Msg, delivered int) {
				body, err := strconv.Atoi(string(msg.Data()))
				if err != nil {
					t.Errorf("body %q", msg.Data())
					return
				}
				if delivered <= tt.naks(body) {
					_ = msg.Nak()
					return
				}
				mu.Lock()
				acked[body] = delivered
				mu.Unlock()
				_ = msg.Ack()
			})
			waitFor(t, "every message acknowledged", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(acked) == n
			})
			for m, delivered := range acked {
				if want := tt.naks(m) + 1; delivered != want {
					t.Errorf("message %d acknowledged at delivery %d, want %d", m, delivered, want)
				}
			}
			got, ok := redeliveries(durable)
			if !ok || got != tt.want {
				t.Fatalf("Redeliveries()[%s] = %d (listed %v), want %d; all: %+v", durable, got, ok, tt.want, natsbus.Redeliveries())
			}
		})
	}
}

// redeliveryFixture is a stream of n messages (bodies 0..n-1) on a server
// of the test's own and a durable pull consumer named durable on it, whose
// nakked messages come back at once.
func redeliveryFixture(t *testing.T, durable string, n int) jetstream.Consumer {
	t.Helper()
	ctx := ctxT(t)
	_, js := connect(t, natsbustest.Server(t))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "REDELIVER", Subjects: []string{"r.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, fmt.Sprintf("r.%d", i), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "REDELIVER", jetstream.ConsumerConfig{
		Durable:   durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		// Only naks bring a message back within the test.
		AckWait: 5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}
