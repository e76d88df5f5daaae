// Package relay publishes a service's events from its event store to NATS
// JetStream: the store is the outbox. A relay follows the store's global
// order from its checkpoint, publishes every event with Nats-Msg-Id = event
// id, many at a time, and moves its checkpoint only past a contiguous
// prefix of acknowledged events. On any failure it stops, backs off and
// resumes from the checkpoint. So a relay killed or cut off at any moment
// loses nothing.
//
// Nor does it publish anything twice, however long it was away: every
// message names its source (the relay's name) and its position in the
// store, and a relay that starts or takes over first reads which of its
// events beyond the checkpoint JetStream already holds and skips exactly
// those (see resume.go and docs/adr/0054-exact-resume.md). Only a message
// still in flight when its relay was cut off, stored after that reading,
// can be sent again, and JetStream's duplicate window drops it.
//
// JetStream receives the events in the store's order, except that an
// event JetStream refused while accepting later ones arrives after them
// when it is republished (see docs/adr/0050-relay.md).
//
// Each publish is a producer span, the child of the trace context the
// event carries in its metadata, from the publish until JetStream's ack;
// the message's traceparent header names the span, so the consumers'
// spans are its children (docs/adr/0129).
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// Source is the part of the event store a relay reads.
type Source interface {
	Subscribe(ctx context.Context, after uint64, filter eventstore.Filter) (eventstore.Subscription, error)
	Head(ctx context.Context) (uint64, error)
}

