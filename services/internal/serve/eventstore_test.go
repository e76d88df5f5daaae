package serve_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/kurrentdb"
	"github.com/orderflow/orderflow/internal/eventstore/kurrentdb/kurrentdbfake"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// The event store is named by a URL, and a service whose events live in
// KurrentDB must behave exactly as one whose events live in its PostgreSQL
// database. TestEventStoreBackends runs each scenario twice, on twins that
// differ only in their event store: the default (the service's database)
// and KurrentDB, reached through the real client over the gRPC protocol
// fake (kurrentdbfake). Both twins have a real PostgreSQL database for
// their read models, idempotency keys and relay checkpoint, and a real
// NATS their relay publishes to. Their answers (statuses, bodies and
// headers with ids and timestamps masked), read-model rows and published
// subjects are compared line by line; the PostgreSQL twin's are also
// checked against what the API promises, so that two equally wrong twins
// fail too.
func TestEventStoreBackends(t *testing.T) {
	tests := []struct {
		service  string
		scenario func(t *testing.T, tw *twin) *transcript
	}{
		{"inventory", inventoryScenario},
		{"orders", ordersScenario},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			var got [2]*transcript
			for i, backend := range []string{"postgres", "kurrentdb"} {
				t.Run(backend, func(t *testing.T) {
					tw := startTwin(t, tc.service, backend)
					got[i] = tc.scenario(t, tw)
					wantEventsWhereNamed(t, tw)
				})
			}
			if t.Failed() {
				return
			}
			pg, kdb := got[0].lines, got[1].lines
			for i := range max(len(pg), len(kdb)) {
				var p, k string
				if i < len(pg) {
					p = pg[i]
				}
				if i < len(kdb) {
					k = kdb[i]
				}
				if p != k {
					t.Errorf("step %d differs:\n postgres:  %s\n kurrentdb: %s", i, p, k)
				}
			}
			if len(pg) < 10 {
				t.Fatalf("the scenario compared only %d steps", len(pg))
			}
			t.Logf("both twins answered alike:\n%s", strings.Join(pg, "\n"))
		})
	}
}

// twin is one service under test and a handle on its event store and its
// NATS.
type twin struct {
	env     *servetest.Env
	store   eventstore.Store
	js      jetstream.JetStream
	backend string
}

// startTwin runs service with its events in backend: "postgres" (the
// default, no event store URL) or "kurrentdb" (a fresh protocol fake).
func startTwin(t *testing.T, service, backend string) *twin {
	t.Helper()
	natsURL := testenv.NATS(t)
	var storeURL string
	if backend == "kurrentdb" {
		storeURL = kurrentdbfake.Start(t, kurrentdbfake.New())
	}
	env := servetest.Start(t, service, func(c *serve.Config) {
		c.NATSURL = natsURL
		c.EventStoreURL = storeURL
	})
	tw := &twin{env: env, store: env.Store, backend: backend}
	if storeURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := kurrentdb.New(ctx, storeURL, kurrentdb.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		tw.store = st
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if tw.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	waitReady(t, env)
	return tw
}

// wantEventsWhereNamed checks that the twin's events are where its event
// store URL says, and only there: in the service's database by default,
// in KurrentDB (and no event table in the database) otherwise.
func wantEventsWhereNamed(t *testing.T, tw *twin) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var table bool
	if err := tw.env.Pool.QueryRow(ctx, "SELECT to_regclass('es_events') IS NOT NULL").Scan(&table); err != nil {
		t.Fatal(err)
	}
	head, err := tw.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case head == 0:
		t.Fatalf("%s: the event store is empty", tw.backend)
	case tw.backend == "postgres" && !table:
		t.Fatal("postgres: the service's database has no event table")
	case tw.backend == "kurrentdb" && table:
		t.Fatal("kurrentdb: the service's database has an event table of its own")
	}
}

// transcript is what a scenario saw, one masked line per step.
type transcript struct {
	lines []string
}

var (
	uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	timeRE = regexp.MustCompile(`\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)`)
)

// mask hides what legitimately differs between twins: generated ids and
// times.
func mask(s string) string {
	return timeRE.ReplaceAllString(uuidRE.ReplaceAllString(s, "<id>"), "<time>")
}

// add records a response: status, the headers a client acts on, and body.
func (tr *transcript) add(step string, res servetest.Response) {
	var hdr []string
	for _, h := range []string{"Content-Type", "Location", "ETag", "Retry-After"} {
		if v := res.Header.Get(h); v != "" {
			hdr = append(hdr, h+"="+v)
		}
	}
	tr.note(step, fmt.Sprintf("%d %s %s", res.Status, strings.Join(hdr, " "), res.Body))
}

