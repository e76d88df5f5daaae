package commands_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
)

// TestReserveAfterSnapshotRespectsSettledOrders: the Stock's snapshot
// holds no settled orders, yet a handler that loads the stock from it
// answers a reservation exactly as one that reads the stream from its
// first event: an order settled before the snapshot or after it is
// refused, a held one is a no-op, a new one is granted (ADR 0012, 0159).
func TestReserveAfterSnapshotRespectsSettledOrders(t *testing.T) {
	store, _ := pgtest.New(t, postgres.Config{})
	ctx := context.Background()
	const every = 6
	sku := "SKU-LEARN-" + uuid.NewString()[:8]
	consumedBefore, releasedBefore, held, releasedAfter := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	inv := commands.NewInventory(store, commands.Config{SnapshotEvery: every})
	line := []inventory.Line{{SKU: sku, Quantity: 1}}
	reserve := func(h *commands.Inventory, order string) error {
		_, err := h.Reserve(ctx, meta(), order, line)
		return err
	}
	// Versions 1 to 6, then the snapshot at 6; 7 and 8 after it.
	steps := []func() error{
		func() error { _, err := inv.Restock(ctx, meta(), sku, 100); return err },
		func() error { return reserve(inv, consumedBefore) },
		func() error { _, err := inv.Consume(ctx, meta(), consumedBefore, []string{sku}); return err },
		func() error { return reserve(inv, releasedBefore) },
		func() error { _, err := inv.Release(ctx, meta(), releasedBefore, []string{sku}); return err },
		func() error { return reserve(inv, held) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
	waitSnapshot(t, store, inventory.Stream(sku), every)
	if err := reserve(inv, releasedAfter); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Release(ctx, meta(), releasedAfter, []string{sku}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		order   string
		refused bool
	}{
		{"consumed before the snapshot", consumedBefore, true},
		{"released before the snapshot", releasedBefore, true},
		{"released after the snapshot", releasedAfter, true},
		{"held", held, false},
		{"never seen", uuid.NewString(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// From the stream's first event: the reference.
			plainErr := reserve(commands.NewInventory(store, commands.Config{SnapshotEvery: -1}), tc.order)
			stats := new(commands.Stats)
			snapped := commands.NewInventory(store, commands.Config{SnapshotEvery: every, Stats: stats})
			err := reserve(snapped, tc.order)
			if got := stats.Snapshot().SnapshotsLoaded; got != 1 {
				t.Errorf("%d snapshots loaded, want 1", got)
			}
			if (err != nil) != tc.refused || (plainErr != nil) != tc.refused {
				t.Fatalf("reserve: from the snapshot %v, from the first event %v; want refused %v", err, plainErr, tc.refused)
			}
			if tc.refused && (!errors.Is(err, domain.ErrIllegalState) || !errors.Is(plainErr, domain.ErrIllegalState)) {
				t.Errorf("refusals %v and %v, want both %v", err, plainErr, domain.ErrIllegalState)
			}
		})
	}
}

// TestStockSnapshotsNeedTheSettledLookup: a snapshot store whose event
// store cannot answer which orders settled is not used for stocks, which
// load from their first event (a stock from its snapshot could not
// refuse an order settled before it); other states still use it.
func TestStockSnapshotsNeedTheSettledLookup(t *testing.T) {
	pg, _ := pgtest.New(t, postgres.Config{})
	ctx := context.Background()
	mem := commandstest.NewStore()
	stats := new(commands.Stats)
	cfg := commands.Config{SnapshotEvery: 2, Snapshots: pg, Stats: stats}
	sku := "SKU-NOLOOKUP"
	order := uuid.NewString()
	inv := commands.NewInventory(mem, cfg)
	noError(t, func() error { _, err := inv.Restock(ctx, meta(), sku, 5); return err }())
	noError(t, func() error {
		_, err := inv.Reserve(ctx, meta(), order, []inventory.Line{{SKU: sku, Quantity: 1}})
		return err
	}())
	noError(t, func() error { _, err := inv.Release(ctx, meta(), order, []string{sku}); return err }())
	noError(t, func() error { _, err := inv.Restock(ctx, meta(), sku, 5); return err }())
	// Taken at 4: the release at 3 is before it.
	waitSnapshot(t, pg, inventory.Stream(sku), 4)

	fresh := commands.NewInventory(mem, cfg)
	_, err := fresh.Reserve(ctx, meta(), order, []inventory.Line{{SKU: sku, Quantity: 1}})
	wantErr(t, err, domain.ErrIllegalState)
	if got := stats.Snapshot().SnapshotsLoaded; got != 0 {
		t.Errorf("%d stock snapshots loaded without the settled lookup, want 0", got)
	}
}
