package sagas_test

import (
	"fmt"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"

	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/httpx/metricstest"
)

// TestMetrics runs one saga that completes and one that is compensated
// (its stock reservation refused) through the four services, then reads
// their /metrics as Prometheus would: each parses and lints clean, and the
// sagas service shows the step durations by saga type, step and outcome,
// the sagas per status, and its consumer's redeliveries.
func TestMetrics(t *testing.T) {
	s := newStack(t, generous, allServices...)
	s.Restock(t, "METRICS-1", 5)
	done := s.placeOrder(t, "US", 2, "METRICS-1")
	short := s.placeOrder(t, "US", 10, "METRICS-1")
	s.WaitSaga(t, "sagas", done.SagaID, "completed")
	s.WaitSaga(t, "sagas", short.SagaID, "compensated")

	scrape := func(svc string) []byte {
		t.Helper()
		res := s.Do(t, svc, http.MethodGet, "/metrics", "")
		if res.Status != http.StatusOK {
			t.Fatalf("GET /metrics on %s: %d %s", svc, res.Status, res.Body)
		}
		return res.Body
	}
	// The saga read model, which orderflow_sagas counts, follows the
	// saga streams.
	var last []byte
	coordinatortest.Eventually(t, within, "the sagas read model counting both sagas", func() (bool, string) {
		last = scrape("sagas")
		fams, err := metricstest.Read(last)
		if err != nil {
			return false, err.Error()
		}
		completed, _ := fams.Value("orderflow_sagas", "status", string(engine.StatusCompleted))
		compensated, _ := fams.Value("orderflow_sagas", "status", string(engine.StatusCompensated))
		return completed == 1 && compensated == 1, fmt.Sprintf("completed %v, compensated %v", completed, compensated)
	})
	fams := metricstest.Parse(t, last)

	families := []struct {
		name string
		typ  dto.MetricType
	}{
		{"orderflow_saga_step_duration_seconds", dto.MetricType_HISTOGRAM},
		{"orderflow_sagas", dto.MetricType_GAUGE},
		{"orderflow_saga_decisions_total", dto.MetricType_COUNTER},
		{"orderflow_sagas_completed_total", dto.MetricType_COUNTER},
		{"orderflow_sagas_compensated_total", dto.MetricType_COUNTER},
		{"orderflow_jetstream_redeliveries_total", dto.MetricType_COUNTER},
		{"orderflow_http_request_duration_seconds", dto.MetricType_HISTOGRAM},
	}
	for _, f := range families {
		fams.Want(t, f.name, f.typ)
	}
	if _, ok := fams.Value("orderflow_jetstream_redeliveries_total", "consumer", coordinator.DefaultDurable); !ok {
		t.Errorf("no redelivery count for the coordinator's consumer %s", coordinator.DefaultDurable)
	}

	steps := []struct {
		step, outcome string
	}{
		{engine.StepReserveInventory, coordinator.StepOutcomeSucceeded},
		{engine.StepScheduleShipment, coordinator.StepOutcomeSucceeded},
		{engine.StepConfirmOrder, coordinator.StepOutcomeSucceeded},
		{engine.StepReserveInventory, coordinator.StepOutcomeFailed},
	}
	for _, st := range steps {
		h := fams.Histogram("orderflow_saga_step_duration_seconds",
			"saga", engine.OrderFulfillment, "step", st.step, "outcome", st.outcome)
		// Each step ran once; it took at least the round trip through
		// NATS, another service's append and the relays.
		if h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 {
			t.Errorf("%s %s: count %d sum %v, want one step that took some time", st.step, st.outcome, h.GetSampleCount(), h.GetSampleSum())
		}
		t.Logf("%s %s in %.1f ms", st.step, st.outcome, 1000*h.GetSampleSum())
	}
	if h := fams.Histogram("orderflow_saga_step_duration_seconds", "outcome", coordinator.StepOutcomeTimedOut); h != nil {
		t.Errorf("a step timed out: %v", h)
	}

	// The other services' scrapes are as clean, and time their requests.
	for _, svc := range []string{"orders", "inventory", "shipping"} {
		t.Run(svc, func(t *testing.T) {
			if res := s.Do(t, svc, http.MethodGet, "/healthz", ""); res.Status != http.StatusOK {
				t.Fatalf("GET /healthz on %s: %d", svc, res.Status)
			}
			fams := metricstest.Parse(t, scrape(svc))
			fams.Want(t, "orderflow_http_request_duration_seconds", dto.MetricType_HISTOGRAM)
			if h := fams.Histogram("orderflow_http_request_duration_seconds", "method", "GET", "route", "/healthz", "status", "200"); h.GetSampleCount() < 1 {
				t.Errorf("GET /healthz not timed: %v", h)
			}
			fams.Want(t, "orderflow_relay_lag", dto.MetricType_GAUGE)
			fams.Want(t, "orderflow_jetstream_redeliveries_total", dto.MetricType_COUNTER)
		})
	}
}
