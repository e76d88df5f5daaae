package commandstest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

// RunReplies runs the tests of the traveling commands against stores made
// by newStore: each command is answered by exactly one event caused by
// it, carrying the saga's correlation id, whatever its outcome; a
// redelivered command appends nothing; a later attempt gets the standing
// answer; a run cut short is completed by the next one. The package's own
// tests run it on the in-memory Store, the services' tests on PostgreSQL.
// A new handler stands for a restarted process.
func RunReplies(t *testing.T, newStore NewEventStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s commands.EventStore)
	}{
		{"ReserveAccepted", testReserveAccepted},
		{"ReserveRejected", testReserveRejected},
		{"RedeliveredCommandsAppendNothing", testRedelivered},
		{"LaterAttemptsGetTheStandingAnswer", testLaterAttempts},
		{"CompensationsAlwaysAnswer", testCompensations},
		{"ReleaseFencesALateReservation", testFence},
		{"ReserveCutShortIsCompleted", testReserveCutShort},
		{"RejectionCutShortAfterRollback", testRejectionCutShort},
		{"AttemptCutShortGivesBackWhenAnotherWasRejected", testCutShortThenRejected},
		{"ShipmentAnswers", testShipmentAnswers},
		{"OrderAnswers", testOrderAnswers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// sagaMeta is the Meta a consumer gives a saga's command.
func sagaMeta(sagaID string) commands.Meta {
	return commands.Meta{CommandID: uuid.NewString(), CorrelationID: sagaID, RequestID: "req-" + uuid.NewString(), Attempt: 1}
}

var registry = events.NewRegistry()

// caused returns the decoded events of stream caused by commandID.
func caused(t testing.TB, s commands.EventStore, stream, commandID string) ([]any, []domain.Envelope) {
	t.Helper()
	envs, err := s.ReadStream(context.Background(), stream, 1, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	var (
		payloads []any
		mine     []domain.Envelope
	)
	for _, e := range envs {
		if e.Metadata.CausationID != commandID {
			continue
		}
		p, err := registry.Decode(e)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, p)
		mine = append(mine, e)
	}
	return payloads, mine
}

// wantReply checks that stream holds exactly one event caused by m's
// command, equal to want, with m's correlation and request ids.
func wantReply(t testing.TB, s commands.EventStore, stream string, m commands.Meta, want any) {
	t.Helper()
	got, envs := caused(t, s, stream, m.CommandID)
	if len(got) != 1 {
		t.Fatalf("%s: %d events caused by command %s (%#v), want 1", stream, len(got), m.CommandID, got)
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("%s: reply\n got %#v\nwant %#v", stream, got[0], want)
	}
	md := envs[0].Metadata
	if md.CorrelationID != m.CorrelationID || md.RequestID != m.RequestID {
		t.Errorf("%s: reply metadata %+v, want correlation %s and request %s", stream, md, m.CorrelationID, m.RequestID)
	}
}

// wantOutcome checks what a handler reported.
func wantOutcome(t testing.TB, o commands.Outcome, err error, reply string, rejected, duplicate bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("command failed: %v", err)
	}
	if o.Reply != reply || o.Rejected != rejected || o.Duplicate != duplicate {
		t.Errorf("outcome %+v, want reply %q rejected %v duplicate %v", o, reply, rejected, duplicate)
	}
}

// levels checks the stock of sku.
func levels(t testing.TB, s commands.EventStore, sku string, onHand, reserved int) {
	t.Helper()
	st, _ := readStock(t, s, sku)
	if st.OnHand != onHand || st.Reserved != reserved {
		t.Errorf("%s: on hand %d reserved %d, want %d %d", sku, st.OnHand, st.Reserved, onHand, reserved)
	}
}

func count(t testing.TB, s commands.EventStore, stream string) int {
	t.Helper()
	envs, err := s.ReadStream(context.Background(), stream, 1, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	return len(envs)
}

func restockAll(t testing.TB, h *commands.Inventory, stock map[string]int) {
	t.Helper()
	for sku, q := range stock {
		if _, err := h.Restock(context.Background(), newMeta(), sku, q); err != nil {
			t.Fatal(err)
		}
	}
}

func testReserveAccepted(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	h := commands.NewInventory(s, commands.Config{})
	restockAll(t, h, map[string]int{"A": 5, "B": 5})
	orderID, sagaID := uuid.NewString(), uuid.NewString()
	lines := []inventory.Line{{SKU: "B", Quantity: 2}, {SKU: "A", Quantity: 5}}
	m := sagaMeta(sagaID)
	o, err := h.ReserveStock(ctx, m, commands.ReserveStock{OrderID: orderID, Lines: lines})
	wantOutcome(t, o, err, inventory.TypeStockReservationAccepted, false, false)
	wantReply(t, s, inventory.ReservationStream(orderID), m, inventory.StockReservationAccepted{OrderID: orderID, Lines: lines})
	levels(t, s, "A", 5, 5)
	levels(t, s, "B", 5, 2)
	// The stock's own events carry the saga's ids too.
	for _, sku := range []string{"A", "B"} {
		_, envs := caused(t, s, inventory.Stream(sku), m.CommandID)
		if len(envs) != 1 || envs[0].Type != inventory.TypeStockReserved || envs[0].Metadata.CorrelationID != sagaID {
			t.Errorf("%s: events caused by the command: %+v", sku, envs)
		}
	}
}

func testReserveRejected(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	h := commands.NewInventory(s, commands.Config{})
	restockAll(t, h, map[string]int{"A": 5, "B": 5, "C": 3})
	tests := []struct {
		name  string
		lines []inventory.Line
		want  inventory.StockReservationRejected // without the order id
	}{
		{"one sku short", []inventory.Line{{SKU: "A", Quantity: 6}},
			inventory.StockReservationRejected{Reason: inventory.ReasonInsufficientStock, SKU: "A", Requested: 6, Available: 5}},
		{"last sku short, the others given back", []inventory.Line{{SKU: "C", Quantity: 4}, {SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 1}},
			inventory.StockReservationRejected{Reason: inventory.ReasonInsufficientStock, SKU: "C", Requested: 4, Available: 3}},
		{"unknown sku in the middle", []inventory.Line{{SKU: "A", Quantity: 1}, {SKU: "AB", Quantity: 2}, {SKU: "C", Quantity: 1}},
			inventory.StockReservationRejected{Reason: inventory.ReasonInsufficientStock, SKU: "AB", Requested: 2, Available: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orderID := uuid.NewString()
			m := sagaMeta(uuid.NewString())
			o, err := h.ReserveStock(ctx, m, commands.ReserveStock{OrderID: orderID, Lines: tt.lines})
			wantOutcome(t, o, err, inventory.TypeStockReservationRejected, true, false)
			want := tt.want
			want.OrderID = orderID
			wantReply(t, s, inventory.ReservationStream(orderID), m, want)
			levels(t, s, "A", 5, 0)
			levels(t, s, "B", 5, 0)
			levels(t, s, "C", 3, 0)
		})
	}
}

// testRedelivered runs every traveling command twice with one id, from
// two handlers (the second stands for the process the command is
// redelivered to): the second run appends nothing anywhere.
func testRedelivered(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	inv := commands.NewInventory(s, commands.Config{})
	restockAll(t, inv, map[string]int{"A": 10})
	orders := commands.NewOrders(s, commands.Config{})
	orderID, shipmentID := uuid.NewString(), uuid.NewString()
	placeOrder(t, orders, orderID)
	items := []order.Item{{SKU: "A", Quantity: 1}}
	addr := order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
	steps := []struct {
		name string
		cmd  any
	}{
		{"reserve", commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 1}}}},
		{"schedule", commands.ScheduleShipment{ShipmentID: shipmentID, OrderID: orderID, Items: items, Address: addr}},
		{"confirm", commands.ConfirmOrder{OrderID: orderID, ShipmentID: shipmentID}},
		{"consume", commands.ConsumeStock{OrderID: orderID, SKUs: []string{"A"}}},
		{"mark shipped", commands.MarkOrderShipped{OrderID: orderID}},
		{"release", commands.ReleaseStock{OrderID: orderID, SKUs: []string{"A"}}},
		{"cancel shipment", commands.CancelShipment{ShipmentID: shipmentID, Reason: order.ReasonStepTimeout}},
		{"reject", commands.RejectOrder{OrderID: orderID, Reason: order.ReasonStepTimeout}},
		{"cancel order", commands.CancelOrder{OrderID: orderID, Reason: order.ReasonStepTimeout}},
	}
	streams := []string{inventory.Stream("A"), inventory.ReservationStream(orderID), order.Stream(orderID), shipping.Stream(shipmentID)}
	sizes := func() []int {
		n := make([]int, len(streams))
		for i, st := range streams {
			n[i] = count(t, s, st)
		}
		return n
	}
	sagaID := uuid.NewString()
	for _, step := range steps {
		m := sagaMeta(sagaID)
		first, err := bus(s, step.cmd).Run(ctx, m, step.cmd)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if first.Duplicate || first.Reply == "" {
			t.Errorf("%s: first run %+v, want an answer", step.name, first)
		}
		before := sizes()
		m.Attempt = 2
		again, err := bus(s, step.cmd).Run(ctx, m, step.cmd)
		if err != nil {
			t.Fatalf("%s again: %v", step.name, err)
		}
		if !again.Duplicate || again.Reply != "" {
			t.Errorf("%s: second run %+v, want a duplicate", step.name, again)
		}
		if after := sizes(); !reflect.DeepEqual(before, after) {
			t.Errorf("%s: stream sizes %v after the redelivery, %v before", step.name, after, before)
		}
	}
}

