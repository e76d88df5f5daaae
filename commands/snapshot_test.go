package commands_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
)

// waitSnapshot polls until stream has a snapshot of its schema at version
// at least want (snapshots are written on their own) and returns its version.
func waitSnapshot(t *testing.T, store *postgres.Store, stream string, want int64) int64 {
	t.Helper()
	schema, ok := commands.SnapshotSchema(stream)
	if !ok {
		t.Fatalf("no snapshot schema for %s", stream)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _, err := store.LoadSnapshot(context.Background(), stream, schema)
		if err != nil {
			t.Fatal(err)
		}
		if v >= want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of %s at version %d, want %d", stream, v, want)
		}
		time.Sleep(10 * time.Millisecond) // polling the condition
	}
}

// TestHandlersTakeAndUseSnapshots runs commands past the snapshot interval
// and then, on handlers that hold nothing in memory, repeats commands from
// before and after the snapshot: both are answered as duplicates (the
// snapshot keeps no command ids), and new commands go on from the right
// state and version.
func TestHandlersTakeAndUseSnapshots(t *testing.T) {
	store, _ := pgtest.New(t, postgres.Config{})
	ctx := context.Background()
	const every = 10
	inv := commands.NewInventory(store, commands.Config{SnapshotEvery: every})
	const sku = "SKU-SNAP"
	var ids []commands.Meta
	for i := range 25 {
		m := meta()
		ids = append(ids, m)
		res, err := inv.Restock(ctx, m, sku, 1)
		if err != nil || res.Version != int64(i+1) {
			t.Fatalf("restock %d: %+v %v", i, res, err)
		}
	}
	waitSnapshot(t, store, inventory.Stream(sku), 20)

	tests := []struct {
		name string
		m    commands.Meta
		dup  bool
		want int64
	}{
		{"covered by the snapshot", ids[3], true, 25},
		{"covered, spelled in capitals", upper(ids[5]), true, 25},
		{"after the snapshot", ids[22], true, 25},
		{"new", meta(), false, 26},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stats := new(commands.Stats)
			fresh := commands.NewInventory(store, commands.Config{SnapshotEvery: every, Stats: stats})
			res, err := fresh.Restock(ctx, tc.m, sku, 1)
			if err != nil || res.Duplicate != tc.dup || res.Version != tc.want {
				t.Fatalf("restock: %+v %v; want duplicate %v at version %d", res, err, tc.dup, tc.want)
			}
			if got := stats.Snapshot().SnapshotsLoaded; got != 1 {
				t.Errorf("%d snapshots loaded, want 1", got)
			}
		})
	}

	// The state from the snapshot is the state: 26 on hand, so a
	// reservation of 26 fits and one more does not.
	fresh := commands.NewInventory(store, commands.Config{SnapshotEvery: every})
	order1, order2 := uuid.NewString(), uuid.NewString()
	if _, err := fresh.Reserve(ctx, meta(), order1, []inventory.Line{{SKU: sku, Quantity: 26}}); err != nil {
		t.Fatalf("reserve all: %v", err)
	}
	fresh = commands.NewInventory(store, commands.Config{SnapshotEvery: every})
	if _, err := fresh.Reserve(ctx, meta(), order2, []inventory.Line{{SKU: sku, Quantity: 1}}); err == nil {
		t.Fatal("reserved one more than on hand")
	}
}

func upper(m commands.Meta) commands.Meta {
	b := []byte(m.CommandID)
	for i, c := range b {
		if 'a' <= c && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	m.CommandID = string(b)
	return m
}

// failingSnapshots is a snapshot store whose every call fails.
type failingSnapshots struct{}

var errSnapshots = errors.New("snapshot store down")

func (failingSnapshots) LoadSnapshot(context.Context, string, int) (int64, []byte, error) {
	return 0, nil, errSnapshots
}
func (failingSnapshots) SaveSnapshot(context.Context, string, int64, int, []byte) error {
	return errSnapshots
}
func (failingSnapshots) StoredEventIDs(context.Context, string, []string, int64) ([]string, error) {
	return nil, errSnapshots
}

// TestFailingSnapshotsFailNoCommand: snapshots that cannot be loaded or
// saved cost speed only; the commands succeed and the failures are
// counted. Turned off, none are taken.
func TestFailingSnapshotsFailNoCommand(t *testing.T) {
	tests := []struct {
		name      string
		cfg       commands.Config
		failures  bool
		snapshots bool
	}{
		{"failing store", commands.Config{SnapshotEvery: 2, Snapshots: failingSnapshots{}}, true, false},
		{"turned off", commands.Config{SnapshotEvery: -1}, false, false},
		{"on", commands.Config{SnapshotEvery: 2}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, pool := pgtest.New(t, postgres.Config{})
			ctx := context.Background()
			stats := new(commands.Stats)
			tc.cfg.Stats = stats
			tc.cfg.Logger = slog.New(slog.DiscardHandler) // the failures are expected
			for i := range 5 {
				// A new handler each time: every command loads the stream.
				inv := commands.NewInventory(store, tc.cfg)
				if _, err := inv.Restock(ctx, meta(), "SKU-F", 1); err != nil {
					t.Fatalf("restock %d: %v", i, err)
				}
			}
			if tc.snapshots {
				waitSnapshot(t, store, inventory.Stream("SKU-F"), 4)
			}
			s := stats.Snapshot()
			if (s.SnapshotFailures > 0) != tc.failures {
				t.Errorf("%d snapshot failures, want some: %v", s.SnapshotFailures, tc.failures)
			}
			var rows int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM es_snapshots").Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if (rows > 0) != tc.snapshots {
				t.Errorf("%d snapshots stored, want some: %v", rows, tc.snapshots)
			}
		})
	}
}
