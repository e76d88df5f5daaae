package sagas

import (
	"context"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/sagaview"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/service"
)

// Module is the saga coordinator as `orderflow serve sagas` runs it: its
// own database and event store (the saga streams), the relay serve runs
// for every service (which publishes the sagas' CommandIssued events on
// commands.<context>.<name>), the saga read model, the API, and, when
// NATS is configured, the coordinator's consumer and deadline poller.
var Module = service.Module{
	Name: "sagas",
	Port: 8084,
	ReadModels: []service.ReadModel{{
		Name:           sagaview.Name,
		StreamPrefixes: sagaview.StreamPrefixes,
		New:            func() projections.Projection { return sagaview.New(coordinator.LoadStream, 0) },
	}},
	Wire: wire,
}

func wire(d service.Deps) (service.Parts, error) {
	cfg := d.Coordinator
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	coord, err := coordinator.New(d.Store, d.Pool, cfg)
	if err != nil {
		return service.Parts{}, err
	}
	registerMetrics(d.Metrics, coord, d.Pool)
	parts := service.Parts{Routes: func(r chi.Router) {
		Routes(r, coord, d.Pool)
		AdminRoutes(r, coord.Definitions(), d.Pool)
	}}
	if d.JetStream != nil {
		parts.Workers = append(parts.Workers, service.Worker{
			Name: "coordinator",
			Run:  func(ctx context.Context) error { return coord.Run(ctx, d.JetStream) },
		})
	}
	return parts, nil
}

// registerMetrics adds the coordinator's figures to the service's
// /metrics: its counts since the process started, whether it fires the
// deadlines, the durations of the saga steps it saw end (a histogram by
// saga type, step and outcome), and the sagas per status as the read
// model has them (a failed saga waits for an operator).
func registerMetrics(m *httpx.Metrics, coord *coordinator.Coordinator, pool *pgxpool.Pool) {
	m.Register(coord.StepDurations())
	counter := func(name, help string, value func(coordinator.StatsSnapshot) uint64) {
		m.CounterVecFunc(name, help, nil, func() []httpx.Sample {
			return []httpx.Sample{{Value: float64(value(coord.Stats()))}}
		})
	}
	counter("orderflow_saga_decisions_total", "Decisions that appended events to a saga stream, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Decisions })
	counter("orderflow_saga_conflicts_total", "Saga appends lost to another coordinator replica (each decided again), since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Conflicts })
	counter("orderflow_sagas_started_total", "Sagas started, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Started })
	counter("orderflow_saga_commands_total", "Commands issued by sagas (CommandIssued events), since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Commands })
	counter("orderflow_sagas_completed_total", "SagaCompleted events recorded, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Completed })
	counter("orderflow_sagas_compensated_total", "Sagas compensated, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Compensated })
	counter("orderflow_sagas_failed_total", "Sagas parked as failed for an operator, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Failed })
	counter("orderflow_saga_retries_total", "Failed sagas resumed by an operator, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Retried })
	counter("orderflow_saga_deadlines_total", "Passed saga deadlines decided on (retries, timeouts), since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Deadlines })
	counter("orderflow_saga_events_received_total", "Events delivered to the coordinator, redeliveries included, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Received })
	counter("orderflow_saga_events_parked_total", "Events no saga decision can be taken on, parked, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Parked })
	counter("orderflow_saga_events_dropped_total", "Events naming a saga that never started, given up on, since the process started.",
		func(s coordinator.StatsSnapshot) uint64 { return s.Dropped })
	m.GaugeFunc("orderflow_saga_deadline_lease_held", "1 while this coordinator holds the lease and fires the deadlines.",
		func() float64 {
			if coord.Stats().LeaseHeld {
				return 1
			}
			return 0
		})
	m.GaugeFunc("orderflow_saga_cached_states", "Saga states the coordinator keeps in memory.",
		func() float64 { return float64(coord.Stats().CachedSagas) })
	statuses := engine.Statuses
	m.GaugeVecFunc("orderflow_sagas", "Sagas per status, as the saga read model has them; failed ones wait for an operator.",
		[]string{"status"}, func() []httpx.Sample {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			counts, err := sagaview.CountByStatus(ctx, pool)
			if err != nil {
				return nil
			}
			out := make([]httpx.Sample, len(statuses))
			for i, s := range statuses {
				out[i] = httpx.Sample{Labels: []string{string(s)}, Value: float64(counts[s])}
			}
			return out
		})
}
