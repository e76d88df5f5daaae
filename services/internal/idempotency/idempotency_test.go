package idempotency_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/idempotency"
)

// deadOwnerEnv, when set to a database URL, turns the test binary into
// the process that TestKilledOwnerClaimIsTakenOver kills: it claims a key
// in that database, says so on stdout and blocks.
const deadOwnerEnv = "ORDERFLOW_IDEMPOTENCY_DEAD_OWNER_DB"

func TestMain(m *testing.M) {
	if url := os.Getenv(deadOwnerEnv); url != "" {
		holdClaimUntilKilled(url)
		os.Exit(2) // not reached
	}
	testenv.Main(m)
}

// reply is what the fixture's handler answers.
type reply struct {
	status     int
	slug       string // when set, the answer is a problem of this type
	retryAfter int    // when > 0, sent as Retry-After
}

// fixture is a server whose handler counts executions and answers what the
// test tells it to.
type fixture struct {
	url   string // of the test's database
	pool  *pgxpool.Pool
	store *idempotency.Store
	srv   *httptest.Server
	calls atomic.Int32

	mu            sync.Mutex
	reply         reply
	block         chan struct{} // when non-nil, the handler waits on it
	entered       chan struct{} // when non-nil, the handler reports entry on it
	panicNow      bool
	waitForCancel bool     // the handler waits for its context to end and answers its error
	ids           []string // command ids seen
}

// fixtureConfig tunes newFixture.
type fixtureConfig struct {
	lease   time.Duration // the Store's lease; default one minute
	timeout time.Duration // when > 0, each request's context ends after it
}

// newFixture serves a counting handler behind the middleware. Its lease
// is long (a minute) unless set, so that a key that becomes free within a
// test was released, not left to expire.
func newFixture(t *testing.T, fc ...fixtureConfig) *fixture {
	t.Helper()
	var c fixtureConfig
	if len(fc) > 0 {
		c = fc[0]
	}
	if c.lease == 0 {
		c.lease = time.Minute
	}
	ctx := context.Background()
	url := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, url)
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
	store, err := idempotency.New(pool, idempotency.Config{Service: "test", Lease: c.lease})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{url: url, pool: pool, store: store, reply: reply{status: http.StatusAccepted}}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.calls.Add(1)
		id, _ := httpx.CommandID(r.Context())
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.ids = append(f.ids, id)
		rp, block, entered, panicNow, waitForCancel := f.reply, f.block, f.entered, f.panicNow, f.waitForCancel
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
		if waitForCancel {
			<-r.Context().Done()
			httpx.WriteError(w, r, fmt.Errorf("command: %w", r.Context().Err()))
			return
		}
		if rp.slug != "" {
			p := httpx.NewProblem(rp.status, rp.slug, fmt.Sprintf("call %d", n))
			p.RetryAfter = rp.retryAfter
			httpx.WriteProblem(w, p)
			return
		}
		if rp.retryAfter > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(rp.retryAfter))
		}
		w.Header().Set("Location", "/things/"+fmt.Sprint(n))
		w.Header().Set("X-Other", "not stored")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rp.status)
		fmt.Fprintf(w, `{"call":%d,"echo":%q}`, n, body)
	})
	var h http.Handler = store.Middleware(handler)
	if c.timeout > 0 {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), c.timeout)
			defer cancel()
			inner.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	f.srv = httptest.NewServer(httpx.RequestID(httpx.Recover(h)))
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

// rows counts the rows stored under key, whatever their state.
func (f *fixture) rows(t *testing.T, key string) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM idempotency_keys WHERE key = $1", key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond every few milliseconds until it holds or within
// has passed.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for the condition
	}
}

type response struct {
	status  int
	header  http.Header
	body    string
	replays bool
}

func (f *fixture) post(t *testing.T, path, key, body string) response {
	t.Helper()
	return f.postCtx(t, context.Background(), path, key, body)
}

// postWithin is post for a request that must not wait for another one: if
// the middleware let it through to a blocked handler, it gets no answer
// (status 0) after within instead of hanging the test.
func (f *fixture) postWithin(t *testing.T, within time.Duration, path, key, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return f.postCtx(t, ctx, path, key, body)
}

