package commands

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestSnapshotsGiveTheSameState is the property snapshots rest on: for
// random event sequences on each aggregate, a stream loaded from a
// snapshot taken at a random version, then its later events, has the
// state it has when read from its first event, also when a snapshot of an
// older or unknown schema is stored beside it, which must be ignored.
func TestSnapshotsGiveTheSameState(t *testing.T) {
	store, _ := pgtest.New(t, postgres.Config{})
	kinds := []struct {
		name string
		gen  func(r *rand.Rand) any
		load func(t *testing.T, x *executor, stream string, cd *codec) (aggregate, int64, int)
		cd   *codec
	}{
		{"stock", genStock, loadState[inventory.Stock], codecOf[inventory.Stock]()},
		{"reservation", genReservation, loadState[inventory.Reservation], codecOf[inventory.Reservation]()},
		{"order", genOrder, loadState[order.Order], codecOf[order.Order]()},
		{"shipment", genShipment, loadState[shipping.Shipment], codecOf[shipping.Shipment]()},
	}
	const runs = 25
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for run := range runs {
				seed := uint64(run)*7919 + uint64(len(k.name))
				r := rand.New(rand.NewPCG(seed, 1))
				stream := fmt.Sprintf("%s-%d-%s", k.name, run, uuid.NewString())
				ctx := context.Background()

				n := 1 + r.IntN(120)
				evs := make([]any, n)
				for i := range evs {
					evs[i] = k.gen(r)
				}
				appendRaw(t, store, stream, evs)

				// The truth: the stream read from its first event.
				plain := newExecutor(store, Config{SnapshotEvery: -1})
				want, version, _ := k.load(t, plain, stream, k.cd)
				if version != int64(n) {
					t.Fatalf("seed %d: loaded version %d, want %d", seed, version, n)
				}

				// A snapshot of the current schema at a random version,
				// taken from the state the events give up to there.
				at := int64(1 + r.IntN(n))
				upTo := stateAt(t, k.cd, evs[:at])
				data, err := k.cd.encode(upTo)
				if err != nil {
					t.Fatal(err)
				}
				// A snapshot of an unknown (a later process's) schema, later
				// and wrong; saved first, as saving deletes older schemas.
				if err := store.SaveSnapshot(ctx, stream, int64(n), k.cd.schema+100, []byte(`{"junk": true}`)); err != nil {
					t.Fatal(err)
				}
				if err := store.SaveSnapshot(ctx, stream, at, k.cd.schema, data); err != nil {
					t.Fatal(err)
				}

				snapped := newExecutor(store, Config{})
				got, version, read := k.load(t, snapped, stream, k.cd)
				if version != int64(n) || read != n-int(at) {
					t.Fatalf("seed %d: loaded version %d reading %d events, want %d reading %d after the snapshot at %d", seed, version, read, n, n-int(at), at)
				}
				if !sameState(t, got, want) {
					t.Fatalf("seed %d, snapshot at %d of %d: state from the snapshot\n%+v\nwant\n%+v", seed, at, n, got, want)
				}

				// Once the codec's schema is raised, the stored snapshot
				// is of an older schema: ignored, the stream is read whole.
				newer := *k.cd
				newer.schema++
				got, version, read = k.load(t, snapped, stream, &newer)
				if version != int64(n) || read != n {
					t.Fatalf("seed %d: with an older snapshot stored, loaded version %d reading %d events, want %d reading all", seed, version, read, n)
				}
				if !sameState(t, got, want) {
					t.Fatalf("seed %d: state beside an older snapshot\n%+v\nwant\n%+v", seed, got, want)
				}
			}
		})
	}
}

// sameState reports whether a and b are the same state. A Stock restored
// from a snapshot holds only the settled orders it applied or looked up
// since, one built from the first event all of them: two Stocks are the same when
// their snapshots encode alike and every decision the test's orders can
// ask for comes out the same.
func sameState(t *testing.T, a, b aggregate) bool {
	t.Helper()
	sa, ok := a.(*inventory.Stock)
	if !ok {
		return reflect.DeepEqual(a, b)
	}
	sb := b.(*inventory.Stock)
	ea, err := sa.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	eb, err := sb.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if string(ea) != string(eb) {
		return false
	}
	for _, o := range probeOrders {
		for _, q := range []int{1, 1_000_000} {
			evA, errA := sa.Reserve(o, q)
			evB, errB := sb.Reserve(o, q)
			if !reflect.DeepEqual(evA, evB) || fmt.Sprint(errA) != fmt.Sprint(errB) {
				return false
			}
		}
	}
	return true
}

