package coordinator

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderflow/orderflow/sagas"
)

// TestObserveSteps: a step's end is timed from its first command, in the
// histogram of its saga type, step and outcome; other events, and a step
// that never ran, record nothing.
func TestObserveSteps(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	reserve := sagas.ActionRef{Step: "reserve_inventory", StepIndex: 0}
	issued := func(attempt int, at time.Time) sagas.CommandIssued {
		return sagas.CommandIssued{Context: "inventory", Name: "ReserveStock", Version: 1, CommandID: "c" + at.String(),
			ActionRef: reserve, Attempt: attempt, Deadline: at.Add(5 * time.Second), At: at}
	}
	tests := []struct {
		name    string
		history []any // applied to the state before the decision
		decided []any // the decision: applied, then observed
		outcome string
		want    time.Duration // -1: nothing observed
	}{
		{"succeeded", []any{issued(1, t0)},
			[]any{sagas.ReplyReceived{ActionRef: reserve, Attempt: 1, Outcome: sagas.OutcomeSuccess, At: t0.Add(150 * time.Millisecond)},
				sagas.StepSucceeded{Step: "reserve_inventory", Attempt: 1, At: t0.Add(150 * time.Millisecond)},
				sagas.CommandIssued{Context: "shipping", Name: "ScheduleShipment", Version: 1, CommandID: "c2",
					ActionRef: sagas.ActionRef{Step: "schedule_shipment", StepIndex: 1}, Attempt: 1, At: t0.Add(150 * time.Millisecond)}},
			StepOutcomeSucceeded, 150 * time.Millisecond},
		{"failed", []any{issued(1, t0)},
			[]any{sagas.StepFailed{Step: "reserve_inventory", Attempt: 1, Reason: "insufficient_stock", At: t0.Add(40 * time.Millisecond)}},
			StepOutcomeFailed, 40 * time.Millisecond},
		{"timed out: from the first attempt", []any{
			issued(1, t0),
			sagas.AttemptTimedOut{ActionRef: reserve, Attempt: 1, RetryAt: t0.Add(6 * time.Second), At: t0.Add(5 * time.Second)},
			issued(2, t0.Add(6*time.Second)),
		},
			[]any{sagas.StepTimedOut{Step: "reserve_inventory", Attempts: 2, At: t0.Add(11 * time.Second)}},
			StepOutcomeTimedOut, 11 * time.Second},
		{"never started", nil,
			[]any{sagas.StepTimedOut{Step: "reserve_inventory", At: t0.Add(time.Second)}},
			StepOutcomeTimedOut, -1},
		{"no step ended", []any{issued(1, t0)},
			[]any{sagas.AttemptTimedOut{ActionRef: reserve, Attempt: 1, RetryAt: t0.Add(6 * time.Second), At: t0.Add(5 * time.Second)}},
			StepOutcomeSucceeded, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &sagas.State{}
			st.Apply(sagas.SagaStarted{SagaID: "s-1", Definition: "order_fulfillment", DefinitionVersion: 1,
				Steps: []sagas.StepInfo{{Name: "reserve_inventory"}, {Name: "schedule_shipment"}}, At: t0})
			for _, e := range append(tt.history, tt.decided...) {
				st.Apply(e)
			}
			c := &Coordinator{}
			c.observeSteps(st, tt.decided)

			samples := collectHistograms(t, c.StepDurations())
			if tt.want < 0 {
				if len(samples) != 0 {
					t.Fatalf("observed %v, want nothing", samples)
				}
				return
			}
			if len(samples) != 1 {
				t.Fatalf("observed %d label sets (%v), want 1", len(samples), samples)
			}
			key := "order_fulfillment/reserve_inventory/" + tt.outcome
			h, ok := samples[key]
			if !ok {
				t.Fatalf("observed %v, want %s", samples, key)
			}
			if h.GetSampleCount() != 1 || h.GetSampleSum() != tt.want.Seconds() {
				t.Fatalf("%s: count %d sum %v, want 1 and %v", key, h.GetSampleCount(), h.GetSampleSum(), tt.want.Seconds())
			}
		})
	}
}

// collectHistograms returns the histograms c holds, by
// saga/step/outcome.
func collectHistograms(t *testing.T, c prometheus.Collector) map[string]*dto.Histogram {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.Histogram)
	for _, f := range fams {
		if f.GetName() != "orderflow_saga_step_duration_seconds" || f.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("family %s of type %s", f.GetName(), f.GetType())
		}
		for _, m := range f.GetMetric() {
			labels := make(map[string]string)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["saga"]+"/"+labels["step"]+"/"+labels["outcome"]] = m.GetHistogram()
		}
	}
	return out
}