// Publisher is the part of jetstream.JetStream a relay publishes with.
type Publisher interface {
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	// Conn lets the relay wait for a connection instead of publishing into
	// the client's reconnect buffer while the server is away.
	Conn() *nats.Conn
	// Stream lets the relay read what a stream already holds of its
	// messages before it resumes.
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// Errors.
var (
	ErrInvalidConfig  = errors.New("relay: invalid config")
	ErrAlreadyRunning = errors.New("relay: already running")
	errNotConnected   = errors.New("not connected to NATS")
	// errUnacknowledged ends the span of a publish whose ack the session
	// did not wait for: the next session publishes the event again.
	errUnacknowledged = errors.New("relay: session ended before the ack")
)

// Defaults of Config.
const (
	DefaultMaxInFlight     = 256
	DefaultCheckpointEvery = 100 * time.Millisecond
	DefaultMinBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff      = 10 * time.Second
	DefaultAckTimeout      = 10 * time.Second
	DefaultDrainTimeout    = 2 * time.Second

	// maxInFlightLimit stays under the JetStream client's own cap on
	// pending async publishes (4000), past which publishing stalls.
	maxInFlightLimit = 4000
	// standbyPoll is how often a relay waiting for another one's lease
	// tries to take it over.
	standbyPoll = time.Second
	// statsEvery is how often the store's head and the publish rate are
	// refreshed.
	statsEvery = time.Second
)

// Config configures a relay. Name is required; the rest defaults.
type Config struct {
	// Name keys the relay's checkpoint and lease and is the source every
	// message names (natsbus.HeaderSource): the service's context, e.g.
	// "orders". Relays of different stores need different names. A subject
	// token: letters, digits, '_' and '-'.
	Name string
	// MaxInFlight caps the publishes awaiting their ack; default 256.
	MaxInFlight int
	// CheckpointEvery is how often acknowledged progress is saved; default
	// 100ms. After a crash the next session reads back from JetStream what
	// was acknowledged since the last save (about this much, plus what
	// was in flight) to skip it.
	CheckpointEvery time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure, doubling
	// from min to max while failures repeat; defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// AckTimeout fails a publish that was not acknowledged in time;
	// default 10s.
	AckTimeout time.Duration
	// DrainTimeout bounds the wait for the acks of publishes in flight
	// when the relay is stopped; default 2s.
	DrainTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidConfig)
	case len(c.Name) > 128:
		return fmt.Errorf("%w: name longer than 128 bytes", ErrInvalidConfig)
	case !natsbus.ValidSource(c.Name):
		return fmt.Errorf("%w: name %q is not a subject token (letters, digits, '_', '-')", ErrInvalidConfig, c.Name)
	case c.MaxInFlight < 0 || c.MaxInFlight > maxInFlightLimit:
		return fmt.Errorf("%w: MaxInFlight %d out of range 1..%d", ErrInvalidConfig, c.MaxInFlight, maxInFlightLimit)
	case c.CheckpointEvery < 0, c.MinBackoff < 0, c.MaxBackoff < 0, c.AckTimeout < 0, c.DrainTimeout < 0:
		return fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	}
	if d := c.withDefaults(); d.MinBackoff > d.MaxBackoff {
		return fmt.Errorf("%w: MinBackoff %s exceeds MaxBackoff %s", ErrInvalidConfig, d.MinBackoff, d.MaxBackoff)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Relay publishes one store's events to JetStream. Run it once per
// service; replicas of the service may each run one, only the holder of
// the lease publishes.
type Relay struct {
	src    Source
	pub    Publisher
	cp     *Checkpoints
	cfg    Config
	log    *slog.Logger
	tracer *telemetry.Tracer

	running atomic.Bool

	// Stats.
	active     atomic.Bool
	checkpoint atomic.Uint64
	head       atomic.Uint64
	published  atomic.Uint64
	duplicates atomic.Uint64
	skipped    atomic.Uint64
	parked     atomic.Uint64
	interrupts atomic.Uint64
	inFlight   atomic.Int64
	rate       atomic.Uint64 // float64 bits
}

// New returns a relay reading store and publishing with js. Nothing runs
// until Run.
func New(store Source, js Publisher, cp *Checkpoints, cfg Config) (*Relay, error) {
	switch {
	case store == nil:
		return nil, fmt.Errorf("%w: nil store", ErrInvalidConfig)
	case js == nil:
		return nil, fmt.Errorf("%w: nil publisher", ErrInvalidConfig)
	case cp == nil:
		return nil, fmt.Errorf("%w: nil checkpoints", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Relay{src: store, pub: js, cp: cp, cfg: cfg, log: cfg.Logger.With("relay", cfg.Name), tracer: telemetry.NewTracer(cfg.Name)}, nil
}

// Stats is a snapshot of a relay's progress, for metrics.
type Stats struct {
	// Active reports whether this relay holds the lease and publishes.
	Active bool
	// Checkpoint is the saved position: every event up to it is in
	// JetStream (or parked).
	Checkpoint uint64
	// Head is the store's newest position, refreshed every second.
	Head uint64
	// Lag is Head - Checkpoint, in positions.
	Lag uint64
	// Published counts acknowledged publishes since the relay started,
	// Duplicates those JetStream reported as already stored (a message
	// still in flight when a session ended, sent again by the next one).
	Published, Duplicates uint64
	// Skipped counts events not published because JetStream already held
	// them when a session began: published by an earlier session whose
	// checkpoint was not saved.
	Skipped uint64
	// Parked counts events passed over because they can never be
	// published.
	Parked uint64
	// Interruptions counts sessions that ended on a failure and were
	// resumed after a backoff.
	Interruptions uint64
	// InFlight is the number of publishes awaiting their ack.
	InFlight int
	// EventsPerSecond is the publish rate over the last second.
	EventsPerSecond float64
}

// Stats returns the relay's current figures. It is safe to call at any
// time from any goroutine.
func (r *Relay) Stats() Stats {
	s := Stats{
		Active:          r.active.Load(),
		Checkpoint:      r.checkpoint.Load(),
		Head:            r.head.Load(),
		Published:       r.published.Load(),
		Duplicates:      r.duplicates.Load(),
		Skipped:         r.skipped.Load(),
		Parked:          r.parked.Load(),
		Interruptions:   r.interrupts.Load(),
		InFlight:        int(r.inFlight.Load()),
		EventsPerSecond: math.Float64frombits(r.rate.Load()),
	}
	s.Head = max(s.Head, s.Checkpoint)
	s.Lag = s.Head - s.Checkpoint
	return s
}

// Run publishes until ctx is done, then waits briefly for the acks in
// flight, saves the checkpoint and returns nil (or the error of that last
// save). Failures inside are logged and retried with backoff, never
// returned.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer r.running.Store(false)

	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	wg.Go(func() { r.watch(wctx) })
	defer func() {
		stopWatch()
		wg.Wait()
	}()

	backoff := r.cfg.MinBackoff
	for failures := 0; ; {
		progressed, err := r.session(ctx)
		if ctx.Err() != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err // the last checkpoint could not be saved
		}
		if progressed {
			backoff, failures = r.cfg.MinBackoff, 0
		}
		failures++
		r.interrupts.Add(1)
		// A random wait in [backoff/2, backoff] keeps the relays of several
		// services from hammering a recovering server in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.Warn("relay interrupted, resuming from its checkpoint",
			"error", err, "checkpoint", r.checkpoint.Load(), "retry_in", wait, "failures", failures)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// watch refreshes the head and the publish rate for Stats.
func (r *Relay) watch(ctx context.Context) {
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	last, lastAt := r.published.Load(), time.Now()
	for {
		hctx, cancel := context.WithTimeout(ctx, statsEvery)
		if h, err := r.src.Head(hctx); err == nil {
			storeMax(&r.head, h)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p := r.published.Load()
			r.rate.Store(math.Float64bits(float64(p-last) / now.Sub(lastAt).Seconds()))
			last, lastAt = p, now
		}
	}
}

func storeMax(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// inflight is one event on its way to JetStream.
type inflight struct {
	pos    uint64
	id     string
	stream string
	typ    string
	sent   time.Time
	fut    jetstream.PubAckFuture
	// perm is set instead of fut when the event can never be published.
	perm error
	// held is set instead of fut when JetStream already holds the event.
	held bool
	// span is the publish's, when one was sent; it ends with the ack.
	span trace.Span
}

// endSpan ends the span of in's publish, failed with err unless err is
// nil. Ending a span twice changes nothing.
func (in *inflight) endSpan(err error) {
	if in.span == nil {
		return
	}
	telemetry.Fail(in.span, err)
	in.span.End()
}

// startPublish starts the span of e's publish as msg, the child of the
// trace context e carries, and makes msg's traceparent header name it.
// Under a no-op provider the header keeps e's own trace context, which is
// what the span would carry on.
func (r *Relay) startPublish(ctx context.Context, e domain.Envelope, msg *nats.Msg) trace.Span {
	ctx = telemetry.Extract(ctx, e.Metadata.TraceParent, e.Metadata.TraceState)
	ctx, span := r.tracer.Start(ctx, "publish", trace.SpanKindProducer)
	if !span.IsRecording() {
		return span
	}
	span.SetName("publish " + msg.Subject)
	span.SetAttributes(
		telemetry.MessagingNATS,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(msg.Subject),
		semconv.MessagingMessageID(e.ID),
		telemetry.KeyEventType.String(e.Type),
		telemetry.KeyStream.String(e.Stream),
		telemetry.KeyCorrelationID.String(e.Metadata.CorrelationID),
	)
	parent, state := telemetry.Inject(ctx)
	msg.Header.Set(natsbus.HeaderTraceParent, parent)
	if state != "" {
		msg.Header.Set(natsbus.HeaderTraceState, state)
	} else {
		msg.Header.Del(natsbus.HeaderTraceState)
	}
	return span
}

// session is one run from the checkpoint until ctx ends or something
// fails. It returns whether it moved the checkpoint.
type session struct {
	r     *Relay
	lease *lease
	held  *held

	pending    chan inflight // in position order
	slots      chan struct{} // one per publish awaiting its ack
	readerErr  chan error
	readerDone chan struct{}
	stopReader context.CancelFunc

	acked uint64 // every event up to here is acknowledged or parked
	saved uint64
}

func (r *Relay) session(ctx context.Context) (progressed bool, err error) {
	if nc := r.pub.Conn(); nc != nil && !nc.IsConnected() {
		r.log.Info("relay waiting for NATS")
		if err := natsbus.WaitConnected(ctx, nc); err != nil {
			return false, fmt.Errorf("wait for NATS: %w", err)
		}
	}
	l, err := r.cp.acquire(ctx, r.cfg.Name, standbyPoll, func() {
		r.log.Info("relay standing by: another relay of this name holds the lease")
	})
	if err != nil {
		return false, err
	}
	defer l.close()
	from, rp, err := l.load(ctx)
	if err != nil {
		return false, err
	}
	r.checkpoint.Store(from)
	h, err := r.search(ctx, from, rp)
	if err != nil {
		return false, err
	}
	if n := len(h.keys); n > 0 {
		r.log.Info("relay found messages of its own beyond its checkpoint in JetStream; the events they carry are skipped", "checkpoint", from, "messages", n)
	}
	r.active.Store(true)
	defer r.active.Store(false)
	defer r.inFlight.Store(0)

	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	sub, err := r.src.Subscribe(rctx, from, eventstore.Filter{})
	if err != nil {
		return false, fmt.Errorf("subscribe after %d: %w", from, err)
	}
	defer sub.Close()

	s := &session{
		r:          r,
		lease:      l,
		held:       h,
		pending:    make(chan inflight, r.cfg.MaxInFlight),
		slots:      make(chan struct{}, r.cfg.MaxInFlight),
		readerErr:  make(chan error, 1),
		readerDone: make(chan struct{}),
		stopReader: stopReader,
		acked:      from,
		saved:      from,
	}
	r.log.Info("relay publishing", "from", from)
	go s.read(rctx, sub)
	err = s.loop(ctx)
	return s.saved > from, err
}

// read takes events from the store, publishes them and queues them for
// loop, as long as a slot is free.
func (s *session) read(ctx context.Context, sub eventstore.Subscription) {
	defer close(s.readerDone)
	fail := func(err error) { s.readerErr <- err }
	nc := s.r.pub.Conn()
	warned := false
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			fail(fmt.Errorf("read store: %w", err))
			return
		}
		in := inflight{pos: e.Position, id: e.ID, stream: e.Stream, typ: e.Type}
		var msg *nats.Msg
		if s.held.has(e.Position, e.ID) {
			in.held = true
		} else if msg, err = natsbus.Encode(s.r.cfg.Name, e); err != nil {
			// Encoding depends on the event alone: it will never work.
			in.perm = err
		} else if !warned && !s.held.covers(msg.Subject) {
			warned = true
			s.r.log.Warn("relay publishes outside the subjects it searches on resume; after a crash such events may be sent twice",
				"subject", msg.Subject, "searched", s.held.filters)
		}
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			fail(ctx.Err())
			return
		}
		if msg != nil {
			if nc != nil && !nc.IsConnected() {
				fail(errNotConnected)
				return
			}
			in.sent = time.Now()
			in.span = s.r.startPublish(ctx, e, msg)
			fut, err := s.r.pub.PublishMsgAsync(msg)
			switch {
			case err == nil:
				in.fut = fut
			case errors.Is(err, nats.ErrMaxPayload):
				in.perm = err
			default:
				err = fmt.Errorf("publish event %s (position %d): %w", in.id, in.pos, err)
				in.endSpan(err)
				fail(err)
				return
			}
		}
		s.r.inFlight.Add(1)
		// pending has a place for every slot, so this does not block.
		s.pending <- in
	}
}