// bus returns a fresh bus (a fresh process) for cmd's context.
func bus(s commands.EventStore, cmd any) *commands.Bus {
	k, _ := commands.Commands().KindOf(cmd)
	switch k.Context {
	case commands.ContextInventory:
		return commands.NewInventoryBus(commands.NewInventory(s, commands.Config{}))
	case commands.ContextShipping:
		return commands.NewShippingBus(commands.NewShipping(s, commands.Config{}))
	}
	return commands.NewOrdersBus(commands.NewOrders(s, commands.Config{}))
}

func placeOrder(t testing.TB, h *commands.Orders, orderID string) {
	t.Helper()
	_, err := h.Place(context.Background(), newMeta(), commands.PlaceOrder{
		OrderID: orderID, SagaID: uuid.NewString(), CustomerID: "c-1",
		Items:   []order.Item{{SKU: "A", Quantity: 1, UnitPriceCents: 100}},
		Address: order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testLaterAttempts: a saga's retry is a new command id. A reservation
// that was answered is answered the same way, without touching the stock.
func testLaterAttempts(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	h := commands.NewInventory(s, commands.Config{})
	restockAll(t, h, map[string]int{"A": 3})
	sagaID := uuid.NewString()

	won := uuid.NewString()
	lines := []inventory.Line{{SKU: "A", Quantity: 2}}
	_, err := h.ReserveStock(ctx, sagaMeta(sagaID), commands.ReserveStock{OrderID: won, Lines: lines})
	noErr(t, err)
	m := sagaMeta(sagaID)
	o, err := h.ReserveStock(ctx, m, commands.ReserveStock{OrderID: won, Lines: lines})
	wantOutcome(t, o, err, inventory.TypeStockReservationAccepted, false, false)
	wantReply(t, s, inventory.ReservationStream(won), m, inventory.StockReservationAccepted{OrderID: won, Lines: lines})
	levels(t, s, "A", 3, 2)

	lost := uuid.NewString()
	lines = []inventory.Line{{SKU: "A", Quantity: 2}}
	_, err = h.ReserveStock(ctx, sagaMeta(sagaID), commands.ReserveStock{OrderID: lost, Lines: lines})
	noErr(t, err)
	restockAll(t, h, map[string]int{"A": 10})
	m = sagaMeta(sagaID)
	o, err = h.ReserveStock(ctx, m, commands.ReserveStock{OrderID: lost, Lines: lines})
	wantOutcome(t, o, err, inventory.TypeStockReservationRejected, true, false)
	wantReply(t, s, inventory.ReservationStream(lost), m, inventory.StockReservationRejected{
		OrderID: lost, Reason: inventory.ReasonInsufficientStock, SKU: "A", Requested: 2, Available: 1})
	levels(t, s, "A", 13, 2)
}

// testCompensations: release and consume answer whether or not anything
// is held, and only what is held moves.
func testCompensations(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	h := commands.NewInventory(s, commands.Config{})
	restockAll(t, h, map[string]int{"A": 5, "B": 5})
	tests := []struct {
		name    string
		reserve []inventory.Line // before the compensation
		cmd     func(orderID string) any
		reply   any
		a, b    [2]int // on hand, reserved after it
	}{
		{"release what is held", []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}},
			func(id string) any { return commands.ReleaseStock{OrderID: id, SKUs: []string{"A", "B"}} },
			inventory.StockReservationReleased{}, [2]int{5, 0}, [2]int{5, 0}},
		{"release with nothing held", nil,
			func(id string) any { return commands.ReleaseStock{OrderID: id, SKUs: []string{"A", "B", "NEVER"}} },
			inventory.StockReservationReleased{}, [2]int{5, 0}, [2]int{5, 0}},
		{"consume what is held", []inventory.Line{{SKU: "A", Quantity: 2}},
			func(id string) any { return commands.ConsumeStock{OrderID: id, SKUs: []string{"A"}} },
			inventory.StockReservationConsumed{}, [2]int{3, 0}, [2]int{5, 0}},
		{"consume with nothing held", nil,
			func(id string) any { return commands.ConsumeStock{OrderID: id, SKUs: []string{"B"}} },
			inventory.StockReservationConsumed{}, [2]int{3, 0}, [2]int{5, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orderID, sagaID := uuid.NewString(), uuid.NewString()
			if tt.reserve != nil {
				_, err := h.ReserveStock(ctx, sagaMeta(sagaID), commands.ReserveStock{OrderID: orderID, Lines: tt.reserve})
				noErr(t, err)
			}
			m := sagaMeta(sagaID)
			cmd := tt.cmd(orderID)
			o, err := commands.NewInventoryBus(h).Run(ctx, m, cmd)
			want := reflect.New(reflect.TypeOf(tt.reply)).Elem()
			want.FieldByName("OrderID").SetString(orderID)
			wantOutcome(t, o, err, reflect.TypeOf(tt.reply).Name(), false, false)
			wantReply(t, s, inventory.ReservationStream(orderID), m, want.Interface())
			levels(t, s, "A", tt.a[0], tt.a[1])
			levels(t, s, "B", tt.b[0], tt.b[1])
		})
	}
}

// testFence: a release that arrives before the reservation it
// compensates (the saga gave up on a late attempt) fences it: the late
// reservation is refused and holds nothing.
func testFence(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	h := commands.NewInventory(s, commands.Config{})
	restockAll(t, h, map[string]int{"A": 5})
	orderID, sagaID := uuid.NewString(), uuid.NewString()
	_, err := h.ReleaseStock(ctx, sagaMeta(sagaID), commands.ReleaseStock{OrderID: orderID, SKUs: []string{"A"}})
	noErr(t, err)
	m := sagaMeta(sagaID)
	o, err := h.ReserveStock(ctx, m, commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 1}}})
	wantOutcome(t, o, err, inventory.TypeStockReservationRejected, true, false)
	wantReply(t, s, inventory.ReservationStream(orderID), m,
		inventory.StockReservationRejected{OrderID: orderID, Reason: inventory.ReasonReservationSettled})
	levels(t, s, "A", 5, 0)

	// The same when the release lands while the reservation is under way,
	// after the reservation's first look: before the stock is reserved
	// (the late reservation must give back what it takes), or after (the
	// release gives it back).
	for _, at := range []string{"stock", "answer"} {
		orderID := uuid.NewString()
		stream := inventory.Stream("A")
		if at == "answer" {
			stream = inventory.ReservationStream(orderID)
		}
		release := commands.NewInventory(s, commands.Config{})
		gate := &inTheMiddle{EventStore: s, stream: stream, skip: 1, before: func() {
			_, err := release.ReleaseStock(ctx, sagaMeta(sagaID), commands.ReleaseStock{OrderID: orderID, SKUs: []string{"A"}})
			noErr(t, err)
		}}
		m := sagaMeta(sagaID)
		o, err := commands.NewInventory(gate, commands.Config{}).ReserveStock(ctx, m,
			commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 2}}})
		if !gate.ran() {
			t.Fatalf("release at %s: never ran", at)
		}
		wantOutcome(t, o, err, inventory.TypeStockReservationRejected, true, false)
		wantReply(t, s, inventory.ReservationStream(orderID), m,
			inventory.StockReservationRejected{OrderID: orderID, Reason: inventory.ReasonReservationSettled})
		levels(t, s, "A", 5, 0)
	}

	// A reservation accepted after the release looked at the skus and
	// before its answer is released by the release's second pass.
	orderID = uuid.NewString()
	reserve := sagaMeta(sagaID)
	gate := &inTheMiddle{EventStore: s, stream: inventory.ReservationStream(orderID), before: func() {
		o, err := commands.NewInventory(s, commands.Config{}).ReserveStock(ctx, reserve,
			commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 3}}})
		wantOutcome(t, o, err, inventory.TypeStockReservationAccepted, false, false)
	}}
	m = sagaMeta(sagaID)
	o, err = commands.NewInventory(gate, commands.Config{}).ReleaseStock(ctx, m, commands.ReleaseStock{OrderID: orderID, SKUs: []string{"A"}})
	if !gate.ran() {
		t.Fatal("the reservation never ran")
	}
	wantOutcome(t, o, err, inventory.TypeStockReservationReleased, false, false)
	wantReply(t, s, inventory.ReservationStream(orderID), m, inventory.StockReservationReleased{OrderID: orderID})
	levels(t, s, "A", 5, 0)
}

