package commands_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
)

func stock(t testing.TB, s commands.EventStore, sku string) *inventory.Stock {
	t.Helper()
	return state[inventory.Stock](t, s, inventory.Stream(sku))
}

func restock(t testing.TB, h *commands.Inventory, sku string, q int) {
	t.Helper()
	_, err := h.Restock(context.Background(), meta(), sku, q)
	noError(t, err)
}

func wantLevels(t testing.TB, s commands.EventStore, sku string, onHand, reserved int) {
	t.Helper()
	st := stock(t, s, sku)
	if st.OnHand != onHand || st.Reserved != reserved {
		t.Errorf("%s: on hand %d reserved %d, want %d %d", sku, st.OnHand, st.Reserved, onHand, reserved)
	}
}

func TestRestock(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewInventory(s, commands.Config{})
	res, err := h.Restock(ctx, meta(), "SKU-1", 50)
	noError(t, err)
	if want := (commands.Result{Stream: "stock-SKU-1", Version: 1}); res != want {
		t.Errorf("result = %+v, want %+v", res, want)
	}
	m := meta()
	res, err = h.Restock(ctx, m, "SKU-1", 7)
	noError(t, err)
	if res.Version != 2 {
		t.Errorf("second restock version = %d, want 2", res.Version)
	}
	again, err := h.Restock(ctx, m, "SKU-1", 7)
	noError(t, err)
	if !again.Duplicate || again.Version != 2 {
		t.Errorf("repeated restock = %+v, want duplicate at version 2", again)
	}
	wantLevels(t, s, "SKU-1", 57, 0)

	tests := []struct {
		name   string
		sku    string
		q      int
		fields []string
	}{
		{"zero", "SKU-1", 0, []string{"quantity"}},
		{"too many", "SKU-1", 1_000_001, []string{"quantity"}},
		{"bad sku and quantity", "SKU 1", -1, []string{"sku", "quantity"}},
		{"empty sku", "", 1, []string{"sku"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Restock(ctx, meta(), tt.sku, tt.q)
			wantFields(t, err, tt.fields...)
		})
	}
	if n := len(s.All()); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
}

func TestReserve(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewInventory(s, commands.Config{})
	restock(t, h, "B", 5)
	restock(t, h, "A", 5)
	orderID := uuid.NewString()
	m := meta()
	results, err := h.Reserve(ctx, m, orderID, []inventory.Line{{SKU: "B", Quantity: 2}, {SKU: "A", Quantity: 5}})
	noError(t, err)
	want := []commands.Result{{Stream: "stock-A", Version: 2}, {Stream: "stock-B", Version: 2}}
	if len(results) != 2 || results[0] != want[0] || results[1] != want[1] {
		t.Fatalf("results = %+v, want %+v (sorted by sku)", results, want)
	}
	wantLevels(t, s, "A", 5, 5)
	wantLevels(t, s, "B", 5, 2)

	again, err := h.Reserve(ctx, m, orderID, []inventory.Line{{SKU: "B", Quantity: 2}, {SKU: "A", Quantity: 5}})
	noError(t, err)
	if len(again) != 2 || !again[0].Duplicate || !again[1].Duplicate || again[0].Version != 2 {
		t.Errorf("repeat = %+v, want duplicates", again)
	}
	// Another command for an order that already holds its reservations
	// changes nothing.
	other, err := h.Reserve(ctx, meta(), orderID, []inventory.Line{{SKU: "A", Quantity: 5}})
	noError(t, err)
	if other[0].Duplicate || other[0].Version != 2 {
		t.Errorf("second reservation = %+v, want a no-op at version 2", other)
	}
	wantLevels(t, s, "A", 5, 5)
}

