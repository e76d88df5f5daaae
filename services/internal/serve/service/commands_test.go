package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/internal/eventstore/memory"
	"github.com/orderflow/orderflow/internal/natsembed"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestCommandConsumerAppliesTheTopology: the command consumer creates the
// streams with the process's topology, not natsbus's defaults, so that a
// consumer starting before its relay does not create them with one
// replica (or rescale them to one). A message age other than the default
// shows it on a single server, where more than one replica cannot be.
func TestCommandConsumerAppliesTheTopology(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A server of its own: a shared one (TEST_NATS_URL) may have other
	// processes set the streams' age back while this test looks.
	srv, err := natsembed.Start(ctx, natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const maxAge = 90 * time.Minute
	d := Deps{
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:   httpx.NewMetrics(),
		JetStream: js,
		Topology:  natsbus.TopologyConfig{MaxAge: maxAge},
	}
	w := CommandConsumer(d, commands.NewInventoryBus(commands.NewInventory(memory.New(), commands.Config{})))
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	// The consumer exists only after the worker ensured the streams.
	var last error
	for {
		last = check(ctx, js, maxAge)
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topology not applied: %v", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func check(ctx context.Context, js jetstream.JetStream, maxAge time.Duration) error {
	for _, name := range []string{natsbus.EventsStream, natsbus.CommandsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		if got := s.CachedInfo().Config.MaxAge; got != maxAge {
			return fmt.Errorf("%s keeps messages %s, want %s", name, got, maxAge)
		}
	}
	s, err := js.Stream(ctx, natsbus.CommandsStream)
	if err != nil {
		return err
	}
	_, err = s.Consumer(ctx, "commands-inventory")
	return err
}
