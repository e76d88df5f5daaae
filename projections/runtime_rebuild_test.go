package projections_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/projsource"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
	"github.com/orderflow/orderflow/projections/shipmentview"
	"github.com/orderflow/orderflow/projections/stockview"
)

// readModel is one of the real read models with its source.
type readModel struct {
	proj  projections.Projection
	table string
	src   *projsource.Source
}

func readModels(t *testing.T, env *projsourcetest.Env) []readModel {
	t.Helper()
	return []readModel{
		{orderview.New(), "orders", env.Source(t, orderview.StreamPrefixes...)},
		{stockview.New(), "stock", env.Source(t, stockview.StreamPrefixes...)},
		{shipmentview.New(), "shipments", env.Source(t, shipmentview.StreamPrefixes...)},
	}
}

func startLive(t *testing.T, env *projsourcetest.Env, models []readModel) {
	t.Helper()
	for _, m := range models {
		p, err := projections.NewProjector(env.Pool, m.src, m.proj, projections.Config{BatchSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		run(t, p.Run)
	}
}

// snapshot returns every row of a read model's view as JSON, in key order.
func snapshot(t *testing.T, q projections.Querier, table string) []string {
	t.Helper()
	rows, err := q.Query(context.Background(), fmt.Sprintf("SELECT to_jsonb(v)::text FROM %s v ORDER BY 1", projections.View(table)))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: no rows to compare", what)
	}
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s: %d rows, want %d", what, len(got), len(want))
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: first difference at row %d:\n got %s\nwant %s", what, i, got[i], want[i])
			return
		}
	}
}