// inTheMiddle runs before once, when stream is first read or appended to
// after skip reads of it.
type inTheMiddle struct {
	commands.EventStore
	stream string
	skip   int
	before func()
	mu     sync.Mutex
	done   bool
}

func (g *inTheMiddle) at(stream string, read bool) {
	if stream != g.stream {
		return
	}
	g.mu.Lock()
	if read && g.skip > 0 {
		g.skip--
		g.mu.Unlock()
		return
	}
	run := !g.done
	g.done = true
	g.mu.Unlock()
	if run {
		g.before()
	}
}

func (g *inTheMiddle) ran() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.done
}

func (g *inTheMiddle) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	g.at(stream, true)
	return g.EventStore.ReadStream(ctx, stream, from, max)
}

func (g *inTheMiddle) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	g.at(stream, false)
	return g.EventStore.Append(ctx, stream, expected, evs)
}

// faultyStore fails the reads and appends of the streams it is told to,
// as if the process died before them.
type faultyStore struct {
	commands.EventStore
	mu   sync.Mutex
	down map[string]bool
}

var errDown = errors.New("store unavailable")

func (f *faultyStore) fail(streams ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = make(map[string]bool)
	for _, s := range streams {
		f.down[s] = true
	}
}

func (f *faultyStore) isDown(stream string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down[stream]
}

