package bench

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRun runs every phase, briefly, and checks that each figure is
// measured and that the references wrote what their rates are computed
// from.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu  sync.Mutex
		dbs []string
	)
	newDB := func(context.Context) (string, error) {
		u := testenv.Postgres(t)
		mu.Lock()
		defer mu.Unlock()
		dbs = append(dbs, u)
		return u, nil
	}
	const copyRows = 15_000 // not a whole number of COPY batches
	var out bytes.Buffer
	figs, err := Run(ctx, &out, newDB, Config{
		Duration: 200 * time.Millisecond, Rounds: 1, Writers: 4, BatchWriters: 2,
		CopyRows: copyRows, ReplayEvents: 2_000, LagRate: 1_000, CommandCallers: 8,
		HotStreamEvents: -1, // its own test: hotload_test.go
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}

	want := []string{
		"ref_insert_autocommit_rps", "ref_copyfrom_rps",
		"append_single_64w_eps", "append_single_64w_p50_ms", "append_single_64w_p99_ms",
		"append_batch100_eps", "replay_1m_eps",
		"projection_lag_rate_eps", "projection_lag_p50_ms", "projection_lag_p99_ms",
		"hot_stream_commands_per_s", "hot_stream_commands_per_append", "spread_commands_per_s",
		"hot_stream_to_spread_ratio",
	}
	got := make(map[string]float64)
	for _, f := range figs {
		got[f.Name] = f.Value
	}
	for _, name := range want {
		v, ok := got[name]
		if !ok || v <= 0 {
			t.Errorf("figure %s = %v (measured: %t), want a positive value", name, v, ok)
		}
		if !strings.Contains(out.String(), "\nBENCH "+name+" ") {
			t.Errorf("no BENCH line for %s", name)
		}
	}
	// Every restock of the hot stream succeeded: a count of 0, printed as
	// the integer it is.
	if v, ok := got["hot_stream_conflicts_surfaced"]; !ok || v != 0 {
		t.Errorf("hot_stream_conflicts_surfaced = %v (measured: %t), want 0", v, ok)
	}
	if !strings.Contains(out.String(), "\nBENCH hot_stream_conflicts_surfaced 0\n") {
		t.Errorf("no BENCH line for hot_stream_conflicts_surfaced:\n%s", out.String())
	}
	want = append(want, "hot_stream_conflicts_surfaced")
	if len(figs) != len(want) {
		t.Errorf("%d figures, want %d: %v", len(figs), len(want), figs)
	}

	// The second database is the COPY reference's.
	if len(dbs) < 2 {
		t.Fatalf("%d databases used", len(dbs))
	}
	conn, err := pgx.Connect(ctx, dbs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM ref_events").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != copyRows {
		t.Errorf("the COPY reference wrote %d rows, its rate counts %d", rows, copyRows)
	}
}
