package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
)

// A projector killed in the middle of a batch transaction leaves nothing of
// that batch behind: the committed rows always match the committed
// checkpoint exactly, and after restarts every event is counted once.
func TestBatchAndCheckpointCommitAtomically(t *testing.T) {
	env := projsourcetest.New(t)
	rng := rand.New(rand.NewPCG(1, 2))
	env.AppendStepsConcurrently(t, projsourcetest.History(rng, 150, 10), 8)
	head := env.Head(t)
	c := &counter{name: "atomic"}
	src := env.Source(t)

	for _, killAt := range []int32{2, 3, 4} {
		blocked := make(chan struct{})
		var calls atomic.Int32
		c.setHook(func(ctx context.Context, events []domain.Envelope) error {
			if calls.Add(1) == killAt {
				// The rows of this batch are written but not committed;
				// the process "dies" here.
				close(blocked)
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		p, err := projections.NewProjector(env.Pool, src, c, projections.Config{BatchSize: 97})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, p.Run)
		select {
		case <-blocked:
		case <-time.After(20 * time.Second):
			t.Fatalf("the projector never reached the batch to kill: %+v, %d calls", p.Stats(), calls.Load())
		}
		check := func(when string) {
			reg := readRegistry(t, env.Pool, c.name)
			if reg.checkpoint >= head {
				t.Fatalf("%s: checkpoint %d already at head %d; the kill came too late", when, reg.checkpoint, head)
			}
			equalCounts(t, counts(t, env.Pool, c), storeCounts(t, env.Pool, "", reg.checkpoint))
		}
		check("while the batch transaction is open")
		stop()
		check("after the kill")
	}

	c.setHook(nil)
	p, err := projections.NewProjector(env.Pool, src, c, projections.Config{BatchSize: 97})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	waitCheckpoint(t, env.Pool, c.name, head)
	equalCounts(t, counts(t, env.Pool, c), storeCounts(t, env.Pool, "", head))
	if s := p.Stats(); s.Checkpoint != head || s.Lag != 0 || s.Status != projections.StatusLive || s.Parked != 0 {
		t.Errorf("stats %+v, want checkpoint %d, no lag, live, nothing parked", s, head)
	}
}

// The checkpoint commits in the same transaction as the rows: when moving
// the checkpoint fails after a batch's rows were written, the rows go too,
// and the retried batch counts every event once. (Rows committed on their
// own before the checkpoint would be counted again by the retry.)
func TestFailedCheckpointWriteTakesTheRowsWithIt(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	env.AppendStepsConcurrently(t, projsourcetest.History(rand.New(rand.NewPCG(21, 22)), 60, 6), 4)
	head := env.Head(t)
	c := &counter{name: "samecommit"}
	var applied atomic.Int32
	c.setHook(func(context.Context, []domain.Envelope) error {
		applied.Add(1)
		return nil
	})
	if err := projections.Install(ctx, env.Pool, c); err != nil {
		t.Fatal(err)
	}
	// The first three checkpoint moves fail as a serialization failure
	// would; the sequence counts them outside the transactions that roll
	// back.
	const failures = 3
	_, err := env.Pool.Exec(ctx, `CREATE SEQUENCE checkpoint_failures;
		CREATE FUNCTION fail_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.checkpoint > OLD.checkpoint AND nextval('checkpoint_failures') <= `+fmt.Sprint(failures)+` THEN
				RAISE EXCEPTION 'checkpoint write failed' USING ERRCODE = '40001';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER fail_checkpoint BEFORE UPDATE ON projection_versions
			FOR EACH ROW WHEN (NEW.name = 'samecommit') EXECUTE FUNCTION fail_checkpoint()`)
	if err != nil {
		t.Fatal(err)
	}
	p, err := projections.NewProjector(env.Pool, env.Source(t), c, projections.Config{BatchSize: 50, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	waitCheckpoint(t, env.Pool, c.name, head)
	equalCounts(t, counts(t, env.Pool, c), storeCounts(t, env.Pool, "", head))
	var calls int64
	if err := env.Pool.QueryRow(ctx, "SELECT last_value FROM checkpoint_failures").Scan(&calls); err != nil || calls <= failures {
		t.Errorf("the checkpoint trigger ran %d times (%v); the test meant %d writes to fail", calls, err, failures)
	}
	if n := applied.Load(); n < failures+2 {
		t.Errorf("Apply ran %d times; the failed checkpoint writes should have made it run again", n)
	}
	if got := parked(t, env.Pool, c.name); len(got) != 0 {
		t.Errorf("parked %v for a failed checkpoint write, want nothing", got)
	}
}

// Undecodable events and events whose handling keeps failing are parked,
// counted and skipped; an event that fails only once is retried, not
// parked; the projection carries on past all of them.
func TestPoisonEventsAreParkedAndSkipped(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()

	// The orders read model meets two events it cannot decode.
	broken := env.Envelope(t, order.OrderPlaced{})
	broken.Data = json.RawMessage(`{"order_id": 12`)
	brokenOrder := uuid.NewString()
	env.AppendEnvelopes(t, order.Stream(brokenOrder), broken)
	unknown := domain.Envelope{ID: uuid.NewString(), Type: "OrderTeleported", SchemaVersion: 1, Data: json.RawMessage(`{}`)}
	good := uuid.NewString()
	env.Append(t, order.Stream(good), placed(good, "c-1"))
	env.AppendEnvelopes(t, order.Stream(good), unknown)
	env.Append(t, order.Stream(good), order.OrderConfirmed{OrderID: good, ShipmentID: uuid.NewString()})

	// The counter meets one event that always fails and one that fails
	// once.
	rng := rand.New(rand.NewPCG(3, 4))
	env.AppendStepsConcurrently(t, projsourcetest.History(rng, 40, 5), 4)
	poison := env.Envelope(t, order.OrderShipped{})
	flaky := env.Envelope(t, order.OrderShipped{})
	env.AppendEnvelopes(t, "order-"+uuid.NewString(), poison)
	env.AppendEnvelopes(t, "order-"+uuid.NewString(), flaky)
	env.AppendStepsConcurrently(t, projsourcetest.History(rng, 40, 5), 4)
	head := env.Head(t)

	var flakyFailures atomic.Int32
	c := &counter{name: "poisoned"}
	c.setHook(func(_ context.Context, events []domain.Envelope) error {
		for _, e := range events {
			switch {
			case e.ID == poison.ID:
				return errors.New("handler cannot cope with this event")
			case e.ID == flaky.ID && flakyFailures.Add(1) <= 2:
				return errors.New("handler failed once")
			}
		}
		return nil
	})
	ov := orderview.New()
	po, err := projections.NewProjector(env.Pool, env.Source(t, orderview.StreamPrefixes...), ov, projections.Config{BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := projections.NewProjector(env.Pool, env.Source(t), c, projections.Config{BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	run(t, po.Run)
	run(t, pc.Run)
	waitCheckpoint(t, env.Pool, orderview.Name, head)
	waitCheckpoint(t, env.Pool, c.name, head)

	got := parked(t, env.Pool, orderview.Name)
	if len(got) != 2 || got[broken.ID].Type != order.TypeOrderPlaced || got[unknown.ID].Type != "OrderTeleported" {
		t.Fatalf("orders parked %+v, want the broken OrderPlaced and the OrderTeleported", got)
	}
	for _, p := range got {
		if !strings.Contains(p.Error, "undecodable") || p.Position == 0 {
			t.Errorf("parked %+v: want an undecodable error and its position", p)
		}
	}
	if s := po.Stats(); s.Parked != 2 {
		t.Errorf("orders stats parked %d, want 2", s.Parked)
	}
	v, err := orderview.Get(ctx, env.Pool, good)
	if err != nil || v.Status != "confirmed" || v.Version != 3 {
		t.Errorf("order after the parked event: %+v, %v; want confirmed at version 3", v, err)
	}
	if _, err := orderview.Get(ctx, env.Pool, brokenOrder); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("order of the broken event: %v, want not found", err)
	}

	got = parked(t, env.Pool, c.name)
	if len(got) != 1 || !strings.Contains(got[poison.ID].Error, "cannot cope") {
		t.Fatalf("counter parked %+v, want only the poison event", got)
	}
	// The poison event is alone in its stream, which is therefore never
	// counted; every other event is counted once, the flaky one included.
	equalCounts(t, counts(t, env.Pool, c), withoutStream(storeCounts(t, env.Pool, "", head), poisonStream(t, env, poison.ID)))
	if flakyFailures.Load() < 2 {
		t.Errorf("the flaky event failed %d times; the test meant it to fail before succeeding", flakyFailures.Load())
	}
	if s := pc.Stats(); s.Parked != 1 || s.Checkpoint != head {
		t.Errorf("counter stats %+v, want 1 parked and checkpoint %d", s, head)
	}
}

func poisonStream(t *testing.T, env *projsourcetest.Env, id string) string {
	t.Helper()
	var s string
	if err := env.Pool.QueryRow(context.Background(), "SELECT stream FROM es_events WHERE event_id = $1", id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func withoutStream(m map[string]int64, s string) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		if k != s {
			out[k] = v
		}
	}
	return out
}

func placed(orderID, customer string) order.OrderPlaced {
	return order.OrderPlaced{OrderID: orderID, SagaID: uuid.NewString(), CustomerID: customer,
		Items:           []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}},
		ShippingAddress: order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		TotalCents:      2598, PlacedAt: time.Now().UTC()}
}

// A projector whose database connections are cut again and again backs
// off, reconnects and ends with every event applied once and nothing
// parked: connection failures are never blamed on events.
func TestProjectorSurvivesDatabaseErrors(t *testing.T) {
	env := projsourcetest.New(t)
	pool := newPool(t, env.Pool, "projector-under-test")
	c := &counter{name: "survivor"}
	p, err := projections.NewProjector(pool, env.Source(t), c, projections.Config{BatchSize: 20, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	rng := rand.New(rand.NewPCG(5, 6))
	steps := projsourcetest.History(rng, 120, 8)
	killed := 0
	for i := 0; i < len(steps); i += 40 {
		env.AppendSteps(t, steps[i:min(i+40, len(steps))])
		var n int
		if err := env.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'projector-under-test' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		killed += n
	}
	head := env.Head(t)
	waitCheckpoint(t, env.Pool, c.name, head)
	equalCounts(t, counts(t, env.Pool, c), storeCounts(t, env.Pool, "", head))
	if killed == 0 {
		t.Error("no projector connection was cut; the test proved nothing")
	}
	if got := parked(t, env.Pool, c.name); len(got) != 0 {
		t.Errorf("parked %v after connection failures, want nothing", got)
	}
}
