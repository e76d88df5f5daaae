package serve

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/service"
	"github.com/orderflow/orderflow/services/orders"
)

func TestRegistryIsValid(t *testing.T) {
	if err := checkRegistry(registry); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRegistryRefuses(t *testing.T) {
	ok := orders.Module
	renamed := func(m service.Module, name string, port int) service.Module {
		m.Name, m.Port, m.ReadModels = name, port, nil
		return m
	}
	noWire := renamed(ok, "nowire", 9001)
	noWire.Wire = nil
	tests := []struct {
		name string
		mods []service.Module
		want string
	}{
		{"same name", []service.Module{ok, renamed(ok, "orders", 9001)}, "orders listed twice"},
		{"same port", []service.Module{ok, renamed(ok, "billing", ok.Port)}, "share port 8081"},
		{"same read model", []service.Module{ok, func() service.Module {
			m := renamed(ok, "billing", 9001)
			m.ReadModels = ok.ReadModels
			return m
		}()}, "both have read model orders"},
		{"invalid module", []service.Module{ok, noWire}, "no Wire"},
		{"bad port", []service.Module{renamed(ok, "billing", 0)}, "port 0"},
		{"read model without prefixes", []service.Module{func() service.Module {
			m := renamed(ok, "billing", 9001)
			m.ReadModels = []service.ReadModel{{Name: "bills", New: ok.ReadModels[0].New}}
			return m
		}()}, "no stream prefixes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkRegistry(tt.mods); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// withModule adds m to the registry for the rest of the test, which must
// not run in parallel with others.
func withModule(t *testing.T, m service.Module) {
	t.Helper()
	saved := registry
	registry = append(slices.Clone(registry), m)
	t.Cleanup(func() { registry = saved })
}

// TestModuleIsWiredWithDeps runs a module beside the real ones: its Wire
// gets the process's shared parts (the command stats the metrics read
// among them), its routes and metrics are served, its workers run until
// the server closes, and a worker that fails is logged by name.
func TestModuleIsWiredWithDeps(t *testing.T) {
	type wired struct {
		deps service.Deps
	}
	got := make(chan wired, 1)
	running := make(chan struct{})
	stopped := make(chan struct{})
	errFailing := errors.New("cannot start")
	withModule(t, service.Module{
		Name:       "probe",
		Port:       18089,
		ReadModels: orders.Module.ReadModels,
		Wire: func(d service.Deps) (service.Parts, error) {
			got <- wired{d}
			d.Metrics.GaugeFunc("orderflow_probe_wired", "1 once the probe module is wired.", func() float64 { return 1 })
			return service.Parts{
				Routes: func(r chi.Router) {
					r.Get("/api/probe", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
				},
				Workers: []service.Worker{
					{Name: "probe-worker", Run: func(ctx context.Context) error {
						close(running)
						<-ctx.Done()
						close(stopped)
						return ctx.Err()
					}},
					{Name: "failing-worker", Run: func(context.Context) error { return errFailing }},
				},
			}, nil
		},
	})
	var logs syncBuffer
	srv, err := New(t.Context(), Config{
		Service:     "probe",
		DatabaseURL: testenv.Postgres(t),
		NATSURL:     testenv.NATS(t),
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if srv.cfg.Addr != ":18089" {
		t.Errorf("default address %q, want :18089", srv.cfg.Addr)
	}

	d := (<-got).deps
	switch {
	case d.Pool != srv.pool, d.Store != srv.store, d.NATS != srv.nc:
		t.Error("Wire did not get the server's pool, store and NATS connection")
	case d.JetStream == nil, d.Metrics == nil, d.Logger == nil:
		t.Errorf("Wire got no JetStream, metrics or logger: %+v", d)
	case d.Commands.Stats == nil || d.Commands.Stats != srv.cfg.Commands.Stats:
		t.Error("Wire did not get the command stats /metrics reads")
	}
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not start")
	}

	res := httptest.NewRecorder()
	srv.Handler().ServeHTTP(res, httptest.NewRequest(http.MethodGet, "/api/probe", nil))
	if res.Code != http.StatusNoContent || res.Header().Get(httpx.RequestIDHeader) == "" {
		t.Errorf("GET /api/probe: %d %v, want 204 through the shared middleware", res.Code, res.Header())
	}
	res = httptest.NewRecorder()
	srv.Handler().ServeHTTP(res, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(res.Body.String(), "\norderflow_probe_wired 1\n") ||
		!strings.Contains(res.Body.String(), "\norderflow_command_appends_total ") {
		t.Errorf("metrics lack the module's gauge or the shared ones:\n%s", res.Body.String())
	}

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `level=ERROR msg="worker stopped" service=probe component=failing-worker error="cannot start"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the failing worker was not logged:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	srv.Close()
	select {
	case <-stopped:
	default:
		t.Error("Close returned before the worker stopped")
	}
	if strings.Contains(logs.String(), "component=probe-worker") {
		t.Errorf("a worker that stopped with the server was logged as failed:\n%s", logs.String())
	}
}

func TestModuleWireFailureStopsStart(t *testing.T) {
	errWire := errors.New("no config for the probe")
	withModule(t, service.Module{
		Name:       "probe",
		Port:       18089,
		ReadModels: orders.Module.ReadModels,
		Wire:       func(service.Deps) (service.Parts, error) { return service.Parts{}, errWire },
	})
	_, err := New(t.Context(), Config{
		Service:     "probe",
		DatabaseURL: testenv.Postgres(t),
		Logger:      slog.New(slog.DiscardHandler),
	})
	if !errors.Is(err, errWire) || !strings.Contains(err.Error(), "wire probe") {
		t.Fatalf("New: %v, want the Wire error", err)
	}
}

// syncBuffer collects output written from several goroutines.
type syncBuffer = testenv.Buffer