func (f *fixture) postCtx(t *testing.T, ctx context.Context, path, key, body string) response {
	t.Helper()
	return f.postHeader(t, ctx, nil, path, key, body)
}

// postAs is post on behalf of subject, as the gateway forwards it.
func (f *fixture) postAs(t *testing.T, subject, path, key, body string) response {
	t.Helper()
	return f.postHeader(t, context.Background(), http.Header{idempotency.SubjectHeader: {subject}}, path, key, body)
}

// postHeader is post with extra request headers.
func (f *fixture) postHeader(t *testing.T, ctx context.Context, extra http.Header, path, key, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return response{}
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(idempotency.Header, key)
	}
	for name, values := range extra {
		req.Header[name] = values
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		if ctx.Err() == nil {
			t.Error(err)
		}
		return response{body: "no answer: " + err.Error()}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Error(err)
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

// TestScopeIncludesSubject: behind the gateway the caller's subject is
// part of the key's scope. The same key and body from two subjects are
// two commands with two derived ids; each subject's repeat is a replay of
// its own answer; a request without a subject (straight to the service)
// is a third scope.
func TestScopeIncludesSubject(t *testing.T) {
	f := newFixture(t)
	const key, body = "shared", `{"a":1}`
	steps := []struct {
		subject string // "" sends no subject header
		replay  bool
		call    int // the handler call whose answer this request gets
	}{
		{"c-1", false, 1},
		{"c-2", false, 2},
		{"c-1", true, 1},
		{"c-2", true, 2},
		{"", false, 3},
		{"", true, 3},
		{"admin", false, 4},
	}
	for i, st := range steps {
		var r response
		if st.subject == "" {
			r = f.post(t, "/things", key, body)
		} else {
			r = f.postAs(t, st.subject, "/things", key, body)
		}
		if r.status != http.StatusAccepted || r.replays != st.replay || !strings.Contains(r.body, fmt.Sprintf(`"call":%d,`, st.call)) {
			t.Fatalf("step %d (subject %q): %d replayed=%v %s; want replayed=%v of call %d",
				i, st.subject, r.status, r.replays, r.body, st.replay, st.call)
		}
	}
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("handler ran %d times, want 4", n)
	}
	want := []string{
		idempotency.DeriveSubjectCommandID("test", "POST /things", "c-1", key),
		idempotency.DeriveSubjectCommandID("test", "POST /things", "c-2", key),
		idempotency.DeriveCommandID("test", "POST /things", key),
		idempotency.DeriveSubjectCommandID("test", "POST /things", "admin", key),
	}
	if got := f.commandIDs(); !slices.Equal(got, want) {
		t.Fatalf("command ids %q, want %q", got, want)
	}
	seen := map[string]bool{}
	for _, id := range want {
		if seen[id] {
			t.Fatalf("derived ids %q are not distinct", want)
		}
		seen[id] = true
	}
	if got := idempotency.DeriveSubjectCommandID("test", "POST /things", "", key); got != want[2] {
		t.Fatalf("without a subject the derived id is %s, want DeriveCommandID's %s", got, want[2])
	}
	// A different body under one subject's key is still refused, and does
	// not disturb the other subject's answer.
	wantProblem(t, f.postAs(t, "c-1", "/things", key, `{"a":2}`), http.StatusConflict, httpx.SlugIdempotencyKeyReused)
	if r := f.postAs(t, "c-2", "/things", key, body); !r.replays {
		t.Fatalf("c-2 after c-1's reuse: %+v", r)
	}
}

