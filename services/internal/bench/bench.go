// Package bench measures the event store against references taken in the
// same run on the same PostgreSQL server: plain one-row autocommit INSERTs
// and COPY of rows of the same shape. It also measures commands on one hot
// stream against the same commands spread over many streams, both through
// the command layer and the PostgreSQL store. The machines it runs on are
// noisy, so the figures that matter are the ratios within one run.
//
// Its last phase measures the whole system end to end: completed sagas
// per second and order-to-confirmed latency, with every service running as
// its own process as in `orderflow dev`, driven through the HTTP API; and,
// on the same stack, orders placed per second through the gateway against
// straight to the orders service.
//
// The readable table is followed by one `BENCH <name> <value> <unit>` line
// per figure so that runs can be compared by script.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// Config sizes the benchmark. Zero values take the defaults.
type Config struct {
	// Duration of each timed phase. Default 3s.
	Duration time.Duration
	// Rounds repeats every phase, interleaved, and reports medians, so a
	// slow spell of a noisy machine weighs on the references and the
	// measured figures alike. Default 3; negative skips the event store
	// and command phases (to run the others alone).
	Rounds int
	// Writers for the concurrent single-event appends. Default 64.
	Writers int
	// BatchWriters for the 100-event appends. Default 8.
	BatchWriters int
	// CopyRows is how many rows the COPY reference writes. Default 300,000.
	CopyRows int
	// ReplayEvents is the size of the store replayed into the orders read
	// model. Default 1,000,000; negative skips the replay.
	ReplayEvents int
	// LagRate is the append rate, in events/s, at which projection lag is
	// measured for Duration. Default 5,000; negative skips it.
	LagRate int
	// CommandCallers is how many callers send commands, in the phases
	// that compare one hot stream with 1,000 streams. Default 32;
	// negative skips those phases.
	CommandCallers int
	// HotStreamEvents is the length of the stock stream on which a
	// command, loaded from its snapshot, is measured against one on a
	// fresh stream (hotload.go). Default 100,000; negative skips it. It
	// runs once, after the rounds, unless Rounds is negative.
	HotStreamEvents int

	// SagaBinary is the orderflow executable whose dev command runs the
	// stack for the saga phase; empty skips that phase.
	SagaBinary string
	// SagaClients is how many clients place orders in the saga phase's
	// peak, each waiting for its order to read confirmed before placing
	// the next. Default 256; negative skips the saga phase.
	SagaClients int
	// SagaDuration is the measured length of the saga peak and of the
	// saga latency phase, each after a warm-up of a fifth of it (0.2s to
	// 2s). Default 10s.
	SagaDuration time.Duration
	// SagaSKUs is how many skus the orders spread over. Default 100.
	SagaSKUs int
	// SagaPoll is how often the orders read model is read in the latency
	// phase, the resolution of its figures. Default 5ms.
	SagaPoll time.Duration
	// SagaPortBase, when positive, names a stack already running on this
	// machine (orders at SagaPortBase+1, ...) to measure instead of
	// starting one; for profiling its services. The cluster phase does
	// not run then.
	SagaPortBase int
	// ClusterClients is how many clients place orders in the saga peak
	// run again, after the single-node stack has stopped, on the stack of
	// `orderflow dev --cluster` (three NATS nodes, streams with three
	// replicas, two replicas of every service and of the coordinator),
	// for saga_completed_per_s_cluster. Default 256; negative skips the
	// cluster phase. It needs SagaBinary.
	ClusterClients int

	// GatewayClients is how many closed-loop clients place orders in the
	// gateway phase, each its own customer with its own token, straight
	// to the orders service and then through the gateway. Default 64;
	// negative skips the phase. It runs on the saga phase's stack, after
	// it.
	GatewayClients int
	// GatewayRounds is how many interleaved rounds of the two legs the
	// gateway phase runs; medians are reported. Default 3.
	GatewayRounds int
	// GatewayDuration is the measured length of each leg, after a
	// warm-up of a fifth of it (0.2s to 2s). Default 3s.
	GatewayDuration time.Duration
}

