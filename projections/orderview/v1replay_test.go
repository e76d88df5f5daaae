package orderview_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// storedEvent is one line of testdata/v1_store.jsonl: an event as the
// store held it when the code before OrderPlaced version 2 wrote it.
type storedEvent struct {
	Stream        string          `json:"stream"`
	Version       int64           `json:"version"`
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Data          json.RawMessage `json:"data"`
	Metadata      domain.Metadata `json:"metadata"`
}

// v1ReadModel is testdata/v1_orders.json: what the orders read model of
// that code answered for the store, every order and the totals per status.
type v1ReadModel struct {
	Totals map[string]statusTotal `json:"totals"`
	Orders []orderview.View       `json:"orders"`
}

type statusTotal struct {
	Orders     int   `json:"orders"`
	TotalCents int64 `json:"total_cents"`
}

// The fixture was made by running the projections, event store and
// domain of the commit before OrderPlaced version 2 (3cad261, a git
// archive of it, with a test that appended projsourcetest.History plus four orders with
// a second address line placed through the version 1 aggregate, read the
// store back in its global order, rebuilt the version 1 orders read model
// and listed it). It must not be regenerated with newer code: it stands
// for stores written before the change.
func loadV1Store(t *testing.T) []storedEvent {
	t.Helper()
	b, err := os.ReadFile("testdata/v1_store.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var evs []storedEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e storedEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

func loadV1ReadModel(t *testing.T) v1ReadModel {
	t.Helper()
	b, err := os.ReadFile("testdata/v1_orders.json")
	if err != nil {
		t.Fatal(err)
	}
	var m v1ReadModel
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReplayV1Store: a store written by the code before OrderPlaced
// version 2, appended through the real PostgreSQL event store, rebuilds
// into the version 2 orders read model with the totals and the orders the
// version 1 read model had, each in dollars, and the stored events are
// still the version 1 bytes afterwards.
func TestReplayV1Store(t *testing.T) {
	ctx := context.Background()
	stored := loadV1Store(t)
	v1 := loadV1ReadModel(t)
	env := projsourcetest.New(t)
	placedV1 := 0
	for _, e := range stored {
		if e.Type == order.TypeOrderPlaced && e.SchemaVersion == 1 {
			placedV1++
		}
		env.AppendEnvelopes(t, e.Stream, domain.Envelope{ID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: e.Metadata})
	}
	if placedV1 != len(v1.Orders) || placedV1 == 0 {
		t.Fatalf("fixture holds %d v1 OrderPlaced for %d orders", placedV1, len(v1.Orders))
	}

	p := orderview.New()
	src := env.Source(t, orderview.StreamPrefixes...)
	if err := projections.Install(ctx, env.Pool, p); err != nil {
		t.Fatal(err)
	}
	if err := projections.Rebuild(ctx, env.Pool, src, p, nil); err != nil {
		t.Fatal(err)
	}
	if n := parkedCount(t, env); n != 0 {
		t.Fatalf("%d events parked replaying the v1 store", n)
	}
	if got := totals(t, env); !reflect.DeepEqual(got, v1.Totals) {
		t.Errorf("totals per status after the replay:\n got %v\nwant %v (the v1 read model's)", got, v1.Totals)
	}
	for _, want := range v1.Orders {
		got, err := orderview.Get(ctx, env.Pool, want.OrderID)
		if err != nil {
			t.Errorf("order %s: %v", want.OrderID, err)
			continue
		}
		if got.Currency != order.DefaultCurrency {
			t.Errorf("order %s: currency %q, want the upcaster's %q", want.OrderID, got.Currency, order.DefaultCurrency)
		}
		// updated_at is when the store recorded the last event, which
		// the fixture's append here does anew; everything else is the
		// v1 read model's answer.
		got.UpdatedAt, want.UpdatedAt = time.Time{}, time.Time{}
		got.Currency = ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("order %s after the replay:\n got %+v\nwant %+v", want.OrderID, got, want)
		}
	}

	// The store still holds every event as written: upcasting happens
	// on read only.
	rows, err := env.Pool.Query(ctx, "SELECT event_id::text, schema_version, data FROM es_events")
	if err == nil {
		defer rows.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	byID := make(map[string]storedEvent, len(stored))
	for _, e := range stored {
		byID[e.ID] = e
	}
	n := 0
	for rows.Next() {
		var id string
		var version int
		var data []byte
		if err := rows.Scan(&id, &version, &data); err != nil {
			t.Fatal(err)
		}
		n++
		if e := byID[id]; version != e.SchemaVersion || !bytes.Equal(data, e.Data) {
			t.Errorf("event %s is stored as v%d %s, written as v%d %s", id, version, data, e.SchemaVersion, e.Data)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(stored) {
		t.Errorf("store holds %d events, fixture %d", n, len(stored))
	}
}

// TestReplayMixedVersions: orders placed by the new code (OrderPlaced v2,
// with a currency) next to the v1 store fold into the read model live,
// and a rebuild from the store gives the same rows as the live projector.
func TestReplayMixedVersions(t *testing.T) {
	ctx := context.Background()
	env := projsourcetest.New(t)
	for _, e := range loadV1Store(t) {
		env.AppendEnvelopes(t, e.Stream, domain.Envelope{ID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: e.Metadata})
	}
	eur := uuid.NewString()
	placed := order.OrderPlaced{OrderID: eur, SagaID: uuid.NewString(), CustomerID: "c-eu", Currency: "EUR",
		Items:           []order.Item{{SKU: "SKU-001", Quantity: 3, UnitPriceCents: 1000}},
		ShippingAddress: order.Address{Name: "Ada L.", Line1: "1 Hauptstr.", Line2: "3. OG", City: "Berlin", PostalCode: "10115", Country: "DE"},
		TotalCents:      3000, PlacedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if ev := env.Envelope(t, placed); ev.SchemaVersion != order.PlacedSchemaVersion {
		t.Fatalf("new OrderPlaced written at v%d, want v%d", ev.SchemaVersion, order.PlacedSchemaVersion)
	}
	env.Append(t, order.Stream(eur), placed)
	env.Append(t, order.Stream(eur), order.OrderConfirmed{OrderID: eur, ShipmentID: uuid.NewString()})

	p := orderview.New()
	src := env.Source(t, orderview.StreamPrefixes...)
	pr, err := projections.NewProjector(env.Pool, src, p, projections.Config{BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pr.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && runCtx.Err() == nil {
			t.Errorf("projector: %v", err)
		}
	})
	waitCaughtUp(t, env, orderview.Name)

	v, err := orderview.Get(ctx, env.Pool, eur)
	if err != nil {
		t.Fatal(err)
	}
	if v.Currency != "EUR" || v.ShippingAddress != placed.ShippingAddress || v.Status != string(order.StatusConfirmed) || v.TotalCents != 3000 {
		t.Errorf("v2 order reads %+v", v)
	}
	want := loadV1ReadModel(t).Totals
	c := want["confirmed"]
	c.Orders++
	c.TotalCents += 3000
	want["confirmed"] = c
	live := totals(t, env)
	if !reflect.DeepEqual(live, want) {
		t.Errorf("live totals %v, want %v", live, want)
	}
	liveRows := rowsJSON(t, env)
	if err := projections.Rebuild(ctx, env.Pool, src, p, nil); err != nil {
		t.Fatal(err)
	}
	if got := rowsJSON(t, env); !reflect.DeepEqual(got, liveRows) {
		t.Errorf("rebuilt rows differ from the live ones (%d vs %d rows)", len(got), len(liveRows))
	}
	if n := parkedCount(t, env); n != 0 {
		t.Errorf("%d events parked", n)
	}
}

func totals(t *testing.T, env *projsourcetest.Env) map[string]statusTotal {
	t.Helper()
	rows, err := env.Pool.Query(context.Background(), "SELECT status, count(*), sum(total_cents) FROM "+projections.View(orderview.Name)+" GROUP BY status")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]statusTotal{}
	for rows.Next() {
		var s string
		var st statusTotal
		if err := rows.Scan(&s, &st.Orders, &st.TotalCents); err != nil {
			t.Fatal(err)
		}
		out[s] = st
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func rowsJSON(t *testing.T, env *projsourcetest.Env) []string {
	t.Helper()
	rows, err := env.Pool.Query(context.Background(), "SELECT to_jsonb(v)::text FROM "+projections.View(orderview.Name)+" v ORDER BY 1")
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

func parkedCount(t *testing.T, env *projsourcetest.Env) int {
	t.Helper()
	var n int
	if err := env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM projection_parked").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitCaughtUp polls until the projection's checkpoint reaches the
// store's head.
func waitCaughtUp(t *testing.T, env *projsourcetest.Env, name string) {
	t.Helper()
	head := env.Head(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var checkpoint int64
		err := env.Pool.QueryRow(context.Background(),
			"SELECT coalesce(max(checkpoint), 0) FROM projection_versions WHERE name = $1", name).Scan(&checkpoint)
		if err == nil && uint64(checkpoint) >= head {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection %s did not reach %d: checkpoint %d, %v", name, head, checkpoint, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
