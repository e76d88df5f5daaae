package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/relay"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pool is a pool on a fresh real PostgreSQL database of the test.
func pool(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	url := testenv.Postgres(t)
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, url
}

func TestHoldingsFoldsTheStockEventsPerOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, url := pool(t)
	if err := postgres.Migrate(ctx, p); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(ctx, p, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	type ev struct {
		typ        string
		sku, order string
		qty        int
	}
	// o1 holds 2 of A; o2 reserved and released; o3 reserved and shipped;
	// o4 leaked 1 of B; a restock and another stream's events count for
	// no order.
	events := []ev{
		{inventory.TypeStockRestocked, "A", "", 10},
		{inventory.TypeStockReserved, "A", "o1", 2},
		{inventory.TypeStockReserved, "A", "o2", 3},
		{inventory.TypeStockReleased, "A", "o2", 3},
		{inventory.TypeStockReserved, "A", "o3", 1},
		{inventory.TypeStockConsumed, "A", "o3", 1},
		{inventory.TypeStockRestocked, "B", "", 5},
		{inventory.TypeStockReserved, "B", "o4", 1},
	}
	versions := map[string]int64{}
	for _, e := range events {
		stream := inventory.Stream(e.sku)
		var data []byte
		if e.order == "" {
			data, _ = json.Marshal(inventory.StockRestocked{SKU: e.sku, Quantity: e.qty})
		} else {
			data, _ = json.Marshal(inventory.StockReserved{SKU: e.sku, OrderID: e.order, Quantity: e.qty})
		}
		env := domain.Envelope{ID: uuid.NewString(), Type: e.typ, SchemaVersion: 1, Data: data}
		if _, err := store.Append(ctx, stream, domain.ExactVersion(versions[stream]), []domain.Envelope{env}); err != nil {
			t.Fatalf("append %s to %s: %v", e.typ, stream, err)
		}
		versions[stream]++
	}
	other := domain.Envelope{ID: uuid.NewString(), Type: inventory.TypeStockReservationAccepted, SchemaVersion: 1,
		Data: json.RawMessage(`{"order_id": "o9", "lines": []}`)}
	if _, err := store.Append(ctx, inventory.ReservationStream("o9"), domain.ExactVersion(0), []domain.Envelope{other}); err != nil {
		t.Fatal(err)
	}

	got, err := Holdings(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int64{"A": {"o1": 2, "o2": 0, "o3": 0}, "B": {"o4": 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("holdings %v, want %v", got, want)
	}
}

func TestRelayParkedCountsTheParkedRows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, url := pool(t)
	if err := relay.Migrate(ctx, p); err != nil {
		t.Fatal(err)
	}
	for want := range int64(3) {
		got, err := RelayParked(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%d parked, want %d", got, want)
		}
		if _, err := p.Exec(ctx, `INSERT INTO relay_parked (name, position, event_id, stream, type, error)
			VALUES ('events', $1, $2, 'stock-A', 'StockReserved', 'poison')`, want+1, uuid.NewString()); err != nil {
			t.Fatal(err)
		}
	}
}