func TestInvalidSubject(t *testing.T) {
	tests := []struct {
		name   string
		values []string
	}{
		{"empty", []string{""}},
		{"sent twice", []string{"c-1", "c-2"}},
		{"too long", []string{strings.Repeat("s", idempotency.MaxSubjectLength+1)}},
		{"control character", []string{"c\t1"}},
		{"not ASCII", []string{"c-\u00e9"}},
	}
	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.postHeader(t, context.Background(), http.Header{idempotency.SubjectHeader: tt.values}, "/things", "k", `{}`)
			wantProblem(t, r, http.StatusBadRequest, httpx.SlugValidation)
			if !strings.Contains(r.body, idempotency.SubjectHeader) {
				t.Fatalf("the problem does not name the header: %s", r.body)
			}
		})
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times for invalid subjects", n)
	}
	// The longest valid subject is accepted; without a key the header is
	// not looked at.
	if r := f.postAs(t, strings.Repeat("s", idempotency.MaxSubjectLength), "/things", "k", `{}`); r.status != http.StatusAccepted {
		t.Fatalf("255-character subject: %+v", r)
	}
	if r := f.postAs(t, "", "/things", "", `{}`); r.status != http.StatusAccepted {
		t.Fatalf("subject without a key: %+v", r)
	}
}

// TestSubjectMigrationKeepsStoredAnswers: rows stored before keys had a
// subject (migration 0003) keep answering the requests that made them,
// those without a subject; a subject's request with the same key is a new
// command.
func TestSubjectMigrationKeepsStoredAnswers(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := idempotency.MigrateThrough(ctx, pool, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, fingerprint, state, status, headers, body, expires_at)
		VALUES ('POST /things', 'old', sha256('{}'::bytea), 'done', 202, '{"Content-Type":"application/json"}', '{"stored":true}', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	if err := idempotency.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store, err := idempotency.New(pool, idempotency.Config{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := httptest.NewServer(store.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, `{"stored":false}`)
	})))
	t.Cleanup(srv.Close)
	f := &fixture{srv: srv}

	if r := f.post(t, "/things", "old", `{}`); !r.replays || r.body != `{"stored":true}` {
		t.Fatalf("the stored answer was not replayed after the migration: %+v", r)
	}
	if r := f.postAs(t, "c-1", "/things", "old", `{}`); r.replays || r.body != `{"stored":false}` {
		t.Fatalf("a subject got the subject-less answer: %+v", r)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	var subject string
	if err := pool.QueryRow(ctx, "SELECT subject FROM idempotency_keys WHERE key = 'old' ORDER BY subject LIMIT 1").Scan(&subject); err != nil || subject != "" {
		t.Fatalf("the old row's subject is %q (%v), want empty", subject, err)
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
	unblock := sync.OnceFunc(func() { close(block) })
	t.Cleanup(unblock) // runs before the server closes, should a check fail
	f.set(func(f *fixture) { f.block, f.entered = block, entered })
	done := make(chan response, 1)
	go func() { done <- f.post(t, "/things", "slow", `{}`) }()
	<-entered
	r := f.postWithin(t, 20*time.Second, "/things", "slow", `{}`)
	wantProblem(t, r, http.StatusConflict, httpx.SlugIdempotencyInFlight)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("in-flight answer without Retry-After")
	}
	unblock()
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

func TestFinal(t *testing.T) {
	problem := func(slug string) []byte {
		return []byte(`{"type":"` + httpx.ProblemTypeBase + slug + `","title":"x","status":409}`)
	}
	retryAfter := http.Header{"Retry-After": {"1"}}
	tests := []struct {
		name   string
		status int
		header http.Header
		body   []byte
		final  bool
	}{
		{"202", http.StatusAccepted, nil, []byte(`{}`), true},
		{"200 empty", http.StatusOK, nil, nil, true},
		{"400 validation", http.StatusBadRequest, nil, problem(httpx.SlugValidation), true},
		{"404", http.StatusNotFound, nil, problem(httpx.SlugNotFound), true},
		{"409 illegal state", http.StatusConflict, nil, problem(httpx.SlugIllegalState), true},
		{"409 insufficient stock", http.StatusConflict, nil, problem(httpx.SlugInsufficientStock), true},
		{"409 not a problem", http.StatusConflict, nil, []byte(`not json`), true},
		{"413", http.StatusRequestEntityTooLarge, nil, problem(httpx.SlugPayloadTooLarge), true},
		{"409 version conflict", http.StatusConflict, nil, problem(httpx.SlugVersionConflict), false},
		{"409 version conflict, other host", http.StatusConflict, nil,
			[]byte(`{"type":"https://example.test/problems/version-conflict"}`), false},
		{"409 with Retry-After", http.StatusConflict, retryAfter, problem(httpx.SlugIllegalState), false},
		{"202 with Retry-After", http.StatusAccepted, retryAfter, nil, false},
		{"408", http.StatusRequestTimeout, nil, nil, false},
		{"425", http.StatusTooEarly, nil, nil, false},
		{"429", http.StatusTooManyRequests, nil, nil, false},
		{"500", http.StatusInternalServerError, nil, problem(httpx.SlugInternal), false},
		{"502", http.StatusBadGateway, nil, nil, false},
		{"503", http.StatusServiceUnavailable, nil, problem(httpx.SlugUnavailable), false},
		{"302", http.StatusFound, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := idempotency.Final(tt.status, tt.header, tt.body); got != tt.final {
				t.Fatalf("Final(%d, %v, %s) = %v, want %v", tt.status, tt.header, tt.body, got, tt.final)
			}
		})
	}
}