func TestReserveValidation(t *testing.T) {
	s := newStore()
	h := commands.NewInventory(s, commands.Config{})
	restock(t, h, "A", 5)
	tests := []struct {
		name    string
		orderID string
		lines   []inventory.Line
		fields  []string
	}{
		{"no lines", uuid.NewString(), nil, []string{"lines"}},
		{"bad order id", "o-1", []inventory.Line{{SKU: "A", Quantity: 1}}, []string{"order_id"}},
		{"every line checked", uuid.NewString(), []inventory.Line{{SKU: "A", Quantity: 1}, {SKU: "A", Quantity: 0}, {SKU: "", Quantity: 1}, {SKU: "x y", Quantity: 1_000_001}},
			[]string{"lines[1].sku", "lines[1].quantity", "lines[2].sku", "lines[3].sku", "lines[3].quantity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Reserve(context.Background(), meta(), tt.orderID, tt.lines)
			wantFields(t, err, tt.fields...)
		})
	}
	wantLevels(t, s, "A", 5, 0)
}

func TestReserveIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		lines    []inventory.Line
		wantSKU  string
		reserved map[string]int
	}{
		{"last sku short", []inventory.Line{{SKU: "C", Quantity: 4}, {SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 1}}, "C", nil},
		{"middle sku never restocked", []inventory.Line{{SKU: "A", Quantity: 1}, {SKU: "AB", Quantity: 1}, {SKU: "C", Quantity: 1}}, "AB", nil},
		{"first sku short", []inventory.Line{{SKU: "A", Quantity: 6}, {SKU: "B", Quantity: 1}}, "A", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			h := commands.NewInventory(s, commands.Config{})
			restock(t, h, "A", 5)
			restock(t, h, "B", 5)
			restock(t, h, "C", 3)
			_, err := h.Reserve(ctx, meta(), uuid.NewString(), tt.lines)
			wantErr(t, err, domain.ErrInsufficientStock)
			if errors.Is(err, domain.ErrNotFound) {
				t.Errorf("err %v matches ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), "reserve "+tt.wantSKU+" ") {
				t.Errorf("error %q does not name sku %s", err, tt.wantSKU)
			}
			wantLevels(t, s, "A", 5, 0)
			wantLevels(t, s, "B", 5, 0)
			wantLevels(t, s, "C", 3, 0)
		})
	}
}

func TestReserveRepeatedAfterRollbackFailsAgain(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewInventory(s, commands.Config{})
	restock(t, h, "A", 5)
	orderID, m := uuid.NewString(), meta()
	lines := []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}
	_, err := h.Reserve(ctx, m, orderID, lines)
	wantErr(t, err, domain.ErrInsufficientStock)

	// B arrives; the repeated command must still answer with its first
	// outcome rather than reserve B alone.
	restock(t, h, "B", 5)
	_, err = h.Reserve(ctx, m, orderID, lines)
	wantErr(t, err, domain.ErrInsufficientStock)
	wantLevels(t, s, "A", 5, 0)
	wantLevels(t, s, "B", 5, 0)
}

// TestReserveAfterACrash: the process dies after reserving A and before
// reserving B or rolling back. The saga either repeats the command, which
// completes it, or compensates by releasing the order's skus.
func TestReserveAfterACrash(t *testing.T) {
	ctx := context.Background()
	lines := []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}
	crashed := func(t *testing.T) (*commands.Inventory, *failingStore, string, commands.Meta) {
		t.Helper()
		fs := &failingStore{EventStore: newStore()}
		h := commands.NewInventory(fs, commands.Config{})
		restock(t, h, "A", 5)
		restock(t, h, "B", 5)
		// A takes the reservation, then nothing more reaches the store:
		// the state a crash between A and B leaves behind.
		fs.limit("stock-A", 1, "stock-B", 0)
		orderID, m := uuid.NewString(), meta()
		_, err := h.Reserve(ctx, m, orderID, lines)
		wantErr(t, err, errDown)
		wantLevels(t, fs, "A", 5, 2)
		wantLevels(t, fs, "B", 5, 0)
		fs.limit()
		return h, fs, orderID, m
	}
	t.Run("repeating the command completes it", func(t *testing.T) {
		h, fs, orderID, m := crashed(t)
		results, err := h.Reserve(ctx, m, orderID, lines)
		noError(t, err)
		if !results[0].Duplicate || results[1].Duplicate {
			t.Errorf("results = %+v, want A duplicate and B new", results)
		}
		wantLevels(t, fs, "A", 5, 2)
		wantLevels(t, fs, "B", 5, 1)
	})
	t.Run("compensation by order id releases it", func(t *testing.T) {
		h, fs, orderID, _ := crashed(t)
		_, err := h.Release(ctx, meta(), orderID, []string{"A", "B"})
		noError(t, err)
		wantLevels(t, fs, "A", 5, 0)
		wantLevels(t, fs, "B", 5, 0)
	})
}