func (f *faultyStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	if f.isDown(stream) {
		return domain.AppendResult{}, errDown
	}
	return f.EventStore.Append(ctx, stream, expected, evs)
}

func (f *faultyStore) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	if f.isDown(stream) {
		return nil, errDown
	}
	return f.EventStore.ReadStream(ctx, stream, from, max)
}

// testReserveCutShort: the process dies after reserving A, before B.
// Nothing is rolled back; the redelivered command completes the
// reservation and answers once.
func testReserveCutShort(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	fs := &faultyStore{EventStore: s}
	restockAll(t, commands.NewInventory(s, commands.Config{}), map[string]int{"A": 5, "B": 5})
	orderID := uuid.NewString()
	c := commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}}
	m := sagaMeta(uuid.NewString())
	fs.fail(inventory.Stream("B"))
	_, err := commands.NewInventory(fs, commands.Config{}).ReserveStock(ctx, m, c)
	if !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want the store's failure", err)
	}
	levels(t, s, "A", 5, 2)
	if n := count(t, s, inventory.ReservationStream(orderID)); n != 0 {
		t.Fatalf("%d answers before the reservation completed", n)
	}
	fs.fail()
	o, err := commands.NewInventory(fs, commands.Config{}).ReserveStock(ctx, m, c)
	wantOutcome(t, o, err, inventory.TypeStockReservationAccepted, false, false)
	wantReply(t, s, inventory.ReservationStream(orderID), m, inventory.StockReservationAccepted{OrderID: orderID, Lines: c.Lines})
	levels(t, s, "A", 5, 2)
	levels(t, s, "B", 5, 1)
}

