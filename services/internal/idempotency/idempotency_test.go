package idempotency_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/idempotency"
	"github.com/orderflow/orderflow/services/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is a server whose handler counts executions and answers what the
// test tells it to.
type fixture struct {
	pool     *pgxpool.Pool
	store    *idempotency.Store
	srv      *httptest.Server
	calls    atomic.Int32
	mu       sync.Mutex
	status   int
	block    chan struct{} // when non-nil, the handler waits on it
	entered  chan struct{}
	panicNow bool
	ids      []string // command ids seen
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := idempotency.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// Migrating twice is a no-op.
	if err := idempotency.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store, err := idempotency.New(pool, idempotency.Config{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pool: pool, store: store, status: http.StatusAccepted}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.calls.Add(1)
		id, _ := httpx.CommandID(r.Context())
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.ids = append(f.ids, id)
		status, block, entered, panicNow := f.status, f.block, f.entered, f.panicNow
		f.mu.Unlock()
		if entered != nil {
			entered <- struct{}{}
		}
		if block != nil {
			<-block
		}
		if panicNow {
			panic("handler failed")
		}
		w.Header().Set("Location", "/things/"+fmt.Sprint(n))
		w.Header().Set("X-Other", "not stored")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"call":%d,"echo":%q}`, n, body)
	})
	f.srv = httptest.NewServer(httpx.RequestID(httpx.Recover(store.Middleware(handler))))
	t.Cleanup(f.srv.Close)
	return f
}

// set changes the handler's behaviour under the fixture's lock.
func (f *fixture) set(change func(f *fixture)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// commandIDs returns the command ids the handler saw, in order.
func (f *fixture) commandIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

type response struct {
	status  int
	header  http.Header
	body    string
	replays bool
}

func (f *fixture) post(t *testing.T, path, key, body string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(idempotency.Header, key)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b), replays: res.Header.Get(idempotency.ReplayedHeader) == "true"}
}

func wantProblem(t *testing.T, r response, status int, slug string) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(r.body, `"type":"`+httpx.ProblemTypeBase+slug+`"`) {
		t.Fatalf("got %d %s %s, want %d problem %s", r.status, r.header.Get("Content-Type"), r.body, status, slug)
	}
}

func TestReplaySameBody(t *testing.T) {
	f := newFixture(t)
	first := f.post(t, "/things", "key-1", `{"a":1}`)
	if first.status != http.StatusAccepted || first.replays {
		t.Fatalf("first: %+v", first)
	}
	second := f.post(t, "/things", "key-1", `{"a":1}`)
	if !second.replays {
		t.Fatal("second answer not marked as replayed")
	}
	if second.status != first.status || second.body != first.body ||
		second.header.Get("Location") != first.header.Get("Location") ||
		second.header.Get("Content-Type") != first.header.Get("Content-Type") {
		t.Fatalf("replay differs:\nfirst  %d %v %s\nsecond %d %v %s", first.status, first.header, first.body, second.status, second.header, second.body)
	}
	if second.header.Get("X-Other") != "" {
		t.Fatal("unlisted header was stored")
	}
	if second.header.Get(httpx.RequestIDHeader) == "" {
		t.Fatal("replay lacks X-Request-Id")
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

func TestDifferentBodyIsRefused(t *testing.T) {
	f := newFixture(t)
	f.post(t, "/things", "key-1", `{"a":1}`)
	wantProblem(t, f.post(t, "/things", "key-1", `{"a":2}`), http.StatusConflict, httpx.SlugIdempotencyKeyReused)
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

func TestScopeIsMethodAndPath(t *testing.T) {
	f := newFixture(t)
	a := f.post(t, "/things/a", "shared", `{}`)
	b := f.post(t, "/things/b", "shared", `{}`)
	if a.replays || b.replays || f.calls.Load() != 2 {
		t.Fatalf("same key on two paths: calls %d, replays %v %v", f.calls.Load(), a.replays, b.replays)
	}
	ids := f.commandIDs()
	if ids[0] == ids[1] || ids[0] == "" {
		t.Fatalf("command ids %q and %q must differ", ids[0], ids[1])
	}
	if want := idempotency.DeriveCommandID("test", "POST /things/a", "shared"); ids[0] != want {
		t.Fatalf("command id %s, want derived %s", ids[0], want)
	}
}

func TestWithoutKeyPassesThrough(t *testing.T) {
	f := newFixture(t)
	f.post(t, "/things", "", `{}`)
	f.post(t, "/things", "", `{}`)
	if ids := f.commandIDs(); f.calls.Load() != 2 || ids[0] != "" {
		t.Fatalf("calls %d, ids %q", f.calls.Load(), ids)
	}
}

func TestInvalidKey(t *testing.T) {
	f := newFixture(t)
	for _, key := range []string{strings.Repeat("k", 201), "tab\there"} {
		wantProblem(t, f.post(t, "/things", key, `{}`), http.StatusBadRequest, httpx.SlugValidation)
	}
	// An empty header value (sent, but blank) is invalid too.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/things", strings.NewReader(`{}`))
	req.Header[idempotency.Header] = []string{""}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("empty key: status %d", res.StatusCode)
	}
	if f.post(t, "/things", strings.Repeat("k", 200), `{}`).status != http.StatusAccepted {
		t.Fatal("200-character key refused")
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

func TestTooLargeBody(t *testing.T) {
	f := newFixture(t)
	wantProblem(t, f.post(t, "/things", "big", `"`+strings.Repeat("x", httpx.MaxBodyBytes)+`"`),
		http.StatusRequestEntityTooLarge, httpx.SlugPayloadTooLarge)
	if f.calls.Load() != 0 {
		t.Fatal("handler ran for a too-large body")
	}
}

func TestInFlightDuplicate(t *testing.T) {
	f := newFixture(t)
	block, entered := make(chan struct{}), make(chan struct{}, 1)
	f.set(func(f *fixture) { f.block, f.entered = block, entered })
	done := make(chan response, 1)
	go func() { done <- f.post(t, "/things", "slow", `{}`) }()
	<-entered
	wantProblem(t, f.post(t, "/things", "slow", `{}`), http.StatusConflict, httpx.SlugIdempotencyInFlight)
	close(block)
	if r := <-done; r.status != http.StatusAccepted {
		t.Fatalf("first request: %+v", r)
	}
	if r := f.post(t, "/things", "slow", `{}`); !r.replays {
		t.Fatalf("after completion: %+v", r)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

func TestServerErrorsAreNotStored(t *testing.T) {
	f := newFixture(t)
	f.set(func(f *fixture) { f.status = http.StatusServiceUnavailable })
	if r := f.post(t, "/things", "k", `{}`); r.status != http.StatusServiceUnavailable {
		t.Fatalf("first: %+v", r)
	}
	f.set(func(f *fixture) { f.status = http.StatusAccepted })
	if r := f.post(t, "/things", "k", `{}`); r.status != http.StatusAccepted || r.replays {
		t.Fatalf("retry after 503: %+v", r)
	}
	if ids := f.commandIDs(); f.calls.Load() != 2 || ids[0] != ids[1] {
		t.Fatalf("calls %d ids %q: a retry must run again with the same command id", f.calls.Load(), ids)
	}
}

func TestClientErrorsAreStored(t *testing.T) {
	f := newFixture(t)
	f.set(func(f *fixture) { f.status = http.StatusConflict })
	f.post(t, "/things", "k", `{}`)
	f.set(func(f *fixture) { f.status = http.StatusAccepted })
	if r := f.post(t, "/things", "k", `{}`); r.status != http.StatusConflict || !r.replays {
		t.Fatalf("retry after 409: %+v", r)
	}
}

func TestPanicReleasesClaim(t *testing.T) {
	f := newFixture(t)
	f.set(func(f *fixture) { f.panicNow = true })
	if r := f.post(t, "/things", "k", `{}`); r.status != http.StatusInternalServerError {
		t.Fatalf("panic: %+v", r)
	}
	f.set(func(f *fixture) { f.panicNow = false })
	if r := f.post(t, "/things", "k", `{}`); r.status != http.StatusAccepted || r.replays {
		t.Fatalf("after panic: %+v", r)
	}
}

func TestAbandonedClaimIsTakenOver(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// A claim left by a crashed process: in flight, lease long expired.
	if _, err := f.pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, fingerprint, state, claim_token, locked_until, expires_at)
		VALUES ('POST /things', 'k', sha256('{}'::bytea), 'in_flight', gen_random_uuid(), now() - interval '1 second', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	r := f.post(t, "/things", "k", `{}`)
	if r.status != http.StatusAccepted || r.replays {
		t.Fatalf("takeover: %+v", r)
	}
	if want := idempotency.DeriveCommandID("test", "POST /things", "k"); f.commandIDs()[0] != want {
		t.Fatalf("command id %s, want %s", f.commandIDs()[0], want)
	}
	if r := f.post(t, "/things", "k", `{}`); !r.replays {
		t.Fatalf("after takeover: %+v", r)
	}
}

func TestExpiryAndPurge(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.post(t, "/things", "old", `{}`)
	f.post(t, "/things", "fresh", `{}`)
	if _, err := f.pool.Exec(ctx, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'"); err != nil {
		t.Fatal(err)
	}
	// An expired key is forgotten: the request runs again.
	if r := f.post(t, "/things", "old", `{"different":true}`); r.status != http.StatusAccepted || r.replays {
		t.Fatalf("expired key: %+v", r)
	}
	if _, err := f.pool.Exec(ctx, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'"); err != nil {
		t.Fatal(err)
	}
	n, err := f.store.Purge(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	var left int
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&left); err != nil || left != 1 {
		t.Fatalf("rows left %d (%v), want 1", left, err)
	}
}

func TestRunPurgerStopsOnCancel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	store, err := idempotency.New(f.pool, idempotency.Config{Service: "test", PurgeInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.post(t, "/things", "old", `{}`)
	if _, err := f.pool.Exec(ctx, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { store.RunPurger(runCtx); close(stopped) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left int
		if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("purger did not delete the expired key")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("RunPurger did not stop after cancel")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  idempotency.Config
		ok   bool
	}{
		{"defaults", idempotency.Config{Service: "orders"}, true},
		{"no service", idempotency.Config{}, false},
		{"negative", idempotency.Config{Service: "x", Lease: -time.Second}, false},
		{"short ttl", idempotency.Config{Service: "x", TTL: time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestConcurrentFirstRequests: requests racing with one new key execute
// the handler once; the others are told it is in flight or get its answer.
func TestConcurrentFirstRequests(t *testing.T) {
	f := newFixture(t)
	block := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(block) })
	t.Cleanup(unblock) // runs before the server closes, should a check fail
	f.set(func(f *fixture) { f.block = block })
	const n = 8
	results := make(chan response, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { results <- f.post(t, "/things", "race", `{"a":1}`) })
	}
	// Every request but the executing one answers without waiting for it.
	var executed int
	for range n - 1 {
		select {
		case r := <-results:
			wantProblem(t, r, http.StatusConflict, httpx.SlugIdempotencyInFlight)
		case <-time.After(10 * time.Second):
			t.Fatalf("only some racing requests answered; handler ran %d times", f.calls.Load())
		}
	}
	unblock()
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != http.StatusAccepted || r.replays {
			t.Fatalf("executing request: %+v", r)
		}
		executed++
	}
	if executed != 1 || f.calls.Load() != 1 {
		t.Fatalf("%d requests executed, handler ran %d times; want 1", executed, f.calls.Load())
	}
	if r := f.post(t, "/things", "race", `{"a":1}`); !r.replays {
		t.Fatalf("after the race: %+v", r)
	}
}
