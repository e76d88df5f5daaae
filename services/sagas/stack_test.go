package sagas_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is the whole system in one test process: orders, inventory,
// shipping and the sagas coordinator, each a real service (serve.New with
// its own PostgreSQL database, migrations, relay, projector and
// workers), all on one NATS server of the stack's own. A service can be
// left out at the start, stopped and started again on the same database,
// as a process that dies and comes back would.
type stack struct {
	t        *testing.T
	natsURL  string
	js       jetstream.JetStream
	dbs      map[string]string
	timing   coordinator.Config
	contract *servetest.Contract
	client   *http.Client

	mu      sync.Mutex
	running map[string]*process
	stores  map[string]*postgres.Store
}

type process struct {
	srv *serve.Server
	hs  *httptest.Server
}

var allServices = []string{"orders", "inventory", "shipping", "sagas"}

// newStack gives every service a database and starts the services in
// start; cfg tunes the coordinator (its saga timeouts).
func newStack(t *testing.T, cfg coordinator.Config, start ...string) *stack {
	t.Helper()
	contract, err := servetest.LoadContract()
	if err != nil {
		t.Fatalf("load OpenAPI contract: %v", err)
	}
	s := &stack{
		t: t, natsURL: natsbustest.Server(t), dbs: make(map[string]string), timing: cfg, contract: contract,
		client:  &http.Client{Timeout: 30 * time.Second},
		running: make(map[string]*process), stores: make(map[string]*postgres.Store),
	}
	for _, svc := range allServices {
		s.dbs[svc] = testenv.Postgres(t)
	}
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if s.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	// Stopped first when the test ends (cleanups run last in, first out):
	// the services, before their databases and NATS go away.
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for name, p := range s.running {
			p.hs.Close()
			p.srv.Close()
			delete(s.running, name)
		}
	})
	for _, svc := range start {
		s.start(svc)
	}
	return s
}

// start runs svc on its database (again, if it ran before).
func (s *stack) start(svc string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[svc]; ok {
		s.t.Fatalf("%s already runs", svc)
	}
	cfg := serve.Config{
		Service:     svc,
		DatabaseURL: s.dbs[svc],
		NATSURL:     s.natsURL,
		Logger:      testLogger(s.t, svc),
		Coordinator: s.timing,
	}
	srv, err := serve.New(context.Background(), cfg)
	if err != nil {
		s.t.Fatalf("start %s: %v", svc, err)
	}
	s.running[svc] = &process{srv: srv, hs: httptest.NewServer(srv.Handler())}
}

// stop ends svc as a shutdown does: its workers stop, its connections
// close; what it had not acknowledged is delivered again later.
func (s *stack) stop(svc string) {
	s.t.Helper()
	s.mu.Lock()
	p, ok := s.running[svc]
	delete(s.running, svc)
	s.mu.Unlock()
	if !ok {
		s.t.Fatalf("%s does not run", svc)
	}
	p.hs.Close()
	p.srv.Close()
}

// store reads (never writes) svc's event store.
func (s *stack) store(svc string) *postgres.Store {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stores[svc]; ok {
		return st
	}
	pool, err := pgxpool.New(context.Background(), s.dbs[svc])
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(pool.Close)
	st, err := postgres.New(context.Background(), pool, postgres.Config{})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = st.Close() })
	s.stores[svc] = st
	return st
}

