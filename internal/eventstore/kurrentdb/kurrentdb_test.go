package kurrentdb

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/eventstoretest"
	"github.com/orderflow/orderflow/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestContract runs the contract suite against a real KurrentDB: the server
// named by TEST_KURRENTDB_URL or a container; skipped when neither exists.
// The server is shared, so the suite works under per-subtest stream
// prefixes; the race is sized for a server reached over the network.
func TestContract(t *testing.T) {
	url := testenv.KurrentDB(t)
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := New(ctx, url, Config{})
		if err != nil {
			t.Fatalf("connect to KurrentDB: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, eventstoretest.Options{Writers: 8, EventsPerWriter: 250})
}

// TestContractFake runs the contract suite, at its full size, over the fake
// server, shared by every subtest as a real one would be. It checks the
// adapter's own logic (version mapping, replays, paging, positions, the
// subscription pump) where no KurrentDB runs; TestContract checks the same
// against the server.
func TestContractFake(t *testing.T) {
	srv := newFakeServer()
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		s, err := newStore(Config{ReadBatch: 64}.withDefaults(), srv.backend)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestContractOverGRPC runs the contract suite through the real client
// against the fake server behind the KurrentDB gRPC protocol, which checks
// the adapter's use of the client (options, reads to EOF, error codes,
// subscriptions) where no KurrentDB runs.
func TestContractOverGRPC(t *testing.T) {
	url := startGRPCFake(t, newFakeServer())
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := New(ctx, url, Config{})
		if err != nil {
			t.Fatalf("connect to the gRPC fake: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, eventstoretest.Options{Writers: 8, EventsPerWriter: 250})
}

func TestNewFails(t *testing.T) {
	tests := []struct {
		name string
		conn string
		cfg  Config
	}{
		{"invalid connection string", "http://localhost:2113", Config{}},
		{"invalid config", "kurrentdb://localhost:2113?tls=false", Config{ReadBatch: -1}},
		// Port 1 on loopback refuses connections; discovery gives up
		// after its bounded attempts.
		{"no server", "kurrentdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=2&discoveryInterval=10", Config{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := New(ctx, tc.conn, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}
