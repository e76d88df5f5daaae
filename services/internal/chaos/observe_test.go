package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/internal/testenv"
)

func TestJetStreamBusyListsConsumersWithWorkLeft(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := testenv.NATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "COMMANDS", Subjects: []string{"commands.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "commands-inventory", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	busy := func() []string {
		t.Helper()
		b, err := JetStreamBusy(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := busy(); len(b) != 0 {
		t.Fatalf("busy %v before any message", b)
	}
	for range 2 {
		if _, err := js.Publish(ctx, "commands.inventory.reserve_stock", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if b := busy(); len(b) != 1 || !strings.Contains(b[0], "COMMANDS/commands-inventory 2 pending, 0 unacked") {
		t.Fatalf("busy %v, want the consumer with 2 pending", b)
	}
	// Delivered, not acknowledged: still in flight (a killed consumer's
	// message waits for its ack wait, then comes again).
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != 2 {
		t.Fatalf("fetched %d messages, want 2", len(msgs))
	}
	if b := busy(); len(b) != 1 || !strings.Contains(b[0], "0 pending, 2 unacked") {
		t.Fatalf("busy %v, want the consumer with 2 unacked", b)
	}
	for _, m := range msgs {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b := busy(); len(b) != 0 {
		t.Fatalf("busy %v after every message was acknowledged", b)
	}
}