// loop waits for the acks in position order, parks what cannot be
// published and saves the checkpoint as it goes.
func (s *session) loop(ctx context.Context) error {
	cfg := s.r.cfg
	ticker := time.NewTicker(cfg.CheckpointEvery)
	defer ticker.Stop()
	ackTimer := time.NewTimer(time.Hour)
	defer ackTimer.Stop()

	var head *inflight // the oldest publish, the only one waited for
	for {
		var (
			pendC   <-chan inflight
			okC     <-chan *jetstream.PubAck
			errC    <-chan error
			expired <-chan time.Time
		)
		if head == nil {
			pendC = s.pending
		} else {
			okC, errC, expired = head.fut.Ok(), head.fut.Err(), ackTimer.C
		}
		select {
		case in := <-pendC:
			if in.held {
				s.skip(in)
				continue
			}
			if in.fut == nil {
				if err := s.park(ctx, in); err != nil {
					return s.finish(ctx, nil, err)
				}
				continue
			}
			head = &in
			ackTimer.Reset(time.Until(in.sent.Add(cfg.AckTimeout)))
		case ack := <-okC:
			s.acknowledged(*head, ack)
			head = nil
		case err := <-errC:
			in := *head
			head = nil
			if !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
				err = fmt.Errorf("publish event %s (position %d): %w", in.id, in.pos, err)
				in.endSpan(err)
				return s.abort(ctx, err)
			}
			in.perm = err
			if err := s.park(ctx, in); err != nil {
				return s.finish(ctx, nil, err)
			}
		case <-expired:
			err := fmt.Errorf("publish event %s (position %d): no ack within %s", head.id, head.pos, cfg.AckTimeout)
			head.endSpan(err)
			return s.abort(ctx, err)
		case <-ticker.C:
			if err := s.flush(ctx); err != nil {
				return s.finish(ctx, head, err)
			}
		case err := <-s.readerErr:
			return s.finish(ctx, head, err)
		case <-ctx.Done():
			return s.finish(ctx, head, nil)
		}
	}
}

