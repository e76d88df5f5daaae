package projections_test

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/projections"
)

// replica is one service process's runner of the shared projection, on a
// pool of its own whose connections carry the replica's name.
type replica struct {
	name    string
	c       *counter
	applied atomic.Int32 // batches it applied (its hook ran)
	stop    func()
}

// startReplica starts a runner of the counter projection "lease" on a pool
// named name, fed by its own source over env's store.
func startReplica(t *testing.T, env *projsourcetest.Env, name string) *replica {
	t.Helper()
	r := &replica{name: name, c: &counter{name: "lease"}}
	runner := projections.NewRunner(newPool(t, env.Pool, name), nil)
	cfg := projections.Config{BatchSize: 50, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if err := runner.Add(r.c, env.Source(t), cfg); err != nil {
		t.Fatal(err)
	}
	r.stop = run(t, runner.Run)
	return r
}

// ARCHITECTURE property 11 for projectors. The projector's lease is the
// projection's advisory transaction lock (ADR 0060, 0070): each batch
// transaction takes it before reading the checkpoint, so replicas of a
// service take turns batch by batch; there is no standing holder to fail
// over from. This test runs two replicas' runners on one read-model
// database and store and shows that
//   - under concurrent appends their batches never overlap and every event
//     is applied once;
//   - while one replica holds the lock in the middle of a batch, the other
//     stands by, blocked on that lock, and applies nothing;
//   - when the holder dies mid-batch (its backend terminated while the
//     process is frozen, as a killed process leaves it), the survivor
//     takes over within seconds, without any help from the dead one, and
//     applies the dead one's batch and the events after it exactly once.
func TestProjectorReplicasTakeTurnsAndASurvivorTakesOver(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	if err := projections.Install(ctx, env.Pool, &counter{name: "lease"}); err != nil {
		t.Fatal(err)
	}
	a, b := startReplica(t, env, "replica-a"), startReplica(t, env, "replica-b")
	replicas := []*replica{a, b}

	// Phase 1: both replicas project concurrent appends.
	var inFlight, overlaps atomic.Int32
	for _, r := range replicas {
		r.c.setHook(func(context.Context, []domain.Envelope) error {
			if inFlight.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer inFlight.Add(-1)
			r.applied.Add(1)
			return nil
		})
	}
	steps := projsourcetest.History(rand.New(rand.NewPCG(31, 32)), 400, 8)
	env.AppendStepsConcurrently(t, steps[:300], 4)
	head := env.Head(t)
	waitCheckpoint(t, env.Pool, "lease", head)
	equalCounts(t, counts(t, env.Pool, a.c), storeCounts(t, env.Pool, "", head))
	if n := overlaps.Load(); n > 0 {
		t.Errorf("the replicas applied %d batches at the same time as the other", n)
	}
	t.Logf("phase 1: replica-a applied %d batches, replica-b %d", a.applied.Load(), b.applied.Load())

	// Phase 2: the first replica to apply a batch of the next appends
	// freezes inside its batch transaction, holding the lock, until its
	// run is cancelled.
	held := make(chan *replica, 1)
	var holder atomic.Pointer[replica]
	for _, r := range replicas {
		r.c.setHook(func(ctx context.Context, _ []domain.Envelope) error {
			if holder.CompareAndSwap(nil, r) {
				held <- r
				<-ctx.Done()
				return ctx.Err()
			}
			r.applied.Add(1)
			return nil
		})
	}
	before := readRegistry(t, env.Pool, "lease").checkpoint
	env.AppendSteps(t, steps[300:340])
	var active *replica
	select {
	case active = <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no replica applied the new events")
	}
	standby := b
	if active == b {
		standby = a
	}
	standbyApplied := standby.applied.Load()
	waitFor(t, 20*time.Second, standby.name+" to wait on the projection's lock", func() bool {
		var waiting int
		err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`, standby.name).Scan(&waiting)
		return err == nil && waiting == 1
	})
	if got := standby.applied.Load(); got != standbyApplied {
		t.Errorf("%s applied %d batches while %s held the lock", standby.name, got-standbyApplied, active.name)
	}
	if cp := readRegistry(t, env.Pool, "lease").checkpoint; cp != before {
		t.Errorf("the checkpoint moved from %d to %d while the holder's batch was open", before, cp)
	}
	equalCounts(t, counts(t, env.Pool, a.c), storeCounts(t, env.Pool, "", before))

	// The holder dies: its sessions end as a killed process's do, while its
	// goroutines stay frozen, so the takeover owes it nothing.
	var killed int
	if err := env.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1`, active.name).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatalf("%s had no session to terminate", active.name)
	}
	killedAt := time.Now()
	waitFor(t, 5*time.Second, standby.name+" to take over", func() bool {
		return readRegistry(t, env.Pool, "lease").checkpoint > before
	})
	t.Logf("%s took over %v after %s's %d sessions were terminated", standby.name, time.Since(killedAt).Round(time.Millisecond), active.name, killed)

	// Phase 3: the survivor alone projects what the dead one held and
	// everything after it, once.
	env.AppendStepsConcurrently(t, steps[340:380], 4)
	head = env.Head(t)
	waitCheckpoint(t, env.Pool, "lease", head)
	equalCounts(t, counts(t, env.Pool, a.c), storeCounts(t, env.Pool, "", head))
	if standby.applied.Load() == standbyApplied {
		t.Errorf("%s applied nothing after the takeover", standby.name)
	}

	// Cancelling the dead replica's run now commits nothing of its batch.
	active.stop()
	env.AppendSteps(t, steps[380:])
	head = env.Head(t)
	waitCheckpoint(t, env.Pool, "lease", head)
	equalCounts(t, counts(t, env.Pool, a.c), storeCounts(t, env.Pool, "", head))
}