func TestReserveRollsBackOnStoreFailure(t *testing.T) {
	ctx := context.Background()
	fs := &failingStore{EventStore: newStore()}
	h := commands.NewInventory(fs, commands.Config{})
	restock(t, h, "A", 5)
	restock(t, h, "B", 5)
	lines := []inventory.Line{{SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 1}}

	fs.limit("stock-B", 0)
	_, err := h.Reserve(ctx, meta(), uuid.NewString(), lines)
	wantErr(t, err, errDown)
	wantLevels(t, fs, "A", 5, 0)

	fs.limit("stock-A", 1, "stock-B", 0)
	_, err = h.Reserve(ctx, meta(), uuid.NewString(), lines)
	if !errors.Is(err, errDown) || !strings.Contains(err.Error(), "roll back reservation of A") {
		t.Errorf("err = %v, want it to report the failed rollback of A", err)
	}
}

// TestReserveStockWhoseRollbackFailedIsNotARefusal: a reservation
// refused for a short sku whose rollback then fails still holds stock, so
// its error must not read as a refusal (a command consumer acknowledges
// those and never runs them again); run again, the command gives the
// stock back and answers. Found by the chaos run: a hot sku's rollback
// spent its conflict budget and the order kept its reservation.
func TestReserveStockWhoseRollbackFailedIsNotARefusal(t *testing.T) {
	ctx := context.Background()
	fs := &failingStore{EventStore: newStore()}
	h := commands.NewInventory(fs, commands.Config{})
	restock(t, h, "A", 5)
	restock(t, h, "S", 5)
	orderID := uuid.NewString()
	c := commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "S", Quantity: 6}}}
	m := meta()

	fs.limit("stock-A", 1) // the reservation of A, not its release
	_, err := h.ReserveStock(ctx, m, c)
	if !errors.Is(err, errDown) || errors.Is(err, domain.ErrInsufficientStock) || errors.Is(err, domain.ErrIllegalState) {
		t.Fatalf("err = %v, want the failed rollback's error and no refusal in its chain", err)
	}
	wantLevels(t, fs, "A", 5, 2)

	fs.limit()
	o, err := h.ReserveStock(ctx, m, c)
	noError(t, err)
	if o.Reply != inventory.TypeStockReservationRejected || !o.Rejected {
		t.Errorf("outcome %+v, want the reservation rejected", o)
	}
	wantLevels(t, fs, "A", 5, 0)
}

// TestConcurrentReservationsNeverOversell: 20 orders race for the last 5
// units, from one process and from several; exactly 5 win.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	ctx := context.Background()
	const orders, units = 20, 5
	for _, processes := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d processes", processes), func(t *testing.T) {
			s := newStore()
			restock(t, commands.NewInventory(s, commands.Config{}), "HOT", units)
			hs := make([]*commands.Inventory, processes)
			for i := range hs {
				hs[i] = commands.NewInventory(s, commands.Config{})
			}
			var wg sync.WaitGroup
			errs := make([]error, orders)
			start := make(chan struct{})
			for i := range orders {
				wg.Go(func() {
					<-start
					_, errs[i] = hs[i%processes].Reserve(ctx, meta(), uuid.NewString(), []inventory.Line{{SKU: "HOT", Quantity: 1}})
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, domain.ErrInsufficientStock):
					t.Errorf("unexpected error: %v", err)
				}
			}
			if won != units {
				t.Errorf("%d reservations succeeded, want %d", won, units)
			}
			st := stock(t, s, "HOT")
			if st.Reserved != units || st.Available() != 0 || len(st.Reservations) != units {
				t.Errorf("stock: reserved %d available %d reservations %d", st.Reserved, st.Available(), len(st.Reservations))
			}
		})
	}
}

