package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/eventstore"
	"github.com/orderflow/orderflow/services/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/services/internal/eventstore/postgres/pgtest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
	"github.com/orderflow/orderflow/services/internal/natsembed"
	"github.com/orderflow/orderflow/services/internal/relay"
	"github.com/orderflow/orderflow/services/internal/testenv"
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
	if err := natsbus.EnsureTopology(ctxT(t), js, natsbus.TopologyConfig{}); err != nil {
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

// streamIDs returns the decoded event ids a JetStream stream holds, in
// stream order, checking each message's subject against Route.
func streamIDs(t *testing.T, js jetstream.JetStream, stream string) []string {
	t.Helper()
	msgs := natsbustest.Messages(t, js, stream)
	ids := make([]string, len(msgs))
	for i, m := range msgs {
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
		ids[i] = e.ID
	}
	return ids
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
		{"everything set", relay.Config{Name: "orders", MaxInFlight: 10, CheckpointEvery: time.Second, MinBackoff: time.Second, MaxBackoff: time.Minute, AckTimeout: time.Second, DrainTimeout: time.Second}, true},
		{"min backoff above the default max", relay.Config{Name: "orders", MinBackoff: time.Minute}, true},
		{"no name", relay.Config{}, false},
		{"long name", relay.Config{Name: strings.Repeat("n", 201)}, false},
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
	waitFor(t, 5*time.Second, "the relay to become active", func() bool { return r.Stats().Active })
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
	h := waitCaughtUp(t, run.r, d.store, 30*time.Second)
	// The rate over the first second, when nearly everything was sent.
	waitFor(t, 3*time.Second, "a publish rate", func() bool { return run.r.Stats().EventsPerSecond > 100 })

	want := storeIDs(t, d.store)
	if len(want) != 3200 {
		t.Fatalf("store holds %d events", len(want))
	}
	if got := streamIDs(t, js, natsbus.EventsStream); !slices.Equal(got, want) {
		t.Fatalf("EVENTS holds %d messages, not the store's %d events in global order", len(got), len(want))
	}
	if got := checkpoint(t, d, "test"); got != h {
		t.Errorf("saved checkpoint %d, head %d", got, h)
	}
	waitFor(t, 5*time.Second, "Stats to see the head", func() bool { return run.r.Stats().Head == h })
	st := run.r.Stats()
	if !st.Active || st.Lag != 0 || st.Published != uint64(len(want)) || st.Duplicates != 0 || st.Parked != 0 || st.InFlight != 0 {
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
	waitCaughtUp(t, run.r, d.store, 10*time.Second)

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
	h := waitCaughtUp(t, run.r, d.store, 10*time.Second)

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
	h := waitCaughtUp(t, run.r, d.store, 10*time.Second)
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
	waitCaughtUp(t, again.r, d.store, 10*time.Second)
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
	waitCaughtUp(t, run.r, d.store, 10*time.Second)

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
// acknowledged, until it is published.
func TestCheckpointStopsAtTheFirstUnacknowledged(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	// Only EVENTS exists: nobody answers for commands.> yet.
	if _, err := js.CreateStream(ctxT(t), natsbus.StreamConfigs(natsbus.TopologyConfig{})[0]); err != nil {
		t.Fatal(err)
	}
	order := "order-" + uuid.NewString()
	for range 4 {
		appendOne(t, d.store, order, "OrderNoted", `{}`)
	}
	cmd := appendOne(t, d.store, "saga-"+uuid.NewString(), natsbus.CommandIssued,
		`{"context":"orders","name":"confirm","command_id":"c-1"}`)
	for range 15 {
		appendOne(t, d.store, order, "OrderNoted", `{}`)
	}
	h := head(t, d.store)

	run := start(t, d, js, relay.Config{Name: "sagas", CheckpointEvery: 5 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	// The 19 events after and before the command are stored and acked...
	waitFor(t, 10*time.Second, "EVENTS to hold 19 events", func() bool {
		return len(natsbustest.Messages(t, js, natsbus.EventsStream)) == 19
	})
	// ... while the command keeps failing (no stream answers; each attempt
	// takes the client's retries, about half a second).
	time.Sleep(1500 * time.Millisecond)
	if got := checkpoint(t, d, "sagas"); got != cmd.Position-1 {
		t.Fatalf("checkpoint %d with position %d unacknowledged, want %d", got, cmd.Position, cmd.Position-1)
	}
	if st := run.r.Stats(); st.Checkpoint != cmd.Position-1 || st.Lag != h-st.Checkpoint {
		t.Fatalf("stats %+v", st)
	}

	ensureTopology(t, js)
	waitCaughtUp(t, run.r, d.store, 15*time.Second)
	if got := checkpoint(t, d, "sagas"); got != h {
		t.Fatalf("checkpoint %d, head %d", got, h)
	}
	if got := streamIDs(t, js, natsbus.CommandsStream); len(got) != 1 || got[0] != cmd.ID {
		t.Fatalf("COMMANDS holds %v", got)
	}
	if got := streamIDs(t, js, natsbus.EventsStream); len(got) != 19 {
		t.Fatalf("EVENTS holds %d messages after the retries, want 19", len(got))
	}
	if run.r.Stats().Duplicates == 0 {
		t.Error("the resumed relay republished nothing JetStream had already")
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
	waitFor(t, 10*time.Second, "every event acknowledged", func() bool { return run.r.Stats().Published == h })
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

// TestRestartsLoseNothing stops the relay at random moments while events
// are being appended and publishes are in flight, sometimes without
// waiting for any ack, and rewinds the saved checkpoint as a crash before
// the last save would; every event still arrives exactly once.
func TestRestartsLoseNothing(t *testing.T) {
	d := newDB(t)
	_, js := connect(t, natsbustest.Server(t))
	ensureTopology(t, js)

	appendEvents(t, d.store, 300, 4)
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for range 10 {
			if err := appendStreams(d.store, 60, 5); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var caughtInFlight, duplicates int
	for i := range 6 {
		cfg := relay.Config{MaxInFlight: 512}
		if i%2 == 1 {
			cfg.DrainTimeout = time.Nanosecond // stop without waiting for acks
		}
		run := start(t, d, js, cfg)
		inFlight := false
		deadline := time.Now().Add(time.Duration(20+rand.IntN(200)) * time.Millisecond)
		for time.Now().Before(deadline) && !inFlight {
			inFlight = run.r.Stats().InFlight > 20
			time.Sleep(time.Millisecond)
		}
		if inFlight {
			caughtInFlight++
		}
		if err := run.stop(); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
		duplicates += int(run.r.Stats().Duplicates)
		if cp := checkpoint(t, d, "test"); cp > 0 && i%3 == 2 {
			back := uint64(rand.IntN(300)) + 1
			if _, err := d.pool.Exec(ctxT(t), "UPDATE relay_checkpoints SET position = $1 WHERE name = 'test'", int64(cp-min(cp, back))); err != nil {
				t.Fatal(err)
			}
		}
	}
	<-writing
	run := start(t, d, js, relay.Config{})
	h := waitCaughtUp(t, run.r, d.store, 30*time.Second)
	duplicates += int(run.r.Stats().Duplicates)
	t.Logf("%d of 6 stops caught publishes in flight; %d duplicates dropped by JetStream", caughtInFlight, duplicates)

	want := storeIDs(t, d.store)
	got := streamIDs(t, js, natsbus.EventsStream)
	sameSet(t, "EVENTS", got, want)
	if len(got) != len(want) {
		t.Fatalf("EVENTS holds %d messages for %d events: duplicates within the window were stored", len(got), len(want))
	}
	if cp := checkpoint(t, d, "test"); cp != h {
		t.Fatalf("checkpoint %d, head %d", cp, h)
	}
	if duplicates == 0 {
		t.Error("no restart republished anything, the restarts did not exercise recovery")
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
	waitFor(t, 10*time.Second, "some progress", func() bool { return run.r.Stats().Published > 0 })

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
	time.Sleep(500 * time.Millisecond)
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
// and takes over when the first stops.
func TestOneActiveRelayPerName(t *testing.T) {
	d := newDB(t)
	url := natsbustest.Server(t)
	_, js1 := connect(t, url)
	_, js2 := connect(t, url)
	ensureTopology(t, js1)

	first := start(t, d, js1, relay.Config{Name: "orders"})
	waitFor(t, 5*time.Second, "the first relay to be active", func() bool { return first.r.Stats().Active })
	second := start(t, d, js2, relay.Config{Name: "orders"})
	appendEvents(t, d.store, 100, 4)
	waitCaughtUp(t, first.r, d.store, 10*time.Second)
	if st := second.r.Stats(); st.Active || st.Published != 0 {
		t.Fatalf("second relay of the name worked while the first held the lease: %+v", st)
	}

	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, d.store, 100, 4)
	waitCaughtUp(t, second.r, d.store, 10*time.Second)
	if !second.r.Stats().Active {
		t.Fatal("second relay did not take over")
	}
	want := storeIDs(t, d.store)
	if got := streamIDs(t, js1, natsbus.EventsStream); !slices.Equal(got, want) {
		t.Fatalf("EVENTS holds %d messages, not the store's %d in order", len(got), len(want))
	}
}