func tableExists(t *testing.T, q projections.Querier, name string) bool {
	t.Helper()
	var ok bool
	if err := q.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// Replay equals live: read models built incrementally while events were
// appended in many small concurrent appends are identical, row for row, to
// the versions rebuilt from position zero; and a rebuild that runs while
// appends continue loses nothing (checked against the domain aggregates).
func TestReplayEqualsLive(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	models := readModels(t, env)
	startLive(t, env, models)
	rng := rand.New(rand.NewPCG(7, 8))
	env.AppendStepsConcurrently(t, projsourcetest.History(rng, 300, 12), 8)
	head := env.Head(t)
	for _, m := range models {
		waitCheckpoint(t, env.Pool, m.proj.Name(), head)
	}

	for _, m := range models {
		live := snapshot(t, env.Pool, m.table)
		var reports []projections.Progress
		err := projections.RebuildWith(ctx, env.Pool, m.src, m.proj, projections.RebuildConfig{
			BatchSize: 400, Progress: func(p projections.Progress) {
				reports = append(reports, p)
				if p.Phase != "done" {
					// Until the swap, queries read the live version.
					sameRows(t, m.table+" served during the "+p.Phase, snapshot(t, env.Pool, m.table), live)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		sameRows(t, m.table+" replayed vs live", snapshot(t, env.Pool, m.table), live)
		reg := readRegistry(t, env.Pool, m.proj.Name())
		if reg.active != 2 || reg.checkpoint < head || reg.rebuilding != nil {
			t.Errorf("%s registry after rebuild %+v, want version 2 at >= %d, not rebuilding", m.table, reg, head)
		}
		if tableExists(t, env.Pool, m.table+"_v1") || !tableExists(t, env.Pool, m.table+"_v2") {
			t.Errorf("%s: after the swap v1 must be dropped and v2 present", m.table)
		}
		if len(reports) == 0 || reports[len(reports)-1].Phase != "done" || reports[len(reports)-1].Done < head {
			t.Errorf("%s progress reports %+v, want the last one done at >= %d", m.table, reports, head)
		}
	}

	// A rebuild while the appends go on: the live projector applies to
	// version 2 until the swap, then to version 3.
	orders := models[0]
	var appended sync.WaitGroup
	appended.Add(1)
	go func() {
		defer appended.Done()
		if _, err := env.AppendConcurrently(projsourcetest.History(rand.New(rand.NewPCG(9, 10)), 300, 12), 4); err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := projections.RebuildWith(ctx, env.Pool, orders.src, orders.proj, projections.RebuildConfig{BatchSize: 300}); err != nil {
		t.Fatal(err)
	}
	appended.Wait()
	head = env.Head(t)
	for _, m := range models {
		waitCheckpoint(t, env.Pool, m.proj.Name(), head)
	}
	checkOrdersAgainstDomain(t, env)
	checkStockAgainstDomain(t, env)
	live := snapshot(t, env.Pool, orders.table)
	if err := projections.Rebuild(ctx, env.Pool, orders.src, orders.proj, nil); err != nil {
		t.Fatal(err)
	}
	sameRows(t, "orders rebuilt twice vs live across a swap", snapshot(t, env.Pool, orders.table), live)
	if reg := readRegistry(t, env.Pool, orderview.Name); reg.active != 4 {
		t.Errorf("orders active version %d, want 4", reg.active)
	}
}

// fold reads every stream with the prefix from the store and folds it with
// fn, which gets the decoded payloads in order.
func fold(t *testing.T, env *projsourcetest.Env, prefix string, fn func(stream string, version int64, payload any)) {
	t.Helper()
	reg := events.NewRegistry()
	var after uint64
	for {
		evs, err := env.Source(t, prefix).ReadAll(context.Background(), after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return
		}
		for _, e := range evs {
			p, err := reg.Decode(e)
			if err != nil {
				t.Fatal(err)
			}
			fn(e.Stream, e.Version, p)
		}
		after = evs[len(evs)-1].Position
	}
}

func checkOrdersAgainstDomain(t *testing.T, env *projsourcetest.Env) {
	t.Helper()
	want := map[string]*order.Order{}
	versions := map[string]int64{}
	fold(t, env, order.StreamPrefix, func(s string, v int64, p any) {
		if want[s] == nil {
			want[s] = &order.Order{}
		}
		want[s].Apply(p)
		versions[s] = v
	})
	views, next, err := orderview.List(context.Background(), env.Pool, orderview.Filter{}, projections.MaxLimit, "")
	for next != "" && err == nil {
		var more []orderview.View
		more, next, err = orderview.List(context.Background(), env.Pool, orderview.Filter{}, projections.MaxLimit, next)
		views = append(views, more...)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != len(want) {
		t.Errorf("%d orders in the read model, %d in the store", len(views), len(want))
	}
	for _, v := range views {
		o := want[order.Stream(v.OrderID)]
		if o == nil || string(o.Status) != v.Status || o.Reason != v.Reason || o.ShipmentID != v.ShipmentID ||
			versions[order.Stream(v.OrderID)] != v.Version || o.CustomerID != v.CustomerID || o.TotalCents != v.TotalCents {
			t.Errorf("order %s: read model %+v, store %+v at version %d", v.OrderID, v, o, versions[order.Stream(v.OrderID)])
		}
	}
}

func checkStockAgainstDomain(t *testing.T, env *projsourcetest.Env) {
	t.Helper()
	want := map[string]*inventory.Stock{}
	versions := map[string]int64{}
	fold(t, env, inventory.StreamPrefix, func(s string, v int64, p any) {
		if want[s] == nil {
			want[s] = &inventory.Stock{}
		}
		want[s].Apply(p)
		versions[s] = v
	})
	views, _, err := stockview.List(context.Background(), env.Pool, projections.MaxLimit, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != len(want) {
		t.Errorf("%d skus in the read model, %d in the store", len(views), len(want))
	}
	for _, v := range views {
		s := want[inventory.Stream(v.SKU)]
		if s == nil || int64(s.OnHand) != v.OnHand || int64(s.Reserved) != v.Reserved || int64(s.Available()) != v.Available ||
			versions[inventory.Stream(v.SKU)] != v.Version {
			t.Errorf("sku %s: read model %+v, store %+v at version %d", v.SKU, v, s, versions[inventory.Stream(v.SKU)])
		}
	}
}

// Queries keep answering, without a single error, while a rebuild replays,
// catches up and swaps, with the live projector and appends running.
func TestQueriesAnswerDuringRebuild(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	models := readModels(t, env)[:1]
	startLive(t, env, models)
	rng := rand.New(rand.NewPCG(11, 12))
	env.AppendStepsConcurrently(t, projsourcetest.History(rng, 1500, 20), 16)
	head := env.Head(t)
	waitCheckpoint(t, env.Pool, orderview.Name, head)
	sample, _, err := orderview.List(ctx, env.Pool, orderview.Filter{}, 100, "")
	if err != nil {
		t.Fatal(err)
	}

	qctx, stopQueries := context.WithCancel(ctx)
	var (
		queries, failures atomic.Int64
		firstErr          atomic.Value
		wg                sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; qctx.Err() == nil; i++ {
				var err error
				switch (w + i) % 3 {
				case 0:
					_, err = orderview.Get(qctx, env.Pool, sample[i%len(sample)].OrderID)
				case 1:
					_, _, err = orderview.List(qctx, env.Pool, orderview.Filter{CustomerID: fmt.Sprintf("c-%d", i%20)}, 20, "")
				default:
					_, _, err = orderview.List(qctx, env.Pool, orderview.Filter{Status: "confirmed"}, 50, "")
				}
				if err != nil && qctx.Err() == nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				queries.Add(1)
			}
		}()
	}
	var appended sync.WaitGroup
	appended.Add(1)
	go func() {
		defer appended.Done()
		if _, err := env.AppendConcurrently(projsourcetest.History(rand.New(rand.NewPCG(13, 14)), 200, 20), 4); err != nil {
			t.Error(err)
		}
	}()
	var during atomic.Int64
	err = projections.RebuildWith(ctx, env.Pool, models[0].src, models[0].proj, projections.RebuildConfig{
		BatchSize: 500,
		Progress:  func(projections.Progress) { during.Store(queries.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	appended.Wait()
	time.Sleep(100 * time.Millisecond) // a few queries after the swap too
	stopQueries()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d queries failed during the rebuild; first: %v", n, queries.Load(), firstErr.Load())
	}
	if during.Load() < 10 {
		t.Errorf("only %d queries ran during the rebuild; the test proved little", during.Load())
	}
	if reg := readRegistry(t, env.Pool, orderview.Name); reg.active != 2 {
		t.Errorf("active version %d, want 2", reg.active)
	}
	waitCheckpoint(t, env.Pool, orderview.Name, env.Head(t))
	checkOrdersAgainstDomain(t, env)
}

// A cancelled rebuild drops its new tables and leaves the old version
// serving and the live projector following; a second rebuild of the same
// projection while one runs is refused.
func TestCancelledRebuildKeepsOldVersion(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	m := readModels(t, env)[0]
	startLive(t, env, []readModel{m})
	env.AppendStepsConcurrently(t, projsourcetest.History(rand.New(rand.NewPCG(15, 16)), 300, 10), 8)
	head := env.Head(t)
	waitCheckpoint(t, env.Pool, orderview.Name, head)
	before := snapshot(t, env.Pool, m.table)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := 0
	sawNew := false
	err := projections.RebuildWith(rctx, env.Pool, m.src, m.proj, projections.RebuildConfig{
		BatchSize: 100,
		Progress: func(projections.Progress) {
			batches++
			if batches == 3 {
				sawNew = tableExists(t, env.Pool, "orders_v2")
				sameRows(t, "orders served while the rebuild replays", snapshot(t, env.Pool, m.table), before)
				if st := statusOf(t, env, orderview.Name); st != projections.StatusRebuilding {
					t.Errorf("ListStats during the rebuild says %s", st)
				}
				// Another rebuild meanwhile is refused.
				err := projections.Rebuild(ctx, env.Pool, m.src, m.proj, nil)
				if !errors.Is(err, projections.ErrRebuildRunning) || !errors.Is(err, domain.ErrIllegalState) {
					t.Errorf("concurrent rebuild: %v, want ErrRebuildRunning", err)
				}
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled rebuild returned %v", err)
	}
	if !sawNew {
		t.Error("the rebuild's new version did not exist while it ran")
	}
	if tableExists(t, env.Pool, "orders_v2") {
		t.Error("orders_v2 survived the cancelled rebuild")
	}
	reg := readRegistry(t, env.Pool, orderview.Name)
	if reg.active != 1 || reg.rebuilding != nil {
		t.Errorf("registry after the cancelled rebuild %+v, want version 1, not rebuilding", reg)
	}
	sameRows(t, "orders after a cancelled rebuild", snapshot(t, env.Pool, m.table), before)
	if st := statusOf(t, env, orderview.Name); st != projections.StatusLive {
		t.Errorf("ListStats after the cancelled rebuild says %s, want live", st)
	}

	// Still live on version 1.
	id := "0b7d3c6e-4f1a-4c2b-9d8e-7f6a5b4c3d2e"
	pos := env.Append(t, order.Stream(id), placed(id, "c-after"))
	waitCheckpoint(t, env.Pool, orderview.Name, pos)
	if v, err := orderview.Get(ctx, env.Pool, id); err != nil || v.CustomerID != "c-after" {
		t.Errorf("order appended after the cancelled rebuild: %+v, %v", v, err)
	}
	// And a later rebuild works, cleaning up whatever is left.
	if err := projections.Rebuild(ctx, env.Pool, m.src, m.proj, nil); err != nil {
		t.Fatal(err)
	}
	if reg := readRegistry(t, env.Pool, orderview.Name); reg.active != 2 {
		t.Errorf("active version %d after the second rebuild, want 2", reg.active)
	}
	if strings.Count(strings.Join(snapshot(t, env.Pool, m.table), "\n"), "c-after") != 1 {
		t.Error("the rebuilt version lacks the order appended after the cancelled rebuild")
	}
}

func statusOf(t *testing.T, env *projsourcetest.Env, name string) projections.Status {
	t.Helper()
	all, err := projections.ListStats(context.Background(), env.Pool, env.Store)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == name {
			return s.Status
		}
	}
	t.Fatalf("ListStats has no %s: %+v", name, all)
	return ""
}
