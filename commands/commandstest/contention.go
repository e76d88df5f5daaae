package commandstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
)

// NewEventStore returns an empty event store for one subtest.
type NewEventStore func(t *testing.T) commands.EventStore

// RunContention runs the tests of concurrent commands on one stream against
// stores made by newStore: the package's own tests run it on the in-memory
// Store, the services' tests on PostgreSQL. Each handler stands for one
// process; handlers on one store stand for the replicas of a service.
func RunContention(t *testing.T, newStore NewEventStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s commands.EventStore)
	}{
		{"ManyCallersOneStreamNoConflicts", testManyCallers},
		{"BatchKeepsPerCommandAnswers", testBatch},
		{"SecondProcessConflictsAndRetries", testSecondProcess},
		{"ProcessesShareAHotStream", testProcessesShare},
		{"StaleRefusalIsCheckedAgain", testStaleRefusal},
		{"SpentBudgetIsAVersionConflict", testBudgetSpent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func newMeta() commands.Meta {
	return commands.Meta{CommandID: uuid.NewString(), RequestID: "req-" + uuid.NewString()}
}

// readStock rebuilds the stock of sku from the store and returns it with
// the stream's events.
func readStock(t testing.TB, s commands.EventStore, sku string) (*inventory.Stock, []domain.Envelope) {
	t.Helper()
	envs, err := s.ReadStream(context.Background(), inventory.Stream(sku), 1, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	r := events.NewRegistry()
	st := new(inventory.Stock)
	for _, e := range envs {
		p, err := r.Decode(e)
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(p)
	}
	return st, envs
}

// waitFor polls cond until it holds, failing the test after a deadline
// generous enough for a machine busy with other test suites.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		<-tick.C
	}
}

// testManyCallers: 200 callers restock one sku at once through one
// handler. Every command succeeds, none conflicts, and each gets its own
// version.
func testManyCallers(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	stats := new(commands.Stats)
	h := commands.NewInventory(s, commands.Config{Stats: stats})
	const n = 200
	results := make([]commands.Result, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = h.Restock(ctx, newMeta(), "HOT", 1)
		})
	}
	close(start)
	wg.Wait()
	versions := make(map[int64]bool)
	for i := range n {
		if errs[i] != nil {
			t.Errorf("command %d: %v", i, errs[i])
			continue
		}
		v := results[i].Version
		if v < 1 || v > n || versions[v] || results[i].Duplicate {
			t.Errorf("command %d: %+v (versions must be distinct, 1..%d)", i, results[i], n)
		}
		versions[v] = true
	}
	st, envs := readStock(t, s, "HOT")
	if st.OnHand != n || len(envs) != n {
		t.Errorf("on hand %d in %d events, want %d", st.OnHand, len(envs), n)
	}
	snap := stats.Snapshot()
	if snap.Conflicts != 0 || snap.Retries != 0 || snap.Surfaced != 0 {
		t.Errorf("one process conflicted with itself: %+v", snap)
	}
	if snap.AppendedCommands != n || snap.Appends < 1 || snap.Appends > n || snap.Queued != 0 {
		t.Errorf("stats %+v, want %d commands appended, nothing queued", snap, n)
	}
	t.Logf("%d commands in %d appends", snap.AppendedCommands, snap.Appends)
}

// gateStore holds the first append until open is called, so that the
// commands submitted meanwhile queue behind it, and counts the appends.
type gateStore struct {
	commands.EventStore
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	appends int
}

func newGateStore(s commands.EventStore) *gateStore {
	return &gateStore{EventStore: s, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	g.mu.Lock()
	g.appends++
	first := g.appends == 1
	g.mu.Unlock()
	if first {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return domain.AppendResult{}, ctx.Err()
		}
	}
	return g.EventStore.Append(ctx, stream, expected, evs)
}

func (g *gateStore) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.appends
}

type answer struct {
	results []commands.Result
	err     error
}

