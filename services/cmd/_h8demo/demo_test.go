package h8demo

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/services/internal/bench"
	"github.com/orderflow/orderflow/services/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/services/internal/pgdb"
	"github.com/orderflow/orderflow/services/internal/pgserver"
)

// TestDemo seeds a private cluster and keeps it up until /tmp/h8demo/stop exists.
func TestDemo(t *testing.T) {
	if os.Getenv("H8DEMO") != "1" {
		t.Skip("temporary demo")
	}
	ctx := context.Background()
	srv, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	admin := srv.URL("postgres")
	svcURL, err := pgdb.Provision(ctx, admin, "orders")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, svcURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := bench.SeedOrders(ctx, store, 1_000_000, 32, nil); err != nil {
		t.Fatal(err)
	}
	store.Close()
	var n, placed int64
	pool.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE type = 'OrderPlaced') FROM es_events").Scan(&n, &placed)
	fmt.Printf("seeded %d events (%d orders) in %s\n", n, placed, time.Since(start))
	os.WriteFile("/tmp/h8demo/urls", []byte(admin+"\n"+svcURL+"\n"), 0o600)
	for {
		if _, err := os.Stat("/tmp/h8demo/stop"); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
}
