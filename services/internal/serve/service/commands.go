package service

import (
	"context"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/services/internal/cmdconsume"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

// CommandConsumer returns the worker that runs the commands sagas send a
// context (commands.<context>.> on the COMMANDS work queue) on bus, the
// context's handlers that the routes use too, and registers its counts on
// d.Metrics. Call it from Wire when d.JetStream is set.
func CommandConsumer(d Deps, bus *commands.Bus) Worker {
	stats := new(cmdconsume.Stats)
	counter := func(name, help string, value func(cmdconsume.StatsSnapshot) uint64) {
		d.Metrics.CounterVecFunc(name, help, nil, func() []httpx.Sample {
			return []httpx.Sample{{Value: float64(value(stats.Snapshot()))}}
		})
	}
	counter("orderflow_command_consumer_received_total", "Saga commands delivered to this service, redeliveries included, since the process started.",
		func(s cmdconsume.StatsSnapshot) uint64 { return s.Received })
	counter("orderflow_command_consumer_answered_total", "Saga commands run and answered, since the process started.",
		func(s cmdconsume.StatsSnapshot) uint64 { return s.Answered })
	counter("orderflow_command_consumer_duplicates_total", "Saga commands that had run before (a redelivery) and changed nothing, since the process started.",
		func(s cmdconsume.StatsSnapshot) uint64 { return s.Duplicates })
	counter("orderflow_command_consumer_retried_total", "Saga command deliveries asked for again after a failure, since the process started.",
		func(s cmdconsume.StatsSnapshot) uint64 { return s.Retried })
	counter("orderflow_command_consumer_parked_total", "Saga commands that can never be run, parked, since the process started.",
		func(s cmdconsume.StatsSnapshot) uint64 { return s.Parked })
	cfg := cmdconsume.Config{Context: bus.Context(), Bus: bus, Logger: d.Logger, Stats: stats}
	return Worker{Name: "cmdconsume", Run: func(ctx context.Context) error {
		// The relay creates the streams too; the consumer starts at once
		// when they exist, and retries on its own otherwise.
		_ = natsbus.EnsureTopology(ctx, d.JetStream, d.Topology)
		return cmdconsume.Run(ctx, d.JetStream, cfg)
	}}
}