// TestTransientAnswersAreNotStored: after a transient answer the key is
// free at once, a same-key retry runs again with the same command id and
// gets the new answer, and that answer is then replayed.
func TestTransientAnswersAreNotStored(t *testing.T) {
	tests := []struct {
		name  string
		first reply
	}{
		{"409 version-conflict", reply{status: http.StatusConflict, slug: httpx.SlugVersionConflict}},
		{"409 version-conflict with Retry-After", reply{status: http.StatusConflict, slug: httpx.SlugVersionConflict, retryAfter: 1}},
		{"503 with Retry-After", reply{status: http.StatusServiceUnavailable, slug: httpx.SlugUnavailable, retryAfter: 1}},
		{"500", reply{status: http.StatusInternalServerError, slug: httpx.SlugInternal}},
		{"429 with Retry-After", reply{status: http.StatusTooManyRequests, slug: httpx.SlugRateLimited, retryAfter: 2}},
		{"408", reply{status: http.StatusRequestTimeout, slug: httpx.SlugUnavailable}},
		{"425", reply{status: http.StatusTooEarly, slug: httpx.SlugUnavailable}},
		{"400 with Retry-After", reply{status: http.StatusBadRequest, slug: httpx.SlugBadRequest, retryAfter: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.set(func(f *fixture) { f.reply = tt.first })
			first := f.post(t, "/things", "k", `{"a":1}`)
			if first.status != tt.first.status || first.replays {
				t.Fatalf("first: %+v", first)
			}
			if tt.first.retryAfter > 0 && first.header.Get("Retry-After") != fmt.Sprint(tt.first.retryAfter) {
				t.Fatalf("first answer lost its Retry-After: %v", first.header)
			}
			if n := f.rows(t, "k"); n != 0 {
				t.Fatalf("%d rows left under the key after a transient answer, want 0", n)
			}

			f.set(func(f *fixture) { f.reply = reply{status: http.StatusAccepted} })
			retry := f.post(t, "/things", "k", `{"a":1}`)
			if retry.status != http.StatusAccepted || retry.replays || !strings.Contains(retry.body, `"call":2`) {
				t.Fatalf("retry: %+v", retry)
			}
			ids := f.commandIDs()
			if len(ids) != 2 || ids[0] != ids[1] || ids[0] != idempotency.DeriveCommandID("test", "POST /things", "k") {
				t.Fatalf("command ids %q: the retry must run again under the same derived id", ids)
			}

			f.set(func(f *fixture) { f.reply = reply{status: http.StatusConflict, slug: httpx.SlugVersionConflict} })
			again := f.post(t, "/things", "k", `{"a":1}`)
			if again.status != http.StatusAccepted || !again.replays || again.body != retry.body ||
				again.header.Get("Location") != retry.header.Get("Location") {
				t.Fatalf("after the 202: %+v, want the 202 replayed", again)
			}
			if n := f.calls.Load(); n != 2 {
				t.Fatalf("handler ran %d times, want 2", n)
			}
		})
	}
}

