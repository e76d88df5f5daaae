package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/sagaview"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" when valid
	}{
		{"zero", Config{}, ""},
		{"short timing", Config{Timing: sagas.Timing{Timeout: time.Second,
			Retry: sagas.RetryPolicy{MaxAttempts: 1}, CompensationRetry: sagas.RetryPolicy{MaxAttempts: 1}}}, ""},
		{"timing without attempts", Config{Timing: sagas.Timing{Timeout: time.Second}}, "saga timing"},
		{"negative timeout", Config{Timing: sagas.Timing{Timeout: -time.Second}}, "negative saga timeout"},
		{"bad durable", Config{Durable: "a.b"}, "not a subject token"},
		{"negative count", Config{Concurrency: -1}, "negative count"},
		{"negative duration", Config{PollInterval: -time.Second}, "negative duration"},
		{"three replicas", Config{Topology: natsbus.TopologyConfig{Replicas: 3}}, ""},
		{"too many replicas", Config{Topology: natsbus.TopologyConfig{Replicas: natsbus.MaxReplicas + 1}}, "replicas 6 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("valid config refused: %v", err)
			case tt.want != "" && (err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err %v, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
}

// TestSubjects: the coordinator consumes exactly the events its
// definitions react to, from whichever context publishes them.
func TestSubjects(t *testing.T) {
	defs := sagas.DefaultDefinitions(sagas.DefaultTiming())
	types := EventTypes(defs)
	for _, want := range []string{
		order.TypeOrderPlaced, order.TypeOrderConfirmed, order.TypeOrderRejected, order.TypeOrderCancelled, order.TypeOrderShipped,
		inventory.TypeStockReservationAccepted, inventory.TypeStockReservationRejected,
		inventory.TypeStockReservationReleased, inventory.TypeStockReservationConsumed,
		shipping.TypeShipmentScheduled, shipping.TypeShipmentRefused, shipping.TypeShipmentCancelled, shipping.TypeShipmentDispatched,
	} {
		if !slices.Contains(types, want) {
			t.Errorf("event types lack %s: %v", want, types)
		}
	}
	// The stock streams' own events are the inventory's business.
	for _, not := range []string{inventory.TypeStockReserved, inventory.TypeStockReleased} {
		if slices.Contains(types, not) {
			t.Errorf("event types include %s", not)
		}
	}
	if !slices.IsSorted(types) || len(slices.Compact(slices.Clone(types))) != len(types) {
		t.Errorf("types not sorted and distinct: %v", types)
	}
	subjects := Subjects(defs)
	if len(subjects) != len(types) || subjects[0] != "events.*."+types[0] {
		t.Errorf("subjects %v", subjects)
	}
}

// newCoordinator returns a coordinator of store, whose database holds the
// saga read model.
func newCoordinator(t *testing.T, store Store, pool *pgxpool.Pool, cfg Config) *Coordinator {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	c, err := New(store, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newStore returns a migrated store on a fresh database with the saga read
// model installed.
func newStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	store, pool := pgtest.New(t, postgres.Config{})
	if err := projections.Install(context.Background(), pool, sagaview.New(LoadStream, 0)); err != nil {
		t.Fatal(err)
	}
	return store, pool
}

// placedEvent is an OrderPlaced as the orders service's relay publishes it.
func placedEvent(t *testing.T, orderID string) domain.Envelope {
	t.Helper()
	data, err := json.Marshal(coordinatortest.Placed(orderID, "US", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return domain.Envelope{ID: uuid.NewString(), Stream: order.Stream(orderID), Version: 1, Position: 1,
		Type: order.TypeOrderPlaced, SchemaVersion: 1, Data: data, Metadata: domain.Metadata{CorrelationID: uuid.NewString()}}
}

// reply is an event answering the command with id commandID of saga
// sagaID.
func reply(t *testing.T, sagaID, commandID, typ string, data any) domain.Envelope {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return domain.Envelope{ID: uuid.NewString(), Stream: "x-1", Version: 1, Position: 1, Type: typ, SchemaVersion: 1, Data: raw,
		Metadata: domain.Metadata{CorrelationID: sagaID, CausationID: commandID}}
}

// issued returns the commands saga sagaID issued, oldest first.
func issued(t *testing.T, store Store, sagaID string) []sagas.CommandIssued {
	t.Helper()
	evs, err := store.ReadStream(context.Background(), sagas.Stream(sagaID), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []sagas.CommandIssued
	for _, e := range evs {
		if e.Type == sagas.TypeCommandIssued {
			var c sagas.CommandIssued
			if err := json.Unmarshal(e.Data, &c); err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
	}
	return out
}

// TestReplicasShareASaga: two coordinators on one store decide on the
// same saga. A replica's kept state may be behind what the other
// appended; a reply to a command it never saw, a reply the other already
// recorded and an event delivered twice all end in the same saga as if
// one replica had done everything, each event recorded once.
func TestReplicasShareASaga(t *testing.T) {
	ctx := context.Background()
	store, pool := newStore(t)
	a := newCoordinator(t, store, pool, Config{})
	b := newCoordinator(t, store, pool, Config{})
	orderID := uuid.NewString()
	sagaID := sagas.SagaID(orderID)
	placed := placedEvent(t, orderID)

	// Both replicas receive the OrderPlaced (a redelivery after a lost
	// ack): one saga starts.
	for _, c := range []*Coordinator{a, b, a} {
		if err := c.Deliver(ctx, placed); err != nil {
			t.Fatal(err)
		}
	}
	cmds := issued(t, store, sagaID)
	if len(cmds) != 1 || cmds[0].Name != "reserve_stock" {
		t.Fatalf("commands %+v", cmds)
	}
	// a keeps the saga's state as it started; b records the reservation.
	accepted := reply(t, sagaID, cmds[0].CommandID, inventory.TypeStockReservationAccepted,
		inventory.StockReservationAccepted{OrderID: orderID, Lines: []inventory.Line{{SKU: "SKU-1", Quantity: 2}}})
	if err := b.Deliver(ctx, accepted); err != nil {
		t.Fatal(err)
	}
	cmds = issued(t, store, sagaID)
	if len(cmds) != 2 || cmds[1].Name != "schedule_shipment" {
		t.Fatalf("commands %+v", cmds)
	}
	// a, behind, gets the reply to the command b issued: it must not
	// judge it on its stale state (where it answers nothing).
	scheduled := reply(t, sagaID, cmds[1].CommandID, shipping.TypeShipmentScheduled, shipping.ShipmentScheduled{ShipmentID: sagas.ShipmentID(sagaID), OrderID: orderID})
	if err := a.Deliver(ctx, scheduled); err != nil {
		t.Fatal(err)
	}
	// And the first reply again, to a (now caught up) and to b.
	for _, c := range []*Coordinator{a, b} {
		if err := c.Deliver(ctx, accepted); err != nil {
			t.Fatal(err)
		}
	}
	cmds = issued(t, store, sagaID)
	if len(cmds) != 3 || cmds[2].Name != "confirm_order" {
		t.Fatalf("commands %+v", cmds)
	}
	confirmed := reply(t, sagaID, cmds[2].CommandID, order.TypeOrderConfirmed, order.OrderConfirmed{OrderID: orderID, ShipmentID: sagas.ShipmentID(sagaID)})
	if err := b.Deliver(ctx, confirmed); err != nil {
		t.Fatal(err)
	}
	st, version, err := a.Load(ctx, sagaID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status() != sagas.StatusCompleted {
		t.Fatalf("saga %s", st.Status())
	}
	// Started, 3 x (issued, reply, succeeded), completed: each once.
	if version != 11 {
		t.Errorf("stream version %d, want 11", version)
	}
	evs, err := store.ReadStream(ctx, sagas.Stream(sagaID), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Metadata.CorrelationID != sagaID || e.Metadata.CausationID == "" {
			t.Errorf("%s: metadata %+v", e.Type, e.Metadata)
		}
	}
}

// TestDeliverIgnoresWhatNamesNoSaga: an event without a saga id, and a
// reply-typed event whose saga does not exist (a restock a person asked
// for), are no saga's business; an outside event (a customer's cancel)
// naming a saga that has not started yet asks to be delivered again.
func TestDeliverIgnoresWhatNamesNoSaga(t *testing.T) {
	ctx := context.Background()
	store, pool := newStore(t)
	c := newCoordinator(t, store, pool, Config{})
	for _, tt := range []struct {
		name string
		env  domain.Envelope
		want error
	}{
		{"no correlation id", reply(t, "", "", order.TypeOrderConfirmed, order.OrderConfirmed{}), nil},
		{"request id as correlation", reply(t, "not-a-uuid", "", order.TypeOrderConfirmed, order.OrderConfirmed{}), nil},
		{"reply of no saga", reply(t, uuid.NewString(), uuid.NewString(), inventory.TypeStockReservationAccepted, inventory.StockReservationAccepted{}), nil},
		{"cancel before the start", reply(t, uuid.NewString(), "", order.TypeOrderCancelled, order.OrderCancelled{Reason: "cancelled_by_customer"}), sagas.ErrNotStarted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.Deliver(ctx, tt.env); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != 0 {
		t.Errorf("appended %d events", head)
	}
	// An OrderPlaced the definition refuses (no items) is invalid for
	// good: the consumer parks it.
	bad := placedEvent(t, uuid.NewString())
	bad.Data = json.RawMessage(`{"order_id": "` + uuid.NewString() + `", "items": []}`)
	if err := c.Deliver(ctx, bad); !permanent(err) {
		t.Errorf("invalid OrderPlaced: %v, want a permanent error", err)
	}
}

// TestDeadlineLease: of two coordinators on one database one fires the
// deadlines; when it stops, the other takes over.
func TestDeadlineLease(t *testing.T) {
	store, pool := newStore(t)
	cfg := Config{StandbyPoll: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond}
	cs := []*Coordinator{newCoordinator(t, store, pool, cfg), newCoordinator(t, store, pool, cfg)}
	ctxs := make([]context.CancelFunc, len(cs))
	done := make([]chan struct{}, len(cs))
	for i, c := range cs {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i], done[i] = cancel, make(chan struct{})
		go func() {
			defer close(done[i])
			c.runDeadlines(ctx)
		}()
		t.Cleanup(func() {
			cancel()
			<-done[i]
		})
	}
	holders := func() []int {
		var out []int
		for i, c := range cs {
			if c.Stats().LeaseHeld {
				out = append(out, i)
			}
		}
		return out
	}
	var holder int
	coordinatortest.Eventually(t, 30*time.Second, "one holder", func() (bool, string) {
		h := holders()
		if len(h) == 1 {
			holder = h[0]
		}
		return len(h) == 1, fmt.Sprint(h)
	})
	ctxs[holder]()
	<-done[holder]
	other := 1 - holder
	coordinatortest.Eventually(t, 30*time.Second, "the other holds the lease", func() (bool, string) {
		h := holders()
		return slices.Equal(h, []int{other}), fmt.Sprint(h)
	})
}

// TestLoadStream reads back through a transaction what the store appended.
func TestLoadStream(t *testing.T) {
	ctx := context.Background()
	store, pool := newStore(t)
	orderID := uuid.NewString()
	sg := sagatest.Start(t, sagas.OrderFulfillmentV1(sagas.DefaultTiming()), sagas.SagaID(orderID), coordinatortest.Placed(orderID, "US", time.Now()), time.Now())
	envs := coordinatortest.Append(t, store, sg)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only
	got, err := LoadStream(ctx, tx, sagas.Stream(sg.State.ID()), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != envs[0].ID || got[0].Type != envs[0].Type || got[0].Version != 1 ||
		got[0].SchemaVersion != envs[0].SchemaVersion || string(compact(got[0].Data)) != string(compact(envs[0].Data)) {
		t.Errorf("loaded %+v, want the first of %+v", got, envs)
	}
	if all, err := LoadStream(ctx, tx, sagas.Stream(sg.State.ID()), 100); err != nil || len(all) != len(envs) {
		t.Errorf("loaded %d events (%v), want %d", len(all), err, len(envs))
	}
}

func compact(b []byte) []byte {
	var v any
	_ = json.Unmarshal(b, &v)
	out, _ := json.Marshal(v)
	return out
}

// TestSagaViewReplayEqualsLive folds the same saga events into three
// versions of the read model: one event per transaction with the states
// kept in memory (live), the same but with the states forgotten halfway
// (a restart: the loader replays the streams), and all events in one
// batch (a rebuild). The rows are the same.
func TestSagaViewReplayEqualsLive(t *testing.T) {
	ctx := context.Background()
	store, pool := newStore(t)
	def := sagas.OrderFulfillmentV1(sagas.DefaultTiming())
	t0 := time.Now().UTC().Add(-time.Hour)
	start := func(i int) *sagatest.Saga {
		orderID := uuid.NewString()
		return sagatest.Start(t, def, sagas.SagaID(orderID), coordinatortest.Placed(orderID, "US", t0), t0.Add(time.Duration(i)*time.Second))
	}
	accept := func(sg *sagatest.Saga) {
		sagatest.Reply(inventory.TypeStockReservationAccepted, inventory.StockReservationAccepted{OrderID: sg.State.OrderID()})(sg)
	}
	completed := start(0)
	accept(completed)
	sagatest.Reply(shipping.TypeShipmentScheduled, shipping.ShipmentScheduled{})(completed)
	sagatest.Reply(order.TypeOrderConfirmed, order.OrderConfirmed{})(completed)
	refused := start(1)
	accept(refused)
	sagatest.Reply(shipping.TypeShipmentRefused, shipping.ShipmentRefused{Reason: "destination_not_served"})(refused)
	sagatest.Reply(inventory.TypeStockReservationReleased, inventory.StockReservationReleased{})(refused)
	sagatest.Reply(order.TypeOrderRejected, order.OrderRejected{Reason: "destination_not_served"})(refused)
	timedOut := start(2)
	sagatest.Expire()(timedOut)
	sagatest.Expire()(timedOut)
	running := start(3)
	for _, sg := range []*sagatest.Saga{completed, refused, timedOut, running} {
		coordinatortest.Append(t, store, sg)
	}
	all, err := store.ReadAll(ctx, 0, 10_000, eventstore.Filter{StreamPrefixes: sagaview.StreamPrefixes})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(p *sagaview.Projection, v int, events []domain.Envelope) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // after commit
		if err := p.Apply(ctx, tx, projections.Tables{Version: v}, events); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Version 1, installed, is what the queries read.
	for v := 2; v <= 3; v++ {
		for _, ddl := range sagaview.New(LoadStream, 0).Schema(projections.Tables{Version: v}).Tables {
			if _, err := pool.Exec(ctx, ddl); err != nil {
				t.Fatal(err)
			}
		}
	}
	live := sagaview.New(LoadStream, 0)
	for _, e := range all {
		apply(live, 1, []domain.Envelope{e})
	}
	restarted := sagaview.New(LoadStream, 0)
	for i, e := range all {
		if i == len(all)/2 {
			restarted = sagaview.New(LoadStream, 0) // forgets every state
		}
		apply(restarted, 2, []domain.Envelope{e})
	}
	apply(sagaview.New(LoadStream, 0), 3, all)

	rows := func(v int) []map[string]any {
		t.Helper()
		r, err := pool.Query(ctx, fmt.Sprintf("SELECT * FROM sagas_v%d ORDER BY saga_id", v))
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(r, pgx.RowToMap)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := rows(1)
	if len(want) != 4 {
		t.Fatalf("%d rows, want 4", len(want))
	}
	for _, v := range []int{2, 3} {
		if got := rows(v); !reflect.DeepEqual(got, want) {
			t.Errorf("version %d:\n got %v\nwant %v", v, got, want)
		}
	}
	// And they are what the engine says of each saga.
	for _, sg := range []*sagatest.Saga{completed, refused, timedOut, running} {
		sum, version, err := sagaview.Get(ctx, pool, sg.State.ID())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(sum, sg.State.Summarize()) || version != int64(len(sg.Events)) {
			t.Errorf("saga %s: row %+v at %d, engine %+v at %d", sg.State.ID(), sum, version, sg.State.Summarize(), len(sg.Events))
		}
	}
	due, err := sagaview.DueBy(ctx, pool, time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	// Started an hour ago with 5 s timeouts: the two running sagas are due.
	var ids []string
	deadlines := map[string]time.Time{}
	for _, sg := range []*sagatest.Saga{timedOut, running} {
		at, _ := sg.State.Deadline()
		deadlines[sg.State.ID()] = at.UTC().Truncate(time.Microsecond)
	}
	for _, d := range due {
		ids = append(ids, d.SagaID)
		if !d.Deadline.Equal(deadlines[d.SagaID]) {
			t.Errorf("saga %s due at %s, the engine says %s", d.SagaID, d.Deadline, deadlines[d.SagaID])
		}
	}
	slices.Sort(ids)
	wantDue := []string{timedOut.State.ID(), running.State.ID()}
	slices.Sort(wantDue)
	if !slices.Equal(ids, wantDue) {
		t.Errorf("due %v, want %v", ids, wantDue)
	}
}
