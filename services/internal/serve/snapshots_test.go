package serve_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestServiceSnapshotsLongStreams: a service on the PostgreSQL store
// snapshots its streams in its database as their commands go past the
// interval, and a second process on the same database, which holds
// nothing in memory, goes on from the snapshot with the right state.
func TestServiceSnapshotsLongStreams(t *testing.T) {
	const every = 3
	snapshotEvery := func(c *serve.Config) { c.Commands.SnapshotEvery = every }
	env := servetest.Start(t, "inventory", snapshotEvery)
	for range 7 {
		if res := env.Post(t, "/api/inventory/SKU-S/restock", `{"quantity":1}`); res.Status != http.StatusAccepted {
			t.Fatalf("restock: %d %s", res.Status, res.Body)
		}
	}
	stream := inventory.Stream("SKU-S")
	schema, _ := commands.SnapshotSchema(stream)
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _, err := env.Store.LoadSnapshot(ctx, stream, schema)
		if err != nil {
			t.Fatal(err)
		}
		if v == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of %s at version %d, want 6", stream, v)
		}
		time.Sleep(20 * time.Millisecond) // polling the condition
	}

	// A second process on the same database, which holds nothing in
	// memory, loads the snapshot at 6 and the event after it: its restock
	// is the eighth event.
	other := servetest.Start(t, "inventory", snapshotEvery, func(c *serve.Config) { c.DatabaseURL = env.Pool.Config().ConnString() })
	res := other.Post(t, "/api/inventory/SKU-S/restock", `{"quantity":1}`)
	if res.Status != http.StatusAccepted {
		t.Fatalf("restock on the second process: %d %s", res.Status, res.Body)
	}
	var got struct {
		SKU     string `json:"sku"`
		Version int64  `json:"version"`
	}
	res.JSON(t, &got)
	if got.Version != 8 {
		t.Fatalf("restock on the second process answered version %d, want 8", got.Version)
	}
}