// TestFinalAnswersAreReplayed: answers that a retry would get again are
// remembered, refusals included.
func TestFinalAnswersAreReplayed(t *testing.T) {
	tests := []struct {
		name  string
		first reply
	}{
		{"202", reply{status: http.StatusAccepted}},
		{"201", reply{status: http.StatusCreated}},
		{"400 validation", reply{status: http.StatusBadRequest, slug: httpx.SlugValidation}},
		{"404 not-found", reply{status: http.StatusNotFound, slug: httpx.SlugNotFound}},
		{"409 illegal-state", reply{status: http.StatusConflict, slug: httpx.SlugIllegalState}},
		{"409 insufficient-stock", reply{status: http.StatusConflict, slug: httpx.SlugInsufficientStock}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.set(func(f *fixture) { f.reply = tt.first })
			first := f.post(t, "/things", "k", `{}`)
			if first.status != tt.first.status || first.replays {
				t.Fatalf("first: %+v", first)
			}
			f.set(func(f *fixture) { f.reply = reply{status: http.StatusAccepted} })
			again := f.post(t, "/things", "k", `{}`)
			if !again.replays || again.status != first.status || again.body != first.body ||
				again.header.Get("Content-Type") != first.header.Get("Content-Type") {
				t.Fatalf("retry: %+v, want %d %s replayed", again, first.status, first.body)
			}
			if n := f.calls.Load(); n != 1 {
				t.Fatalf("handler ran %d times, want 1", n)
			}
		})
	}
}

