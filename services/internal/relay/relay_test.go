package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
	"github.com/orderflow/orderflow/internal/natsembed"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
	"github.com/orderflow/orderflow/services/internal/relay"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// db is a service database with an event store and the relay's tables.
type db struct {
	pool  *pgxpool.Pool
	store *postgres.Store
	cp    *relay.Checkpoints
}

func newDB(t *testing.T) *db {
	t.Helper()
	store, pool := pgtest.New(t, postgres.Config{PollInterval: 200 * time.Millisecond})
	for range 2 { // every start migrates; the second time is a no-op
		if err := relay.Migrate(ctxT(t), pool); err != nil {
			t.Fatal(err)
		}
	}
	return &db{pool: pool, store: store, cp: relay.NewCheckpoints(pool)}
}

// connect opens a client the way services do and makes sure the topology
// exists.
func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := natsbus.Connect(ctxT(t), url, "relay-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

func ensureTopology(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ensureTopologyWith(t, js, natsbus.TopologyConfig{})
}

func ensureTopologyWith(t *testing.T, js jetstream.JetStream, cfg natsbus.TopologyConfig) {
	t.Helper()
	if err := natsbus.EnsureTopology(ctxT(t), js, cfg); err != nil {
		t.Fatal(err)
	}
}

var prefixes = []string{"order-", "stock-", "shipment-", "saga-"}

// appendEvents appends perStream events to each of streams new streams,
// spread over the four contexts, from several writers at once so that the
// streams interleave in the global order.
func appendEvents(t *testing.T, s eventstore.Store, streams, perStream int) {
	t.Helper()
	if err := appendStreams(s, streams, perStream); err != nil {
		t.Fatal(err)
	}
}

// appendStreams is appendEvents for goroutines other than the test's,
// which must not call t.Fatal.
func appendStreams(s eventstore.Store, streams, perStream int) error {
	var (
		wg   sync.WaitGroup
		errs = make(chan error, streams)
		next = make(chan int)
	)
	for range 8 {
		wg.Go(func() {
			// A writer that failed keeps taking streams, so that the
			// sender below never waits for writers that are gone.
			for i := range next {
				stream := prefixes[i%len(prefixes)] + uuid.NewString()
				// Two appends per stream, so the stream's events are not
				// adjacent in the global order.
				for part, n := range []int{perStream / 2, perStream - perStream/2} {
					if n == 0 {
						continue
					}
					evs := make([]domain.Envelope, n)
					for j := range evs {
						evs[j] = domain.Envelope{
							ID: uuid.NewString(), Type: fmt.Sprintf("Happened%d", part), SchemaVersion: 1,
							Data: json.RawMessage(fmt.Sprintf(`{"i":%d,"j":%d}`, i, j)),
						}
					}
					if _, err := s.Append(context.Background(), stream, domain.AnyVersion, evs); err != nil {
						errs <- fmt.Errorf("append %s: %w", stream, err)
						break
					}
				}
			}
		})
	}
	for i := range streams {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs // nil when closed empty
}

func appendOne(t *testing.T, s eventstore.Store, stream, typ, data string) domain.Envelope {
	t.Helper()
	e := domain.Envelope{ID: uuid.NewString(), Type: typ, SchemaVersion: 1, Data: json.RawMessage(data)}
	res, err := s.Append(ctxT(t), stream, domain.AnyVersion, []domain.Envelope{e})
	if err != nil {
		t.Fatalf("append %s %s: %v", stream, typ, err)
	}
	e.Stream, e.Position = stream, res.Position
	return e
}

// storeIDs returns the store's event ids in global order.
func storeIDs(t *testing.T, s eventstore.Store) []string {
	t.Helper()
	evs, err := s.ReadAll(ctxT(t), 0, 0, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

func head(t *testing.T, s eventstore.Store) uint64 {
	t.Helper()
	h, err := s.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// probeSubject carries the messages awaitDuplicateWindow publishes; they
// are no events and streamIDs passes over them.
const probeSubject = "events.probe.Window"

// streamIDs returns the decoded event ids a JetStream stream holds, in
// stream order, checking each message's subject against Route and its
// origin headers against the envelope: a (source, position) pair must not
// repeat.
func streamIDs(t *testing.T, js jetstream.JetStream, stream string) []string {
	t.Helper()
	msgs := natsbustest.Messages(t, js, stream)
	ids := make([]string, 0, len(msgs))
	type origin struct {
		source string
		pos    uint64
	}
	seen := make(map[origin]uint64, len(msgs))
	for _, m := range msgs {
		if m.Subject == probeSubject {
			continue
		}
		e, err := natsbus.Decode(m)
		if err != nil {
			t.Fatalf("%s message %d: %v", stream, m.Seq, err)
		}
		if want, err := natsbus.Route(e); err != nil || want != m.Subject {
			t.Fatalf("%s message %d on %q, Route says %q (%v)", stream, m.Seq, m.Subject, want, err)
		}
		if m.Header.Get(natsbus.HeaderMsgID) != e.ID {
			t.Fatalf("%s message %d: Nats-Msg-Id %q, event id %s", stream, m.Seq, m.Header.Get(natsbus.HeaderMsgID), e.ID)
		}
		source, pos, ok := natsbus.Origin(m.Header)
		if !ok || pos != e.Position {
			t.Fatalf("%s message %d: origin %q %d (%v), event at position %d", stream, m.Seq, source, pos, ok, e.Position)
		}
		if first, dup := seen[origin{source, pos}]; dup {
			t.Fatalf("%s messages %d and %d both come from %s position %d", stream, first, m.Seq, source, pos)
		}
		seen[origin{source, pos}] = m.Seq
		ids = append(ids, e.ID)
	}
	return ids
}

// allIDs is every event id EVENTS and COMMANDS hold.
func allIDs(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	return append(streamIDs(t, js, natsbus.EventsStream), streamIDs(t, js, natsbus.CommandsStream)...)
}

// awaitDuplicateWindow returns once EVENTS has forgotten every message id
// it stored before the call, so that a message published again would be
// stored again. It publishes a probe under one fixed id until the server
// stores it a second time instead of calling it a duplicate: the server
// forgets ids oldest first, so every id older than the probe's is gone by
// then.
func awaitDuplicateWindow(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	probe := func() *jetstream.PubAck {
		m := nats.NewMsg(probeSubject)
		m.Header.Set(jetstream.MsgIDHeader, "window-probe")
		ack, err := js.PublishMsg(ctxT(t), m)
		if err != nil {
			t.Fatalf("publish window probe: %v", err)
		}
		return ack
	}
	if ack := probe(); ack.Duplicate {
		t.Fatal("the first window probe was a duplicate")
	}
	waitFor(t, 30*time.Second, "the duplicate window to pass", func() bool { return !probe().Duplicate })
}

// row is a relay_checkpoints row as the relay committed it.
type row struct {
	exists   bool
	position int64
	resume   *string // JSON text
}

func readRow(t *testing.T, d *db, name string) row {
	t.Helper()
	r := row{exists: true}
	err := d.pool.QueryRow(ctxT(t), "SELECT position, resume::text FROM relay_checkpoints WHERE name = $1", name).Scan(&r.position, &r.resume)
	if errors.Is(err, pgx.ErrNoRows) {
		return row{}
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// restoreRow puts back a row read earlier: the state a crash right after
// that commit leaves, whatever the relay committed since.
func restoreRow(t *testing.T, d *db, name string, r row) {
	t.Helper()
	var err error
	if r.exists {
		_, err = d.pool.Exec(ctxT(t), "UPDATE relay_checkpoints SET position = $2, resume = $3::jsonb WHERE name = $1", name, r.position, r.resume)
	} else {
		_, err = d.pool.Exec(ctxT(t), "DELETE FROM relay_checkpoints WHERE name = $1", name)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// running is a relay whose Run goroutine the test owns.
type running struct {
	r    *relay.Relay
	stop func() error
}

func start(t *testing.T, d *db, js relay.Publisher, cfg relay.Config) running {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	r, err := relay.New(d.store, js, d.cp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(15 * time.Second):
				runErr = errors.New("Run did not return within 15s of its context ending")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return running{r: r, stop: stop}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitCaughtUp(t *testing.T, r *relay.Relay, s eventstore.Store, timeout time.Duration) uint64 {
	t.Helper()
	h := head(t, s)
	waitFor(t, timeout, fmt.Sprintf("checkpoint to reach head %d", h), func() bool { return r.Stats().Checkpoint >= h })
	return h
}

func checkpoint(t *testing.T, d *db, name string) uint64 {
	t.Helper()
	pos, err := d.cp.Get(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(slices.Compact(g), w) {
		t.Fatalf("%s: %d distinct ids, want %d (the store's)", what, len(slices.Compact(g)), len(w))
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  relay.Config
		ok   bool
	}{
		{"name only", relay.Config{Name: "orders"}, true},
		{"name of dashes, digits and underscores", relay.Config{Name: "orders-2_b"}, true},
		{"everything set", relay.Config{Name: "orders", MaxInFlight: 10, CheckpointEvery: time.Second, MinBackoff: time.Second, MaxBackoff: time.Minute, AckTimeout: time.Second, DrainTimeout: time.Second}, true},
		{"min backoff above the default max", relay.Config{Name: "orders", MinBackoff: time.Minute}, true},
		{"no name", relay.Config{}, false},
		{"long name", relay.Config{Name: strings.Repeat("n", 129)}, false},
		{"name with a dot", relay.Config{Name: "orders.v2"}, false},
		{"name with a space", relay.Config{Name: "order relay"}, false},
		{"name with a wildcard", relay.Config{Name: "orders*"}, false},
		{"negative in flight", relay.Config{Name: "orders", MaxInFlight: -1}, false},
		{"in flight above the client's limit", relay.Config{Name: "orders", MaxInFlight: 5000}, false},
		{"negative interval", relay.Config{Name: "orders", CheckpointEvery: -time.Second}, false},
		{"negative ack timeout", relay.Config{Name: "orders", AckTimeout: -time.Second}, false},
		{"min above max backoff", relay.Config{Name: "orders", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, relay.ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	if _, err := relay.New(nil, js, d.cp, relay.Config{Name: "x"}); !errors.Is(err, relay.ErrInvalidConfig) {
		t.Errorf("nil store: %v", err)
	}
	if _, err := relay.New(d.store, nil, d.cp, relay.Config{Name: "x"}); !errors.Is(err, relay.ErrInvalidConfig) {
		t.Errorf("nil publisher: %v", err)
	}
	if _, err := relay.New(d.store, js, nil, relay.Config{Name: "x"}); !errors.Is(err, relay.ErrInvalidConfig) {
		t.Errorf("nil checkpoints: %v", err)
	}
	r, err := relay.New(d.store, js, d.cp, relay.Config{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, 20*time.Second, "the relay to become active", func() bool { return r.Stats().Active })
	if err := r.Run(ctx); !errors.Is(err, relay.ErrAlreadyRunning) {
		t.Errorf("second Run: %v, want ErrAlreadyRunning", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if got := checkpoint(t, d, "unknown"); got != 0 {
		t.Errorf("checkpoint of a relay that never ran = %d", got)
	}
}

func TestPublishesEveryEventInGlobalOrder(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	ensureTopology(t, js)

	appendEvents(t, d.store, 400, 6) // 2400 events waiting before the start
	run := start(t, d, js, relay.Config{})
	appendEvents(t, d.store, 200, 4) // and 800 more while it runs
	// The rate is refreshed every second and kept until the next refresh:
	// polled from the start, a second in which events went out is seen.
	waitFor(t, 30*time.Second, "a publish rate", func() bool { return run.r.Stats().EventsPerSecond > 0 })
	h := waitCaughtUp(t, run.r, d.store, 30*time.Second)

	want := storeIDs(t, d.store)
	if len(want) != 3200 {
		t.Fatalf("store holds %d events", len(want))
	}
	if got := streamIDs(t, js, natsbus.EventsStream); !slices.Equal(got, want) {
		t.Fatalf("EVENTS holds %d messages, not the store's %d events in global order", len(got), len(want))
	}
	for _, m := range natsbustest.Messages(t, js, natsbus.EventsStream) {
		if source := m.Header.Get(natsbus.HeaderSource); source != "test" {
			t.Fatalf("message %d names source %q, want the relay's name", m.Seq, source)
		}
	}
	if got := checkpoint(t, d, "test"); got != h {
		t.Errorf("saved checkpoint %d, head %d", got, h)
	}
	waitFor(t, 20*time.Second, "Stats to see the head", func() bool { return run.r.Stats().Head == h })
	st := run.r.Stats()
	if !st.Active || st.Lag != 0 || st.Published != uint64(len(want)) || st.Duplicates != 0 || st.Skipped != 0 || st.Parked != 0 || st.InFlight != 0 || st.Interruptions != 0 {
		t.Errorf("stats after catching up: %+v", st)
	}
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := run.r.Stats(); st.Active {
		t.Error("stopped relay still reports active")
	}
}

func TestSagaCommandsGoToCommandSubjects(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	ensureTopology(t, js)

	saga := "saga-" + uuid.NewString()
	started := appendOne(t, d.store, saga, "SagaStarted", `{"order_id":"o-1"}`)
	reserve := appendOne(t, d.store, saga, natsbus.CommandIssued,
		`{"context":"inventory","name":"reserve","command_id":"c-1","payload":{"sku":"A","qty":1}}`)
	placed := appendOne(t, d.store, "order-"+uuid.NewString(), "OrderPlaced", `{}`)
	schedule := appendOne(t, d.store, saga, natsbus.CommandIssued,
		`{"context":"shipping","name":"schedule","command_id":"c-2","payload":{}}`)

	run := start(t, d, js, relay.Config{Name: "sagas"})
	waitCaughtUp(t, run.r, d.store, 30*time.Second)

	if got, want := streamIDs(t, js, natsbus.EventsStream), []string{started.ID, placed.ID}; !slices.Equal(got, want) {
		t.Fatalf("EVENTS holds %v, want %v", got, want)
	}
	cmds := natsbustest.Messages(t, js, natsbus.CommandsStream)
	if len(cmds) != 2 {
		t.Fatalf("COMMANDS holds %d messages, want 2", len(cmds))
	}
	for i, want := range []struct{ subject, id string }{
		{"commands.inventory.reserve", reserve.ID},
		{"commands.shipping.schedule", schedule.ID},
	} {
		if cmds[i].Subject != want.subject || cmds[i].Header.Get(natsbus.HeaderMsgID) != want.id {
			t.Errorf("command %d: %s id %s, want %s id %s", i, cmds[i].Subject, cmds[i].Header.Get(natsbus.HeaderMsgID), want.subject, want.id)
		}
	}
}

// TestPoisonEventsAreParked: events that can never be published are
// recorded and skipped; the events around them flow.
func TestPoisonEventsAreParked(t *testing.T) {
	d := newDB(t)
	// A server with NATS's stock 1 MB message limit, below the store's
	// event size limit, so that an event can be too large to publish.
	srv, err := natsembed.Start(ctxT(t), natsembed.Config{MaxPayload: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	_, js := connect(t, srv.URL())
	ensureTopology(t, js)

	var good, poison []domain.Envelope
	good = append(good, appendOne(t, d.store, "order-1", "OrderPlaced", `{}`))
	poison = append(poison, appendOne(t, d.store, "order-1", "OrderConfirmed", `{not json`))
	poison = append(poison, appendOne(t, d.store, "customer-1", "CustomerCreated", `{}`))
	// Larger than the server's max payload (1 MB here), within the
	// store's limit.
	poison = append(poison, appendOne(t, d.store, "order-2", "OrderPlaced", `"`+strings.Repeat("x", 1500_000)+`"`))
	poison = append(poison, appendOne(t, d.store, "saga-1", natsbus.CommandIssued, `{"context":"billing","name":"charge","command_id":"c"}`))
	good = append(good, appendOne(t, d.store, "order-1", "OrderShipped", `{}`))

	run := start(t, d, js, relay.Config{Name: "orders"})
	h := waitCaughtUp(t, run.r, d.store, 30*time.Second)

	if got := streamIDs(t, js, natsbus.EventsStream); !slices.Equal(got, []string{good[0].ID, good[1].ID}) {
		t.Fatalf("EVENTS holds %v", got)
	}
	parked, err := d.cp.Parked(ctxT(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != len(poison) {
		t.Fatalf("parked %d events, want %d: %+v", len(parked), len(poison), parked)
	}
	for i, p := range parked {
		if p.EventID != poison[i].ID || p.Position != poison[i].Position || p.Stream != poison[i].Stream || p.Relay != "orders" || p.Error == "" {
			t.Errorf("parked[%d] = %+v, want event %s at %d", i, p, poison[i].ID, poison[i].Position)
		}
	}
	t.Logf("parked: %q / %q / %q / %q", parked[0].Error, parked[1].Error, parked[2].Error, parked[3].Error)
	if !strings.Contains(parked[2].Error, "maximum payload") {
		t.Errorf("oversized event parked for %q", parked[2].Error)
	}
	if st := run.r.Stats(); st.Parked != 4 || st.Published != 2 {
		t.Errorf("stats: %+v", st)
	}
	if got := checkpoint(t, d, "orders"); got != h {
		t.Errorf("checkpoint %d, head %d", got, h)
	}
}

// TestEventAboveTheStreamLimitIsParked: an event the client sends but the
// stream refuses for its size (a refusal that arrives as the publish's ack)
// is parked like the ones refused before sending, the events after it
// flow, and a restarted relay neither retries nor parks it again.
func TestEventAboveTheStreamLimitIsParked(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	for _, sc := range natsbus.StreamConfigs(natsbus.TopologyConfig{}) {
		sc.MaxMsgSize = 4 << 10
		if _, err := js.CreateStream(ctxT(t), sc); err != nil {
			t.Fatal(err)
		}
	}
	order := "order-" + uuid.NewString()
	before := appendOne(t, d.store, order, "OrderPlaced", `{}`)
	big := appendOne(t, d.store, order, "OrderNoted", `"`+strings.Repeat("x", 8<<10)+`"`)
	after := appendOne(t, d.store, order, "OrderShipped", `{}`)

	run := start(t, d, js, relay.Config{Name: "orders"})
	h := waitCaughtUp(t, run.r, d.store, 30*time.Second)
	if got := streamIDs(t, js, natsbus.EventsStream); !slices.Equal(got, []string{before.ID, after.ID}) {
		t.Fatalf("EVENTS holds %v, want %v", got, []string{before.ID, after.ID})
	}
	parked, err := d.cp.Parked(ctxT(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].EventID != big.ID || parked[0].Position != big.Position {
		t.Fatalf("parked %+v, want event %s at %d", parked, big.ID, big.Position)
	}
	if !strings.Contains(parked[0].Error, "exceeds maximum") {
		t.Errorf("parked for %q, want the stream's size refusal", parked[0].Error)
	}
	if st := run.r.Stats(); st.Parked != 1 || st.Published != 2 {
		t.Errorf("stats: %+v", st)
	}
	if got := checkpoint(t, d, "orders"); got != h {
		t.Fatalf("checkpoint %d, head %d", got, h)
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	again := start(t, d, js, relay.Config{Name: "orders"})
	next := appendOne(t, d.store, order, "OrderNoted", `{}`)
	waitCaughtUp(t, again.r, d.store, 30*time.Second)
	if st := again.r.Stats(); st.Parked != 0 || st.Published != 1 {
		t.Errorf("restarted relay stats: %+v, want only the new event published", st)
	}
	if got := streamIDs(t, js, natsbus.EventsStream); !slices.Equal(got, []string{before.ID, after.ID, next.ID}) {
		t.Fatalf("EVENTS after the restart holds %v", got)
	}
	if parked, err := d.cp.Parked(ctxT(t), "orders"); err != nil || len(parked) != 1 {
		t.Fatalf("after the restart parked = %+v, %v; want the one event", parked, err)
	}
}

// TestStoreIsTheOutbox: a decision and the command it causes are one
// append, so the command goes out exactly when the decision commits. An
// append that fails, refused as a whole (stale expected version) or at its
// second event (an id already stored), publishes nothing; the committed one
// publishes every event it holds.
func TestStoreIsTheOutbox(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	ensureTopology(t, js)
	run := start(t, d, js, relay.Config{Name: "sagas"})

	saga := "saga-" + uuid.NewString()
	decision := func(name, commandID string) []domain.Envelope {
		return []domain.Envelope{
			{ID: uuid.NewString(), Type: "StepStarted", SchemaVersion: 1, Data: json.RawMessage(`{"step":"` + name + `"}`)},
			{ID: uuid.NewString(), Type: natsbus.CommandIssued, SchemaVersion: 1,
				Data: json.RawMessage(`{"context":"inventory","name":"` + name + `","command_id":"` + commandID + `"}`)},
		}
	}
	won := decision("reserve", "c-won")
	if _, err := d.store.Append(ctxT(t), saga, domain.NoStream, won); err != nil {
		t.Fatal(err)
	}
	if _, err := d.store.Append(ctxT(t), saga, domain.NoStream, decision("release", "c-stale")); !errors.Is(err, domain.ErrVersionConflict) {
		t.Fatalf("stale decision: err = %v, want ErrVersionConflict", err)
	}
	broken := decision("release", "c-broken")
	broken[1].ID = won[0].ID
	if _, err := d.store.Append(ctxT(t), saga, domain.ExpectedVersion(len(won)), broken); !errors.Is(err, domain.ErrDuplicateEventID) {
		t.Fatalf("decision with a reused id: err = %v, want ErrDuplicateEventID", err)
	}
	// The relay is past everything the store holds once it has this one.
	last := appendOne(t, d.store, "order-"+uuid.NewString(), "OrderPlaced", `{}`)
	waitCaughtUp(t, run.r, d.store, 30*time.Second)

	if got, want := storeIDs(t, d.store), []string{won[0].ID, won[1].ID, last.ID}; !slices.Equal(got, want) {
		t.Fatalf("store holds %v, want %v", got, want)
	}
	if got, want := streamIDs(t, js, natsbus.EventsStream), []string{won[0].ID, last.ID}; !slices.Equal(got, want) {
		t.Fatalf("EVENTS holds %v, want %v", got, want)
	}
	cmds := natsbustest.Messages(t, js, natsbus.CommandsStream)
	if len(cmds) != 1 || cmds[0].Subject != "commands.inventory.reserve" || cmds[0].Header.Get(natsbus.HeaderMsgID) != won[1].ID {
		t.Fatalf("COMMANDS holds %+v, want the committed decision's command alone", cmds)
	}
}

// TestCheckpointStopsAtTheFirstUnacknowledged: an event JetStream refuses
// holds the checkpoint just before it, however many later events were
// acknowledged, until it is published; the sessions that resume meanwhile
// find those later events in JetStream and skip them instead of sending
// them again.
func TestCheckpointStopsAtTheFirstUnacknowledged(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	// Only EVENTS exists: nobody answers for commands.> yet.
	if _, err := js.CreateStream(ctxT(t), natsbus.StreamConfigs(natsbus.TopologyConfig{})[0]); err != nil {
		t.Fatal(err)
	}
	saga := "saga-" + uuid.NewString()
	for range 4 {
		appendOne(t, d.store, saga, "SagaNoted", `{}`)
	}
	cmd := appendOne(t, d.store, saga, natsbus.CommandIssued, `{"context":"orders","name":"confirm","command_id":"c-1"}`)
	for range 15 {
		appendOne(t, d.store, saga, "SagaNoted", `{}`)
	}
	h := head(t, d.store)

	run := start(t, d, js, relay.Config{Name: "sagas", CheckpointEvery: 5 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	// The 19 events before and after the command are stored and acked...
	waitFor(t, 20*time.Second, "EVENTS to hold 19 events", func() bool {
		return len(natsbustest.Messages(t, js, natsbus.EventsStream)) == 19
	})
	// ... while the command keeps failing (no stream answers; each attempt
	// takes the client's retries, about half a second), session after
	// session.
	waitFor(t, 20*time.Second, "two sessions to fail on the command", func() bool { return run.r.Stats().Interruptions >= 2 })
	if got := checkpoint(t, d, "sagas"); got != cmd.Position-1 {
		t.Fatalf("checkpoint %d with position %d unacknowledged, want %d", got, cmd.Position, cmd.Position-1)
	}
	if st := run.r.Stats(); st.Checkpoint != cmd.Position-1 || st.Lag != h-st.Checkpoint {
		t.Fatalf("stats %+v", st)
	}

	ensureTopology(t, js)
	waitCaughtUp(t, run.r, d.store, 30*time.Second)
	if got := checkpoint(t, d, "sagas"); got != h {
		t.Fatalf("checkpoint %d, head %d", got, h)
	}
	if got := streamIDs(t, js, natsbus.CommandsStream); len(got) != 1 || got[0] != cmd.ID {
		t.Fatalf("COMMANDS holds %v", got)
	}
	if got := streamIDs(t, js, natsbus.EventsStream); len(got) != 19 {
		t.Fatalf("EVENTS holds %d messages after the retries, want 19", len(got))
	}
	// The session that got the command through had found the 15 events
	// after it in JetStream (they were stored a second before, while the
	// command's first attempt was still failing).
	if st := run.r.Stats(); st.Skipped != 15 || st.Duplicates != 0 {
		t.Errorf("stats %+v: want the 15 events after the command skipped, none sent twice", st)
	}
}

// TestStopFlushesTheCheckpoint: what was acknowledged before the stop is
// saved by the stop itself (the periodic save never runs here).
func TestStopFlushesTheCheckpoint(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	ensureTopology(t, js)
	appendEvents(t, d.store, 50, 4)
	h := head(t, d.store)

	run := start(t, d, js, relay.Config{CheckpointEvery: time.Hour})
	waitFor(t, 20*time.Second, "every event acknowledged", func() bool { return run.r.Stats().Published == h })
	if got := checkpoint(t, d, "test"); got != 0 {
		t.Fatalf("checkpoint %d saved before any save was due", got)
	}
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := checkpoint(t, d, "test"); got != h {
		t.Fatalf("checkpoint after stop %d, want head %d", got, h)
	}
}

// TestRestartsLoseNothing restarts the relay again and again while events
// are appended, and makes most restarts crashes at the one moment that
// matters: after JetStream acknowledged events and before the checkpoint
// covering them committed. The crash is forced, not hoped for: while the
// relay runs the test reads a checkpoint it committed, lets it acknowledge
// more, stops it and puts that earlier row back. Half of the stops do not
// even wait for the acks in flight. The next run must skip every event
// acknowledged past the restored checkpoint (with exact resume, recovery
// means skipping, not republishing), and in the end every event is in
// JetStream exactly once.
func TestRestartsLoseNothing(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	ensureTopology(t, js)

	appendEvents(t, d.store, 100, 4)
	// A writer appends all along, so that commits interleave with the
	// relay's reading and publishing.
	writing := make(chan error, 1)
	go func() {
		var err error
		for range 10 {
			if err = appendStreams(d.store, 30, 4); err != nil {
				break
			}
		}
		writing <- err
	}()

	var (
		lostUpTo   uint64 // the checkpoint the last crash lost
		lost       uint64 // events acknowledged past the restored checkpoint
		crashes    int
		skippedAll uint64
	)
	for i := range 6 {
		appendEvents(t, d.store, 40, 4) // work for this run, whatever the writer did
		cfg := relay.Config{MaxInFlight: 64, CheckpointEvery: 5 * time.Millisecond}
		if i%2 == 1 {
			cfg.DrainTimeout = time.Nanosecond // stop without waiting for acks
		}
		start0 := checkpoint(t, d, "test")
		run := start(t, d, js, cfg)

		// Recovery: the run gets past what the last crash lost, and skips
		// all of it.
		waitFor(t, 20*time.Second, fmt.Sprintf("run %d to pass the lost checkpoint %d", i, lostUpTo), func() bool {
			return run.r.Stats().Checkpoint >= lostUpTo
		})
		if st := run.r.Stats(); st.Skipped < lost {
			t.Fatalf("run %d skipped %d events, but %d acknowledged ones were past its checkpoint: the rest went out twice (stats %+v)", i, st.Skipped, lost, st)
		}

		// The crash point: a checkpoint this run committed.
		waitFor(t, 20*time.Second, fmt.Sprintf("run %d to commit a checkpoint", i), func() bool {
			return run.r.Stats().Checkpoint > max(start0, lostUpTo)
		})
		crash := readRow(t, d, "test")
		// More acknowledged after it: appended after the crash point was
		// read, so they are beyond it.
		appendEvents(t, d.store, 10, 4)
		waitFor(t, 20*time.Second, fmt.Sprintf("run %d to acknowledge past the crash point %d", i, crash.position), func() bool {
			return run.r.Stats().Checkpoint > uint64(crash.position)
		})
		if err := run.stop(); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
		skippedAll += run.r.Stats().Skipped
		lost, lostUpTo = 0, 0
		if i%3 == 2 {
			continue // a clean restart now and then
		}
		// Crash: what the run committed after the crash point is lost.
		lostUpTo = checkpoint(t, d, "test")
		lost = lostUpTo - uint64(crash.position) // positions are contiguous
		restoreRow(t, d, "test", crash)
		crashes++
	}
	if err := <-writing; err != nil {
		t.Fatal(err)
	}
	run := start(t, d, js, relay.Config{})
	h := waitCaughtUp(t, run.r, d.store, 30*time.Second)
	if st := run.r.Stats(); st.Skipped < lost {
		t.Fatalf("last run skipped %d events, %d were acknowledged past its checkpoint", st.Skipped, lost)
	}
	skippedAll += run.r.Stats().Skipped
	t.Logf("%d crashes between ack and checkpoint; %d events skipped on resume", crashes, skippedAll)

	want := storeIDs(t, d.store)
	got := streamIDs(t, js, natsbus.EventsStream)
	sameSet(t, "EVENTS", got, want)
	if len(got) != len(want) {
		t.Fatalf("EVENTS holds %d messages for %d events", len(got), len(want))
	}
	if cp := checkpoint(t, d, "test"); cp != h {
		t.Fatalf("checkpoint %d, head %d", cp, h)
	}
}

// TestNATSOutage shuts the server down while the relay publishes, appends
// while it is down, and brings it back on the same port and store.
func TestNATSOutage(t *testing.T) {
	d := newDB(t)
	dir := t.TempDir()
	srv, err := natsembed.Start(ctxT(t), natsembed.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	url := srv.URL()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	_, js := connect(t, url)
	ensureTopology(t, js)

	run := start(t, d, js, relay.Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, AckTimeout: time.Second})
	appendEvents(t, d.store, 200, 5)
	waitFor(t, 20*time.Second, "some progress", func() bool { return run.r.Stats().Published > 0 })

	// Down in the middle of publishing, with a writer still appending.
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		if err := appendStreams(d.store, 200, 5); err != nil {
			t.Error(err)
		}
	}()
	srv.Shutdown()
	<-writer
	appendEvents(t, d.store, 100, 5)
	h := head(t, d.store)
	waitFor(t, 15*time.Second, "the relay to notice the server is gone", func() bool { return run.r.Stats().Interruptions > 0 })
	if cp := run.r.Stats().Checkpoint; cp >= h {
		t.Fatalf("checkpoint %d reached head %d with the server down", cp, h)
	}

	srv2, err := natsembed.Start(ctxT(t), natsembed.Config{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)
	waitCaughtUp(t, run.r, d.store, 30*time.Second)

	want := storeIDs(t, d.store)
	got := streamIDs(t, js, natsbus.EventsStream)
	sameSet(t, "EVENTS", got, want)
	if len(got) != len(want) {
		t.Fatalf("EVENTS holds %d messages for %d events", len(got), len(want))
	}
	if cp := checkpoint(t, d, "test"); cp != h {
		t.Fatalf("checkpoint %d, head %d", cp, h)
	}
}

// TestOneActiveRelayPerName: a second relay of the same name stands by
// and takes over when the first stops. The first dies as if between acks
// and their checkpoint's commit (its last committed checkpoint is put back
// to an earlier one); the second, taking over, skips what the first
// published past it instead of sending it again.
func TestOneActiveRelayPerName(t *testing.T) {
	d := newDB(t)
	url := natsbustest.Server(t)
	_, js1 := connect(t, url)
	_, js2 := connect(t, url)
	ensureTopology(t, js1)

	first := start(t, d, js1, relay.Config{Name: "shared"})
	waitFor(t, 20*time.Second, "the first relay to be active", func() bool { return first.r.Stats().Active })
	second := start(t, d, js2, relay.Config{Name: "shared"})
	appendEvents(t, d.store, 100, 4)
	waitCaughtUp(t, first.r, d.store, 30*time.Second)
	crash := readRow(t, d, "shared")
	appendEvents(t, d.store, 50, 4)
	// Caught up means acknowledged and saved: stopping has nothing left to
	// save, so the restored row is what the second relay finds.
	waitCaughtUp(t, first.r, d.store, 30*time.Second)
	if st := second.r.Stats(); st.Active || st.Published != 0 {
		t.Fatalf("second relay of the name worked while the first held the lease: %+v", st)
	}
	restoreRow(t, d, "shared", crash)

	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	if got := checkpoint(t, d, "shared"); got != uint64(crash.position) {
		t.Fatalf("checkpoint %d after the first relay stopped, want the restored %d", got, crash.position)
	}
	appendEvents(t, d.store, 100, 4)
	waitCaughtUp(t, second.r, d.store, 30*time.Second)
	st := second.r.Stats()
	if !st.Active {
		t.Fatal("second relay did not take over")
	}
	if st.Skipped != 200 || st.Published != 400 || st.Duplicates != 0 {
		t.Errorf("second relay: %+v; want the first's 200 unsaved events skipped, its own 400 published, none twice", st)
	}
	want := storeIDs(t, d.store)
	if got := streamIDs(t, js1, natsbus.EventsStream); !slices.Equal(got, want) {
		t.Fatalf("EVENTS holds %d messages, not the store's %d in order", len(got), len(want))
	}
}

// sagaDecisions appends n saga steps, each a saga event and the command it
// issues, so that a sagas relay publishes to both EVENTS and COMMANDS.
func sagaDecisions(t *testing.T, s eventstore.Store, n int) {
	t.Helper()
	for i := range n {
		saga := "saga-" + uuid.NewString()
		evs := []domain.Envelope{
			{ID: uuid.NewString(), Type: "StepStarted", SchemaVersion: 1, Data: json.RawMessage(`{}`)},
			{ID: uuid.NewString(), Type: natsbus.CommandIssued, SchemaVersion: 1,
				Data: json.RawMessage(fmt.Sprintf(`{"context":"inventory","name":"reserve","command_id":"c-%d-%s"}`, i, saga))},
		}
		if _, err := s.Append(ctxT(t), saga, domain.NoStream, evs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestResumeAfterTheDuplicateWindow: a relay that comes back after
// JetStream's duplicate window has passed, with its checkpoint behind what
// JetStream holds, publishes nothing twice. The window is shortened so the
// test need not wait two minutes, and awaited, so that anything sent again
// would be stored again and counted.
func TestResumeAfterTheDuplicateWindow(t *testing.T) {
	tests := []struct {
		name string
		// relay is the relay's name, add appends one batch of events.
		relay string
		add   func(t *testing.T, s eventstore.Store)
		// rollback turns the checkpoint back after the second batch;
		// crash is the row committed after the first.
		rollback func(t *testing.T, d *db, name string, crash row)
		// skipsFirst: the resumed relay finds the first batch too.
		skipsFirst bool
	}{
		{
			name:  "crash after acks, before the checkpoint commit",
			relay: "test",
			add:   func(t *testing.T, s eventstore.Store) { appendEvents(t, s, 50, 4) },
			rollback: func(t *testing.T, d *db, name string, crash row) {
				restoreRow(t, d, name, crash)
			},
		},
		{
			name:  "sagas relay with commands",
			relay: natsbus.ContextSagas,
			add:   func(t *testing.T, s eventstore.Store) { sagaDecisions(t, s, 60) },
			rollback: func(t *testing.T, d *db, name string, crash row) {
				restoreRow(t, d, name, crash)
			},
		},
		{
			name:  "checkpoint set back to zero by hand",
			relay: "test",
			add:   func(t *testing.T, s eventstore.Store) { appendEvents(t, s, 50, 4) },
			rollback: func(t *testing.T, d *db, name string, _ row) {
				if _, err := d.pool.Exec(ctxT(t), "UPDATE relay_checkpoints SET position = 0 WHERE name = $1", name); err != nil {
					t.Fatal(err)
				}
			},
			skipsFirst: true,
		},
		{
			name:  "checkpoint row lost",
			relay: natsbus.ContextSagas,
			add:   func(t *testing.T, s eventstore.Store) { sagaDecisions(t, s, 60) },
			rollback: func(t *testing.T, d *db, name string, _ row) {
				restoreRow(t, d, name, row{})
			},
			skipsFirst: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDB(t)
			_, js := connect(t, natsbustest.Server(t))
			ensureTopologyWith(t, js, natsbus.TopologyConfig{DuplicateWindow: 100 * time.Millisecond})
			cfg := relay.Config{Name: tt.relay}

			tt.add(t, d.store)
			run := start(t, d, js, cfg)
			first := waitCaughtUp(t, run.r, d.store, 20*time.Second)
			if err := run.stop(); err != nil {
				t.Fatal(err)
			}
			crash := readRow(t, d, tt.relay)

			tt.add(t, d.store)
			run = start(t, d, js, cfg)
			second := waitCaughtUp(t, run.r, d.store, 20*time.Second)
			if err := run.stop(); err != nil {
				t.Fatal(err)
			}
			tt.rollback(t, d, tt.relay, crash)
			awaitDuplicateWindow(t, js)

			run = start(t, d, js, cfg)
			tt.add(t, d.store)
			third := waitCaughtUp(t, run.r, d.store, 20*time.Second)
			wantSkipped := second - first
			if tt.skipsFirst {
				wantSkipped = second
			}
			if st := run.r.Stats(); st.Skipped != wantSkipped || st.Published != third-second || st.Duplicates != 0 {
				t.Errorf("resumed relay: %+v; want %d skipped, %d published, none twice", st, wantSkipped, third-second)
			}
			want := storeIDs(t, d.store)
			got := allIDs(t, js)
			sameSet(t, "EVENTS and COMMANDS", got, want)
			if len(got) != len(want) {
				t.Fatalf("JetStream holds %d messages for %d events: some were sent twice", len(got), len(want))
			}
			if cp := checkpoint(t, d, tt.relay); cp != third {
				t.Fatalf("checkpoint %d, head %d", cp, third)
			}
		})
	}
}

// TestResumeSendsWhatJetStreamLacks: the search skips exactly what
// JetStream holds, not everything up to the last message found. An event
// missing below later ones (refused while they were accepted) goes out
// again, and an event that was being parked when the relay died is parked
// again, not lost.
func TestResumeSendsWhatJetStreamLacks(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	ensureTopologyWith(t, js, natsbus.TopologyConfig{DuplicateWindow: 100 * time.Millisecond})

	order := "order-" + uuid.NewString()
	var evs []domain.Envelope
	for i := range 20 {
		if i == 12 {
			evs = append(evs, appendOne(t, d.store, order, "OrderNoted", `{not json`)) // poison
			continue
		}
		evs = append(evs, appendOne(t, d.store, order, "OrderNoted", `{}`))
	}
	run := start(t, d, js, relay.Config{Name: "orders"})
	h := waitCaughtUp(t, run.r, d.store, 30*time.Second)
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	// JetStream loses the 8th event, the checkpoint goes back to before it
	// and the parked one, and the window passes.
	gone := evs[7]
	s, err := js.Stream(ctxT(t), natsbus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	var goneSeq uint64
	for _, m := range natsbustest.Messages(t, js, natsbus.EventsStream) {
		if m.Header.Get(natsbus.HeaderMsgID) == gone.ID {
			goneSeq = m.Seq
		}
	}
	if goneSeq == 0 {
		t.Fatal("the 8th event is not in EVENTS")
	}
	if err := s.DeleteMsg(ctxT(t), goneSeq); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctxT(t), "UPDATE relay_checkpoints SET position = $1 WHERE name = 'orders'", int64(evs[4].Position)); err != nil {
		t.Fatal(err)
	}
	awaitDuplicateWindow(t, js)

	again := start(t, d, js, relay.Config{Name: "orders"})
	waitCaughtUp(t, again.r, d.store, 30*time.Second)
	// Past position 5: 15 events, one gone, one poison, 13 held.
	if st := again.r.Stats(); st.Published != 1 || st.Skipped != 13 || st.Parked != 1 || st.Duplicates != 0 {
		t.Errorf("resumed relay: %+v; want the lost event published, 13 skipped, the poison one parked again", st)
	}
	want := make([]string, 0, len(evs))
	for i, e := range evs {
		if i != 12 {
			want = append(want, e.ID)
		}
	}
	got := streamIDs(t, js, natsbus.EventsStream)
	sameSet(t, "EVENTS", got, want)
	if len(got) != len(want) {
		t.Fatalf("EVENTS holds %d messages for %d publishable events", len(got), len(want))
	}
	if got[len(got)-1] != gone.ID {
		t.Errorf("the lost event was not the one published again")
	}
	if parked, err := d.cp.Parked(ctxT(t), "orders"); err != nil || len(parked) != 1 || parked[0].EventID != evs[12].ID {
		t.Fatalf("parked %+v, %v; want the poison event once", parked, err)
	}
	if cp := checkpoint(t, d, "orders"); cp != h {
		t.Fatalf("checkpoint %d, head %d", cp, h)
	}
}

// TestResumeIgnoresAnotherStoresMessages: messages that name the relay and
// a position but carry another event's id (a store reset under the same
// relay name, with JetStream kept) are not taken for this store's events.
func TestResumeIgnoresAnotherStoresMessages(t *testing.T) {
	_, js := connect(t, natsbustest.Server(t))
	ensureTopology(t, js)

	old := newDB(t)
	appendEvents(t, old.store, 10, 3)
	run := start(t, old, js, relay.Config{})
	waitCaughtUp(t, run.r, old.store, 30*time.Second)
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	fresh := newDB(t) // same positions, other events
	appendEvents(t, fresh.store, 10, 3)
	run = start(t, fresh, js, relay.Config{})
	waitCaughtUp(t, run.r, fresh.store, 30*time.Second)
	if st := run.r.Stats(); st.Skipped != 0 || st.Published != 30 || st.Duplicates != 0 {
		t.Errorf("relay of the new store: %+v; want all 30 events published", st)
	}
	want := append(storeIDs(t, old.store), storeIDs(t, fresh.store)...)
	// Both stores' messages are there; the (source, position) pairs repeat
	// across the two, so only the ids are compared.
	msgs := natsbustest.Messages(t, js, natsbus.EventsStream)
	got := make([]string, len(msgs))
	for i, m := range msgs {
		got[i] = m.Header.Get(natsbus.HeaderMsgID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("EVENTS holds %d messages, want the old store's 30 then the new one's 30", len(got))
	}
}