func (s *session) acknowledged(in inflight, ack *jetstream.PubAck) {
	s.acked = in.pos
	s.held.acked(ack.Stream, ack.Sequence)
	s.r.published.Add(1)
	if ack.Duplicate {
		s.r.duplicates.Add(1)
	}
	if in.span != nil && in.span.IsRecording() {
		in.span.SetAttributes(attribute.Bool("orderflow.duplicate", ack.Duplicate), attribute.Int64("orderflow.jetstream.sequence", int64(ack.Sequence)))
	}
	in.endSpan(nil)
	s.release()
}

// skip moves past an event JetStream already holds.
func (s *session) skip(in inflight) {
	s.acked = in.pos
	s.r.skipped.Add(1)
	s.release()
}

func (s *session) release() {
	<-s.slots
	s.r.inFlight.Add(-1)
}

// park records an event that can never be published and moves past it:
// one poison event must not hold back every event after it.
func (s *session) park(ctx context.Context, in inflight) error {
	p := Parked{Position: in.pos, EventID: in.id, Stream: in.stream, Type: in.typ, Error: in.perm.Error()}
	if err := s.lease.park(ctx, p); err != nil {
		return err
	}
	in.endSpan(in.perm)
	s.r.log.Error("relay parked an event it cannot publish",
		"position", in.pos, "event_id", in.id, "stream", in.stream, "type", in.typ, "error", in.perm)
	s.r.parked.Add(1)
	s.acked = in.pos
	s.release()
	return nil
}