// TestDyingRequestReleasesClaimAtOnce: a request that ends by a panic, by
// its client going away or by its timeout gives its key back at once, well
// before its (one-minute) lease would run out, and a retry runs under the
// same command id.
func TestDyingRequestReleasesClaimAtOnce(t *testing.T) {
	tests := []struct {
		name string
		fc   fixtureConfig
		die  func(t *testing.T, f *fixture)
	}{
		{"panic", fixtureConfig{}, func(t *testing.T, f *fixture) {
			f.set(func(f *fixture) { f.panicNow = true })
			wantProblem(t, f.post(t, "/things", "k", `{}`), http.StatusInternalServerError, httpx.SlugInternal)
			// The claim was released before the 500 was written.
			if n := f.rows(t, "k"); n != 0 {
				t.Fatalf("%d rows left after the panic, want 0", n)
			}
		}},
		{"client gone", fixtureConfig{}, func(t *testing.T, f *fixture) {
			entered := make(chan struct{}, 1)
			f.set(func(f *fixture) { f.waitForCancel, f.entered = true, entered })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { defer close(done); f.postCtx(t, ctx, "/things", "k", `{}`) }()
			<-entered
			wantProblem(t, f.postWithin(t, 20*time.Second, "/things", "k", `{}`), http.StatusConflict, httpx.SlugIdempotencyInFlight)
			cancel()
			<-done
			eventually(t, 20*time.Second, "claim released after the client went away", func() bool { return f.rows(t, "k") == 0 })
		}},
		// Generous, so that a slow claim on a busy machine still leaves the
		// handler time to start before the deadline.
		{"timeout", fixtureConfig{timeout: 2 * time.Second}, func(t *testing.T, f *fixture) {
			f.set(func(f *fixture) { f.waitForCancel = true })
			r := f.post(t, "/things", "k", `{}`)
			wantProblem(t, r, http.StatusServiceUnavailable, httpx.SlugUnavailable)
			if r.header.Get("Retry-After") == "" {
				t.Fatalf("timeout answer without Retry-After: %v", r.header)
			}
			if n := f.rows(t, "k"); n != 0 {
				t.Fatalf("%d rows left after the timeout, want 0", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.fc)
			tt.die(t, f)
			if n := f.calls.Load(); n != 1 {
				t.Fatalf("the dying request ran the handler %d times, want 1", n)
			}
			f.set(func(f *fixture) { f.panicNow, f.waitForCancel, f.entered = false, false, nil })
			if r := f.post(t, "/things", "k", `{}`); r.status != http.StatusAccepted || r.replays {
				t.Fatalf("retry: %+v", r)
			}
			ids := f.commandIDs()
			if ids[0] != ids[len(ids)-1] {
				t.Fatalf("command ids %q: the retry must reuse the derived id", ids)
			}
			if r := f.post(t, "/things", "k", `{}`); !r.replays {
				t.Fatalf("after the retry: %+v", r)
			}
		})
	}
}

// TestLiveClaimIsExtended: a request that runs longer than the lease keeps
// its key, because its process extends the lease while it runs.
func TestLiveClaimIsExtended(t *testing.T) {
	// The default lease: extensions every 1.7 s leave a busy machine 3 s
	// of slack before the claim would lapse.
	const lease = idempotency.DefaultLease
	f := newFixture(t, fixtureConfig{lease: lease})
	ctx := context.Background()
	block, entered := make(chan struct{}), make(chan struct{}, 1)
	unblock := sync.OnceFunc(func() { close(block) })
	t.Cleanup(unblock)
	f.set(func(f *fixture) { f.block, f.entered = block, entered })
	done := make(chan response, 1)
	go func() { done <- f.post(t, "/things", "slow", `{}`) }()
	<-entered

	var firstEnd time.Time
	if err := f.pool.QueryRow(ctx, "SELECT locked_until FROM idempotency_keys WHERE key = 'slow'").Scan(&firstEnd); err != nil {
		t.Fatal(err)
	}
	// Wait, by the database clock, until the first lease is over.
	eventually(t, lease+20*time.Second, "the first lease to end", func() bool {
		var over bool
		if err := f.pool.QueryRow(ctx, "SELECT now() > $1", firstEnd).Scan(&over); err != nil {
			t.Fatal(err)
		}
		return over
	})
	r := f.postWithin(t, 20*time.Second, "/things", "slow", `{}`)
	wantProblem(t, r, http.StatusConflict, httpx.SlugIdempotencyInFlight)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("in-flight answer without Retry-After")
	}
	var extended bool
	if err := f.pool.QueryRow(ctx, "SELECT locked_until > $1 FROM idempotency_keys WHERE key = 'slow'", firstEnd).Scan(&extended); err != nil || !extended {
		t.Fatalf("lease not extended (%v)", err)
	}

	unblock()
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

// holdClaimUntilKilled runs in a child process (see TestMain): it claims
// key "k" on POST /things in the database at url with the default lease,
// prints "claimed" and blocks in the handler until it is killed.
func holdClaimUntilKilled(url string) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	store, err := idempotency.New(pool, idempotency.Config{Service: "test"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	h := store.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		fmt.Println("claimed")
		<-ctx.Done() // never: only SIGKILL ends this process
	}))
	req := httptest.NewRequest(http.MethodPost, "/things", strings.NewReader(`{}`))
	req.Header.Set(idempotency.Header, "k")
	h.ServeHTTP(httptest.NewRecorder(), req)
	fmt.Fprintln(os.Stderr, "the request was not claimed")
	os.Exit(1)
}