// testRejectionCutShort: A is reserved, B is short, A is given back, and
// the process dies before the answer. The redelivery answers with the
// shortage of B, though B was restocked meanwhile, and reserves nothing.
func testRejectionCutShort(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	fs := &faultyStore{EventStore: s}
	h := commands.NewInventory(s, commands.Config{})
	restockAll(t, h, map[string]int{"A": 5, "B": 1})
	orderID := uuid.NewString()
	c := commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 3}}}
	m := sagaMeta(uuid.NewString())
	fs.fail(inventory.ReservationStream(orderID))
	// The first look at the reservation fails too; let it through once.
	_, err := commands.NewInventory(&failAppendsOnly{fs}, commands.Config{}).ReserveStock(ctx, m, c)
	if !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want the store's failure", err)
	}
	levels(t, s, "A", 5, 0)
	restockAll(t, h, map[string]int{"B": 10})
	fs.fail()
	o, err := commands.NewInventory(fs, commands.Config{}).ReserveStock(ctx, m, c)
	wantOutcome(t, o, err, inventory.TypeStockReservationRejected, true, false)
	wantReply(t, s, inventory.ReservationStream(orderID), m, inventory.StockReservationRejected{
		OrderID: orderID, Reason: inventory.ReasonInsufficientStock, SKU: "B", Requested: 3, Available: 11})
	levels(t, s, "A", 5, 0)
	levels(t, s, "B", 11, 0)
}

