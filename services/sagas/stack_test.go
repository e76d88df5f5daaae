package sagas_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
	"github.com/orderflow/orderflow/services/internal/stacktest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is the whole system in one test process: orders, inventory,
// shipping and the sagas coordinator, each a real service (serve.New with
// its own PostgreSQL database, migrations, relay, projector and
// workers), all on one NATS server of the stack's own. A service can be
// left out at the start, stopped and started again on the same database,
// as a process that dies and comes back would. Its client (every request
// and wait of stacktest, each answer checked against the API contract)
// finds a service by its name.
type stack struct {
	*stacktest.Client
	t       *testing.T
	natsURL string
	js      jetstream.JetStream
	dbs     map[string]string
	timing  coordinator.Config

	streams *stacktest.Streams // reads the services' event stores

	mu      sync.Mutex
	running map[string]*process
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
		t: t, natsURL: natsbustest.Server(t), dbs: make(map[string]string), timing: cfg,
		streams: stacktest.NewStreams(t), running: make(map[string]*process),
	}
	s.Client = stacktest.New(stacktest.Config{Base: s.base, Within: within, Contract: contract})
	for _, svc := range allServices {
		s.dbs[svc] = testenv.Postgres(t)
	}
	s.js = stacktest.JetStream(t, s.natsURL)
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

// base is the URL of svc's server, if svc runs.
func (s *stack) base(svc string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.running[svc]
	if !ok {
		return "", false
	}
	return p.hs.URL, true
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

// events returns the events of stream in svc's store.
func (s *stack) events(t testing.TB, svc, stream string) []domain.Envelope {
	t.Helper()
	return s.streams.Read(t, s.dbs[svc], stream)
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

// listSagas returns every saga of GET /api/sagas?query.
func (s *stack) listSagas(t testing.TB, query string) []stacktest.Saga {
	t.Helper()
	return stacktest.List[stacktest.Saga](t, s.Client, "sagas", "/api/sagas?"+query)
}

// placeOrder places an order of quantity units of each sku to country
// for customer c-42.
func (s *stack) placeOrder(t testing.TB, country string, quantity int, skus ...string) stacktest.Placed {
	t.Helper()
	lines := make([]stacktest.Line, len(skus))
	for i, sku := range skus {
		lines[i] = stacktest.Line{SKU: sku, Quantity: quantity}
	}
	return s.MustPlaceOrder(t, "c-42", country, lines...)
}