// note records a step's outcome that is no HTTP answer.
func (tr *transcript) note(step, what string) {
	tr.lines = append(tr.lines, step+": "+mask(what))
}

// want fails the test unless res has the status the API promises.
func want(t *testing.T, step string, res servetest.Response, status int) {
	t.Helper()
	if res.Status != status {
		t.Fatalf("%s: %d %s, want %d", step, res.Status, res.Body, status)
	}
}

func inventoryScenario(t *testing.T, tw *twin) *transcript {
	env := tw.env
	tr := new(transcript)
	step := func(name string, res servetest.Response, status int) servetest.Response {
		t.Helper()
		want(t, name, res, status)
		tr.add(name, res)
		return res
	}

	first := step("restock", env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":5}`, "Idempotency-Key", "k-1"), 202)
	replay := step("replay", env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":5}`, "Idempotency-Key", "k-1"), 202)
	if string(replay.Body) != string(first.Body) {
		t.Fatalf("replay answered %s, the first answer was %s", replay.Body, first.Body)
	}
	step("key reused", env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":6}`, "Idempotency-Key", "k-1"), 409)
	step("bad quantity", env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":0}`), 400)
	step("restock another", env.Post(t, "/api/inventory/SKU-2/restock", `{"quantity":3}`), 202)
	read := step("read", env.Eventually(t, 10*time.Second, "/api/inventory/SKU-1", versionAtLeast(1)), 200)
	step("not modified", env.Get(t, "/api/inventory/SKU-1", "If-None-Match", read.Header.Get("ETag")), 304)
	step("unknown sku", env.Get(t, "/api/inventory/NOPE"), 404)

	// Another replica restocks SKU-1 behind the service's back: its next
	// command decides on a state kept from before, its append meets a
	// version conflict in the store, and it retries on the stream as
	// stored.
	tr.note("another writer", fmt.Sprint(appendCopy(t, tw.store, "stock-SKU-1")))
	res := step("restock after another writer", env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":2}`), 202)
	var ack struct {
		SKU     string `json:"sku"`
		Version int64  `json:"version"`
	}
	res.JSON(t, &ack)
	if ack.Version != 3 {
		t.Fatalf("restock after another writer: version %d, want 3 (after the other writer's 2)", ack.Version)
	}
	res = step("read after", env.Eventually(t, 10*time.Second, "/api/inventory/SKU-1", versionAtLeast(3)), 200)
	var stock struct {
		OnHand    int64 `json:"on_hand"`
		Available int64 `json:"available"`
	}
	if err := json.Unmarshal(res.Body, &stock); err != nil {
		t.Fatal(err)
	}
	if stock.OnHand != 12 || stock.Available != 12 {
		t.Fatalf("SKU-1 %s, want 12 on hand and available (5 + 5 + 2)", res.Body)
	}
	step("list", env.Eventually(t, 10*time.Second, "/api/inventory", itemsAtLeast(2)), 200)

	tr.note("admin", projectionsCaughtUp(t, env))
	tr.note("read model", readModel(t, env, "rm_stock"))
	tr.note("relay", published(t, tw, "inventory", 4))
	return tr
}

func ordersScenario(t *testing.T, tw *twin) *transcript {
	env := tw.env
	tr := new(transcript)
	step := func(name string, res servetest.Response, status int) servetest.Response {
		t.Helper()
		want(t, name, res, status)
		tr.add(name, res)
		return res
	}
	const order = `{"customer_id":"c-42","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1299}],` +
		`"shipping_address":{"name":"Ada L.","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`

	first := step("place", env.Post(t, "/api/orders", order, "Idempotency-Key", "o-1"), 202)
	replay := step("replay", env.Post(t, "/api/orders", order, "Idempotency-Key", "o-1"), 202)
	if string(replay.Body) != string(first.Body) {
		t.Fatalf("replay answered %s, the first answer was %s", replay.Body, first.Body)
	}
	step("key reused", env.Post(t, "/api/orders", strings.Replace(order, `"quantity":2`, `"quantity":3`, 1), "Idempotency-Key", "o-1"), 409)
	step("no items", env.Post(t, "/api/orders", `{"customer_id":"c-42","items":[],"shipping_address":{"name":"A","line1":"1","city":"S","postal_code":"1","country":"US"}}`), 400)
	step("place another", env.Post(t, "/api/orders", strings.Replace(order, `"c-42"`, `"c-7"`, 1)), 202)
	var placed struct {
		OrderID string `json:"order_id"`
		SagaID  string `json:"saga_id"`
		Status  string `json:"status"`
	}
	first.JSON(t, &placed)
	if placed.Status != "pending" || placed.OrderID == "" {
		t.Fatalf("place: %s, want a pending order", first.Body)
	}
	path := "/api/orders/" + placed.OrderID
	read := step("read", env.Eventually(t, 10*time.Second, path, versionAtLeast(1)), 200)
	step("not modified", env.Get(t, path, "If-None-Match", read.Header.Get("ETag")), 304)
	step("unknown order", env.Get(t, "/api/orders/"+uuid.NewString()), 404)
	step("list", env.Eventually(t, 10*time.Second, "/api/orders?customer_id=c-42", itemsAtLeast(1)), 200)
	step("cancel", env.Post(t, path+"/cancel", `{}`), 202)
	res := step("read after cancel", env.Eventually(t, 10*time.Second, path, versionAtLeast(2)), 200)
	var o struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(res.Body, &o); err != nil {
		t.Fatal(err)
	}
	if o.Status != "cancelled" || o.Reason != "cancelled_by_customer" {
		t.Fatalf("after cancel: %s, want cancelled by the customer", res.Body)
	}
	step("cancel again", env.Post(t, path+"/cancel", `{}`), 409)

	tr.note("admin", projectionsCaughtUp(t, env))
	tr.note("read model", readModel(t, env, "rm_orders"))
	tr.note("relay", published(t, tw, "orders", 3))
	return tr
}

// versionAtLeast accepts a 200 whose resource has reached version v.
func versionAtLeast(v int64) func(servetest.Response) bool {
	return func(res servetest.Response) bool {
		var r struct {
			Version int64 `json:"version"`
		}
		return res.Status == http.StatusOK && json.Unmarshal(res.Body, &r) == nil && r.Version >= v
	}
}

// itemsAtLeast accepts a 200 list of at least n items.
func itemsAtLeast(n int) func(servetest.Response) bool {
	return func(res servetest.Response) bool {
		var p struct {
			Items []json.RawMessage `json:"items"`
		}
		return res.Status == http.StatusOK && json.Unmarshal(res.Body, &p) == nil && len(p.Items) >= n
	}
}

// appendCopy appends to stream, as another writer would, a copy of its
// last event under a new id at the version after it, and returns that
// version.
func appendCopy(t *testing.T, store eventstore.Store, stream string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := store.ReadStream(ctx, stream, 1, 0)
	if err != nil || len(evs) == 0 {
		t.Fatalf("read %s: %d events, %v", stream, len(evs), err)
	}
	last := evs[len(evs)-1]
	e := domain.Envelope{ID: uuid.NewString(), Type: last.Type, SchemaVersion: last.SchemaVersion, Data: last.Data, Metadata: last.Metadata}
	res, err := store.Append(ctx, stream, domain.ExactVersion(last.Version), []domain.Envelope{e})
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	// The copy at the same place again is the stale writer's conflict.
	e.ID = uuid.NewString()
	if _, err := store.Append(ctx, stream, domain.ExactVersion(last.Version), []domain.Envelope{e}); !errors.Is(err, eventstore.ErrVersionConflict) {
		t.Fatalf("stale append to %s: %v, want ErrVersionConflict", stream, err)
	}
	return res.NextVersion
}

// projectionsCaughtUp waits until every projection of the operations API
// is live with no lag, and returns the list without the figures that
// depend on the store (positions) or the clock (rates).
func projectionsCaughtUp(t *testing.T, env *servetest.Env) string {
	t.Helper()
	type item struct {
		Name       string `json:"name"`
		Checkpoint uint64 `json:"checkpoint"`
		Head       uint64 `json:"head"`
		Lag        int64  `json:"lag"`
		Status     string `json:"status"`
	}
	var items []item
	env.Eventually(t, 10*time.Second, "/admin/projections", func(res servetest.Response) bool {
		var p struct {
			Items []item `json:"items"`
		}
		if res.Status != http.StatusOK || json.Unmarshal(res.Body, &p) != nil || len(p.Items) == 0 {
			return false
		}
		for _, it := range p.Items {
			if it.Lag != 0 || it.Status != "live" || it.Head == 0 || it.Checkpoint != it.Head {
				return false
			}
		}
		items = p.Items
		return true
	})
	var out []string
	for _, it := range items {
		out = append(out, fmt.Sprintf("%s %s lag %d", it.Name, it.Status, it.Lag))
	}
	return strings.Join(out, "; ")
}

// readModel returns the rows of a read model's view, each as JSON.
func readModel(t *testing.T, env *servetest.Env, view string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := env.Pool.Query(ctx, "SELECT row_to_json(v)::text FROM "+view+" v ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, mask(s))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("read model %s is empty", view)
	}
	// Rows are sorted after masking: the ids they are sorted by differ.
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// published waits until the relay has published n events of the service
// (events.<service>.<Type>) and returns how many of each type.
func published(t *testing.T, tw *twin, service string, n uint64) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		counts, total := subjectCounts(t, tw.js, "events."+service+".>")
		if total == n {
			var out []string
			for _, s := range slices.Sorted(maps.Keys(counts)) {
				out = append(out, fmt.Sprintf("%s=%d", s, counts[s]))
			}
			return strings.Join(out, " ")
		}
		if total > n || time.Now().After(deadline) {
			t.Fatalf("the relay published %d events (%v), want %d", total, counts, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subjectCounts counts the messages of the events stream per subject; the
// stream may not exist yet while the relay starts.
func subjectCounts(t *testing.T, js jetstream.JetStream, filter string) (map[string]uint64, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, natsbus.EventsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, c := range info.State.Subjects {
		total += c
	}
	return info.State.Subjects, total
}

func TestEventStoreURL(t *testing.T) {
	const db = "postgres://u@localhost/db"
	tests := []struct {
		name string
		url  string
		ok   bool
	}{
		{"empty: the service's database", "", true},
		{"the database URL", db, true},
		{"another PostgreSQL database", "postgres://events@localhost/events", true},
		{"postgresql scheme", "postgresql://events@localhost/events", true},
		{"kurrentdb", "kurrentdb://localhost:2113?tls=false", true},
		{"esdb", "esdb://admin:changeit@localhost:2113", true},
		{"esdb cluster by DNS", "esdb+discover://cluster.example:2113", true},
		{"kurrentdb cluster", "kurrentdb://node1:2113,node2:2113,node3:2113", true},
		{"bad PostgreSQL URL", "postgres://u:secret@[::1", false},
		{"bad KurrentDB URL", "kurrentdb://u:secret@localhost:2113?tls=maybe", false},
		{"unknown scheme", "mysql://u:secret@localhost/db", false},
		{"no scheme", "localhost:2113", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := serve.Config{Service: "orders", DatabaseURL: db, EventStoreURL: tc.url}.Validate()
			if tc.ok {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if !errors.Is(err, serve.ErrEventStoreURL) {
				t.Fatalf("Validate() = %v, want ErrEventStoreURL", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

// A service whose KurrentDB does not answer at start fails to start, and
// says that its event store is what is missing.
func TestKurrentDBUnavailableAtStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Port 1 on loopback refuses connections; discovery gives up after
	// one attempt.
	_, err := serve.New(ctx, serve.Config{
		Service:       "inventory",
		DatabaseURL:   testenv.Postgres(t),
		EventStoreURL: "kurrentdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10",
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil || !strings.Contains(err.Error(), "event store") {
		t.Fatalf("New = %v, want an event store error", err)
	}
}

// A service whose KurrentDB goes away is not ready and answers commands
// 503, as with PostgreSQL down, and serves again once it is back.
func TestKurrentDBGoesAway(t *testing.T) {
	fake := kurrentdbfake.New()
	addr, stop, err := kurrentdbfake.Serve(fake, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	// The client gives up after one failed discovery; the adapter then
	// replaces it.
	url := "kurrentdb://" + addr + "?tls=false&maxDiscoverAttempts=1&discoveryInterval=10"
	env := servetest.Start(t, "inventory", func(c *serve.Config) { c.EventStoreURL = url })
	waitReady(t, env)
	want(t, "restock", env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":1}`), 202)

	stop()
	res := env.Eventually(t, 15*time.Second, "/readyz", func(r servetest.Response) bool { return r.Status == http.StatusServiceUnavailable })
	if !strings.Contains(string(res.Body), "event_store") {
		t.Fatalf("readyz: %s, want the event store named", res.Body)
	}
	res = env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":1}`)
	if res.Status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("restock with the event store down: %d %v %s, want 503 with Retry-After", res.Status, res.Header, res.Body)
	}

	_, stop2, err := kurrentdbfake.Serve(fake, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop2)
	waitReady(t, env)
	want(t, "restock when back", env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":1}`), 202)
	env.Eventually(t, 15*time.Second, "/api/inventory/SKU-1", versionAtLeast(2))
}