// failAppendsOnly lets reads through a faultyStore.
type failAppendsOnly struct{ *faultyStore }

func (f *failAppendsOnly) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	return f.faultyStore.EventStore.ReadStream(ctx, stream, from, max)
}

// testCutShortThenRejected: attempt 1 reserves A and dies before B.
// Attempt 2 (the saga's retry) finds B short and is rejected. When
// attempt 1 is redelivered it repeats the rejection and gives back A,
// which would otherwise stay held for an order that was rejected.
func testCutShortThenRejected(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	fs := &faultyStore{EventStore: s}
	restockAll(t, commands.NewInventory(s, commands.Config{}), map[string]int{"A": 5})
	orderID, sagaID := uuid.NewString(), uuid.NewString()
	c := commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}}
	first := sagaMeta(sagaID)
	fs.fail(inventory.Stream("B"))
	_, err := commands.NewInventory(fs, commands.Config{}).ReserveStock(ctx, first, c)
	if !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want the store's failure", err)
	}
	fs.fail()
	levels(t, s, "A", 5, 2)

	second := sagaMeta(sagaID)
	o, err := commands.NewInventory(s, commands.Config{}).ReserveStock(ctx, second, c)
	wantOutcome(t, o, err, inventory.TypeStockReservationRejected, true, false)
	rejected := inventory.StockReservationRejected{OrderID: orderID, Reason: inventory.ReasonInsufficientStock, SKU: "B", Requested: 1, Available: 0}
	wantReply(t, s, inventory.ReservationStream(orderID), second, rejected)

	o, err = commands.NewInventory(s, commands.Config{}).ReserveStock(ctx, first, c)
	wantOutcome(t, o, err, inventory.TypeStockReservationRejected, true, false)
	wantReply(t, s, inventory.ReservationStream(orderID), first, rejected)
	levels(t, s, "A", 5, 0)
}

