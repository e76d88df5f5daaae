package projections_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
)

// The runner installs and runs a service's projections, reports their
// progress, rebuilds one on request in the background and refuses what it
// cannot do; ListStats reports the same from the database alone.
func TestRunnerRunsReportsAndRebuilds(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	r := projections.NewRunner(env.Pool, nil)
	models := readModels(t, env)
	for _, m := range models {
		if err := r.Add(m.proj, m.src, projections.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Add(models[0].proj, models[0].src, projections.Config{}); err == nil {
		t.Error("adding a projection twice succeeded")
	}
	if err := r.StartRebuild(orderview.Name); err == nil {
		t.Error("a rebuild started before Run")
	}
	if err := r.Install(ctx); err != nil {
		t.Fatal(err)
	}
	// Installed means queryable, even before the projectors run.
	if views, _, err := orderview.List(ctx, env.Pool, orderview.Filter{}, 0, ""); err != nil || len(views) != 0 {
		t.Fatalf("orders before any event: %v, %v", views, err)
	}
	stop := run(t, r.Run)

	env.AppendStepsConcurrently(t, projsourcetest.History(rand.New(rand.NewPCG(31, 32)), 200, 10), 8)
	head := env.Head(t)
	for _, m := range models {
		waitCheckpoint(t, env.Pool, m.proj.Name(), head)
	}
	waitFor(t, 5*time.Second, "the runner's stats to catch up", func() bool {
		for _, s := range r.Stats() {
			if s.Checkpoint != head {
				return false
			}
		}
		return true
	})
	stats := r.Stats()
	if len(stats) != 3 {
		t.Fatalf("runner stats %+v, want 3 projections", stats)
	}
	for i, s := range stats {
		if s.Name != models[i].proj.Name() || s.Status != projections.StatusLive || s.Head != head || s.Lag != 0 || s.ActiveVersion != 1 {
			t.Errorf("stats %+v, want %s live at %d with no lag", s, models[i].proj.Name(), head)
		}
	}
	fromDB, err := projections.ListStats(ctx, env.Pool, env.Store)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromDB) != 3 {
		t.Fatalf("ListStats %+v, want 3", fromDB)
	}
	for _, s := range fromDB {
		if s.Status != projections.StatusLive || s.Checkpoint != head || s.Lag != 0 {
			t.Errorf("ListStats item %+v, want live at %d", s, head)
		}
	}

	if err := r.StartRebuild("nope"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("rebuild of an unknown projection: %v, want not found", err)
	}
	if err := r.StartRebuild(orderview.Name); err != nil {
		t.Fatal(err)
	}
	if err := r.StartRebuild(orderview.Name); !errors.Is(err, projections.ErrRebuildRunning) {
		t.Errorf("second rebuild while one runs: %v, want ErrRebuildRunning", err)
	}
	if s := r.Stats()[0]; s.Status != projections.StatusRebuilding || s.Rebuild == nil {
		t.Errorf("stats during the rebuild %+v, want rebuilding with progress", s)
	}
	waitFor(t, 20*time.Second, "the rebuild to swap in version 2", func() bool {
		return readRegistry(t, env.Pool, orderview.Name).active == 2 && r.Stats()[0].Rebuild == nil
	})
	if err := r.LastRebuildError(orderview.Name); err != nil {
		t.Errorf("rebuild failed: %v", err)
	}
	pos := env.AppendSteps(t, projsourcetest.History(rand.New(rand.NewPCG(33, 34)), 5, 10))
	if pos == 0 {
		t.Fatal("nothing appended")
	}
	head = env.Head(t)
	waitCheckpoint(t, env.Pool, orderview.Name, head)
	checkOrdersAgainstDomain(t, env)
	waitFor(t, 5*time.Second, "the runner to report version 2", func() bool { return r.Stats()[0].ActiveVersion == 2 })

	stop()
	for _, s := range r.Stats() {
		if s.Status != projections.StatusStopped {
			t.Errorf("after Run returned: %+v, want stopped", s)
		}
	}
	if err := r.StartRebuild(orderview.Name); err == nil {
		t.Error("a rebuild started after Run returned")
	}
}

// widened is the counter after a schema change: one more column.
type widened struct{ *counter }

func (w widened) Schema(t projections.Tables) projections.Schema {
	s := w.counter.Schema(t)
	s.Tables = []string{"CREATE TABLE " + t.Name(w.Tables()[0]) + " (stream text PRIMARY KEY, n bigint NOT NULL, last_position bigint NOT NULL, note text NOT NULL DEFAULT '')"}
	return s
}

// Apply also writes the new column, which tables of the old shape lack.
func (w widened) Apply(ctx context.Context, tx pgx.Tx, t projections.Tables, events []domain.Envelope) error {
	if err := w.counter.Apply(ctx, tx, t, events); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "UPDATE "+t.Name(w.Tables()[0])+" SET note = 'seen' WHERE note = ''")
	return err
}

// Code with a changed schema never writes into tables of the old shape (and
// so never parks events for it): its projector waits while its runner
// rebuilds the read model in the new shape, then carries on.
func TestSchemaChangeRebuildsInsteadOfParking(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	old := &counter{name: "evolving"}
	r1 := projections.NewRunner(env.Pool, nil)
	if err := r1.Add(old, env.Source(t), projections.Config{}); err != nil {
		t.Fatal(err)
	}
	stop1 := run(t, r1.Run)
	env.AppendStepsConcurrently(t, projsourcetest.History(rand.New(rand.NewPCG(41, 42)), 50, 5), 4)
	waitCheckpoint(t, env.Pool, old.name, env.Head(t))
	stop1()

	next := widened{&counter{name: "evolving"}}
	if projections.SchemaHash(next) == projections.SchemaHash(old) {
		t.Fatal("the widened schema has the old fingerprint")
	}
	// Events wait for the new code, which must not apply them to the old
	// tables, where they would fail and be parked.
	env.AppendStepsConcurrently(t, projsourcetest.History(rand.New(rand.NewPCG(43, 44)), 50, 5), 4)
	r2 := projections.NewRunner(env.Pool, nil)
	if err := r2.Add(next, env.Source(t), projections.Config{Retries: -1}); err != nil {
		t.Fatal(err)
	}
	run(t, r2.Run)
	env.AppendStepsConcurrently(t, projsourcetest.History(rand.New(rand.NewPCG(45, 46)), 20, 5), 4)
	head := env.Head(t)
	waitFor(t, 20*time.Second, "the widened version to be active and caught up", func() bool {
		reg := readRegistry(t, env.Pool, old.name)
		return reg.active == 2 && reg.checkpoint >= head
	})
	equalCounts(t, counts(t, env.Pool, next.counter), storeCounts(t, env.Pool, "", head))
	if got := parked(t, env.Pool, old.name); len(got) != 0 {
		t.Errorf("parked %v during the schema change", got)
	}
	var notes int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM rm_evolving_counts WHERE note = 'seen'").Scan(&notes); err != nil || notes == 0 {
		t.Errorf("the view does not serve the new column: %d, %v", notes, err)
	}
}