func (c *Config) setDefaults() {
	if c.Duration == 0 {
		c.Duration = 3 * time.Second
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Writers == 0 {
		c.Writers = 64
	}
	if c.BatchWriters == 0 {
		c.BatchWriters = 8
	}
	if c.CopyRows == 0 {
		c.CopyRows = 300_000
	}
	if c.ReplayEvents == 0 {
		c.ReplayEvents = 1_000_000
	}
	if c.LagRate == 0 {
		c.LagRate = 5_000
	}
	if c.CommandCallers == 0 {
		c.CommandCallers = 32
	}
	if c.HotStreamEvents == 0 {
		c.HotStreamEvents = 100_000
	}
	if c.SagaClients == 0 {
		c.SagaClients = 256
	}
	if c.SagaDuration == 0 {
		c.SagaDuration = 10 * time.Second
	}
	if c.SagaSKUs == 0 {
		c.SagaSKUs = 100
	}
	if c.SagaPoll == 0 {
		c.SagaPoll = 5 * time.Millisecond
	}
	if c.ClusterClients == 0 {
		c.ClusterClients = 256
	}
	if c.GatewayClients == 0 {
		c.GatewayClients = 64
	}
	if c.GatewayRounds == 0 {
		c.GatewayRounds = 3
	}
	if c.GatewayDuration == 0 {
		c.GatewayDuration = 3 * time.Second
	}
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	if c.Duration < 0 || c.Writers < 0 || c.BatchWriters < 0 || c.CopyRows < 0 ||
		c.SagaDuration < 0 || c.SagaSKUs < 0 || c.SagaPoll < 0 ||
		c.GatewayRounds < 0 || c.GatewayDuration < 0 {
		return errors.New("bench: negative setting")
	}
	return nil
}

// Figure is one measured number.
type Figure struct {
	Name  string
	Value float64
	Unit  string
}

// NewDatabase returns the URL of a fresh, empty database on the server under
// test; each phase gets its own so they do not disturb one another.
type NewDatabase func(ctx context.Context) (string, error)

// Run measures every figure, printing progress and the table to w, and
// returns the figures.
func Run(ctx context.Context, w io.Writer, newDB NewDatabase, cfg Config) ([]Figure, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &runner{w: w, newDB: newDB, cfg: cfg, vals: make(map[string][]float64)}
	steps := []struct {
		title string
		fn    func(context.Context) error
	}{
		{"reference: one-row autocommit INSERT, 1 connection", r.refInsert},
		{"reference: CopyFrom, 10,000-row batches", r.refCopy},
		{fmt.Sprintf("event store: single-event appends, %d writers, distinct streams", cfg.Writers), r.appendSingle},
		{fmt.Sprintf("event store: 100-event appends, %d writers, distinct streams", cfg.BatchWriters), r.appendBatch},
	}
	if cfg.CommandCallers > 0 {
		steps = append(steps, []struct {
			title string
			fn    func(context.Context) error
		}{
			{fmt.Sprintf("commands: restocks of one sku, %d callers", cfg.CommandCallers), r.hotStream},
			{fmt.Sprintf("commands: restocks of %d skus, %d callers", spreadStreams, cfg.CommandCallers), r.spread},
		}...)
	}
	for round := 1; round <= max(cfg.Rounds, 0); round++ {
		for i, s := range steps {
			fmt.Fprintf(w, "round %d/%d [%d/%d] %s ...", round, cfg.Rounds, i+1, len(steps), s.title)
			start := time.Now()
			if err := s.fn(ctx); err != nil {
				fmt.Fprintln(w)
				return nil, fmt.Errorf("%s: %w", s.title, err)
			}
			fmt.Fprintf(w, " %s\n", time.Since(start).Round(100*time.Millisecond))
		}
		fmt.Fprintf(w, "round %d: single/insert %.2fx, batch/copy %.2fx, p99 %.1f ms\n", round,
			r.last("append_single_64w_eps")/r.last("ref_insert_autocommit_rps"),
			r.last("append_batch100_eps")/r.last("ref_copyfrom_rps"),
			r.last("append_single_64w_p99_ms"))
		if cfg.CommandCallers > 0 {
			fmt.Fprintf(w, "round %d: hot/spread %.2fx, %.1f commands per append, %.0f conflicts surfaced\n", round,
				r.last("hot_stream_commands_per_s")/r.last("spread_commands_per_s"),
				r.last("hot_stream_commands_per_append"), r.last("hot_stream_conflicts_surfaced"))
		}
	}
	if cfg.Rounds > 0 && cfg.HotStreamEvents > 0 {
		fmt.Fprintf(w, "hot stream load: a restock on a %d-event stock stream, on a new handler each time, against one on a fresh stream ...\n", cfg.HotStreamEvents)
		if err := r.hotLoad(ctx); err != nil {
			return nil, fmt.Errorf("hot stream load: %w", err)
		}
	}
	if cfg.ReplayEvents > 0 {
		fmt.Fprintf(w, "replay: %d order events into the orders read model ...\n", cfg.ReplayEvents)
		if err := r.replay(ctx); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
	}
	if cfg.LagRate > 0 {
		fmt.Fprintf(w, "projection lag: appending %d events/s for %s with the orders projector live ...\n", cfg.LagRate, cfg.Duration)
		if err := r.lag(ctx); err != nil {
			return nil, fmt.Errorf("projection lag: %w", err)
		}
	}
	if (cfg.SagaBinary != "" || cfg.SagaPortBase > 0) && (cfg.SagaClients > 0 || cfg.GatewayClients > 0) {
		what := "sagas end to end"
		switch {
		case cfg.SagaClients <= 0:
			what = "gateway overhead"
		case cfg.GatewayClients > 0:
			what = "sagas end to end, then gateway overhead"
		}
		fmt.Fprintf(w, "%s: the stack as `orderflow dev` runs it, orders placed over HTTP ...\n", what)
		if err := r.sagas(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if cfg.SagaBinary != "" && cfg.SagaPortBase <= 0 && cfg.ClusterClients > 0 {
		const what = "sagas end to end on a cluster"
		fmt.Fprintf(w, "%s: the stack as `orderflow dev --cluster` runs it, orders placed over HTTP ...\n", what)
		if err := r.clusterSagas(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	r.report()
	return r.figs, nil
}

type runner struct {
	w     io.Writer
	newDB NewDatabase
	cfg   Config
	names []string             // figure names in the order first measured
	units map[string]string    // unit of each figure
	vals  map[string][]float64 // every round's value of each figure
	figs  []Figure             // medians, filled by report
}

func (r *runner) add(name string, v float64, unit string) {
	if _, ok := r.vals[name]; !ok {
		r.names = append(r.names, name)
		if r.units == nil {
			r.units = make(map[string]string)
		}
		r.units[name] = unit
	}
	r.vals[name] = append(r.vals[name], v)
}

func (r *runner) last(name string) float64 {
	v := r.vals[name]
	if len(v) == 0 {
		return 0
	}
	return v[len(v)-1]
}

// get returns the median of a figure's rounds, or for a count their sum:
// one round's errors must not hide behind the others' zeros.
func (r *runner) get(name string) float64 {
	v := slices.Clone(r.vals[name])
	if len(v) == 0 {
		return 0
	}
	if r.units[name] == "count" {
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		return sum
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// payload is a typical event body (an order line change, ~200 bytes).
var payload = []byte(`{"order_id":"6b1f3c1e-3a55-4f0e-9d1b-1c2d3e4f5a6b","sku":"SKU-000123","quantity":2,"unit_price_cents":1299,"customer_id":"c-42","note":"benchmark payload of a realistic size"}`)

var metadata, _ = json.Marshal(domain.Metadata{CorrelationID: uuid.NewString(), CausationID: uuid.NewString(), RequestID: uuid.NewString()})

// refTable has the event table's columns, keys and indexes, so the
// references pay for the same row width and index maintenance.
const refTable = `CREATE TABLE ref_events (LIKE es_events INCLUDING ALL)`

func (r *runner) pool(ctx context.Context, conns int32) (*pgxpool.Pool, error) {
	url, err := r.newDB(ctx)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, refTable); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func (r *runner) refInsert(ctx context.Context) error {
	pool, err := r.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	const q = `INSERT INTO ref_events (position, event_id, stream, version, type, schema_version, data, metadata, recorded_at)
		VALUES ($1, $2, $3, 1, 'BenchEvent', 1, $4, $5, now())`
	deadline := time.Now().Add(r.cfg.Duration)
	start := time.Now()
	n := 0
	for time.Now().Before(deadline) {
		n++
		if _, err := conn.Exec(ctx, q, n, uuid.New(), fmt.Sprintf("bench-%d", n), payload, metadata); err != nil {
			return err
		}
	}
	r.add("ref_insert_autocommit_rps", float64(n)/time.Since(start).Seconds(), "rows/s")
	return nil
}

func (r *runner) refCopy(ctx context.Context) error {
	pool, err := r.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	const batch = 10_000
	cols := []string{"position", "event_id", "stream", "version", "type", "schema_version", "data", "metadata", "recorded_at"}
	start := time.Now()
	for done := 0; done < r.cfg.CopyRows; done += batch {
		// The last batch is cut short so that exactly CopyRows rows are
		// written, the number the rate is computed from.
		_, err := pool.CopyFrom(ctx, pgx.Identifier{"ref_events"}, cols, pgx.CopyFromSlice(min(batch, r.cfg.CopyRows-done), func(i int) ([]any, error) {
			n := done + i + 1
			return []any{int64(n), uuid.New().String(), fmt.Sprintf("bench-%d", n/100), int64(n%100 + 1), "BenchEvent", int32(1), payload, metadata, start}, nil
		}))
		if err != nil {
			return err
		}
	}
	r.add("ref_copyfrom_rps", float64(r.cfg.CopyRows)/time.Since(start).Seconds(), "rows/s")
	return nil
}

// drive runs writers goroutines that append size-event batches to their own
// streams until the phase ends, and returns the events written, the elapsed
// time and every append's latency.
func (r *runner) drive(ctx context.Context, writers, size int) (int64, time.Duration, []time.Duration, error) {
	pool, err := r.pool(ctx, 16)
	if err != nil {
		return 0, 0, nil, err
	}
	defer pool.Close()
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		return 0, 0, nil, err
	}
	defer store.Close()

	var (
		total   atomic.Int64
		mu      sync.Mutex
		lats    []time.Duration
		firstEr error
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(r.cfg.Duration)
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("bench-%d-%s", w, uuid.NewString())
			var version int64
			var mine []time.Duration
			evs := make([]domain.Envelope, size)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				for i := range evs {
					evs[i] = domain.Envelope{ID: uuid.NewString(), Type: "BenchEvent", SchemaVersion: 1, Data: payload,
						Metadata: domain.Metadata{CorrelationID: "bench", CausationID: "bench", RequestID: "bench"}}
				}
				t0 := time.Now()
				res, err := store.Append(ctx, stream, domain.ExactVersion(version), evs)
				mine = append(mine, time.Since(t0))
				if err != nil {
					mu.Lock()
					firstEr = errors.Join(firstEr, err)
					mu.Unlock()
					return
				}
				version = res.NextVersion
				total.Add(int64(size))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total.Load(), time.Since(start), lats, firstEr
}

func (r *runner) appendSingle(ctx context.Context) error {
	n, d, lats, err := r.drive(ctx, r.cfg.Writers, 1)
	if err != nil {
		return err
	}
	slices.Sort(lats)
	r.add("append_single_64w_eps", float64(n)/d.Seconds(), "events/s")
	r.add("append_single_64w_p50_ms", ms(pct(lats, 0.50)), "ms")
	r.add("append_single_64w_p99_ms", ms(pct(lats, 0.99)), "ms")
	return nil
}

func (r *runner) appendBatch(ctx context.Context) error {
	n, d, _, err := r.drive(ctx, r.cfg.BatchWriters, 100)
	if err != nil {
		return err
	}
	r.add("append_batch100_eps", float64(n)/d.Seconds(), "events/s")
	return nil
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *runner) report() {
	ins, cp := r.get("ref_insert_autocommit_rps"), r.get("ref_copyfrom_rps")
	single, batch := r.get("append_single_64w_eps"), r.get("append_batch100_eps")
	p99 := r.get("append_single_64w_p99_ms")
	for _, name := range r.names {
		if name == clusterRateFigure && r.vals["saga_completed_per_s"] != nil {
			continue // it goes beside the single-node figure
		}
		r.figs = append(r.figs, Figure{name, r.get(name), r.units[name]})
		if name == "saga_completed_per_s" && r.vals[clusterRateFigure] != nil {
			r.figs = append(r.figs, r.clusterFigures()...)
		}
	}
	if r.cfg.Rounds > 0 {
		fmt.Fprintf(r.w, "\nmedians of %d rounds of %s per phase\n", r.cfg.Rounds, r.cfg.Duration)
	} else {
		fmt.Fprintln(r.w)
	}
	fmt.Fprintf(r.w, "%-44s %14s %12s %10s %s\n", "figure", "value", "reference", "ratio", "target")
	row := func(name string, v float64, unit string, ref float64, target string, ok bool) {
		ratio, refs := "", ""
		if ref > 0 {
			ratio = fmt.Sprintf("%.2fx", v/ref)
			refs = fmt.Sprintf("%.0f", ref)
		}
		verdict := " (met)"
		switch {
		case target == "-":
			verdict = ""
		case !ok:
			verdict = " (NOT met)"
		}
		fmt.Fprintf(r.w, "%-44s %10.1f %-3s %12s %10s %s%s\n", name, v, unit, refs, ratio, target, verdict)
	}
	// unjudged is a row whose target needs a reference this run did not
	// measure: it says so instead of claiming the target met.
	unjudged := func(name string, v float64, unit, target string) {
		fmt.Fprintf(r.w, "%-44s %10.1f %-3s %12s %10s %s (not judged: no reference measured in this run)\n", name, v, unit, "", "", target)
	}
	if r.cfg.Rounds > 0 {
		row(fmt.Sprintf("single-event appends, %d writers", r.cfg.Writers), single, "e/s", ins, ">= 5x autocommit INSERT", single >= 5*ins)
		row("  p50 latency", r.get("append_single_64w_p50_ms"), "ms", 0, "-", true)
		row("  p99 latency", p99, "ms", 0, "< 25 ms", p99 < 25)
		row(fmt.Sprintf("100-event appends, %d writers", r.cfg.BatchWriters), batch, "e/s", cp, ">= 0.5x CopyFrom", batch >= 0.5*cp)
	}
	if rp := r.get("replay_1m_eps"); rp > 0 {
		name := fmt.Sprintf("replay of %d events", r.cfg.ReplayEvents)
		if cp > 0 {
			row(name, rp, "e/s", cp, ">= 0.5x CopyFrom", rp >= 0.5*cp)
		} else {
			unjudged(name, rp, "e/s", ">= 0.5x CopyFrom")
		}
	}
	if _, ok := r.vals["projection_lag_p99_ms"]; ok {
		row(fmt.Sprintf("projection lag at %.0f e/s, p50", r.get("projection_lag_rate_eps")), r.get("projection_lag_p50_ms"), "ms", 0, "-", true)
		lp99 := r.get("projection_lag_p99_ms")
		row("  p99", lp99, "ms", 0, "< 100 ms", lp99 < 100)
	}
	if _, ok := r.vals["hot_stream_commands_per_s"]; ok {
		hot, spread := r.get("hot_stream_commands_per_s"), r.get("spread_commands_per_s")
		surfaced := r.get("hot_stream_conflicts_surfaced")
		row(fmt.Sprintf("commands on one stream, %d callers", r.cfg.CommandCallers), hot, "c/s", spread, fmt.Sprintf(">= 0.5x %d streams", spreadStreams), hot >= 0.5*spread)
		row("  commands per append", r.get("hot_stream_commands_per_append"), "", 0, "-", true)
		row("  conflicts surfaced to callers", surfaced, "", 0, "0", surfaced == 0)
		row(fmt.Sprintf("commands on %d streams, %d callers", spreadStreams, r.cfg.CommandCallers), spread, "c/s", 0, "-", true)
		if spread > 0 {
			r.figs = append(r.figs, Figure{"hot_stream_to_spread_ratio", hot / spread, "x"})
		}
	}
	if _, ok := r.vals[hotLoadRatioFigure]; ok {
		r.hotLoadRows(row)
	}
	_, sagaSingle := r.vals["saga_completed_per_s"]
	if _, sagaCluster := r.vals[clusterRateFigure]; sagaSingle || sagaCluster {
		r.sagaRows(row)
	}
	if _, ok := r.vals[gatewayRatioFigure]; ok {
		r.gatewayRows(row)
	}
	if r.cfg.Rounds > 0 {
		row("reference: autocommit INSERT", ins, "r/s", 0, "-", true)
		row("reference: CopyFrom", cp, "r/s", 0, "-", true)
	}
	fmt.Fprintln(r.w)
	for _, f := range r.figs {
		switch f.Unit {
		case "count":
			fmt.Fprintf(r.w, "BENCH %s %.0f\n", f.Name, f.Value)
			continue
		case "x":
			// A ratio is judged against a target such as 0.8: two
			// decimals would print 0.798 as the target itself.
			fmt.Fprintf(r.w, "BENCH %s %.3f %s\n", f.Name, f.Value, f.Unit)
			continue
		}
		fmt.Fprintf(r.w, "BENCH %s %.2f %s\n", f.Name, f.Value, f.Unit)
	}
}