func testShipmentAnswers(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	b := commands.NewShippingBus(commands.NewShipping(s, commands.Config{}))
	sagaID := uuid.NewString()
	items := []order.Item{{SKU: "A", Quantity: 1}}
	addr := func(country string) order.Address {
		return order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: country}
	}
	run := func(cmd any) (commands.Meta, commands.Outcome, error) {
		m := sagaMeta(sagaID)
		o, err := b.Run(ctx, m, cmd)
		return m, o, err
	}

	// Served: scheduled; a later attempt is answered the same way.
	id, orderID := uuid.NewString(), uuid.NewString()
	sched := commands.ScheduleShipment{ShipmentID: id, OrderID: orderID, Items: items, Address: addr("US")}
	scheduled := shipping.ShipmentScheduled{ShipmentID: id, OrderID: orderID, Items: items, Address: addr("US")}
	for range 2 {
		m, o, err := run(sched)
		wantOutcome(t, o, err, shipping.TypeShipmentScheduled, false, false)
		wantReply(t, s, shipping.Stream(id), m, scheduled)
	}
	m, o, err := run(commands.CancelShipment{ShipmentID: id, Reason: order.ReasonCancelledByCustomer})
	wantOutcome(t, o, err, shipping.TypeShipmentCancelled, false, false)
	wantReply(t, s, shipping.Stream(id), m, shipping.ShipmentCancelled{ShipmentID: id, OrderID: orderID, Reason: order.ReasonCancelledByCustomer})
	m, o, err = run(commands.CancelShipment{ShipmentID: id, Reason: order.ReasonStepTimeout})
	wantOutcome(t, o, err, shipping.TypeShipmentCancelled, false, false)
	wantReply(t, s, shipping.Stream(id), m, shipping.ShipmentCancelled{ShipmentID: id, OrderID: orderID, Reason: order.ReasonStepTimeout, Note: shipping.NoteAlreadyCancelled})

	// AQ is not served: refused, and the refusal repeated.
	id, orderID = uuid.NewString(), uuid.NewString()
	aq := addr("AQ")
	for i := range 2 {
		m, o, err := run(commands.ScheduleShipment{ShipmentID: id, OrderID: orderID, Items: items, Address: aq})
		wantOutcome(t, o, err, shipping.TypeShipmentRefused, true, false)
		want := shipping.ShipmentRefused{ShipmentID: id, OrderID: orderID, Reason: shipping.ReasonDestinationNotServed}
		if i == 0 {
			want.Items, want.Address = items, &aq
		}
		wantReply(t, s, shipping.Stream(id), m, want)
	}

	// A cancel that arrives before its schedule closes the shipment: the
	// late schedule is rejected.
	id, orderID = uuid.NewString(), uuid.NewString()
	m, o, err = run(commands.CancelShipment{ShipmentID: id, Reason: order.ReasonStepTimeout})
	wantOutcome(t, o, err, shipping.TypeShipmentCancelled, false, false)
	wantReply(t, s, shipping.Stream(id), m, shipping.ShipmentCancelled{ShipmentID: id, Reason: order.ReasonStepTimeout, Note: shipping.NoteNeverScheduled})
	m, o, err = run(commands.ScheduleShipment{ShipmentID: id, OrderID: orderID, Items: items, Address: addr("US")})
	wantOutcome(t, o, err, shipping.TypeShipmentCommandRejected, true, false)
	wantReply(t, s, shipping.Stream(id), m, shipping.ShipmentCommandRejected{ShipmentID: id, OrderID: orderID,
		Status: string(shipping.StatusCancelled), Detail: "shipment " + id + " was cancelled before it was scheduled"})

	// A dispatched shipment cannot be called back.
	id, orderID = uuid.NewString(), uuid.NewString()
	_, _, err = run(commands.ScheduleShipment{ShipmentID: id, OrderID: orderID, Items: items, Address: addr("US")})
	noErr(t, err)
	_, err = commands.NewShipping(s, commands.Config{}).Dispatch(ctx, newMeta(), id)
	noErr(t, err)
	m, o, err = run(commands.CancelShipment{ShipmentID: id, Reason: order.ReasonCancelledByCustomer})
	wantOutcome(t, o, err, shipping.TypeShipmentCommandRejected, true, false)
	wantReply(t, s, shipping.Stream(id), m, shipping.ShipmentCommandRejected{ShipmentID: id, OrderID: orderID,
		Status: string(shipping.StatusDispatched), Detail: "shipment " + id + " was already dispatched and can no longer be cancelled"})

	// Invalid input is an error, not an answer.
	_, _, err = run(commands.CancelShipment{ShipmentID: "s-1", Reason: "x"})
	if !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("cancel with a bad id: %v, want invalid input", err)
	}
}

