package projsource_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/projsource"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestReadAllFiltersAndHeadDoesNot(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	id := uuid.NewString()
	env.Append(t, order.Stream(id), order.OrderConfirmed{OrderID: id})
	env.Append(t, inventory.Stream("SKU-1"), inventory.StockRestocked{SKU: "SKU-1", Quantity: 1})
	src := env.Source(t, order.StreamPrefix)
	evs, err := src.ReadAll(ctx, 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Stream != order.Stream(id) {
		t.Fatalf("ReadAll = %v, %v; want the one order event", evs, err)
	}
	head, err := src.Head(ctx)
	if err != nil || head != 2 {
		t.Errorf("Head = %d, %v; want 2, the whole store's head", head, err)
	}
}

func TestWait(t *testing.T) {
	env := projsourcetest.New(t)
	ctx := context.Background()
	src, err := projsource.New(env.Store, eventstore.Filter{StreamPrefixes: []string{order.StreamPrefix}}, projsource.Config{PollInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	// An append wakes a waiter at once, long before the poll interval.
	go func() {
		time.Sleep(100 * time.Millisecond)
		id := uuid.NewString()
		env.Append(t, order.Stream(id), order.OrderConfirmed{OrderID: id})
	}()
	start := time.Now()
	if err := src.Wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Wait woke %s after the append, want well under the 2s poll", d)
	}

	// Events already beyond after: no wait at all.
	start = time.Now()
	if err := src.Wait(ctx, 0); err != nil || time.Since(start) > 500*time.Millisecond {
		t.Errorf("Wait with an event pending: %v after %s", err, time.Since(start))
	}

	// Only other streams' events: Wait returns after the poll interval.
	env.Append(t, inventory.Stream("SKU-1"), inventory.StockRestocked{SKU: "SKU-1", Quantity: 1})
	start = time.Now()
	if err := src.Wait(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 4*time.Second {
		t.Errorf("idle Wait returned after %s, want about the 2s poll interval", d)
	}

	// Cancellation ends a Wait with the context's error.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := src.Wait(cctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled Wait: %v, want the context's error", err)
	}
}

func TestConfigValidate(t *testing.T) {
	env := projsourcetest.New(t)
	if _, err := projsource.New(env.Store, eventstore.Filter{}, projsource.Config{PollInterval: -time.Second}); err == nil {
		t.Error("negative poll interval accepted")
	}
	if _, err := projsource.New(nil, eventstore.Filter{}, projsource.Config{}); err == nil {
		t.Error("nil store accepted")
	}
}
