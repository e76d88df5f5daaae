package projections_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/projections"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// counter is a projection that counts the events of each stream with no
// version check of its own, so any event applied twice shows in its rows.
// hook, when set, runs inside Apply after the rows are written.
type counter struct {
	name string
	mu   sync.Mutex
	hook func(ctx context.Context, events []domain.Envelope) error
}

func (c *counter) Name() string     { return c.name }
func (c *counter) Tables() []string { return []string{c.name + "_counts"} }

func (c *counter) Schema(t projections.Tables) projections.Schema {
	return projections.Schema{
		Tables:  []string{"CREATE TABLE " + t.Name(c.Tables()[0]) + " (stream text PRIMARY KEY, n bigint NOT NULL, last_position bigint NOT NULL)"},
		Indexes: []string{"CREATE INDEX " + t.Index(c.Tables()[0], "by_n") + " ON " + t.Name(c.Tables()[0]) + " (n)"},
	}
}

func (c *counter) Apply(ctx context.Context, tx pgx.Tx, t projections.Tables, events []domain.Envelope) error {
	n := map[string]int64{}
	last := map[string]int64{}
	var streams []string
	for _, e := range events {
		if _, ok := n[e.Stream]; !ok {
			streams = append(streams, e.Stream)
		}
		n[e.Stream]++
		last[e.Stream] = int64(e.Position)
	}
	counts := make([]int64, len(streams))
	lasts := make([]int64, len(streams))
	for i, s := range streams {
		counts[i], lasts[i] = n[s], last[s]
	}
	name := t.Name(c.Tables()[0])
	_, err := tx.Exec(ctx, `INSERT INTO `+name+` AS c (stream, n, last_position)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
		ON CONFLICT (stream) DO UPDATE SET n = c.n + excluded.n, last_position = excluded.last_position`, streams, counts, lasts)
	if err != nil {
		return err
	}
	c.mu.Lock()
	hook := c.hook
	c.mu.Unlock()
	if hook != nil {
		return hook(ctx, events)
	}
	return nil
}

func (c *counter) setHook(h func(ctx context.Context, events []domain.Envelope) error) {
	c.mu.Lock()
	c.hook = h
	c.mu.Unlock()
}

// counts reads the counter's rows through its view.
func counts(t *testing.T, q projections.Querier, c *counter) map[string]int64 {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT stream, n FROM "+projections.View(c.Tables()[0]))
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
		s string
		n int64
	}, error) {
		var v struct {
			s string
			n int64
		}
		err := r.Scan(&v.s, &v.n)
		return v, err
	})
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]int64, len(out))
	for _, v := range out {
		m[v.s] = v.n
	}
	return m
}

// storeCounts counts the events of each stream (with the prefix) in the
// store, up to position through.
func storeCounts(t *testing.T, q projections.Querier, prefix string, through uint64) map[string]int64 {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT stream, count(*) FROM es_events WHERE position <= $1 AND stream LIKE $2 || '%' GROUP BY stream",
		int64(through), prefix)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for rows.Next() {
		var (
			s string
			n int64
		)
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		m[s] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func sum(m map[string]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

func equalCounts(t *testing.T, got, want map[string]int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d streams counted, want %d", len(got), len(want))
	}
	bad := 0
	for s, n := range want {
		if got[s] != n {
			if bad < 5 {
				t.Errorf("stream %s counted %d times, want %d", s, got[s], n)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d streams counted wrong", bad)
	}
}

type registry struct {
	active     int
	checkpoint uint64
	rebuilding *int32
}

func readRegistry(t *testing.T, q projections.Querier, name string) registry {
	t.Helper()
	var (
		r  registry
		cp int64
	)
	err := q.QueryRow(context.Background(), "SELECT active_version, checkpoint, rebuilding_version FROM projection_versions WHERE name = $1", name).
		Scan(&r.active, &cp, &r.rebuilding)
	if err != nil {
		t.Fatalf("registry of %s: %v", name, err)
	}
	r.checkpoint = uint64(cp)
	return r
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCheckpoint waits until projection name's checkpoint reaches pos.
func waitCheckpoint(t *testing.T, q projections.Querier, name string, pos uint64) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s to reach %d", name, pos), func() bool {
		var cp int64
		err := q.QueryRow(context.Background(), "SELECT checkpoint FROM projection_versions WHERE name = $1", name).Scan(&cp)
		return err == nil && uint64(cp) >= pos
	})
}

// run runs fn(ctx) in a goroutine owned by the test: the returned stop
// cancels it and waits for it to return.
func run(t *testing.T, fn func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("run returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("run did not stop within 20s of its cancellation")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// newPool opens a pool of its own on the test database, named so that a
// test can cut its connections.
func newPool(t *testing.T, like *pgxpool.Pool, appName string) *pgxpool.Pool {
	t.Helper()
	cfg := like.Config().Copy()
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

type parkedRow struct {
	EventID, Type, Error string
	Position             uint64
}

func parked(t *testing.T, q projections.Querier, projection string) map[string]parkedRow {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT event_id, type, error, position FROM projection_parked WHERE projection = $1", projection)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]parkedRow{}
	for rows.Next() {
		var (
			p   parkedRow
			pos int64
		)
		if err := rows.Scan(&p.EventID, &p.Type, &p.Error, &pos); err != nil {
			t.Fatal(err)
		}
		p.Position = uint64(pos)
		m[p.EventID] = p
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