func testOrderAnswers(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	h := commands.NewOrders(s, commands.Config{})
	b := commands.NewOrdersBus(h)
	sagaID, shipmentID := uuid.NewString(), uuid.NewString()
	tests := []struct {
		name   string
		before []any // commands run first
		cmd    func(orderID string) any
		reply  func(orderID string) any
		status order.Status
	}{
		{"confirm", nil,
			func(id string) any { return commands.ConfirmOrder{OrderID: id, ShipmentID: shipmentID} },
			func(id string) any { return order.OrderConfirmed{OrderID: id, ShipmentID: shipmentID} }, order.StatusConfirmed},
		{"confirm again", []any{"confirm"},
			func(id string) any { return commands.ConfirmOrder{OrderID: id, ShipmentID: shipmentID} },
			func(id string) any { return order.OrderConfirmed{OrderID: id, ShipmentID: shipmentID} }, order.StatusConfirmed},
		{"reject", nil,
			func(id string) any { return commands.RejectOrder{OrderID: id, Reason: order.ReasonInsufficientStock} },
			func(id string) any { return order.OrderRejected{OrderID: id, Reason: order.ReasonInsufficientStock} }, order.StatusRejected},
		{"mark shipped", []any{"confirm"},
			func(id string) any { return commands.MarkOrderShipped{OrderID: id} },
			func(id string) any { return order.OrderShipped{OrderID: id, ShipmentID: shipmentID} }, order.StatusShipped},
		{"saga cancels", nil,
			func(id string) any { return commands.CancelOrder{OrderID: id, Reason: order.ReasonStepTimeout} },
			func(id string) any { return order.OrderCancelled{OrderID: id, Reason: order.ReasonStepTimeout} }, order.StatusCancelled},
		{"confirm after the customer cancelled", []any{"customer cancel"},
			func(id string) any { return commands.ConfirmOrder{OrderID: id, ShipmentID: shipmentID} },
			func(id string) any {
				return order.OrderCommandRejected{OrderID: id, Status: string(order.StatusCancelled), Reason: order.ReasonCancelledByCustomer,
					Detail: "order " + id + " is cancelled; only a pending order can be confirmed"}
			}, order.StatusCancelled},
		{"reject after the customer cancelled", []any{"customer cancel"},
			func(id string) any {
				return commands.RejectOrder{OrderID: id, Reason: order.ReasonDestinationNotServed}
			},
			func(id string) any {
				return order.OrderCommandRejected{OrderID: id, Status: string(order.StatusCancelled), Reason: order.ReasonCancelledByCustomer,
					Detail: "order " + id + " is cancelled; only a pending or confirmed order can be rejected"}
			}, order.StatusCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orderID := uuid.NewString()
			placeOrder(t, h, orderID)
			for _, step := range tt.before {
				var err error
				switch step {
				case "confirm":
					_, err = b.Run(ctx, sagaMeta(sagaID), commands.ConfirmOrder{OrderID: orderID, ShipmentID: shipmentID})
				case "customer cancel":
					_, err = h.Cancel(ctx, newMeta(), orderID, order.ReasonCancelledByCustomer)
				}
				noErr(t, err)
			}
			m := sagaMeta(sagaID)
			want := tt.reply(orderID)
			o, err := b.Run(ctx, m, tt.cmd(orderID))
			_, rejected := want.(order.OrderCommandRejected)
			wantOutcome(t, o, err, reflect.TypeOf(want).Name(), rejected, false)
			wantReply(t, s, order.Stream(orderID), m, want)
			if st := orderState(t, s, orderID); st.Status != tt.status {
				t.Errorf("order is %s, want %s", st.Status, tt.status)
			}
		})
	}
}

// orderState rebuilds an order from its stream.
func orderState(t testing.TB, s commands.EventStore, orderID string) *order.Order {
	t.Helper()
	envs, err := s.ReadStream(context.Background(), order.Stream(orderID), 1, 1000)
	noErr(t, err)
	st := new(order.Order)
	for _, e := range envs {
		p, err := registry.Decode(e)
		noErr(t, err)
		st.Apply(p)
	}
	return st
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
