package commands_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

// TestContention runs the contention suite on the in-memory store; the
// services' tests run it on PostgreSQL.
func TestContention(t *testing.T) {
	commandstest.RunContention(t, func(*testing.T) commands.EventStore { return newStore() })
}

// readLog records where each ReadStream of each stream started.
type readLog struct {
	commands.EventStore
	mu    sync.Mutex
	reads map[string][]int64
}

func (s *readLog) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	s.mu.Lock()
	if s.reads == nil {
		s.reads = make(map[string][]int64)
	}
	s.reads[stream] = append(s.reads[stream], from)
	s.mu.Unlock()
	return s.EventStore.ReadStream(ctx, stream, from, max)
}

func (s *readLog) of(stream string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reads[stream])
}

// TestCachedStateIsNotReadAgain: within one process the state of a stream
// is read once; later commands append at the version they remember, and
// duplicates are recognised without reading.
func TestCachedStateIsNotReadAgain(t *testing.T) {
	ctx := context.Background()
	rl := &readLog{EventStore: newStore()}
	h := commands.NewInventory(rl, commands.Config{})
	m := meta()
	for _, mm := range []commands.Meta{meta(), m, meta(), m} {
		_, err := h.Restock(ctx, mm, "A", 1)
		noError(t, err)
	}
	if got := rl.of("stock-A"); !slices.Equal(got, []int64{1}) {
		t.Errorf("reads started at %v, want [1]", got)
	}
	wantLevels(t, rl, "A", 3, 0)
	if snap := h.Stats(); snap.CachedStreams != 1 || snap.Appends != 3 {
		t.Errorf("stats %+v, want 1 cached stream, 3 appends", snap)
	}
}

// TestCacheEvictsIdleStreams: beyond its bounds the cache forgets the least
// recently used idle streams, which are then read again from the start.
func TestCacheEvictsIdleStreams(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  commands.Config
		// skus restocked in turn, and where the reads of stock-A start.
		skus   []string
		wantA  []int64
		cached int64
	}{
		{"within bounds", commands.Config{}, []string{"A", "B", "A"}, []int64{1}, 2},
		{"one stream", commands.Config{CacheStreams: 1}, []string{"A", "B", "A"}, []int64{1, 1}, 1},
		{"one stream, used again first", commands.Config{CacheStreams: 1}, []string{"A", "A", "B"}, []int64{1}, 1},
		// A's third command makes it remember 3 ids, too many to keep;
		// at the end A's 4 ids push out B too.
		{"ids", commands.Config{CacheIDs: 2}, []string{"A", "A", "A", "B", "A"}, []int64{1, 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl := &readLog{EventStore: newStore()}
			st := new(commands.Stats)
			tt.cfg.Stats = st
			h := commands.NewInventory(rl, tt.cfg)
			for _, sku := range tt.skus {
				_, err := h.Restock(ctx, meta(), sku, 1)
				noError(t, err)
			}
			if got := rl.of("stock-A"); !slices.Equal(got, tt.wantA) {
				t.Errorf("reads of stock-A started at %v, want %v", got, tt.wantA)
			}
			if n := st.Snapshot().CachedStreams; n != tt.cached {
				t.Errorf("%d streams cached, want %d", n, tt.cached)
			}
		})
	}
}

// TestCallerGivingUpWhileQueued: a caller whose context ends while its
// command waits behind an append in flight gets the context's error at
// once, and its command is never decided.
func TestCallerGivingUpWhileQueued(t *testing.T) {
	s := newStore()
	gate := &holdStore{EventStore: s, entered: make(chan struct{}), release: make(chan struct{})}
	h := commands.NewInventory(gate, commands.Config{})
	first := make(chan error, 1)
	go func() {
		_, err := h.Restock(context.Background(), meta(), "A", 1)
		first <- err
	}()
	<-gate.entered
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		_, err := h.Restock(ctx, meta(), "A", 100)
		second <- err
	}()
	waitQueued(t, h, 2)
	cancel()
	wantErr(t, <-second, context.Canceled)
	close(gate.release)
	noError(t, <-first)
	// A third command runs after the writer has dropped the second.
	_, err := h.Restock(context.Background(), meta(), "A", 10)
	noError(t, err)
	wantLevels(t, s, "A", 11, 0)
	if snap := h.Stats(); snap.Queued != 0 || snap.AppendedCommands != 2 {
		t.Errorf("stats %+v, want nothing queued, 2 commands appended", snap)
	}
}

// holdStore holds the first append until release is closed.
type holdStore struct {
	commands.EventStore
	entered, release chan struct{}
	once             sync.Once
}

func (s *holdStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-s.release
	}
	return s.EventStore.Append(ctx, stream, expected, evs)
}

// waitQueued polls until n commands are queued on h's streams.
func waitQueued(t *testing.T, h *commands.Inventory, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for h.Stats().Queued != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d commands queued, want %d", h.Stats().Queued, n)
		}
		<-tick.C
	}
}

// panickingStore panics at its first append.
type panickingStore struct {
	commands.EventStore
	once sync.Once
}

func (s *panickingStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	s.once.Do(func() { panic("store bug") })
	return s.EventStore.Append(ctx, stream, expected, evs)
}

