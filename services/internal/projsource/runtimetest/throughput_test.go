package runtimetest

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/projsource/projsourcetest"
)

// TestReplayThroughput measures how fast each read model is rebuilt from a
// store of PROJ_REPLAY_EVENTS events, next to COPY of as many event rows in
// the same run. It only runs when the variable is set (it is a measurement,
// not a check): PROJ_REPLAY_EVENTS=1000000 go test -run Throughput -v.
// PROJ_REPLAY_WINDOW sets how many orders are in flight at a time (default
// 64; 1 makes each order's events contiguous); PROJ_REPLAY_ORDERS_ONLY keeps
// only the order streams.
func TestReplayThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PROJ_REPLAY_EVENTS"))
	if n <= 0 {
		t.Skip("set PROJ_REPLAY_EVENTS to measure replay throughput")
	}
	env := projsourcetest.New(t)
	ctx := context.Background()
	window := 64
	if w, _ := strconv.Atoi(os.Getenv("PROJ_REPLAY_WINDOW")); w > 0 {
		window = w
	}
	steps := projsourcetest.HistoryWindow(rand.New(rand.NewPCG(21, 22)), n/3, 50, window)
	if os.Getenv("PROJ_REPLAY_ORDERS_ONLY") != "" {
		// Like the benchmark's seed: a store of order events only.
		steps = slices.DeleteFunc(steps, func(s projsourcetest.Step) bool { return !strings.HasPrefix(s.Stream, "order-") })
	}
	rows := make([][]any, 0, n)
	versions := map[string]int64{}
	meta, _ := json.Marshal(domain.Metadata{CorrelationID: "bench", CausationID: "bench", RequestID: "bench"})
	now := time.Now().UTC()
	for _, s := range steps {
		if len(rows) >= n {
			break
		}
		for _, p := range s.Payloads {
			e := env.Envelope(t, p)
			versions[s.Stream]++
			rows = append(rows, []any{int64(len(rows) + 1), e.ID, s.Stream, versions[s.Stream], e.Type, int32(1), []byte(e.Data), meta, now})
		}
	}
	cols := []string{"position", "event_id", "stream", "version", "type", "schema_version", "data", "metadata", "recorded_at"}
	load := func(table string) time.Duration {
		start := time.Now()
		for i := 0; i < len(rows); i += 10_000 {
			if _, err := env.Pool.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows[i:min(i+10_000, len(rows))])); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start)
	}
	load("es_events")
	for _, sql := range []string{"CREATE TABLE ref_events (LIKE es_events INCLUDING ALL)", "VACUUM ANALYZE es_events"} {
		if _, err := env.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	copyRate := float64(len(rows)) / load("ref_events").Seconds()
	t.Logf("%d events; CopyFrom reference %.0f rows/s", len(rows), copyRate)

	for _, m := range readModels(t, env) {
		if err := projections.Install(ctx, env.Pool, m.proj); err != nil {
			t.Fatal(err)
		}
		var applied uint64
		start := time.Now()
		err := projections.Rebuild(ctx, env.Pool, m.src, m.proj, func(p projections.Progress) { applied = p.Events })
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		t.Logf("%-9s rebuilt in %5.1fs: %7.0f store events/s (%.2fx COPY), %7.0f applied events/s (%d events)",
			m.table, d.Seconds(), float64(len(rows))/d.Seconds(), float64(len(rows))/d.Seconds()/copyRate,
			float64(applied)/d.Seconds(), applied)
	}
}