// TestKilledOwnerClaimIsTakenOver: a process killed while holding a claim
// stops extending it, and another process gets the key within about one
// default lease (seconds, not a minute), running the same command id.
func TestKilledOwnerClaimIsTakenOver(t *testing.T) {
	// The fixture is the live replica; the child, on the same database,
	// is the one that dies.
	f := newFixture(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), deadOwnerEnv+"="+f.url)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	claimed := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		claimed <- line == "claimed\n"
		_, _ = io.Copy(io.Discard, out)
		waited <- cmd.Wait()
	}()
	select {
	case ok := <-claimed:
		if !ok {
			t.Fatal("the child process did not claim the key")
		}
	case <-time.After(time.Minute):
		t.Fatal("the child process did not claim the key within a minute")
	}

	// Alive, the child holds the key.
	wantProblem(t, f.post(t, "/things", "k", `{}`), http.StatusConflict, httpx.SlugIdempotencyInFlight)
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times while the owner lived", n)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var got response
	// "Within seconds": the default lease plus room for a busy machine,
	// a fixed bound so that a longer default lease fails here.
	const takeoverBound = 20 * time.Second
	eventually(t, takeoverBound, "the dead owner's key to be taken over", func() bool {
		got = f.post(t, "/things", "k", `{}`)
		if got.status == http.StatusConflict && strings.Contains(got.body, httpx.SlugIdempotencyInFlight) {
			return false
		}
		return true
	})
	if got.status != http.StatusAccepted || got.replays {
		t.Fatalf("takeover: %+v", got)
	}
	t.Logf("key taken over %s after the kill (lease %s)", time.Since(killed).Round(time.Millisecond), idempotency.DefaultLease)
	if ids := f.commandIDs(); len(ids) != 1 || ids[0] != idempotency.DeriveCommandID("test", "POST /things", "k") {
		t.Fatalf("command ids %q, want the derived one once", ids)
	}
	if r := f.post(t, "/things", "k", `{}`); !r.replays {
		t.Fatalf("after takeover: %+v", r)
	}
}

func TestAbandonedClaimIsTakenOver(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// A claim left by a crashed process: in flight, lease expired.
	if _, err := f.pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, fingerprint, state, claim_token, locked_until, expires_at)
		VALUES ('POST /things', 'k', sha256('{}'::bytea), 'in_flight', gen_random_uuid(), now() - interval '1 millisecond', now() + interval '1 hour')`); err != nil {
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

// TestMigrationForgetsTransientAnswers: answers stored by earlier versions
// that were not final are deleted by migration 0002; final ones and live
// claims stay.
func TestMigrationForgetsTransientAnswers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	problem := func(slug string) string {
		return `{"type":"` + httpx.ProblemTypeBase + slug + `","title":"Conflict","status":409}`
	}
	rows := []struct {
		key    string
		state  string
		status any
		body   any
		kept   bool
	}{
		{"accepted", "done", 202, `{"sku":"a"}`, true},
		{"validation", "done", 400, problem(httpx.SlugValidation), true},
		{"illegal-state", "done", 409, problem(httpx.SlugIllegalState), true},
		{"in-flight", "in_flight", nil, nil, true},
		{"version-conflict", "done", 409, problem(httpx.SlugVersionConflict), false},
		{"rate-limited", "done", 429, problem(httpx.SlugRateLimited), false},
		{"request-timeout", "done", 408, `{}`, false},
		{"too-early", "done", 425, `{}`, false},
	}
	for _, r := range rows {
		var body any
		if s, ok := r.body.(string); ok {
			body = []byte(s)
		}
		if _, err := f.pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, fingerprint, state, claim_token, locked_until, status, headers, body, expires_at)
			VALUES ('POST /things', $1, sha256('{}'::bytea), $2,
			        CASE WHEN $2 = 'in_flight' THEN gen_random_uuid() END,
			        CASE WHEN $2 = 'in_flight' THEN now() + interval '1 minute' END,
			        $3, '{}'::jsonb, $4, now() + interval '1 hour')`,
			r.key, r.state, r.status, body); err != nil {
			t.Fatal(err)
		}
	}
	// Re-run the migration as if the database had been at version 1.
	if _, err := f.pool.Exec(ctx, "DELETE FROM schema_migrations WHERE component = 'idempotency' AND version = 2"); err != nil {
		t.Fatal(err)
	}
	if err := idempotency.Migrate(ctx, f.pool); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if got := f.rows(t, r.key) == 1; got != r.kept {
			t.Errorf("%s: kept %v, want %v", r.key, got, r.kept)
		}
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
	eventually(t, 5*time.Second, "the purger to delete the expired key", func() bool {
		var left int
		if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
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
		{"short lease", idempotency.Config{Service: "x", Lease: idempotency.MinLease - time.Millisecond}, false},
		{"shortest lease", idempotency.Config{Service: "x", Lease: idempotency.MinLease}, true},
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
