package natsbus_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/internal/natsembed"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := natsbus.Connect(ctxT(t), url, "natsbus-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

func TestTopologyValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  natsbus.TopologyConfig
		ok   bool
	}{
		{"zero value is the defaults", natsbus.TopologyConfig{}, true},
		{"three replicas", natsbus.TopologyConfig{Replicas: 3}, true},
		{"window equal to max age", natsbus.TopologyConfig{MaxAge: time.Minute, DuplicateWindow: time.Minute}, true},
		{"negative replicas", natsbus.TopologyConfig{Replicas: -1}, false},
		{"six replicas", natsbus.TopologyConfig{Replicas: 6}, false},
		{"negative max age", natsbus.TopologyConfig{MaxAge: -time.Second}, false},
		{"negative window", natsbus.TopologyConfig{DuplicateWindow: -time.Second}, false},
		{"window above max age", natsbus.TopologyConfig{MaxAge: time.Minute, DuplicateWindow: time.Hour}, false},
		{"default window above short max age", natsbus.TopologyConfig{MaxAge: time.Minute}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, natsbus.ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// checkStreams asserts the server's streams match the topology for cfg.
func checkStreams(t *testing.T, js jetstream.JetStream, cfg natsbus.TopologyConfig) {
	t.Helper()
	for _, want := range natsbus.StreamConfigs(cfg) {
		s, err := js.Stream(ctxT(t), want.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", want.Name, err)
		}
		info, err := s.Info(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		got := info.Config
		if len(got.Subjects) != 1 || got.Subjects[0] != want.Subjects[0] {
			t.Errorf("%s subjects = %v, want %v", want.Name, got.Subjects, want.Subjects)
		}
		if got.Retention != want.Retention || got.Storage != want.Storage || got.Replicas != want.Replicas {
			t.Errorf("%s retention/storage/replicas = %v/%v/%d, want %v/%v/%d", want.Name,
				got.Retention, got.Storage, got.Replicas, want.Retention, want.Storage, want.Replicas)
		}
		if got.MaxAge != want.MaxAge || got.Duplicates != want.Duplicates {
			t.Errorf("%s max age/duplicates = %s/%s, want %s/%s", want.Name, got.MaxAge, got.Duplicates, want.MaxAge, want.Duplicates)
		}
	}
}

func TestEnsureTopologyIdempotent(t *testing.T) {
	url := natsbustest.Server(t)
	_, js := connect(t, url)

	// Services start together: concurrent calls on a fresh server, each on
	// its own connection, all succeed.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		_, js := connect(t, url)
		wg.Go(func() { errs <- natsbus.EnsureTopology(ctxT(t), js, natsbus.TopologyConfig{}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureTopology: %v", err)
		}
	}
	checkStreams(t, js, natsbus.TopologyConfig{})

	// Again with the same settings: nothing to do, no error.
	for i := range 2 {
		if err := natsbus.EnsureTopology(ctxT(t), js, natsbus.TopologyConfig{}); err != nil {
			t.Fatalf("EnsureTopology #%d: %v", i+1, err)
		}
	}
	checkStreams(t, js, natsbus.TopologyConfig{})

	// Messages survive an update of the settings.
	if _, err := js.Publish(ctxT(t), "events.orders.Kept", []byte("x")); err != nil {
		t.Fatal(err)
	}
	changed := natsbus.TopologyConfig{MaxAge: 48 * time.Hour, DuplicateWindow: 5 * time.Minute}
	if err := natsbus.EnsureTopology(ctxT(t), js, changed); err != nil {
		t.Fatalf("EnsureTopology with changed settings: %v", err)
	}
	checkStreams(t, js, changed)
	if msgs := natsbustest.Messages(t, js, natsbus.EventsStream); len(msgs) != 1 || msgs[0].Subject != "events.orders.Kept" {
		t.Fatalf("after update EVENTS holds %v", msgs)
	}
}

func TestEnsureTopologyErrors(t *testing.T) {
	_, js := connect(t, natsbustest.Server(t))
	if err := natsbus.EnsureTopology(ctxT(t), js, natsbus.TopologyConfig{Replicas: 9}); !errors.Is(err, natsbus.ErrInvalidConfig) {
		t.Fatalf("9 replicas: err = %v, want ErrInvalidConfig", err)
	}
	if _, err := js.Stream(ctxT(t), natsbus.EventsStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("an invalid config created streams: %v", err)
	}
	// A single server cannot replicate; the server's refusal comes back
	// naming the stream.
	err := natsbus.EnsureTopology(ctxT(t), js, natsbus.TopologyConfig{Replicas: 3})
	if err == nil {
		t.Fatal("3 replicas on a single server: no error")
	}
	t.Logf("3 replicas on one server: %v", err)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestConnectWaitsForServer(t *testing.T) {
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	// Nothing listens: Connect keeps trying until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if nc, _, err := natsbus.Connect(ctx, url, "early"); !errors.Is(err, context.DeadlineExceeded) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("Connect with no server: err = %v, want deadline exceeded", err)
	}

	// A server that comes up while Connect waits is taken. Until Connect
	// has tried the port, something that accepts and drops connections
	// holds it, so the server surely starts after a failed attempt.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	tried := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			c.Close()
			select {
			case tried <- struct{}{}:
			default:
			}
		}
	}()
	type result struct {
		nc  *nats.Conn
		js  jetstream.JetStream
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, js, err := natsbus.Connect(ctxT(t), url, "patient")
		done <- result{nc, js, err}
	}()
	select {
	case <-tried:
	case r := <-done:
		t.Fatalf("Connect returned (%v) while nothing served NATS", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Connect did not try the port within 10s")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(ctxT(t), natsembed.Config{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	r := <-done
	if r.err != nil {
		t.Fatalf("Connect: %v", r.err)
	}
	defer r.nc.Close()
	if err := natsbus.EnsureTopology(ctxT(t), r.js, natsbus.TopologyConfig{}); err != nil {
		t.Fatalf("EnsureTopology on the late server: %v", err)
	}

	// After a restart of the server the connection comes back by itself.
	lost := r.nc.StatusChanged(nats.RECONNECTING)
	defer r.nc.RemoveStatusListener(lost)
	srv.Shutdown()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not notice the server going away")
	}
	if r.nc.IsConnected() {
		t.Fatal("connected while the server is down")
	}
	srv2, err := natsembed.Start(ctxT(t), natsembed.Config{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)
	if err := natsbus.WaitConnected(ctxT(t), r.nc); err != nil {
		t.Fatalf("WaitConnected after restart: %v", err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatalf("flush after reconnect: %v", err)
	}

	r.nc.Close()
	if err := natsbus.WaitConnected(ctxT(t), r.nc); !errors.Is(err, natsbus.ErrClosed) {
		t.Fatalf("WaitConnected on a closed connection: %v, want ErrClosed", err)
	}
}
