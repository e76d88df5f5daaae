package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/projsource/projsourcetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
)

// bus is a JetStream stream of its own for one test (names are unique so
// that a shared TEST_NATS_URL server works too).
type bus struct {
	js      jetstream.JetStream
	stream  string
	subject string // prefix, e.g. "t1a2b.events"
	pos     uint64 // positions of the envelopes published, as an origin store would number them
	version map[string]int64
}

func newBus(t *testing.T) *bus {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	tag := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	b := &bus{js: js, stream: "EVENTS_" + tag, subject: "t" + tag + ".events", version: map[string]int64{}}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: b.stream, Subjects: []string{b.subject + ".>"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), b.stream) })
	return b
}

// envelope numbers payload as the next event of stream in an origin store.
func (b *bus) envelope(t *testing.T, env *projsourcetest.Env, stream string, payload any) domain.Envelope {
	t.Helper()
	e := env.Envelope(t, payload)
	b.pos++
	b.version[stream]++
	e.Stream, e.Version, e.Position = stream, b.version[stream], b.pos
	e.RecordedAt = time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(b.pos) * time.Millisecond)
	return e
}

// publish sends e as the relay does: JSON body, Nats-Msg-Id = msgID.
func (b *bus) publish(t *testing.T, e domain.Envelope, msgID string) {
	t.Helper()
	body, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	b.publishRaw(t, "orders."+e.Type, body, msgID)
}