// testBatch queues commands behind an append in flight, in a known order,
// and checks that they share one append while each keeps its own answer:
// its version, a duplicate for a repeated id, its own error.
func testBatch(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	gate := newGateStore(s)
	stats := new(commands.Stats)
	h := commands.NewInventory(gate, commands.Config{Stats: stats})
	const sku = "BATCH"
	submit := func(f func() ([]commands.Result, error)) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			res, err := f()
			ch <- answer{res, err}
		}()
		return ch
	}
	restock := func(h *commands.Inventory, m commands.Meta, q int) func() ([]commands.Result, error) {
		return func() ([]commands.Result, error) {
			r, err := h.Restock(ctx, m, sku, q)
			return []commands.Result{r}, err
		}
	}
	reserve := func(h *commands.Inventory, m commands.Meta, orderID string, q int) func() ([]commands.Result, error) {
		return func() ([]commands.Result, error) {
			return h.Reserve(ctx, m, orderID, []inventory.Line{{SKU: sku, Quantity: q}})
		}
	}
	queued := func(n int64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d commands queued", n), func() bool { return stats.Snapshot().Queued == n })
	}

	m0, m1, mX, mY := newMeta(), newMeta(), newMeta(), newMeta()
	orderX, orderY := uuid.NewString(), uuid.NewString()
	first := submit(restock(h, m0, 10))
	<-gate.entered
	queued(1)
	// Queued one at a time, so the batch's order is known.
	var again []<-chan answer
	for _, f := range []func() ([]commands.Result, error){
		restock(h, m1, 1),           // 1: version 2
		restock(h, m1, 1),           // 2: the same command: a duplicate
		reserve(h, mX, orderX, 100), // 3: more than there is: refused alone
		reserve(h, mY, orderY, 11),  // 4: all of 10+1, so it sees command 1's event
		restock(h, m0, 10),          // 5: repeats the command in flight
	} {
		again = append(again, submit(f))
		queued(int64(len(again) + 1))
	}
	close(gate.release)

	a0 := <-first
	if a0.err != nil || a0.results[0].Version != 1 || a0.results[0].Duplicate {
		t.Fatalf("first command: %+v %v", a0.results, a0.err)
	}
	got := make([]answer, len(again))
	for i, ch := range again {
		got[i] = <-ch
	}
	want := []struct {
		version   int64
		duplicate bool
		err       error
	}{
		{2, false, nil},
		{2, true, nil},
		{0, false, domain.ErrInsufficientStock},
		{3, false, nil},
		{3, true, nil},
	}
	for i, w := range want {
		a := got[i]
		if w.err != nil {
			if !errors.Is(a.err, w.err) {
				t.Errorf("command %d: err = %v, want %v", i+1, a.err, w.err)
			}
			continue
		}
		if a.err != nil || len(a.results) != 1 || a.results[0].Version != w.version || a.results[0].Duplicate != w.duplicate {
			t.Errorf("command %d: %+v %v, want version %d duplicate %t", i+1, a.results, a.err, w.version, w.duplicate)
		}
	}
	if n := gate.count(); n != 2 {
		t.Errorf("%d appends, want 2: the first command's and one for the queued ones", n)
	}
	snap := stats.Snapshot()
	if snap.Appends != 2 || snap.AppendedCommands != 3 || snap.Conflicts != 0 || snap.Queued != 0 {
		t.Errorf("stats %+v, want 2 appends of 3 commands", snap)
	}
	st, envs := readStock(t, s, sku)
	if st.OnHand != 11 || st.Reserved != 11 || len(envs) != 3 {
		t.Errorf("on hand %d reserved %d in %d events, want 11 11 3", st.OnHand, st.Reserved, len(envs))
	}

	// The events are those the commands make one at a time: same ids,
	// same causation.
	ref := NewStore()
	seq := commands.NewInventory(ref, commands.Config{})
	for _, f := range []func() ([]commands.Result, error){restock(seq, m0, 10), restock(seq, m1, 1), reserve(seq, mY, orderY, 11)} {
		if _, err := f(); err != nil {
			t.Fatal(err)
		}
	}
	_, refEnvs := readStock(t, ref, sku)
	for i := range min(len(envs), len(refEnvs)) {
		if envs[i].ID != refEnvs[i].ID || envs[i].Type != refEnvs[i].Type || envs[i].Metadata.CausationID != refEnvs[i].Metadata.CausationID {
			t.Errorf("event %d: %s %s caused by %s, one at a time %s %s caused by %s", i+1,
				envs[i].ID, envs[i].Type, envs[i].Metadata.CausationID, refEnvs[i].ID, refEnvs[i].Type, refEnvs[i].Metadata.CausationID)
		}
	}

	// A repeat after the batch is a duplicate too, and stores nothing.
	r, err := h.Restock(ctx, m1, sku, 1)
	if err != nil || !r.Duplicate {
		t.Errorf("repeat after the batch: %+v %v, want a duplicate", r, err)
	}
	if _, envs := readStock(t, s, sku); len(envs) != 3 {
		t.Errorf("%d events after the repeat, want 3", len(envs))
	}
}