// TestConcurrentMultiSKUReservationsLeaveNoPartialHolds: orders reserve A
// and B together while B is scarce; afterwards every order holds both or
// neither.
func TestConcurrentMultiSKUReservationsLeaveNoPartialHolds(t *testing.T) {
	ctx := context.Background()
	const orders = 10
	s := newStore()
	h := commands.NewInventory(s, commands.Config{})
	restock(t, h, "A", 10)
	restock(t, h, "B", 3)
	var wg sync.WaitGroup
	ids := make([]string, orders)
	errs := make([]error, orders)
	for i := range orders {
		ids[i] = uuid.NewString()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.Reserve(ctx, meta(), ids[i], []inventory.Line{{SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 1}})
		}()
	}
	wg.Wait()
	a, b := stock(t, s, "A"), stock(t, s, "B")
	won := 0
	for i, id := range ids {
		_, inA := a.Reservations[id]
		_, inB := b.Reservations[id]
		if inA != inB {
			t.Errorf("order %d holds A=%v B=%v", i, inA, inB)
		}
		if errs[i] == nil {
			won++
			if !inA {
				t.Errorf("order %d succeeded without holding stock", i)
			}
		} else if !errors.Is(errs[i], domain.ErrInsufficientStock) {
			t.Errorf("order %d: %v", i, errs[i])
		}
	}
	if won != 3 || a.Reserved != 3 || b.Reserved != 3 {
		t.Errorf("won %d, A reserved %d, B reserved %d, want 3 each", won, a.Reserved, b.Reserved)
	}
}

func TestReleaseAndConsume(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewInventory(s, commands.Config{})
	restock(t, h, "A", 5)
	restock(t, h, "B", 5)
	kept, released := uuid.NewString(), uuid.NewString()
	for _, id := range []string{kept, released} {
		_, err := h.Reserve(ctx, meta(), id, []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}})
		noError(t, err)
	}
	wantLevels(t, s, "A", 5, 4)

	m := meta()
	results, err := h.Release(ctx, m, released, []string{"B", "A", "NEVER"})
	noError(t, err)
	if len(results) != 3 || results[0].Stream != "stock-A" || results[0].Version != 4 || results[2] != (commands.Result{Stream: "stock-NEVER"}) {
		t.Errorf("release results = %+v", results)
	}
	wantLevels(t, s, "A", 5, 2)
	wantLevels(t, s, "B", 5, 1)
	again, err := h.Release(ctx, m, released, []string{"B", "A", "NEVER"})
	noError(t, err)
	if !again[0].Duplicate || again[2].Duplicate {
		t.Errorf("repeated release = %+v, want A and B duplicates, NEVER a plain no-op", again)
	}
	// A new release command finds nothing left to release.
	_, err = h.Release(ctx, meta(), released, []string{"A"})
	noError(t, err)
	wantLevels(t, s, "A", 5, 2)

	_, err = h.Consume(ctx, meta(), kept, []string{"A", "B"})
	noError(t, err)
	wantLevels(t, s, "A", 3, 0)
	wantLevels(t, s, "B", 4, 0)
	_, err = h.Consume(ctx, meta(), kept, []string{"A", "B"})
	noError(t, err)
	wantLevels(t, s, "A", 3, 0)

	// A settled order cannot reserve again.
	_, err = h.Reserve(ctx, meta(), kept, []inventory.Line{{SKU: "A", Quantity: 1}})
	wantErr(t, err, domain.ErrIllegalState)

	tests := []struct {
		name    string
		orderID string
		skus    []string
		fields  []string
	}{
		{"no skus", kept, nil, []string{"skus"}},
		{"bad order and skus", "x", []string{"A", "A", "b c"}, []string{"order_id", "skus[1]", "skus[2]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Release(ctx, meta(), tt.orderID, tt.skus)
			wantFields(t, err, tt.fields...)
			_, err = h.Consume(ctx, meta(), tt.orderID, tt.skus)
			wantFields(t, err, tt.fields...)
		})
	}
}

