package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/discovery"
	"github.com/orderflow/orderflow/services/internal/serve"
)

// TestDiscoveredUpstreams: with no static address, the gateway finds the
// services in the NATS micro registry, and stops routing to an instance
// whose process dies (its NATS connection gone, its port closed): once
// the registry has dropped it, no request fails.
func TestDiscoveredUpstreams(t *testing.T) {
	s := newStack(t)
	// Each instance registers on a connection of its own, as a process
	// does; closing it is what a killed process's connection does.
	register := func(svc, url string) *nats.Conn {
		t.Helper()
		nc, err := nats.Connect(s.natsURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if _, err := discovery.Register(nc, discovery.Info{Service: svc, HTTPURL: url}); err != nil {
			t.Fatal(err)
		}
		return nc
	}
	for _, svc := range gateway.Services() {
		register(svc, s.Instances(svc)[0])
	}
	// A second inventory replica on the same database.
	srv, err := serve.New(context.Background(), serve.Config{
		Service: gateway.Inventory, DatabaseURL: s.dbs[gateway.Inventory], NATSURL: s.natsURL,
		Logger: testLogger(t, "inventory-2", slog.LevelWarn, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	second := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { second.Close(); srv.Close() })
	secondConn := register(gateway.Inventory, second.URL)

	gwConn, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gwConn.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resolver := discovery.Watch(ctx, gwConn, gateway.Services(), 200*time.Millisecond)
	g := startGateway(t, resolver)
	coordinatortest.Eventually(t, within, "both inventory replicas discovered", func() (bool, string) {
		return len(resolver.Instances(gateway.Inventory)) == 2, fmt.Sprint(resolver.Instances(gateway.Inventory))
	})

	admin := token(t, "ops", auth.RoleAdmin)
	if res := g.do(t, http.MethodPost, "/api/inventory/DISC-1/restock", `{"quantity": 3}`, admin); res.Status != http.StatusAccepted {
		t.Fatalf("restock through discovered upstreams: %d %s", res.Status, res.Body)
	}
	coordinatortest.Eventually(t, within, "the stock readable through the gateway", func() (bool, string) {
		res := g.do(t, http.MethodGet, "/api/inventory/DISC-1", "", admin)
		return res.Status == http.StatusOK, fmt.Sprintf("%d %s", res.Status, res.Body)
	})

	// The second replica's process dies: its connection and its port go.
	secondConn.Close()
	second.CloseClientConnections()
	second.Close()
	coordinatortest.Eventually(t, within, "the dead replica dropped from the registry", func() (bool, string) {
		got := resolver.Instances(gateway.Inventory)
		return len(got) == 1 && got[0] == s.Instances(gateway.Inventory)[0], fmt.Sprint(got)
	})
	for i := range 20 {
		if res := g.do(t, http.MethodGet, "/api/inventory/DISC-1", "", admin); res.Status != http.StatusOK {
			t.Fatalf("request %d after the replica died: %d %s", i, res.Status, res.Body)
		}
	}
}
