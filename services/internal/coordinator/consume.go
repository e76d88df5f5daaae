package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// ErrAlreadyRunning is returned by Run when the coordinator already runs.
var ErrAlreadyRunning = errors.New("coordinator: already running")

const (
	// minRedelivery and maxRedelivery bound the delay asked for before a
	// failed event is delivered again.
	minRedelivery = 50 * time.Millisecond
	maxRedelivery = 5 * time.Second
)

// EventTypes returns the types of the events the definitions react to:
// the events that start a saga, the replies of every step and action, the
// events that call a saga off and those a step waits for. Sorted. It is
// the catalogue's own list (sagas.Definitions.Consumes), less an empty
// type, which would make no subject.
func EventTypes(defs *sagas.Definitions) []string {
	return slices.DeleteFunc(defs.Consumes(), func(t string) bool { return t == "" })
}

// Subjects returns the subjects of the EVENTS stream the coordinator
// consumes: events.*.<Type> for each of EventTypes, whatever context
// publishes it.
func Subjects(defs *sagas.Definitions) []string {
	types := EventTypes(defs)
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = "events.*." + t
	}
	return out
}

// Run consumes the events the sagas react to and fires the deadlines
// (while this replica holds the lease) until ctx is done, then returns nil
// once the decisions in progress have ended. Failures of NATS and the
// database are logged and retried.
func (c *Coordinator) Run(ctx context.Context, js jetstream.JetStream) error {
	if js == nil {
		return fmt.Errorf("%w: nil JetStream", ErrInvalidConfig)
	}
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer c.running.Store(false)
	var wg sync.WaitGroup
	wg.Go(func() { c.runDeadlines(ctx) })
	wg.Go(func() { c.runConsumer(ctx, js) })
	wg.Wait()
	return nil
}

// runConsumer makes sure the streams exist, then consumes until ctx ends,
// setting the consumer up again whenever it fails.
func (c *Coordinator) runConsumer(ctx context.Context, js jetstream.JetStream) {
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
		err := natsbus.EnsureTopology(ctx, js, c.cfg.Topology)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("jetstream topology not ready; retrying", "error", err, "in", pause)
		if backoff.Sleep(ctx, pause) != nil {
			return
		}
	}
	// The replicas share the durable consumer; each decides on the events
	// it delivers, Concurrency at a time.
	natsbus.ConsumeDurable(ctx, js, natsbus.EventsStream, jetstream.ConsumerConfig{
		Durable:        c.cfg.Durable,
		Description:    "orderflow: the saga coordinator decides on the events its sagas react to",
		FilterSubjects: Subjects(c.defs),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// Giving up is decided here, per failure kind (see settle).
		MaxDeliver:    -1,
		MaxAckPending: 4 * c.cfg.Concurrency,
	}, c.cfg.Concurrency, c.log, c.handle)
}

// tracer starts the spans of the coordinator's decisions, which the sagas
// service takes.
var tracer = telemetry.NewTracer(natsbus.ContextSagas)

// handle decides on one event and settles its message. The decision is a
// consumer span, the child of the message's trace context (its relay's
// publish span, else the event's own), and the events it records carry
// this span's context on, so that the commands they send continue the
// trace.
func (c *Coordinator) handle(ctx context.Context, msg jetstream.Msg, delivered int) {
	c.stats.received.Add(1)
	env, err := natsbus.Decode(msg)
	ctx, span := natsbus.StartConsumeSpan(ctx, tracer, "decide", msg, delivered, env.Metadata)
	defer span.End()
	if err != nil {
		telemetry.Fail(span, err)
		c.park(ctx, msg, delivered, nil, err)
		return
	}
	if span.IsRecording() {
		span.SetName("decide " + env.Type)
		span.SetAttributes(
			semconv.MessagingMessageID(env.ID),
			telemetry.KeyEventType.String(env.Type),
			telemetry.KeyStream.String(env.Stream),
			telemetry.KeySagaID.String(c.sagaOf(env)),
		)
	}
	if parent, state := telemetry.Inject(ctx); parent != "" {
		env.Metadata.TraceParent, env.Metadata.TraceState = parent, state
	}
	err = c.Deliver(ctx, env)
	if err != nil && !errors.Is(err, sagas.ErrNotStarted) {
		telemetry.Fail(span, err)
	}
	c.settle(ctx, msg, delivered, env, err)
}

// sagaOf is the saga an event is for, for its span: the one it starts
// (named in its data), else its correlation id, which the replies and
// outside events carry.
func (c *Coordinator) sagaOf(env domain.Envelope) string {
	if defs := c.defs.StartedBy(env.Type); len(defs) > 0 {
		id, err := defs[0].Trigger.SagaID(env.Data)
		if err != nil {
			return ""
		}
		return strings.ToLower(id)
	}
	return strings.ToLower(env.Metadata.CorrelationID)
}