// TestPanicReachesTheCaller: a panic in a stream's writer is raised again
// in the goroutine of the caller (where the HTTP layer recovers it), and
// the writer goes on with the next command on state read afresh.
func TestPanicReachesTheCaller(t *testing.T) {
	ps := &panickingStore{EventStore: newStore()}
	h := commands.NewInventory(ps, commands.Config{})
	func() {
		defer func() {
			p := recover()
			if p == nil || !strings.Contains(fmt.Sprint(p), "store bug") {
				t.Errorf("recovered %v, want the store's panic", p)
			}
		}()
		_, _ = h.Restock(context.Background(), meta(), "A", 1)
		t.Error("Restock returned")
	}()
	restock(t, h, "A", 2)
	wantLevels(t, ps, "A", 2, 0)
	if q := h.Stats().Queued; q != 0 {
		t.Errorf("%d commands queued", q)
	}
}

// TestStoreFailureAnswersTheBatch: an append that fails for another reason
// than a conflict fails the commands that were in it, and the next command
// decides on the state before it.
func TestStoreFailureAnswersTheBatch(t *testing.T) {
	ctx := context.Background()
	fs := &failingStore{EventStore: newStore()}
	h := commands.NewInventory(fs, commands.Config{})
	restock(t, h, "A", 5)
	fs.limit("stock-A", 0)
	_, err := h.Restock(ctx, meta(), "A", 1)
	wantErr(t, err, errDown)
	fs.limit()
	res, err := h.Restock(ctx, meta(), "A", 2)
	noError(t, err)
	if res.Version != 2 {
		t.Errorf("version %d, want 2", res.Version)
	}
	wantLevels(t, fs, "A", 7, 0)
}

// TestClonesShareNoMemory: the command writer applies a batch's events to
// a clone of the cached state and keeps the original until they are
// stored, so a clone must be equal and share no map or slice with it.
func TestClonesShareNoMemory(t *testing.T) {
	orderA, orderB := uuid.NewString(), uuid.NewString()
	stock := new(inventory.Stock)
	for _, e := range []any{
		inventory.StockRestocked{SKU: "A", Quantity: 10},
		inventory.StockReserved{SKU: "A", OrderID: orderA, Quantity: 2},
		inventory.StockReserved{SKU: "A", OrderID: orderB, Quantity: 3},
		inventory.StockReleased{SKU: "A", OrderID: orderA, Quantity: 2},
	} {
		stock.Apply(e)
	}
	ord := new(order.Order)
	ord.Apply(order.OrderPlaced{OrderID: orderA, Items: items(), ShippingAddress: address("US"), PlacedAt: now})
	ship := new(shipping.Shipment)
	ship.Apply(shipping.ShipmentScheduled{ShipmentID: orderB, OrderID: orderA, Items: items(), Address: address("US")})
	res := new(inventory.Reservation)
	res.Apply(inventory.StockReservationAccepted{OrderID: orderA, Lines: []inventory.Line{{SKU: "A", Quantity: 2}}})
	res.Apply(inventory.StockReservationRejected{OrderID: orderA, Reason: inventory.ReasonInsufficientStock, SKU: "B", Requested: 1})

	tests := []struct {
		name        string
		orig, clone any
	}{
		{"stock", stock, stock.Clone()},
		{"order", ord, ord.Clone()},
		{"shipment", ship, ship.Clone()},
		{"reservation", res, res.Clone()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.orig, tt.clone) {
				t.Fatalf("clone differs:\n%#v\n%#v", tt.orig, tt.clone)
			}
			if paths := sharedMemory("", reflect.ValueOf(tt.orig), reflect.ValueOf(tt.clone)); len(paths) > 0 {
				t.Errorf("clone shares %v with the original", paths)
			}
		})
	}
	// Applying to a clone leaves the original as it was.
	c := stock.Clone()
	c.Apply(inventory.StockConsumed{SKU: "A", OrderID: orderB, Quantity: 3})
	if stock.Reserved != 3 || len(stock.Reservations) != 1 {
		t.Errorf("original changed: %+v", stock)
	}
	if _, err := stock.Reserve(orderB, 1); err != nil {
		t.Errorf("original: %v", err)
	}
	if _, err := c.Reserve(orderB, 1); !errors.Is(err, domain.ErrIllegalState) {
		t.Errorf("clone after consume: %v, want ErrIllegalState", err)
	}
}

// sharedMemory returns the paths of the maps, slices and pointers that a
// and b (of the same type) share. Times are values whose location pointer
// may be shared.
func sharedMemory(path string, a, b reflect.Value) []string {
	if a.Type() == reflect.TypeFor[time.Time]() {
		return nil
	}
	var out []string
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return nil
		}
		if path != "" && a.Pointer() == b.Pointer() {
			return []string{path}
		}
		return sharedMemory(path, a.Elem(), b.Elem())
	case reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
	case reflect.Slice:
		if a.Cap() > 0 && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		for i := range min(a.Len(), b.Len()) {
			out = append(out, sharedMemory(path+"[]", a.Index(i), b.Index(i))...)
		}
	case reflect.Struct:
		for i := range a.NumField() {
			out = append(out, sharedMemory(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))...)
		}
	}
	return out
}