func (b *bus) publishRaw(t *testing.T, subject string, body []byte, msgID string) {
	t.Helper()
	msg := &nats.Msg{Subject: b.subject + "." + subject, Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := b.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func (b *bus) lastSeq(t *testing.T) uint64 {
	t.Helper()
	s, err := b.js.Stream(context.Background(), b.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func (b *bus) projector(t *testing.T, env *projsourcetest.Env, p projections.Projection, durable string) *projections.JetStreamProjector {
	t.Helper()
	jp, err := projections.NewJetStreamProjector(env.Pool, b.js, p, projections.JetStreamConfig{
		Stream: b.stream, Durable: durable, Subjects: []string{b.subject + ".orders.>"},
		BatchSize: 20, NakDelay: 100 * time.Millisecond, FetchWait: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return jp
}

// Events of another context arrive through JetStream. A republished
// duplicate, a redelivery of the whole stream and batches rejected by a
// transient database error change nothing twice; undecodable messages and
// an event that keeps failing are parked, and the projection goes on.
func TestJetStreamProjectorAppliesEachEventOnce(t *testing.T) {
	env := projsourcetest.New(t)
	b := newBus(t)
	ctx := context.Background()

	var transientLeft atomic.Int32
	transientLeft.Store(2)
	var poisonID atomic.Value
	poisonID.Store("")
	c := &counter{name: "jscount"}
	c.setHook(func(_ context.Context, events []domain.Envelope) error {
		for _, e := range events {
			if e.ID == poisonID.Load().(string) {
				return errors.New("handler cannot cope with this event")
			}
		}
		if len(events) > 3 && transientLeft.Add(-1) >= 0 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		return nil
	})
	ov := orderview.New()
	stopOrders := run(t, b.projector(t, env, ov, "orders-view").Run)
	jc := b.projector(t, env, c, "counter")
	run(t, jc.Run)

	// 30 orders: placed, confirmed, half of them shipped.
	ids := make([]string, 30)
	var all []domain.Envelope
	for i := range ids {
		ids[i] = uuid.NewString()
		s := order.Stream(ids[i])
		all = append(all, b.envelope(t, env, s, placed(ids[i], fmt.Sprintf("c-%d", i%3))))
		all = append(all, b.envelope(t, env, s, order.OrderConfirmed{OrderID: ids[i], ShipmentID: uuid.NewString()}))
		if i%2 == 0 {
			all = append(all, b.envelope(t, env, s, order.OrderShipped{OrderID: ids[i]}))
		}
	}
	for _, e := range all {
		b.publish(t, e, e.ID)
	}
	// The same event published again under another message id gets past
	// JetStream's own deduplication, as after a relay restart.
	dup := all[len(all)-1]
	b.publish(t, dup, dup.ID+"-again")
	// Poison: a body that is no envelope, an event type the orders view
	// does not know, and an event the counter always fails on.
	b.publishRaw(t, "orders.Garbage", []byte("{not json"), "garbage-1")
	teleported := b.envelope(t, env, order.Stream(ids[0]), order.OrderShipped{OrderID: ids[0]})
	teleported.Type = "OrderTeleported"
	b.publish(t, teleported, teleported.ID)
	poison := b.envelope(t, env, order.Stream(uuid.NewString()), order.OrderShipped{})
	poisonID.Store(poison.ID)
	b.publish(t, poison, poison.ID)
	// After the poison, the projection must still move on.
	last := uuid.NewString()
	lastPlaced := b.envelope(t, env, order.Stream(last), placed(last, "c-9"))
	b.publish(t, lastPlaced, lastPlaced.ID)
	seq := b.lastSeq(t)

	waitCheckpoint(t, env.Pool, orderview.Name, seq)
	waitCheckpoint(t, env.Pool, c.name, seq)

	// Every order stream counted exactly its own events once.
	want := map[string]int64{}
	for _, e := range all {
		want[e.Stream]++
	}
	want[order.Stream(ids[0])]++ // the OrderTeleported, which the counter does not decode
	want[lastPlaced.Stream]++
	equalCounts(t, counts(t, env.Pool, c), want)
	if transientLeft.Load() >= 0 {
		t.Errorf("the transient failures were not all exercised (%d left)", transientLeft.Load())
	}

	for i, id := range ids {
		v, err := orderview.Get(ctx, env.Pool, id)
		wantStatus, wantVersion := "confirmed", int64(2)
		if i%2 == 0 {
			wantStatus, wantVersion = "shipped", 3
		}
		if err != nil || v.Status != wantStatus || v.Version != wantVersion {
			t.Errorf("order %d: %+v, %v; want %s at version %d", i, v, err, wantStatus, wantVersion)
		}
	}
	if _, err := orderview.Get(ctx, env.Pool, last); err != nil {
		t.Errorf("the order after the poison events: %v", err)
	}

	gotParked := parked(t, env.Pool, orderview.Name)
	if _, ok := gotParked["garbage-1"]; !ok || len(gotParked) != 2 || gotParked[teleported.ID].Type != "OrderTeleported" {
		t.Errorf("orders view parked %+v, want the garbage message and the OrderTeleported", gotParked)
	}
	gotParked = parked(t, env.Pool, c.name)
	if _, ok := gotParked[poison.ID]; !ok || len(gotParked) != 2 {
		t.Errorf("counter parked %+v, want the garbage message and the poison event", gotParked)
	}
	if s := jc.Stats(); s.Parked != 2 || s.Checkpoint != seq || s.Status != projections.StatusLive {
		t.Errorf("counter stats %+v, want 2 parked, checkpoint %d, live", s, seq)
	}

	// Redeliver the whole stream: a new consumer position replays every
	// message; nothing may change.
	before := counts(t, env.Pool, c)
	stopOrders()
	if err := b.js.DeleteConsumer(ctx, b.stream, "orders-view"); err != nil {
		t.Fatal(err)
	}
	beforeView, err := orderview.Get(ctx, env.Pool, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	// The counter's consumer is recreated from the start as well.
	if err := b.js.DeleteConsumer(ctx, b.stream, "counter"); err != nil {
		t.Fatal(err)
	}
	redo := b.projector(t, env, c, "counter-again")
	run(t, redo.Run)
	run(t, b.projector(t, env, ov, "orders-view-again").Run)
	waitFor(t, 20*time.Second, "the redelivered stream to be consumed", func() bool {
		cons, err := b.js.Consumer(ctx, b.stream, "counter-again")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= seq
	})
	equalCounts(t, counts(t, env.Pool, c), before)
	afterView, err := orderview.Get(ctx, env.Pool, ids[0])
	if err != nil || afterView.Version != beforeView.Version || !afterView.UpdatedAt.Equal(beforeView.UpdatedAt) {
		t.Errorf("order after redelivery %+v, %v; want it unchanged from %+v", afterView, err, beforeView)
	}
	if got := parked(t, env.Pool, c.name); len(got) != 2 {
		t.Errorf("after redelivery the counter parked %d events, want still 2", len(got))
	}
}