// loadState loads stream the way a writer that does not hold it does
// (runBatch): a fresh state, set from a snapshot when x has one of cd's
// schema, then the events after it. It returns the state, its version and
// how many events were read.
func loadState[S any, P state[S]](t *testing.T, x *executor, stream string, cd *codec) (aggregate, int64, int) {
	t.Helper()
	e := &entry{stream: stream, state: P(new(S)), seen: make(map[uuid.UUID]struct{}), behind: true}
	x.snaps.restore(context.Background(), e, cd, nil)
	n, err := x.catchUp(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	// Before the reservations sameState asks for, the state learns what
	// its snapshot left out about their orders, as runBatch has it do.
	if e.base > 0 {
		if err := x.snaps.learn(context.Background(), e, []*call{{keys: probeOrders}}); err != nil {
			t.Fatal(err)
		}
	}
	return e.state, e.version, n
}

// stateAt applies evs to a fresh state of cd's type.
func stateAt(t *testing.T, cd *codec, evs []any) aggregate {
	t.Helper()
	st, err := cd.decode([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		st.Apply(ev)
	}
	return st
}

// appendRaw stores evs in stream, in appends of random sizes.
func appendRaw(t *testing.T, store *postgres.Store, stream string, evs []any) {
	t.Helper()
	var version int64
	for len(evs) > 0 {
		k := min(len(evs), 1+len(evs)%17)
		envs, err := envelopes(Meta{CommandID: uuid.NewString()}, stream, evs[:k])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(context.Background(), stream, domain.ExactVersion(version), envs); err != nil {
			t.Fatal(err)
		}
		version += int64(k)
		evs = evs[k:]
	}
}

// Small pools of ids, so that random events meet the same orders again.
var (
	orderIDs    = []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	shipmentIDs = []string{uuid.NewString(), uuid.NewString()}
	// probeOrders are the orders sameState reserves for: those of the
	// events, one in another spelling, and one never seen.
	probeOrders = append(slices.Clone(orderIDs), strings.ToUpper(orderIDs[0]), uuid.NewString())
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func genStock(r *rand.Rand) any {
	o, q := pick(r, orderIDs), 1+r.IntN(9)
	if r.IntN(8) == 0 {
		// Not in canonical form: an id is settled with its spelling.
		o = strings.ToUpper(o)
	}
	switch r.IntN(4) {
	case 0:
		return inventory.StockRestocked{SKU: "SKU-P", Quantity: 1 + r.IntN(50)}
	case 1:
		return inventory.StockReserved{SKU: "SKU-P", OrderID: o, Quantity: q}
	case 2:
		return inventory.StockReleased{SKU: "SKU-P", OrderID: o, Quantity: q}
	default:
		return inventory.StockConsumed{SKU: "SKU-P", OrderID: o, Quantity: q}
	}
}

func genReservation(r *rand.Rand) any {
	o := pick(r, orderIDs)
	switch r.IntN(4) {
	case 0:
		lines := make([]inventory.Line, r.IntN(3))
		for i := range lines {
			lines[i] = inventory.Line{SKU: fmt.Sprintf("SKU-%d", r.IntN(5)), Quantity: 1 + r.IntN(5)}
		}
		return inventory.StockReservationAccepted{OrderID: o, Lines: lines}
	case 1:
		return inventory.StockReservationRejected{OrderID: o, Reason: inventory.ReasonInsufficientStock, SKU: "SKU-1", Requested: r.IntN(9), Available: r.IntN(9)}
	case 2:
		return inventory.StockReservationReleased{OrderID: o}
	default:
		return inventory.StockReservationConsumed{OrderID: o}
	}
}

func genItems(r *rand.Rand) []order.Item {
	items := make([]order.Item, r.IntN(3))
	for i := range items {
		items[i] = order.Item{SKU: fmt.Sprintf("SKU-%d", r.IntN(5)), Quantity: 1 + r.IntN(5), UnitPriceCents: int64(r.IntN(10_000))}
	}
	return items
}

func genAddress(r *rand.Rand) order.Address {
	return order.Address{Name: "N", Line1: fmt.Sprint(r.IntN(100), " Main St"), Line2: strings.Repeat("x", r.IntN(2)), City: "C", PostalCode: "1", Country: pick(r, []string{"DE", "FR", "US"})}
}

func genOrder(r *rand.Rand) any {
	o := pick(r, orderIDs)
	switch r.IntN(6) {
	case 0:
		return order.OrderPlaced{OrderID: o, SagaID: uuid.NewString(), CustomerID: "c-1", Items: genItems(r), ShippingAddress: genAddress(r),
			TotalCents: int64(r.IntN(1e6)), PlacedAt: time.Date(2026, 1, 2, 3, 4, 5, r.IntN(1e9), time.UTC)}
	case 1:
		return order.OrderConfirmed{OrderID: o, ShipmentID: pick(r, shipmentIDs)}
	case 2:
		return order.OrderRejected{OrderID: o, Reason: "out of stock"}
	case 3:
		return order.OrderCancelled{OrderID: o, Reason: "customer"}
	case 4:
		return order.OrderShipped{OrderID: o, ShipmentID: pick(r, shipmentIDs)}
	default:
		return order.OrderCommandRejected{OrderID: o, Status: "confirmed", Detail: "no"}
	}
}

func genShipment(r *rand.Rand) any {
	s, o := pick(r, shipmentIDs), pick(r, orderIDs)
	switch r.IntN(5) {
	case 0:
		return shipping.ShipmentScheduled{ShipmentID: s, OrderID: o, Items: genItems(r), Address: genAddress(r)}
	case 1:
		ev := shipping.ShipmentRefused{ShipmentID: s, OrderID: o, Reason: shipping.ReasonDestinationNotServed, Items: genItems(r)}
		if r.IntN(2) == 0 {
			a := genAddress(r)
			ev.Address = &a
		}
		return ev
	case 2:
		return shipping.ShipmentCancelled{ShipmentID: s, OrderID: o, Reason: "order cancelled", Note: strings.Repeat("n", r.IntN(2))}
	case 3:
		return shipping.ShipmentDispatched{ShipmentID: s, OrderID: o}
	default:
		return shipping.ShipmentCommandRejected{ShipmentID: s, OrderID: o, Status: "dispatched", Detail: "no"}
	}
}

// TestSnapshotSchemas keeps on record the fields each snapshot schema
// encodes: a change to a state's fields must come with a new schema
// number in snapshotSchemas (and a new line here), or the snapshots of the
// old fields would be decoded into the new ones.
func TestSnapshotSchemas(t *testing.T) {
	recorded := map[string]string{
		// Stock 2 has the fields of 1; its codec writes the settled ids raw
		// after a JSON head (ADR 0158).
		"inventory.Stock/1": `{SKU string; OnHand int; Reserved int; Reservations map[string]int; settled {packed []uint8; added map[string]bool; }; }`,
		"inventory.Stock/2": `{SKU string; OnHand int; Reserved int; Reservations map[string]int; settled {packed []uint8; added map[string]bool; }; }`,
		// Stock 3's snapshot leaves the settled orders out; a Stock
		// restored from it learns them from the store (ADR 0159).
		"inventory.Stock/3":       `{SKU string; OnHand int; Reserved int; Reservations map[string]int; settled {ids map[string]bool; }; settledUnknownUpTo int64; }`,
		"inventory.Reservation/1": `{OrderID string; Status string; Lines []{SKU string json:"sku"; Quantity int json:"quantity"; }; Rejection *{OrderID string json:"order_id"; Reason string json:"reason"; SKU string json:"sku,omitempty"; Requested int json:"requested"; Available int json:"available"; }; }`,
		"order.Order/1":           `{ID string; SagaID string; CustomerID string; Items []{SKU string json:"sku"; Quantity int json:"quantity"; UnitPriceCents int64 json:"unit_price_cents"; }; ShippingAddress {Name string json:"name"; Line1 string json:"line1"; Line2 string json:"line2,omitempty"; City string json:"city"; PostalCode string json:"postal_code"; Country string json:"country"; }; TotalCents int64; PlacedAt time; Status string; ShipmentID string; Reason string; }`,
		"shipping.Shipment/1":     `{ID string; OrderID string; Items []{SKU string json:"sku"; Quantity int json:"quantity"; UnitPriceCents int64 json:"unit_price_cents"; }; Address {Name string json:"name"; Line1 string json:"line1"; Line2 string json:"line2,omitempty"; City string json:"city"; PostalCode string json:"postal_code"; Country string json:"country"; }; Status string; Reason string; }`,
	}
	for _, s := range snapshotSchemas {
		key := fmt.Sprintf("%s/%d", s.typ, s.schema)
		got := fields(s.typ)
		want, ok := recorded[key]
		if !ok || got != want {
			t.Errorf("%s encodes %q, recorded %q: when a state's fields change, raise its schema in snapshotSchemas and record the new fields", key, got, want)
		}
	}
}

// fields describes the fields of t, recursively, as a snapshot may encode
// them.
func fields(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return "*" + fields(t.Elem())
	case reflect.Slice:
		return "[]" + fields(t.Elem())
	case reflect.Map:
		return "map[" + fields(t.Key()) + "]" + fields(t.Elem())
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			return "time"
		}
		var b strings.Builder
		b.WriteString("{")
		for i := range t.NumField() {
			f := t.Field(i)
			fmt.Fprintf(&b, "%s %s", f.Name, fields(f.Type))
			if f.Tag != "" {
				fmt.Fprintf(&b, " %s", f.Tag)
			}
			b.WriteString("; ")
		}
		b.WriteString("}")
		return b.String()
	}
	return t.Kind().String()
}
