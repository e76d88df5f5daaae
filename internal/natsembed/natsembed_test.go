package natsembed

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestJetStreamRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Shutdown)

	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("connect %s: %v", s.URL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}

	// The same message id twice is stored once: JetStream's dedup window,
	// which the relay relies on, works on this server.
	for range 2 {
		msg := &nats.Msg{Subject: "events.test.Happened", Data: []byte("hello"), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, "id-1")
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if ack.Stream != "EVENTS" || ack.Sequence != 1 {
			t.Fatalf("ack = %+v, want stream EVENTS seq 1", ack)
		}
	}

	cons, err := js.CreateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if string(msg.Data()) != "hello" || msg.Subject() != "events.test.Happened" {
		t.Fatalf("got %s %q", msg.Subject(), msg.Data())
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Errorf("after ack: pending %d, ack pending %d", info.NumPending, info.NumAckPending)
	}
}

func TestShutdownReleasesEverything(t *testing.T) {
	s, err := Start(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.ns.Addr().String()
	dir := s.StoreDir()
	s.Shutdown()
	s.Shutdown() // idempotent

	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("store dir %s not removed: %v", dir, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s still bound after Shutdown: %v", addr, err)
	}
	l.Close()
}

func TestGivenStoreDirIsKept(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(context.Background(), Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("given store dir removed: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"random", Config{Port: -1}, true},
		{"fixed", Config{Port: 4222}, true},
		{"below", Config{Port: -2}, false},
		{"above", Config{Port: 65536}, false},
		{"timeout", Config{ReadyTimeout: -1}, false},
		{"max payload", Config{MaxPayload: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestValidateCluster(t *testing.T) {
	tests := []struct {
		name string
		c    ClusterConfig
		ok   bool
	}{
		{"zero", ClusterConfig{}, true},
		{"node", ClusterConfig{Name: "c", ServerName: "n1", Port: 6222, Routes: []string{"nats://127.0.0.1:6223"}}, true},
		{"no server name", ClusterConfig{Name: "c", Routes: []string{"nats://127.0.0.1:6223"}}, false},
		{"no routes", ClusterConfig{Name: "c", ServerName: "n1"}, false},
		{"routes without a cluster", ClusterConfig{Routes: []string{"nats://127.0.0.1:6223"}}, false},
		{"server name without a cluster", ClusterConfig{ServerName: "n1"}, false},
		{"port out of range", ClusterConfig{Name: "c", ServerName: "n1", Port: 70000, Routes: []string{"nats://127.0.0.1:6223"}}, false},
		{"route without a port", ClusterConfig{Name: "c", ServerName: "n1", Routes: []string{"nats://127.0.0.1"}}, false},
		{"route of another scheme", ClusterConfig{Name: "c", ServerName: "n1", Routes: []string{"http://127.0.0.1:6223"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Config{Cluster: tt.c}.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// A standalone server has no cluster URL.
func TestStandaloneHasNoClusterURL(t *testing.T) {
	s, err := Start(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	if u := s.ClusterURL(); u != "" {
		t.Errorf("ClusterURL() = %q, want empty", u)
	}
}