func (s *session) flush(ctx context.Context) error {
	if s.acked <= s.saved {
		return nil
	}
	if err := s.lease.save(ctx, s.acked, s.held.marks(s.acked)); err != nil {
		return err
	}
	s.saved = s.acked
	s.r.checkpoint.Store(s.saved)
	return nil
}

// abort ends the session after the oldest publish failed: the acks of the
// publishes after it must not count, or the checkpoint would pass an event
// that is not in JetStream. It saves what was acknowledged before.
func (s *session) abort(ctx context.Context, cause error) error {
	s.stopReader()
	<-s.readerDone
	// The publishes queued behind the failed one are dropped: the next
	// session sends their events again.
	for more := true; more; {
		select {
		case in := <-s.pending:
			in.endSpan(errUnacknowledged)
		default:
			more = false
		}
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ctx.Err() != nil {
		return s.flush(bg) // being stopped anyway
	}
	return errors.Join(cause, s.flush(bg))
}

// finish ends the session: it stops the reader, takes the acks that are
// in (waiting up to DrainTimeout for them when the relay is being stopped,
// not at all after a failure), saves the checkpoint and returns cause, or
// nil when ctx ended.
func (s *session) finish(ctx context.Context, head *inflight, cause error) error {
	s.stopReader()
	<-s.readerDone
	stopping := ctx.Err() != nil
	if stopping {
		cause = nil
	}

	var rest []inflight
	if head != nil {
		rest = append(rest, *head)
	}
	for more := true; more; {
		select {
		case in := <-s.pending:
			rest = append(rest, in)
		default:
			more = false
		}
	}

	// What was not acknowledged below is sent again by the next session.
	defer func() {
		for i := range rest {
			rest[i].endSpan(errUnacknowledged)
		}
	}()
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var deadline <-chan time.Time
	if stopping {
		t := time.NewTimer(s.r.cfg.DrainTimeout)
		defer t.Stop()
		deadline = t.C
	}
drain:
	for _, in := range rest {
		if in.held {
			s.skip(in)
			continue
		}
		if in.fut == nil {
			if err := s.park(bg, in); err != nil {
				break drain
			}
			continue
		}
		var (
			ack *jetstream.PubAck
			err error
		)
		select {
		case ack = <-in.fut.Ok():
		case err = <-in.fut.Err():
		default:
			if !stopping {
				break drain
			}
			select {
			case ack = <-in.fut.Ok():
			case err = <-in.fut.Err():
			case <-deadline:
				break drain
			}
		}
		if err != nil {
			if !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
				break drain
			}
			in.perm = err
			if perr := s.park(bg, in); perr != nil {
				break drain
			}
			continue
		}
		s.acknowledged(in, ack)
	}

	if err := s.flush(bg); err != nil {
		if stopping {
			return err
		}
		return errors.Join(cause, err)
	}
	return cause
}
