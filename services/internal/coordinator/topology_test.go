package coordinator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/internal/natsembed"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

// TestRunAppliesTheTopology: the coordinator creates the streams with
// its configured topology, not natsbus's defaults, so that a coordinator
// starting before the relays does not create them with one replica (or
// rescale them to one). A message age other than the default shows it on
// a single server, where more than one replica cannot be.
func TestRunAppliesTheTopology(t *testing.T) {
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
	store, pool := newStore(t)
	c := newCoordinator(t, store, pool, Config{Topology: natsbus.TopologyConfig{MaxAge: maxAge}})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx, js) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// The durable consumer exists only after the streams were ensured.
	check := func(ctx context.Context) error {
		for _, name := range []string{natsbus.EventsStream, natsbus.CommandsStream} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			if got := s.CachedInfo().Config.MaxAge; got != maxAge {
				return fmt.Errorf("%s keeps messages %s, want %s", name, got, maxAge)
			}
		}
		_, err := js.Consumer(ctx, natsbus.EventsStream, "sagas-coordinator")
		return err
	}
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topology not applied: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