// readsStore records where each ReadStream started.
type readsStore struct {
	commands.EventStore
	mu    sync.Mutex
	reads []int64
}

func (s *readsStore) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	s.mu.Lock()
	s.reads = append(s.reads, from)
	s.mu.Unlock()
	return s.EventStore.ReadStream(ctx, stream, from, max)
}

func (s *readsStore) starts() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.reads...)
}

// testSecondProcess: another process appends behind the back of a
// handler's cached state. The handler's next append conflicts, is counted,
// and is retried after reading only the new event.
func testSecondProcess(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	rs := &readsStore{EventStore: s}
	stats := new(commands.Stats)
	p1 := commands.NewInventory(rs, commands.Config{Stats: stats})
	p2 := commands.NewInventory(s, commands.Config{})
	if _, err := p1.Restock(ctx, newMeta(), "TWO", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Restock(ctx, newMeta(), "TWO", 10); err != nil {
		t.Fatal(err)
	}
	r, err := p1.Restock(ctx, newMeta(), "TWO", 100)
	if err != nil || r.Version != 3 {
		t.Fatalf("restock after the other process: %+v %v, want version 3", r, err)
	}
	if got := rs.starts(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("reads started at versions %v, want [1 2]: a load, then only the other process's event", got)
	}
	snap := stats.Snapshot()
	if snap.Conflicts != 1 || snap.Retries != 1 || snap.Surfaced != 0 || snap.Appends != 2 {
		t.Errorf("stats %+v, want 1 conflict, 1 retry, 2 appends", snap)
	}
	if st, _ := readStock(t, s, "TWO"); st.OnHand != 111 {
		t.Errorf("on hand %d, want 111", st.OnHand)
	}
}

// testProcessesShare: four processes share 200 concurrent restocks of one
// sku; every one succeeds within the retry budget.
func testProcessesShare(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	const processes, each = 4, 50
	stats := make([]*commands.Stats, processes)
	hs := make([]*commands.Inventory, processes)
	for p := range processes {
		stats[p] = new(commands.Stats)
		hs[p] = commands.NewInventory(s, commands.Config{Stats: stats[p]})
	}
	errs := make(chan error, processes*each)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for p := range processes {
		for range each {
			wg.Go(func() {
				<-start
				if _, err := hs[p].Restock(ctx, newMeta(), "SHARED", 1); err != nil {
					errs <- err
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("restock: %v", err)
	}
	var conflicts, surfaced uint64
	for _, st := range stats {
		snap := st.Snapshot()
		conflicts += snap.Conflicts
		surfaced += snap.Surfaced
	}
	if surfaced != 0 {
		t.Errorf("%d conflicts surfaced", surfaced)
	}
	if st, envs := readStock(t, s, "SHARED"); st.OnHand != processes*each || len(envs) != processes*each {
		t.Errorf("on hand %d in %d events, want %d", st.OnHand, len(envs), processes*each)
	}
	t.Logf("%d conflicts retried", conflicts)
}

// testStaleRefusal: a refusal decided on cached state that another process
// has since changed is not final; the stream is read again and the
// command decided on what it holds now.
func testStaleRefusal(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	p1 := commands.NewInventory(s, commands.Config{})
	p2 := commands.NewInventory(s, commands.Config{})
	if _, err := p1.Restock(ctx, newMeta(), "STALE", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Restock(ctx, newMeta(), "STALE", 10); err != nil {
		t.Fatal(err)
	}
	res, err := p1.Reserve(ctx, newMeta(), uuid.NewString(), []inventory.Line{{SKU: "STALE", Quantity: 5}})
	if err != nil || len(res) != 1 || res[0].Version != 3 {
		t.Fatalf("reserve 5 of 11: %+v %v, want version 3", res, err)
	}
	// And a refusal on current state stays one.
	_, err = p1.Reserve(ctx, newMeta(), uuid.NewString(), []inventory.Line{{SKU: "STALE", Quantity: 7}})
	if !errors.Is(err, domain.ErrInsufficientStock) {
		t.Fatalf("reserve 7 of 6: %v, want ErrInsufficientStock", err)
	}
}

// rivalStore lets a rival write to the stream before every append, so
// that every append conflicts.
type rivalStore struct {
	commands.EventStore
	rival   func(ctx context.Context) error
	mu      sync.Mutex
	appends int
	errs    []error
}

func (s *rivalStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	err := s.rival(ctx)
	s.mu.Lock()
	s.appends++
	if err != nil {
		s.errs = append(s.errs, err)
	}
	s.mu.Unlock()
	return s.EventStore.Append(ctx, stream, expected, evs)
}

// testBudgetSpent: a command that loses every race is retried for its
// budget, then fails with an error wrapping domain.ErrVersionConflict and
// leaves nothing in the stream.
func testBudgetSpent(t *testing.T, s commands.EventStore) {
	ctx := context.Background()
	rival := commands.NewInventory(s, commands.Config{})
	rs := &rivalStore{EventStore: s, rival: func(ctx context.Context) error {
		_, err := rival.Restock(ctx, newMeta(), "FOUGHT", 1)
		return err
	}}
	stats := new(commands.Stats)
	const budget = 300 * time.Millisecond
	h := commands.NewInventory(rs, commands.Config{RetryBudget: budget, Stats: stats})
	m := newMeta()
	start := time.Now()
	_, err := h.Restock(ctx, m, "FOUGHT", 1000)
	elapsed := time.Since(start)
	if !errors.Is(err, domain.ErrVersionConflict) {
		t.Fatalf("err = %v, want ErrVersionConflict", err)
	}
	if elapsed < budget {
		t.Errorf("gave up after %s, before the budget of %s", elapsed, budget)
	}
	rs.mu.Lock()
	appends, rivalErrs := rs.appends, rs.errs
	rs.mu.Unlock()
	if len(rivalErrs) > 0 {
		t.Fatalf("rival failed: %v", rivalErrs)
	}
	snap := stats.Snapshot()
	if snap.Surfaced != 1 || snap.Conflicts != uint64(appends) || snap.Retries != snap.Conflicts-1 || appends < 3 || snap.Appends != 0 {
		t.Errorf("stats %+v after %d appends, want every append a conflict, all but the last retried, at least 3", snap, appends)
	}
	st, envs := readStock(t, s, "FOUGHT")
	for _, e := range envs {
		if e.Metadata.CausationID == m.CommandID {
			t.Errorf("the failed command stored event %d", e.Version)
		}
	}
	if st.OnHand != appends {
		t.Errorf("on hand %d, want the rival's %d", st.OnHand, appends)
	}
}