// events returns the events of stream in svc's store.
func (s *stack) events(t testing.TB, svc, stream string) []domain.Envelope {
	t.Helper()
	evs, err := s.store(svc).ReadStream(context.Background(), stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to svc and checks the answer against the API
// contract.
func (s *stack) do(t testing.TB, svc, method, path, body string, header ...string) response {
	t.Helper()
	s.mu.Lock()
	p, ok := s.running[svc]
	s.mu.Unlock()
	if !ok {
		t.Fatalf("%s %s: %s does not run", method, path, svc)
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range s.contract.CheckResponse(method, path, res.StatusCode, res.Header, b) {
		t.Errorf("contract: %s %s: %s", method, path, msg)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// get sends GET path to svc and decodes a 200 answer into v; it returns
// the status.
func (s *stack) get(t testing.TB, svc, path string, v any) int {
	t.Helper()
	res := s.do(t, svc, http.MethodGet, path, "")
	if res.status == http.StatusOK && v != nil {
		dec := json.NewDecoder(bytes.NewReader(res.body))
		if err := dec.Decode(v); err != nil {
			t.Fatalf("GET %s: decode %s: %v", path, res.body, err)
		}
	}
	return res.status
}

// post sends POST path with body to svc and fails the test unless the
// answer has status want.
func (s *stack) post(t testing.TB, svc, path, body string, want int, v any) response {
	t.Helper()
	res := s.do(t, svc, http.MethodPost, path, body)
	if res.status != want {
		t.Fatalf("POST %s: %d %s, want %d", path, res.status, res.body, want)
	}
	if v != nil {
		if err := json.Unmarshal(res.body, v); err != nil {
			t.Fatalf("POST %s: decode %s: %v", path, res.body, err)
		}
	}
	return res
}

// testLogger sends a service's log lines to the test's log when the test
// runs with -v and fails, and nowhere otherwise.
func testLogger(t *testing.T, svc string) *slog.Logger {
	return slog.New(slog.NewTextHandler(&testWriter{t: t, prefix: svc + ": "}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	done   bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		defer func() {
			// t.Log panics once the test has ended; a late line of a
			// service still stopping is dropped.
			if recover() != nil {
				w.done = true
			}
		}()
		w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func mustUnmarshal(t testing.TB, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

// publishAgain publishes e, an event of svc's store, again as svc's
// relay did, and returns its sequence in its stream: the consumers get
// the very message a second time, as after a lost acknowledgement. Only
// the message id header is left out, or JetStream would drop the repeat
// itself.
func (s *stack) publishAgain(t testing.TB, svc string, e domain.Envelope) uint64 {
	t.Helper()
	msg, err := natsbus.Encode(svc, e)
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Del(natsbus.HeaderMsgID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatal("JetStream took the message for a duplicate")
	}
	return ack.Sequence
}

// waitWorkQueueTook waits until the message seq of a work-queue stream is
// gone: its consumer acknowledged it.
func (s *stack) waitWorkQueueTook(t testing.TB, stream string, seq uint64) {
	t.Helper()
	ctx := context.Background()
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, within, fmt.Sprintf("%s message %d acknowledged", stream, seq), func() (bool, string) {
		_, err := st.GetMsg(ctx, seq)
		return errors.Is(err, jetstream.ErrMsgNotFound), fmt.Sprintf("get: %v", err)
	})
}

// waitAcknowledged waits until the durable consumer of stream has
// acknowledged every message up to seq.
func (s *stack) waitAcknowledged(t testing.TB, stream, durable string, seq uint64) {
	t.Helper()
	ctx := context.Background()
	coordinatortest.Eventually(t, within, fmt.Sprintf("%s message %d acknowledged by %s", stream, seq, durable), func() (bool, string) {
		c, err := s.js.Consumer(ctx, stream, durable)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.AckFloor.Stream >= seq, fmt.Sprintf("ack floor %+v delivered %+v pending %d ack pending %d redelivered %d", info.AckFloor, info.Delivered, info.NumPending, info.NumAckPending, info.NumRedelivered)
	})
}

// metric returns the value of an unlabelled metric of svc's /metrics.
func (s *stack) metric(t testing.TB, svc, name string) float64 {
	t.Helper()
	res := s.do(t, svc, http.MethodGet, "/metrics", "")
	for _, line := range strings.Split(string(res.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	t.Fatalf("%s has no metric %s", svc, name)
	return 0
}

// listSagas returns the first page (up to 500) of GET /api/sagas?query.
func (s *stack) listSagas(t testing.TB, query string) []sagaView {
	t.Helper()
	var page struct {
		Items []sagaView `json:"items"`
	}
	if code := s.get(t, "sagas", "/api/sagas?limit=500&"+query, &page); code != http.StatusOK {
		t.Fatalf("GET /api/sagas?%s: %d", query, code)
	}
	return page.Items
}

// placed is the answer to POST /api/orders.
type placed struct {
	OrderID string `json:"order_id"`
	SagaID  string `json:"saga_id"`
	Status  string `json:"status"`
}

// placeOrder places an order of quantity units of each sku to country.
func (s *stack) placeOrder(t testing.TB, country string, quantity int, skus ...string) placed {
	t.Helper()
	p, err := s.tryPlaceOrder("c-42", country, quantity, skus...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryPlaceOrder places an order for customer; it may run on any
// goroutine.
func (s *stack) tryPlaceOrder(customer, country string, quantity int, skus ...string) (placed, error) {
	items := make([]string, len(skus))
	for i, sku := range skus {
		items[i] = fmt.Sprintf(`{"sku": %q, "quantity": %d, "unit_price_cents": 1299}`, sku, quantity)
	}
	body := fmt.Sprintf(`{"customer_id": %q, "items": [%s], "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": %q}}`,
		customer, strings.Join(items, ", "), country)
	s.mu.Lock()
	p, ok := s.running["orders"]
	s.mu.Unlock()
	if !ok {
		return placed{}, errors.New("orders does not run")
	}
	res, err := s.client.Post(p.hs.URL+"/api/orders", "application/json", strings.NewReader(body))
	if err != nil {
		return placed{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return placed{}, err
	}
	if msgs := s.contract.CheckResponse(http.MethodPost, "/api/orders", res.StatusCode, res.Header, b); len(msgs) > 0 {
		return placed{}, fmt.Errorf("contract: POST /api/orders: %v", msgs)
	}
	var pl placed
	if res.StatusCode != http.StatusAccepted {
		return placed{}, fmt.Errorf("POST /api/orders: %d %s", res.StatusCode, b)
	}
	if err := json.Unmarshal(b, &pl); err != nil || pl.OrderID == "" || pl.SagaID == "" || pl.Status != "pending" {
		return placed{}, fmt.Errorf("POST /api/orders: %s (%v)", b, err)
	}
	return pl, nil
}

// restock adds quantity to sku.
func (s *stack) restock(t testing.TB, sku string, quantity int) {
	t.Helper()
	s.post(t, "inventory", "/api/inventory/"+sku+"/restock", fmt.Sprintf(`{"quantity": %d}`, quantity), http.StatusAccepted, nil)
}

// stock is GET /api/inventory/{sku}.
type stock struct {
	OnHand    int64 `json:"on_hand"`
	Reserved  int64 `json:"reserved"`
	Available int64 `json:"available"`
}

// waitStock waits until sku's stock is want.
func (s *stack) waitStock(t testing.TB, sku string, want stock) {
	t.Helper()
	coordinatortest.Eventually(t, 30*time.Second, "stock of "+sku, func() (bool, string) {
		var got stock
		status := s.get(t, "inventory", "/api/inventory/"+sku, &got)
		return status == http.StatusOK && got == want, fmt.Sprintf("%d %+v, want %+v", status, got, want)
	})
}

// orderView is GET /api/orders/{id}.
type orderView struct {
	Status     string `json:"status"`
	Reason     string `json:"reason"`
	SagaID     string `json:"saga_id"`
	ShipmentID string `json:"shipment_id"`
}

// waitOrder waits until the order has status (and reason, when given).
func (s *stack) waitOrder(t testing.TB, orderID, status, reason string) orderView {
	t.Helper()
	var got orderView
	coordinatortest.Eventually(t, 30*time.Second, "order "+orderID, func() (bool, string) {
		got = orderView{}
		code := s.get(t, "orders", "/api/orders/"+orderID, &got)
		return code == http.StatusOK && got.Status == status && got.Reason == reason,
			fmt.Sprintf("%d %+v, want %s %q", code, got, status, reason)
	})
	return got
}

// sagaView is GET /api/sagas/{id}.
type sagaView struct {
	SagaID            string        `json:"saga_id"`
	Type              string        `json:"type"`
	DefinitionVersion int           `json:"definition_version"`
	OrderID           string        `json:"order_id"`
	Status            string        `json:"status"`
	CurrentStep       string        `json:"current_step"`
	Steps             []stepView    `json:"steps"`
	History           []historyView `json:"history"`
	StartedAt         string        `json:"started_at"`
	EndedAt           string        `json:"ended_at"`
}

type stepView struct {
	Name                 string `json:"name"`
	Status               string `json:"status"`
	Attempts             int    `json:"attempts"`
	StartedAt            string `json:"started_at"`
	EndedAt              string `json:"ended_at"`
	Error                string `json:"error"`
	CompensationAttempts int    `json:"compensation_attempts"`
}

type historyView struct {
	At     string         `json:"at"`
	Event  string         `json:"event"`
	Detail map[string]any `json:"detail"`
}

// waitSaga waits until the saga has status and returns it.
func (s *stack) waitSaga(t testing.TB, sagaID, status string, within time.Duration) sagaView {
	t.Helper()
	var got sagaView
	coordinatortest.Eventually(t, within, "saga "+sagaID, func() (bool, string) {
		got = sagaView{}
		code := s.get(t, "sagas", "/api/sagas/"+sagaID, &got)
		return code == http.StatusOK && got.Status == status, fmt.Sprintf("%d status %q current %q, want %s", code, got.Status, got.CurrentStep, status)
	})
	return got
}

// steps lists a saga's steps as "name:status".
func (v sagaView) steps() string {
	out := make([]string, len(v.Steps))
	for i, st := range v.Steps {
		out[i] = st.Name + ":" + st.Status
	}
	return strings.Join(out, " ")
}

// events lists the history's event names.
func (v sagaView) events() []string {
	out := make([]string, len(v.History))
	for i, h := range v.History {
		out[i] = h.Event
	}
	return out
}

// has reports whether the history holds an entry of event whose detail
// has every given key/value pair.
func (v sagaView) has(event string, detail ...any) bool {
next:
	for _, h := range v.History {
		if h.Event != event {
			continue
		}
		for i := 0; i+1 < len(detail); i += 2 {
			if fmt.Sprint(h.Detail[detail[i].(string)]) != fmt.Sprint(detail[i+1]) {
				continue next
			}
		}
		return true
	}
	return false
}
