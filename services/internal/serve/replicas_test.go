package serve_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/internal/natsembed"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestConfigValidateNATSReplicas(t *testing.T) {
	tests := []struct {
		replicas int
		ok       bool
	}{
		{0, true}, {1, true}, {3, true}, {natsbus.MaxReplicas, true},
		{-1, false}, {natsbus.MaxReplicas + 1, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.replicas), func(t *testing.T) {
			cfg := serve.Config{Service: "orders", DatabaseURL: "postgres://u@localhost/db", NATSReplicas: tt.replicas}
			err := cfg.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "NATS replicas")) {
				t.Fatalf("Validate() = %v, want an error naming the NATS replicas", err)
			}
		})
	}
}

// TestStreamReplicas runs the two services whose workers create the
// streams besides their relays (inventory: the command consumer; sagas:
// the coordinator) and checks what the streams and the durable consumers
// end up with: one replica by default on a single server, three on a
// three-node cluster when serve is told three, the durable consumers on
// as many servers. That each path passes the topology on by itself is
// tested beside it (coordinator, service); here the processes run whole.
func TestStreamReplicas(t *testing.T) {
	tests := []struct {
		name     string
		nodes    int
		replicas int // serve.Config.NATSReplicas
		want     int
	}{
		{"single server, default", 1, 0, 1},
		{"three-node cluster, three replicas", 3, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			natsURL := testenv.NATS(t)
			if tt.nodes > 1 {
				natsURL = startNATSCluster(t, ctx, tt.nodes)
			}
			js := connectJetStream(t, ctx, natsURL)
			for _, svc := range []string{"inventory", "sagas"} {
				servetest.Start(t, svc, func(c *serve.Config) {
					c.NATSURL = natsURL
					c.NATSReplicas = tt.replicas
				})
			}
			// Each worker ensures the streams before it creates its
			// durable consumer; once both consumers are there, every
			// EnsureTopology of the two processes has been applied
			// (the relays' come before their first look at the store).
			consumers := map[string]string{
				natsbus.CommandsStream: "commands-inventory",
				natsbus.EventsStream:   "sagas-coordinator",
			}
			for stream, durable := range consumers {
				pollUntil(t, ctx, fmt.Sprintf("%s with %d replicas and its consumer %s on as many servers", stream, tt.want, durable), func(ctx context.Context) error {
					s, err := js.Stream(ctx, stream)
					if err != nil {
						return err
					}
					si := s.CachedInfo()
					if si.Config.Replicas != tt.want {
						return fmt.Errorf("stream config says %d replicas", si.Config.Replicas)
					}
					if got := serversOf(si.Cluster); tt.nodes > 1 && got != tt.want {
						return fmt.Errorf("stream on %d servers", got)
					}
					c, err := s.Consumer(ctx, durable)
					if err != nil {
						return err
					}
					ci := c.CachedInfo()
					// Zero inherits the stream's replicas; a durable that
					// set one would stay on one server.
					if ci.Config.Replicas != 0 && ci.Config.Replicas != tt.want {
						return fmt.Errorf("consumer config says %d replicas", ci.Config.Replicas)
					}
					if got := serversOf(ci.Cluster); tt.nodes > 1 && got != tt.want {
						return fmt.Errorf("consumer on %d servers", got)
					}
					return nil
				})
			}
		})
	}
}

// serversOf counts the servers a clustered stream or consumer lives on:
// its leader and its other replicas.
func serversOf(ci *jetstream.ClusterInfo) int {
	if ci == nil || ci.Leader == "" {
		return 0
	}
	return 1 + len(ci.Replicas)
}

// startNATSCluster starts n embedded servers forming one JetStream
// cluster and returns their client URLs, comma-separated, as a NATS
// client takes them.
func startNATSCluster(t *testing.T, ctx context.Context, n int) string {
	t.Helper()
	// Every node must know the others' route ports before it starts.
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = freePort(t)
	}
	var urls []string
	for i := range n {
		routes := natsembed.PeerRoutes("127.0.0.1", routePorts, i)
		s, err := natsembed.Start(ctx, natsembed.Config{
			StoreDir: t.TempDir(),
			Cluster: natsembed.ClusterConfig{
				Name:       "serve-test",
				ServerName: fmt.Sprintf("n%d", i+1),
				Port:       routePorts[i],
				Routes:     routes,
			},
		})
		if err != nil {
			t.Fatalf("start NATS node %d: %v", i+1, err)
		}
		t.Cleanup(s.Shutdown)
		urls = append(urls, s.URL())
	}
	return strings.Join(urls, ",")
}

// freePort is a port nobody listens on right now; another process taking
// it before the node binds makes the node's start fail loudly.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// connectJetStream connects to url and waits until JetStream answers: a
// cluster's API serves only once it has elected a meta leader.
func connectJetStream(t *testing.T, ctx context.Context, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, ctx, "JetStream to answer", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
	return js
}

// pollUntil calls check until it returns nil, failing the test with its
// last error when ctx ends.
func pollUntil(t *testing.T, ctx context.Context, what string, check func(context.Context) error) {
	t.Helper()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
