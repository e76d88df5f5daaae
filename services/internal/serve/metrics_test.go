package serve_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx/metricstest"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestMetricsExposition scrapes /metrics of a real service (inventory, on
// its own PostgreSQL database, with NATS: relay, projector and command
// consumer running) after some traffic, and reads it as Prometheus
// would: it parses with the library's parser, promlint finds no problem,
// and every family the operations need is there with its type and the
// values the traffic implies.
func TestMetricsExposition(t *testing.T) {
	env := servetest.Start(t, "inventory", func(c *serve.Config) { c.NATSURL = testenv.NATS(t) })
	for range 2 {
		if res := env.Post(t, "/api/inventory/SKU-M/restock", `{"quantity":3}`); res.Status != http.StatusAccepted {
			t.Fatalf("restock: %d %s", res.Status, res.Body)
		}
	}
	if res := env.Post(t, "/api/inventory/SKU-M/restock", `{"quantity":0}`); res.Status != http.StatusBadRequest {
		t.Fatalf("restock of 0: %d %s", res.Status, res.Body)
	}
	if res := env.Get(t, "/no/such/path"); res.Status != http.StatusNotFound {
		t.Fatalf("unknown path: %d", res.Status)
	}
	head := float64(env.Head(t))

	// The relay, the projector and the command consumer start on their
	// own: wait until the scrape shows them caught up and running.
	res := env.Eventually(t, 30*time.Second, "/metrics", func(res servetest.Response) bool {
		fams, err := metricstest.Read(res.Body)
		if err != nil {
			return false
		}
		relayLag, okRelay := fams.Value("orderflow_relay_lag")
		published, _ := fams.Value("orderflow_relay_published_total")
		projLag, okProj := fams.Value("orderflow_projection_lag", "projection", "stock")
		checkpoint, _ := fams.Value("orderflow_projection_checkpoint", "projection", "stock")
		_, okConsumer := fams.Value("orderflow_jetstream_redeliveries_total", "consumer", "commands-inventory")
		return okRelay && relayLag == 0 && published == head && okProj && projLag == 0 && checkpoint == head && okConsumer
	})
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the Prometheus text format 0.0.4", ct)
	}
	fams := metricstest.Parse(t, res.Body)

	families := []struct {
		name string
		typ  dto.MetricType
	}{
		{"orderflow_http_request_duration_seconds", dto.MetricType_HISTOGRAM},
		{"orderflow_http_requests_total", dto.MetricType_COUNTER},
		{"orderflow_http_request_seconds_total", dto.MetricType_COUNTER},
		{"orderflow_command_appends_total", dto.MetricType_COUNTER},
		{"orderflow_command_appended_commands_total", dto.MetricType_COUNTER},
		{"orderflow_command_conflicts_total", dto.MetricType_COUNTER},
		{"orderflow_command_conflicts_surfaced_total", dto.MetricType_COUNTER},
		{"orderflow_command_queued", dto.MetricType_GAUGE},
		{"orderflow_command_consumer_received_total", dto.MetricType_COUNTER},
		{"orderflow_command_consumer_parked_total", dto.MetricType_COUNTER},
		{"orderflow_jetstream_redeliveries_total", dto.MetricType_COUNTER},
		{"orderflow_relay_lag", dto.MetricType_GAUGE},
		{"orderflow_relay_checkpoint", dto.MetricType_GAUGE},
		{"orderflow_relay_published_total", dto.MetricType_COUNTER},
		{"orderflow_relay_parked_total", dto.MetricType_COUNTER},
		{"orderflow_relay_active", dto.MetricType_GAUGE},
		{"orderflow_projection_lag", dto.MetricType_GAUGE},
		{"orderflow_projection_parked_events", dto.MetricType_GAUGE},
		{"orderflow_projection_status", dto.MetricType_GAUGE},
		{"orderflow_db_pool_acquired_connections", dto.MetricType_GAUGE},
		{"go_goroutines", dto.MetricType_GAUGE},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER},
	}
	for _, f := range families {
		fams.Want(t, f.name, f.typ)
	}

	values := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"orderflow_http_requests_total", []string{"method", "POST", "route", "/api/inventory/{sku}/restock", "status", "202"}, 2},
		{"orderflow_http_requests_total", []string{"method", "POST", "route", "/api/inventory/{sku}/restock", "status", "400"}, 1},
		{"orderflow_http_requests_total", []string{"method", "GET", "route", "unmatched", "status", "404"}, 1},
		{"orderflow_command_appends_total", nil, 2},
		{"orderflow_command_conflicts_total", nil, 0},
		{"orderflow_relay_published_total", nil, head},
		{"orderflow_relay_parked_total", nil, 0},
		{"orderflow_relay_active", nil, 1},
		{"orderflow_projection_parked_events", []string{"projection", "stock"}, 0},
		{"orderflow_projection_status", []string{"projection", "stock", "status", "live"}, 1},
		{"orderflow_jetstream_redeliveries_total", []string{"consumer", "commands-inventory"}, 0},
	}
	for _, v := range values {
		got, ok := fams.Value(v.name, v.labels...)
		if !ok || got != v.want {
			t.Errorf("%s%q = %v (found %v), want %v", v.name, v.labels, got, ok, v.want)
		}
	}

	h := fams.Histogram("orderflow_http_request_duration_seconds", "method", "POST", "route", "/api/inventory/{sku}/restock", "status", "202")
	if h.GetSampleCount() != 2 || h.GetSampleSum() <= 0 {
		t.Errorf("restock 202 duration: count %d sum %v, want 2 requests that took some time", h.GetSampleCount(), h.GetSampleSum())
	}
	if b := h.GetBucket(); len(b) == 0 || b[len(b)-1].GetCumulativeCount() != 2 {
		t.Errorf("restock 202 duration buckets %v, want the last (+Inf) to hold both", b)
	}
}