// Deliver decides on one event as the consumer does: an event that starts
// sagas starts them (a saga already started ignores it); any other event
// goes to the saga its correlation id names. An event naming no saga is
// ignored, except an outside event (a customer's cancel, a dispatch) that
// names a saga not started yet: it fails with sagas.ErrNotStarted, and
// the consumer delivers it again a little later, when the event that
// starts the saga has been decided on. Delivering an event again changes
// nothing.
func (c *Coordinator) Deliver(ctx context.Context, env domain.Envelope) error {
	why := cause{id: env.ID, requestID: env.Metadata.RequestID, traceParent: env.Metadata.TraceParent, traceState: env.Metadata.TraceState}
	if defs := c.defs.StartedBy(env.Type); len(defs) > 0 {
		var errs []error
		for _, def := range defs {
			id, err := def.Trigger.SagaID(env.Data)
			if err == nil && !domain.ValidUUID(id) {
				err = fmt.Errorf("saga id %q is not a UUID: %w", id, domain.ErrInvalid)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("start %s saga from %s %s: %w", def.Name, env.Type, env.ID, err))
				continue
			}
			_, err = c.decide(ctx, id, why, func(_ *sagas.Definition, st *sagas.State, now time.Time) ([]any, error) {
				if st.Started() {
					return nil, nil // a redelivery, or a saga started by someone else
				}
				return sagas.Start(def, id, env.Data, now)
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("start %s saga %s from %s %s: %w", def.Name, id, env.Type, env.ID, err))
			}
		}
		return errors.Join(errs...)
	}
	id := strings.ToLower(env.Metadata.CorrelationID)
	if !domain.ValidUUID(id) {
		c.stats.ignored.Add(1)
		return nil
	}
	in := sagas.IncomingFrom(env)
	_, err := c.decide(ctx, id, why, func(def *sagas.Definition, st *sagas.State, now time.Time) ([]any, error) {
		if !st.Started() {
			return nil, fmt.Errorf("%s %s names saga %s: %w", env.Type, env.ID, id, sagas.ErrNotStarted)
		}
		return sagas.OnEvent(def, st, in, now)
	})
	if errors.Is(err, sagas.ErrNotStarted) && !c.outside[env.Type] {
		// A reply names the saga whose command it answers, which exists
		// before the command does: without a saga, the event is no
		// saga's (a restock a person asked for, say).
		c.stats.ignored.Add(1)
		return nil
	}
	return err
}

// outsideEvents returns the types of the events that reach a saga from
// outside (AbortOn, and those a step waits for): only such an event can
// arrive before the event that starts its saga has been decided on.
func outsideEvents(defs *sagas.Definitions) map[string]bool {
	out := make(map[string]bool)
	for _, d := range defs.All() {
		for _, a := range d.AbortOn {
			out[a.Event] = true
		}
		for _, s := range d.Steps {
			if s.After != "" {
				out[s.After] = true
			}
		}
	}
	return out
}

// settle acknowledges the message of env after its decision, or asks for
// it again, or parks it, by what err says.
func (c *Coordinator) settle(ctx context.Context, msg jetstream.Msg, delivered int, env domain.Envelope, err error) {
	if err == nil {
		// A lost ack means a redelivery, which changes nothing.
		_ = msg.Ack()
		return
	}
	log := c.log.With("event_id", env.ID, "type", env.Type, "saga_id", env.Metadata.CorrelationID, "delivery", delivered)
	switch {
	case errors.Is(err, sagas.ErrNotStarted):
		// The event that starts the saga may still be on its way (its
		// producer's relay, or another replica deciding on it).
		if delivered >= c.cfg.NotStartedRedeliveries {
			c.stats.dropped.Add(1)
			log.WarnContext(ctx, "event names a saga that never started; dropped", "error", err)
			_ = msg.Term()
			return
		}
		c.stats.notStarted.Add(1)
		_ = msg.NakWithDelay(redelivery(delivered))
	case permanent(err):
		c.park(ctx, msg, delivered, &env, err)
	case ctx.Err() != nil:
		// Shutting down: another replica takes it now.
		_ = msg.Nak()
	case transient(err):
		c.stats.redelivered.Add(1)
		delay := redelivery(delivered)
		log.WarnContext(ctx, "decision failed; asked for the event again", "error", err, "delay", delay)
		_ = msg.NakWithDelay(delay)
	case delivered >= c.cfg.MaxDeliver:
		c.park(ctx, msg, delivered, &env, fmt.Errorf("failed %d times, the last with: %w", delivered, err))
	default:
		c.stats.redelivered.Add(1)
		delay := redelivery(delivered)
		log.ErrorContext(ctx, "decision failed; asked for the event again", "error", err, "delay", delay, "max_deliver", c.cfg.MaxDeliver)
		_ = msg.NakWithDelay(delay)
	}
}

// park logs an event no decision can be taken on, counts it and
// terminates its message so that it is never delivered again; the log
// line holds what an operator needs to publish it again once fixed, and
// the trace id of the decision's span in ctx.
func (c *Coordinator) park(ctx context.Context, msg jetstream.Msg, delivered int, env *domain.Envelope, cause error) {
	c.stats.parked.Add(1)
	var attrs []any
	if env != nil {
		attrs = append(attrs, "event_id", env.ID, "saga_id", env.Metadata.CorrelationID)
	}
	natsbus.Park(telemetry.WithTrace(ctx, c.log), "event parked: no decision can be taken on it", msg, delivered, cause, attrs...)
}

// permanent reports errors that deciding on the same event again
// repeats: the event or the saga's input is invalid, or no definition
// fits the saga.
func permanent(err error) bool {
	return errors.Is(err, domain.ErrInvalid) || errors.Is(err, natsbus.ErrMalformed) ||
		errors.Is(err, sagas.ErrUnknownDefinition) || errors.Is(err, sagas.ErrDefinitionMismatch) ||
		errors.Is(err, domain.ErrUnknownEventType)
}

// transient reports failures that time cures: the store or NATS could not
// be reached, other replicas kept winning, a decision outlasted its time.
func transient(err error) bool {
	return httpx.IsUnavailable(err) || errors.Is(err, domain.ErrVersionConflict) || errors.Is(err, context.DeadlineExceeded)
}

// redelivery is the delay asked for after the delivered-th delivery of an
// event failed: doubling from minRedelivery, at most maxRedelivery.
func redelivery(delivered int) time.Duration {
	return backoff.Policy{Min: minRedelivery, Max: maxRedelivery}.Delay(delivered)
}
