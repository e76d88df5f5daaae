package serve

import (
	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

// registerMetrics adds the figures of the service's projections, command
// handlers, JetStream consumers and relay to m; they are read from the
// components' own figures at scrape time. Names follow Prometheus's
// conventions (counters end in _total, units are base units), which the
// tests check with the library's linter.
func (s *Server) registerMetrics(m *httpx.Metrics) {
	label := []string{"projection"}
	perProjection := func(value func(projections.Stats) float64) func() []httpx.Sample {
		return func() []httpx.Sample {
			stats := s.runner.Stats()
			out := make([]httpx.Sample, len(stats))
			for i, st := range stats {
				out[i] = httpx.Sample{Labels: []string{st.Name}, Value: value(st)}
			}
			return out
		}
	}
	m.GaugeVecFunc("orderflow_projection_checkpoint", "Global position of the last event applied to the active read model.",
		label, perProjection(func(st projections.Stats) float64 { return float64(st.Checkpoint) }))
	m.GaugeVecFunc("orderflow_projection_head", "Newest position of the event store, as the projector last read it.",
		label, perProjection(func(st projections.Stats) float64 { return float64(st.Head) }))
	m.GaugeVecFunc("orderflow_projection_lag", "Positions between the event store's head and the projection's checkpoint.",
		label, perProjection(func(st projections.Stats) float64 { return float64(st.Lag) }))
	m.GaugeVecFunc("orderflow_projection_parked_events", "Events the projection parked because it cannot apply them.",
		label, perProjection(func(st projections.Stats) float64 { return float64(st.Parked) }))
	m.GaugeVecFunc("orderflow_projection_events_per_second", "Events applied per second over the last few seconds.",
		label, perProjection(func(st projections.Stats) float64 { return st.EventsPerSecond }))
	m.GaugeVecFunc("orderflow_projection_status", "1 for the projection's current status (live, rebuilding, stopped), 0 for the others.",
		[]string{"projection", "status"}, func() []httpx.Sample {
			var out []httpx.Sample
			for _, st := range s.runner.Stats() {
				for _, status := range []projections.Status{projections.StatusLive, projections.StatusRebuilding, projections.StatusStopped} {
					v := 0.0
					if st.Status == status {
						v = 1
					}
					out = append(out, httpx.Sample{Labels: []string{st.Name, string(status)}, Value: v})
				}
			}
			return out
		})

	s.registerCommandMetrics(m)

	if s.nc != nil {
		m.CounterVecFunc("orderflow_jetstream_redeliveries_total",
			"Messages a JetStream consumer of this process received again (an ack wait that ran out, a nak, a replica gone before acknowledging), by consumer, since the process started.",
			[]string{"consumer"}, func() []httpx.Sample {
				counts := natsbus.Redeliveries()
				out := make([]httpx.Sample, len(counts))
				for i, c := range counts {
					out[i] = httpx.Sample{Labels: []string{c.Consumer}, Value: float64(c.Count)}
				}
				return out
			})
	}

	if s.relay == nil {
		return
	}
	m.GaugeFunc("orderflow_relay_checkpoint", "Global position up to which every event is published (or parked).",
		func() float64 { return float64(s.relay.Stats().Checkpoint) })
	m.GaugeFunc("orderflow_relay_head", "Newest position of the event store, as the relay last read it.",
		func() float64 { return float64(s.relay.Stats().Head) })
	m.GaugeFunc("orderflow_relay_lag", "Positions between the event store's head and the relay's checkpoint.",
		func() float64 { return float64(s.relay.Stats().Lag) })
	m.GaugeFunc("orderflow_relay_active", "1 while this process holds the relay lease and publishes.",
		func() float64 {
			if s.relay.Stats().Active {
				return 1
			}
			return 0
		})
	m.GaugeFunc("orderflow_relay_in_flight", "Publishes awaiting their acknowledgement.",
		func() float64 { return float64(s.relay.Stats().InFlight) })
	counter := func(name, help string, value func() float64) {
		m.CounterVecFunc(name, help, nil, func() []httpx.Sample { return []httpx.Sample{{Value: value()}} })
	}
	counter("orderflow_relay_published_total", "Events JetStream acknowledged since the process started.",
		func() float64 { return float64(s.relay.Stats().Published) })
	counter("orderflow_relay_duplicates_total", "Publishes JetStream reported as already stored, since the process started.",
		func() float64 { return float64(s.relay.Stats().Duplicates) })
	counter("orderflow_relay_skipped_total", "Events not published again because JetStream already held them when the relay resumed, since the process started.",
		func() float64 { return float64(s.relay.Stats().Skipped) })
	counter("orderflow_relay_interruptions_total", "Relay sessions that ended on a failure and were started again, since the process started.",
		func() float64 { return float64(s.relay.Stats().Interruptions) })
	counter("orderflow_relay_parked_total", "Events the relay parked because they can never be published, since the process started.",
		func() float64 { return float64(s.relay.Stats().Parked) })
}

// registerCommandMetrics adds the counts of the command handlers to m,
// read from the Stats they count into (cfg.Commands.Stats, which
// setDefaults fills in).
func (s *Server) registerCommandMetrics(m *httpx.Metrics) {
	stats := s.cfg.Commands.Stats
	counter := func(name, help string, value func(commands.StatsSnapshot) uint64) {
		m.CounterVecFunc(name, help, nil, func() []httpx.Sample {
			return []httpx.Sample{{Value: float64(value(stats.Snapshot()))}}
		})
	}
	counter("orderflow_command_conflicts_total", "Appends of commands that lost a race with another process (version conflicts), since the process started.",
		func(st commands.StatsSnapshot) uint64 { return st.Conflicts })
	counter("orderflow_command_retries_total", "Appends of commands tried again after a version conflict, since the process started.",
		func(st commands.StatsSnapshot) uint64 { return st.Retries })
	counter("orderflow_command_conflicts_surfaced_total", "Commands that failed with a version conflict because their retry budget was spent, since the process started.",
		func(st commands.StatsSnapshot) uint64 { return st.Surfaced })
	counter("orderflow_command_appends_total", "Successful appends of the command handlers; each stores the events of one or more commands queued on one stream.",
		func(st commands.StatsSnapshot) uint64 { return st.Appends })
	counter("orderflow_command_appended_commands_total", "Commands whose events were appended; divided by orderflow_command_appends_total, the mean batch size.",
		func(st commands.StatsSnapshot) uint64 { return st.AppendedCommands })
	m.GaugeFunc("orderflow_command_queued", "Commands waiting for their stream's writer or being run by it.",
		func() float64 { return float64(stats.Snapshot().Queued) })
	m.GaugeFunc("orderflow_command_cached_streams", "Streams whose state the command handlers keep in memory.",
		func() float64 { return float64(stats.Snapshot().CachedStreams) })
}
