package serve_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  serve.Config
		want string // substring of the error; "" for valid
	}{
		{"valid", serve.Config{Service: "orders", DatabaseURL: "postgres://u@localhost/db"}, ""},
		{"unknown service", serve.Config{Service: "billing", DatabaseURL: "postgres://u@localhost/db"}, `service "billing"`},
		{"no database", serve.Config{Service: "orders"}, "database URL is required"},
		{"bad database URL", serve.Config{Service: "orders", DatabaseURL: "postgres://u:secret@[::1"}, "cannot be parsed"},
		{"owner URL", serve.Config{Service: "orders", DatabaseURL: "postgres://u@localhost/db",
			OwnerDatabaseURL: "postgres://owner@localhost/db"}, ""},
		{"bad owner URL", serve.Config{Service: "orders", DatabaseURL: "postgres://u@localhost/db",
			OwnerDatabaseURL: "postgres://owner:secret@[::1"}, "owner database URL cannot be parsed"},
		{"negative timeout", serve.Config{Service: "orders", DatabaseURL: "postgres://u@localhost/db", RequestTimeout: -1}, "negative"},
		{"bad countries", serve.Config{Service: "shipping", DatabaseURL: "postgres://u@localhost/db",
			Commands: commands.Config{ServedCountries: []string{"XX"}}}, "commands config"},
		{"bad projector", serve.Config{Service: "inventory", DatabaseURL: "postgres://u@localhost/db",
			Projector: projections.Config{BatchSize: -1}}, "BatchSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestOperationsEndpoints(t *testing.T) {
	env := servetest.Start(t, "inventory", func(c *serve.Config) { c.NATSURL = testenv.NATS(t) })

	res := env.Do(t, http.MethodGet, "/healthz", "", httpx.RequestIDHeader, "probe-1")
	if res.Status != 200 || res.Header.Get(httpx.RequestIDHeader) != "probe-1" {
		t.Fatalf("healthz: %d %v", res.Status, res.Header)
	}
	waitReady(t, env)

	env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":3}`)
	env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":0}`)
	env.Do(t, http.MethodGet, "/nowhere", "").WantProblem(t, 404, httpx.SlugNotFound)

	res = env.Do(t, http.MethodGet, "/metrics", "")
	if res.Status != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %v", res.Status, res.Header)
	}
	for _, want := range []string{
		`orderflow_http_requests_total{method="POST",route="/api/inventory/{sku}/restock",status="202"} 1`,
		`orderflow_http_requests_total{method="POST",route="/api/inventory/{sku}/restock",status="400"} 1`,
		`orderflow_http_requests_total{method="GET",route="/healthz",status="200"} 1`,
		`orderflow_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		"# TYPE orderflow_db_pool_acquired_connections gauge",
	} {
		if !strings.Contains(string(res.Body), want) {
			t.Errorf("metrics lack %q:\n%s", want, res.Body)
		}
	}
}

func waitReady(t *testing.T, env *servetest.Env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := env.Do(t, http.MethodGet, "/readyz", "")
		if res.Status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %d %s", res.Status, res.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReadyzReportsNATSDown(t *testing.T) {
	// A port nobody listens on: the connection keeps retrying in the
	// background, and readiness says why the service is not ready.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "nats://" + ln.Addr().String()
	ln.Close()
	env := servetest.Start(t, "orders", func(c *serve.Config) { c.NATSURL = deadURL })
	res := env.Do(t, http.MethodGet, "/readyz", "")
	p := res.WantProblem(t, http.StatusServiceUnavailable, httpx.SlugNotReady)
	if !strings.Contains(p.Detail, "nats") || strings.Contains(p.Detail, "database") {
		t.Fatalf("detail %q", p.Detail)
	}
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
}

func TestReadyzWithoutNATS(t *testing.T) {
	env := servetest.Start(t, "shipping")
	if res := env.Do(t, http.MethodGet, "/readyz", ""); res.Status != 200 {
		t.Fatalf("readyz: %d %s", res.Status, res.Body)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := serve.New(ctx, serve.Config{
		Service:     "orders",
		DatabaseURL: testenv.Postgres(t),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	url := "http://" + ln.Addr().String()
	res, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz %d", res.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after cancel", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Fatal("still answering after shutdown")
	}
}

func TestRunFailsOnUnreachableDatabase(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = serve.Run(ctx, serve.Config{
		Service:     "orders",
		Addr:        "127.0.0.1:0",
		DatabaseURL: "postgres://u:pw@" + addr + "/db?connect_timeout=2",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("Run = %v, want a database error", err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(ctx, serve.Config{
			Service:     "shipping",
			Addr:        addr,
			DatabaseURL: testenv.Postgres(t),
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("service never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestCommandsReachJetStream: a command's events are published by the
// service's relay to EVENTS, with the event id as message id.
func TestCommandsReachJetStream(t *testing.T) {
	natsURL := testenv.NATS(t)
	env := servetest.Start(t, "inventory", func(c *serve.Config) { c.NATSURL = natsURL })
	if res := env.Post(t, "/api/inventory/SKU-7/restock", `{"quantity": 3}`); res.Status != http.StatusAccepted {
		t.Fatalf("restock: %d %s", res.Status, res.Body)
	}
	evs := env.Events(t, "stock-SKU-7")
	if len(evs) != 1 {
		t.Fatalf("%d events in the store, want 1", len(evs))
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var msg *jetstream.RawStreamMsg
	for msg == nil {
		s, err := js.Stream(ctx, natsbus.EventsStream)
		if err == nil {
			msg, err = s.GetLastMsgForSubject(ctx, "events.inventory.StockRestocked")
		}
		if err != nil {
			select {
			case <-ctx.Done():
				t.Fatalf("event not published to JetStream: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if got := msg.Header.Get(natsbus.HeaderMsgID); got != evs[0].ID {
		t.Fatalf("message id %q, want event id %s", got, evs[0].ID)
	}
}