// TestRetryBudgetExhausted: against a store where every append conflicts,
// a command is retried with growing pauses until its time budget is spent,
// then fails with a version conflict.
func TestRetryBudgetExhausted(t *testing.T) {
	ctx := context.Background()
	for _, budget := range []time.Duration{200 * time.Millisecond, 500 * time.Millisecond} {
		cs := &conflictingStore{EventStore: newStore()}
		st := new(commands.Stats)
		h := commands.NewInventory(cs, commands.Config{RetryBudget: budget, Stats: st})
		start := time.Now()
		_, err := h.Restock(ctx, meta(), "A", 1)
		elapsed := time.Since(start)
		wantErr(t, err, domain.ErrVersionConflict)
		if elapsed < budget {
			t.Errorf("budget %s: gave up after %s", budget, elapsed)
		}
		// Pauses of 1, 2, 4, ... ms: even a busy machine fits more than
		// two attempts in the budget.
		if cs.attempts < 3 {
			t.Errorf("budget %s: %d attempts, want at least 3", budget, cs.attempts)
		}
		snap := st.Snapshot()
		if snap.Conflicts != uint64(cs.attempts) || snap.Surfaced != 1 {
			t.Errorf("budget %s: stats %+v after %d attempts", budget, snap, cs.attempts)
		}
	}
}

func TestRetryStopsWhenTheContextIsDone(t *testing.T) {
	tests := []struct {
		name string
		// during cancels the context at the first append instead of
		// before the command starts.
		during bool
	}{
		{"cancelled before the command", false},
		{"cancelled during the first attempt", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cs := &conflictingStore{EventStore: newStore()}
			if tt.during {
				// The store ignores the cancel, so only the wait between
				// retries can notice it.
				cs = &conflictingStore{EventStore: deafStore{newStore()}, onAppend: cancel}
			} else {
				cancel()
			}
			h := commands.NewInventory(cs, commands.Config{})
			_, err := h.Restock(ctx, meta(), "A", 1)
			wantErr(t, err, context.Canceled)
			if cs.attempts > 1 {
				t.Errorf("%d attempts after cancel, want at most 1", cs.attempts)
			}
		})
	}
}

// TestRetryReadsOnlyNewEvents: a rival restock lands between the command's
// read and its append. The append fails with a version conflict, and the
// retry decides again on the state including the rival's event, read from
// where the first attempt stopped rather than from the stream's start.
func TestRetryReadsOnlyNewEvents(t *testing.T) {
	ctx := context.Background()
	base := newStore()
	direct := commands.NewInventory(base, commands.Config{})
	for range 3 {
		restock(t, direct, "A", 1)
	}
	rs := &racingStore{EventStore: base, rival: func() { restock(t, direct, "A", 10) }}
	h := commands.NewInventory(rs, commands.Config{})
	res, err := h.Restock(ctx, meta(), "A", 100)
	noError(t, err)
	if res.Version != 5 {
		t.Errorf("version = %d, want 5 (after the rival's 4)", res.Version)
	}
	if rs.conflicts != 1 {
		t.Errorf("%d version conflicts, want 1", rs.conflicts)
	}
	if want := []int64{1, 4}; !slices.Equal(rs.reads, want) {
		t.Errorf("reads started at versions %v, want %v", rs.reads, want)
	}
	wantLevels(t, base, "A", 113, 0)
}

// cancellingStore cancels the command's context when it reaches stream.
type cancellingStore struct {
	commands.EventStore
	stream string
	cancel context.CancelFunc
}

func (s *cancellingStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	if stream == s.stream {
		s.cancel()
		return domain.AppendResult{}, context.Canceled
	}
	return s.EventStore.Append(ctx, stream, expected, evs)
}

func TestReserveRollsBackAfterTheCallerGaveUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := newStore()
	h := commands.NewInventory(base, commands.Config{})
	restock(t, h, "A", 5)
	restock(t, h, "B", 5)
	h = commands.NewInventory(&cancellingStore{EventStore: base, stream: "stock-B", cancel: cancel}, commands.Config{})
	_, err := h.Reserve(ctx, meta(), uuid.NewString(), []inventory.Line{{SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 1}})
	wantErr(t, err, context.Canceled)
	wantLevels(t, base, "A", 5, 0)
}
