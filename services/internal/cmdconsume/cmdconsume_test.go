package cmdconsume_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/cmdconsume"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRepliesOnPostgreSQL runs the answers of the traveling commands
// (commandstest.RunReplies) on the PostgreSQL event store.
func TestRepliesOnPostgreSQL(t *testing.T) {
	commandstest.RunReplies(t, func(t *testing.T) commands.EventStore {
		s, _ := pgtest.New(t, postgres.Config{})
		return s
	})
}

// env is a service's event store and a NATS server with the topology.
type env struct {
	store *postgres.Store
	nc    *nats.Conn
	js    jetstream.JetStream
	pos   atomic.Uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store, _ := pgtest.New(t, postgres.Config{})
	nc, js, err := natsbus.Connect(ctxT(t), natsbustest.Server(t), "cmdconsume-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := natsbus.EnsureTopology(ctxT(t), js, natsbus.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	return &env{store: store, nc: nc, js: js}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// run starts a consumer (a replica) until the test ends, and checks that
// it stops with its context.
func run(t *testing.T, e *env, cfg cmdconsume.Config) *cmdconsume.Stats {
	t.Helper()
	if cfg.Stats == nil {
		cfg.Stats = new(cmdconsume.Stats)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmdconsume.Run(ctx, e.js, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return cfg.Stats
}

// buses returns the bus of each context on store, as one process.
func buses(store commands.EventStore, cfg commands.Config) map[string]*commands.Bus {
	return map[string]*commands.Bus{
		commands.ContextInventory: commands.NewInventoryBus(commands.NewInventory(store, cfg)),
		commands.ContextShipping:  commands.NewShippingBus(commands.NewShipping(store, cfg)),
		commands.ContextOrders:    commands.NewOrdersBus(commands.NewOrders(store, cfg)),
	}
}

// issued is a command as a saga issues it.
type issued struct {
	sagaID    string
	commandID string
	requestID string
	wire      commands.Wire
}

func issue(t testing.TB, sagaID string, cmd any) issued {
	t.Helper()
	w, err := commands.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	w.CommandID = uuid.NewString()
	return issued{sagaID: sagaID, commandID: w.CommandID, requestID: "req-" + uuid.NewString(), wire: w}
}

// publish sends c the way the sagas relay does: the saga's CommandIssued
// event on commands.<context>.<name>. Each publish is a new event (a new
// message id), as a saga engine recording the same command twice would
// send it.
func (e *env) publish(t testing.TB, c issued) {
	t.Helper()
	data, err := json.Marshal(c.wire)
	if err != nil {
		t.Fatal(err)
	}
	e.publishEnvelope(t, domain.Envelope{
		ID: uuid.NewString(), Stream: "saga-" + c.sagaID, Version: 1, Position: e.pos.Add(1),
		Type: natsbus.CommandIssued, SchemaVersion: 1, Data: data,
		Metadata:   domain.Metadata{CorrelationID: c.sagaID, CausationID: uuid.NewString(), RequestID: c.requestID},
		RecordedAt: time.Now().UTC(),
	})
}

func (e *env) publishEnvelope(t testing.TB, ev domain.Envelope) {
	t.Helper()
	m, err := natsbus.Encode(natsbus.ContextSagas, ev)
	if err != nil {
		t.Fatal(err)
	}
	e.publishMsg(t, m)
}

func (e *env) publishMsg(t testing.TB, m *nats.Msg) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

var registry = events.NewRegistry()

// replies returns the events of stream caused by c's command.
func (e *env) replies(t testing.TB, stream string, c issued) []domain.Envelope {
	t.Helper()
	envs, err := e.store.ReadStream(context.Background(), stream, 1, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	var out []domain.Envelope
	for _, ev := range envs {
		if ev.Metadata.CausationID == c.commandID {
			out = append(out, ev)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing after a deadline generous
// enough for a machine busy with other test suites.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		<-tick.C
	}
}

// reply waits for the one event of stream caused by c's command, checks
// its ids and returns its decoded payload.
func (e *env) reply(t testing.TB, stream string, c issued) any {
	t.Helper()
	waitFor(t, "the reply to "+c.wire.Kind().String(), func() bool { return len(e.replies(t, stream, c)) > 0 })
	got := e.replies(t, stream, c)
	if len(got) != 1 {
		t.Fatalf("%d replies to %s: %+v", len(got), c.commandID, got)
	}
	md := got[0].Metadata
	if md.CorrelationID != c.sagaID || md.CausationID != c.commandID || md.RequestID != c.requestID {
		t.Errorf("reply metadata %+v, want correlation %s (the saga), causation %s (the command), request %s", md, c.sagaID, c.commandID, c.requestID)
	}
	p, err := registry.Decode(got[0])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// empty waits until the COMMANDS work queue holds nothing: every command
// was acknowledged or terminated.
func (e *env) empty(t testing.TB) {
	t.Helper()
	waitFor(t, "an empty COMMANDS stream", func() bool {
		s, err := e.js.Stream(context.Background(), natsbus.CommandsStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs == 0
	})
}

func levels(t testing.TB, s commands.EventStore, sku string, onHand, reserved int) {
	t.Helper()
	envs, err := s.ReadStream(context.Background(), inventory.Stream(sku), 1, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	st := new(inventory.Stock)
	for _, ev := range envs {
		p, err := registry.Decode(ev)
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(p)
	}
	if st.OnHand != onHand || st.Reserved != reserved {
		t.Errorf("%s: on hand %d reserved %d, want %d %d", sku, st.OnHand, st.Reserved, onHand, reserved)
	}
}

func meta() commands.Meta { return commands.Meta{CommandID: uuid.NewString()} }

func addr(country string) order.Address {
	return order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: country}
}

// TestConsumersAnswerEachContext publishes commands as the sagas relay
// does and finds each answer in the service's store, caused by the
// command and correlated with the saga.
func TestConsumersAnswerEachContext(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	for name, b := range buses(e.store, commands.Config{}) {
		run(t, e, cmdconsume.Config{Context: name, Bus: b})
	}
	inv := commands.NewInventory(e.store, commands.Config{})
	for sku, q := range map[string]int{"A": 5, "B": 1} {
		if _, err := inv.Restock(ctx, meta(), sku, q); err != nil {
			t.Fatal(err)
		}
	}
	orders := commands.NewOrders(e.store, commands.Config{})
	placed := uuid.NewString()
	if _, err := orders.Place(ctx, meta(), commands.PlaceOrder{OrderID: placed, SagaID: uuid.NewString(), CustomerID: "c-1",
		Items: []order.Item{{SKU: "A", Quantity: 1, UnitPriceCents: 100}}, Address: addr("US")}); err != nil {
		t.Fatal(err)
	}

	o1, o2, o3, s1, s2 := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	tests := []struct {
		name   string
		cmd    any
		stream string
		want   any
	}{
		{"reserve", commands.ReserveStock{OrderID: o1, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}},
			inventory.ReservationStream(o1), inventory.StockReservationAccepted{OrderID: o1, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}}},
		{"insufficient stock", commands.ReserveStock{OrderID: o2, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}},
			inventory.ReservationStream(o2), inventory.StockReservationRejected{OrderID: o2, Reason: inventory.ReasonInsufficientStock, SKU: "B", Requested: 1, Available: 0}},
		{"unknown sku", commands.ReserveStock{OrderID: o3, Lines: []inventory.Line{{SKU: "NOPE", Quantity: 1}}},
			inventory.ReservationStream(o3), inventory.StockReservationRejected{OrderID: o3, Reason: inventory.ReasonInsufficientStock, SKU: "NOPE", Requested: 1, Available: 0}},
		{"schedule", commands.ScheduleShipment{ShipmentID: s1, OrderID: placed, Items: []order.Item{{SKU: "A", Quantity: 1}}, Address: addr("US")},
			shipping.Stream(s1), shipping.ShipmentScheduled{ShipmentID: s1, OrderID: placed, Items: []order.Item{{SKU: "A", Quantity: 1}}, Address: addr("US")}},
		{"destination not served", commands.ScheduleShipment{ShipmentID: s2, OrderID: o2, Items: []order.Item{{SKU: "A", Quantity: 1}}, Address: addr("AQ")},
			shipping.Stream(s2), shipping.ShipmentRefused{ShipmentID: s2, OrderID: o2, Reason: shipping.ReasonDestinationNotServed,
				Items: []order.Item{{SKU: "A", Quantity: 1}}, Address: func() *order.Address { a := addr("AQ"); return &a }()}},
		{"confirm", commands.ConfirmOrder{OrderID: placed, ShipmentID: s1}, order.Stream(placed), order.OrderConfirmed{OrderID: placed, ShipmentID: s1}},
		{"release", commands.ReleaseStock{OrderID: o1, SKUs: []string{"A", "B"}}, inventory.ReservationStream(o1), inventory.StockReservationReleased{OrderID: o1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := issue(t, uuid.NewString(), tt.cmd)
			e.publish(t, c)
			if got := e.reply(t, tt.stream, c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("reply\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
	// Acknowledged means run to the end.
	e.empty(t)
	levels(t, e.store, "A", 5, 0)
	levels(t, e.store, "B", 1, 0)
}

// TestRedeliveredCommandChangesNothing: the same command arrives twice
// (a saga that recorded it again after a crash, past JetStream's
// duplicate window). The second run appends nothing and is acknowledged.
func TestRedeliveredCommandChangesNothing(t *testing.T) {
	e := newEnv(t)
	b := buses(e.store, commands.Config{})[commands.ContextInventory]
	st := run(t, e, cmdconsume.Config{Context: commands.ContextInventory, Bus: b})
	if _, err := commands.NewInventory(e.store, commands.Config{}).Restock(ctxT(t), meta(), "A", 5); err != nil {
		t.Fatal(err)
	}
	orderID := uuid.NewString()
	c := issue(t, uuid.NewString(), commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 2}}})
	e.publish(t, c)
	e.reply(t, inventory.ReservationStream(orderID), c)
	e.publish(t, c)
	waitFor(t, "the second delivery answered", func() bool { return st.Snapshot().Answered == 2 })
	if s := st.Snapshot(); s.Duplicates != 1 || s.Parked != 0 {
		t.Errorf("stats %+v, want one duplicate", s)
	}
	e.reply(t, inventory.ReservationStream(orderID), c) // still exactly one
	if n := len(e.replies(t, inventory.Stream("A"), c)); n != 1 {
		t.Errorf("%d stock events caused by the command, want 1", n)
	}
	levels(t, e.store, "A", 5, 2)
	e.empty(t)
}

// TestParksWhatCannotRun: messages that are not commands, commands this
// service does not know and invalid input are terminated and counted, and
// the consumer carries on with the next command.
func TestParksWhatCannotRun(t *testing.T) {
	e := newEnv(t)
	b := buses(e.store, commands.Config{})[commands.ContextInventory]
	st := run(t, e, cmdconsume.Config{Context: commands.ContextInventory, Bus: b})
	saga := uuid.NewString()

	garbage := nats.NewMsg("commands.inventory.reserve_stock")
	garbage.Data = []byte("not an envelope")
	e.publishMsg(t, garbage)
	unknown := issue(t, saga, commands.ReleaseStock{OrderID: uuid.NewString(), SKUs: []string{"A"}})
	unknown.wire.Name = "teleport_stock"
	e.publish(t, unknown)
	newer := issue(t, saga, commands.ReleaseStock{OrderID: uuid.NewString(), SKUs: []string{"A"}})
	newer.wire.Version = 2
	e.publish(t, newer)
	invalid := issue(t, saga, commands.ReserveStock{OrderID: "order-1", Lines: []inventory.Line{{SKU: "A", Quantity: 0}}})
	e.publish(t, invalid)
	misrouted := issue(t, saga, commands.ConfirmOrder{OrderID: uuid.NewString(), ShipmentID: uuid.NewString()})
	data, _ := json.Marshal(misrouted.wire)
	m := nats.NewMsg("commands.inventory.confirm_order")
	m.Data, _ = json.Marshal(domain.Envelope{ID: uuid.NewString(), Stream: "saga-" + saga, Version: 1, Position: 99, Type: natsbus.CommandIssued, SchemaVersion: 1, Data: data})
	e.publishMsg(t, m)

	waitFor(t, "five parked messages", func() bool { return st.Snapshot().Parked == 5 })
	e.empty(t)

	orderID := uuid.NewString()
	good := issue(t, saga, commands.ReleaseStock{OrderID: orderID, SKUs: []string{"A"}})
	e.publish(t, good)
	if got := e.reply(t, inventory.ReservationStream(orderID), good); !reflect.DeepEqual(got, inventory.StockReservationReleased{OrderID: orderID}) {
		t.Errorf("reply %#v", got)
	}
	waitFor(t, "the good command counted", func() bool { return st.Snapshot().Answered == 1 })
	if s := st.Snapshot(); s.Parked != 5 || s.Answered != 1 || s.Retried != 0 {
		t.Errorf("stats %+v", s)
	}
}

// switchStore is the service's store behind a switch: while it is down,
// every call fails the way an unreachable database does.
type switchStore struct {
	commands.EventStore
	down  atomic.Bool
	calls atomic.Int64
}

func (s *switchStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return domain.AppendResult{}, fmt.Errorf("append: %w", domain.ErrUnavailable)
	}
	return s.EventStore.Append(ctx, stream, expected, evs)
}

func (s *switchStore) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return nil, fmt.Errorf("read: %w", domain.ErrUnavailable)
	}
	return s.EventStore.ReadStream(ctx, stream, from, max)
}

// TestRetriesWhileTheStoreIsDown: a command that fails because the
// database is unreachable is asked for again, past MaxDeliver, and
// answered once the database is back.
func TestRetriesWhileTheStoreIsDown(t *testing.T) {
	e := newEnv(t)
	sw := &switchStore{EventStore: e.store}
	sw.down.Store(true)
	b := commands.NewInventoryBus(commands.NewInventory(sw, commands.Config{}))
	st := run(t, e, cmdconsume.Config{Context: commands.ContextInventory, Bus: b, MaxDeliver: 2})
	orderID := uuid.NewString()
	c := issue(t, uuid.NewString(), commands.ReleaseStock{OrderID: orderID, SKUs: []string{"A"}})
	e.publish(t, c)
	waitFor(t, "three failed deliveries", func() bool { return st.Snapshot().Retried >= 3 })
	sw.down.Store(false)
	if got := e.reply(t, inventory.ReservationStream(orderID), c); !reflect.DeepEqual(got, inventory.StockReservationReleased{OrderID: orderID}) {
		t.Errorf("reply %#v", got)
	}
	e.empty(t)
	if s := st.Snapshot(); s.Parked != 0 || s.Answered != 1 || s.Received != s.Retried+1 {
		t.Errorf("stats %+v, want every delivery but the last retried, none parked", s)
	}
}

// failingBus fails every command with an error that is neither an answer
// nor an unreachable dependency: a bug.
type failingBus struct{ runs atomic.Int64 }

func (*failingBus) Context() string { return commands.ContextShipping }

func (b *failingBus) RunWire(context.Context, commands.Meta, commands.Wire) (commands.Outcome, error) {
	b.runs.Add(1)
	return commands.Outcome{}, errors.New("index out of range")
}

// TestUnexpectedFailuresAreParkedAfterMaxDeliver: a command that keeps
// failing for no reason the consumer knows is parked after MaxDeliver
// deliveries instead of looping forever.
func TestUnexpectedFailuresAreParkedAfterMaxDeliver(t *testing.T) {
	e := newEnv(t)
	b := new(failingBus)
	st := run(t, e, cmdconsume.Config{Context: commands.ContextShipping, Bus: b, MaxDeliver: 3})
	e.publish(t, issue(t, uuid.NewString(), commands.CancelShipment{ShipmentID: uuid.NewString(), Reason: "x"}))
	waitFor(t, "the command parked", func() bool { return st.Snapshot().Parked == 1 })
	e.empty(t)
	if s := st.Snapshot(); s.Retried != 2 || s.Received != 3 || b.runs.Load() != 3 {
		t.Errorf("stats %+v after %d runs, want 3 deliveries, 2 retried", s, b.runs.Load())
	}
}

// TestReplicasShareTheWork: two replicas of the inventory service consume
// one durable consumer. 40 orders race for 15 units: each command runs
// once, 15 are accepted, and the stock is exactly used up.
func TestReplicasShareTheWork(t *testing.T) {
	e := newEnv(t)
	if _, err := commands.NewInventory(e.store, commands.Config{}).Restock(ctxT(t), meta(), "HOT", 15); err != nil {
		t.Fatal(err)
	}
	var stats [2]*cmdconsume.Stats
	for i := range stats {
		b := commands.NewInventoryBus(commands.NewInventory(e.store, commands.Config{}))
		stats[i] = run(t, e, cmdconsume.Config{Context: commands.ContextInventory, Bus: b, Concurrency: 8})
	}
	const orders = 40
	cmds := make([]issued, orders)
	var wg sync.WaitGroup
	for i := range cmds {
		cmds[i] = issue(t, uuid.NewString(), commands.ReserveStock{OrderID: uuid.NewString(), Lines: []inventory.Line{{SKU: "HOT", Quantity: 1}}})
		wg.Go(func() { e.publish(t, cmds[i]) })
	}
	wg.Wait()
	answered := func() uint64 { return stats[0].Snapshot().Answered + stats[1].Snapshot().Answered }
	waitFor(t, "every command answered", func() bool { return answered() >= orders })
	accepted := 0
	for _, c := range cmds {
		var orderID string
		var body struct {
			OrderID string `json:"order_id"`
		}
		if err := json.Unmarshal(c.wire.Payload, &body); err != nil {
			t.Fatal(err)
		}
		orderID = body.OrderID
		switch e.reply(t, inventory.ReservationStream(orderID), c).(type) {
		case inventory.StockReservationAccepted:
			accepted++
		case inventory.StockReservationRejected:
		default:
			t.Errorf("order %s: unexpected reply", orderID)
		}
	}
	if accepted != 15 {
		t.Errorf("%d reservations accepted, want 15", accepted)
	}
	levels(t, e.store, "HOT", 15, 15)
	e.empty(t)
	t.Logf("replica shares: %d and %d commands", stats[0].Snapshot().Answered, stats[1].Snapshot().Answered)
}

func TestConfigValidate(t *testing.T) {
	b := commands.NewInventoryBus(commands.NewInventory(commandstest.NewStore(), commands.Config{}))
	tests := []struct {
		name string
		cfg  cmdconsume.Config
		ok   bool
	}{
		{"defaults", cmdconsume.Config{Context: "inventory", Bus: b}, true},
		{"no context", cmdconsume.Config{Bus: b}, false},
		{"no bus", cmdconsume.Config{Context: "inventory"}, false},
		{"another context's bus", cmdconsume.Config{Context: "orders", Bus: b}, false},
		{"context not a token", cmdconsume.Config{Context: "inv.entory", Bus: b}, false},
		{"durable not a token", cmdconsume.Config{Context: "inventory", Bus: b, Durable: "a b"}, false},
		{"negative ack wait", cmdconsume.Config{Context: "inventory", Bus: b, AckWait: -time.Second}, false},
		{"negative concurrency", cmdconsume.Config{Context: "inventory", Bus: b, Concurrency: -1}, false},
		{"min above max backoff", cmdconsume.Config{Context: "inventory", Bus: b, MinBackoff: time.Minute, MaxBackoff: time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, cmdconsume.ErrInvalidConfig)) {
				t.Errorf("Validate = %v, want ok %v", err, tt.ok)
			}
		})
	}
	if err := cmdconsume.Run(context.Background(), nil, cmdconsume.Config{Context: "inventory", Bus: b}); !errors.Is(err, cmdconsume.ErrInvalidConfig) {
		t.Errorf("Run without JetStream: %v", err)
	}
}

// TestOrderFulfillmentCommandsRun checks the contract between the saga
// definition, which spells its payloads out (package sagas cannot import
// the catalog), and the services: every command order_fulfillment can
// send, compensations and closing action included, decodes with the
// catalog and runs on its context's bus without being invalid.
func TestOrderFulfillmentCommandsRun(t *testing.T) {
	ctx := ctxT(t)
	store, _ := pgtest.New(t, postgres.Config{})
	b := buses(store, commands.Config{})
	orderID := uuid.NewString()
	sagaID := sagas.SagaID(orderID)
	input, err := json.Marshal(order.OrderPlaced{
		OrderID: orderID, SagaID: sagaID, CustomerID: "c-42",
		Items:           []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}, {SKU: "SKU-2", Quantity: 1, UnitPriceCents: 0}},
		ShippingAddress: addr("US"), TotalCents: 2598, PlacedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	def := sagas.OrderFulfillmentV1(sagas.DefaultTiming())
	type sent struct {
		name string
		cmd  sagas.Command
	}
	var all []sent
	for _, s := range def.Steps {
		all = append(all, sent{s.Name, s.Command})
		if s.Compensation != nil {
			all = append(all, sent{s.Compensation.Name, s.Compensation.Command})
		}
	}
	if def.Closing != nil {
		all = append(all, sent{def.Closing.Name, def.Closing.Command})
	}
	kinds := make(map[commands.Kind]bool)
	for _, s := range all {
		t.Run(s.name, func(t *testing.T) {
			payload, err := s.cmd.Payload(sagas.Data{SagaID: sagaID, Input: input, Reason: order.ReasonStepTimeout})
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(payload)
			if err != nil {
				t.Fatal(err)
			}
			w := commands.Wire{Context: s.cmd.Context, Name: s.cmd.Name, Version: s.cmd.Version, CommandID: uuid.NewString(), Payload: body}
			if _, err := commands.Decode(w); err != nil {
				t.Fatalf("the catalog does not decode what the saga sends: %v", err)
			}
			kinds[w.Kind()] = true
			bus, ok := b[w.Context]
			if !ok {
				t.Fatalf("no bus for context %q", w.Context)
			}
			o, err := bus.RunWire(ctx, commands.Meta{CorrelationID: sagaID}, w)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if o.Reply == "" {
				t.Errorf("no answer: %+v", o)
			}
		})
	}
	if len(kinds) < 8 {
		t.Errorf("the definition sends %d kinds of command, want at least 8", len(kinds))
	}
}

// TestRecoversWhenItsConsumerIsDeleted: an operator deletes the durable
// consumer; the replica sets it up again and commands keep being run.
func TestRecoversWhenItsConsumerIsDeleted(t *testing.T) {
	e := newEnv(t)
	b := buses(e.store, commands.Config{})[commands.ContextInventory]
	st := run(t, e, cmdconsume.Config{Context: commands.ContextInventory, Bus: b})
	saga := uuid.NewString()
	first, second := uuid.NewString(), uuid.NewString()
	c := issue(t, saga, commands.ReleaseStock{OrderID: first, SKUs: []string{"A"}})
	e.publish(t, c)
	e.reply(t, inventory.ReservationStream(first), c)

	ctx := ctxT(t)
	stream, err := e.js.Stream(ctx, natsbus.CommandsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteConsumer(ctx, "commands-inventory"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the consumer set up again", func() bool {
		_, err := stream.Consumer(ctx, "commands-inventory")
		return err == nil
	})
	c = issue(t, saga, commands.ReleaseStock{OrderID: second, SKUs: []string{"A"}})
	e.publish(t, c)
	e.reply(t, inventory.ReservationStream(second), c)
	// The first command may run again on the new consumer (its ack can
	// be on its way when the consumer goes): a duplicate, which changes
	// nothing; two distinct commands ran, none was parked.
	waitFor(t, "both commands counted", func() bool { s := st.Snapshot(); return s.Answered-s.Duplicates == 2 })
	if s := st.Snapshot(); s.Answered-s.Duplicates != 2 || s.Duplicates > 1 || s.Parked != 0 {
		t.Errorf("stats %+v", s)
	}
}
