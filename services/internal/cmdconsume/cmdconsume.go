// Package cmdconsume runs, in the service that owns a context, the
// commands sagas send it: a durable JetStream pull consumer of
// commands.<context>.> on the COMMANDS work queue decodes each message
// (the saga's CommandIssued event, see natsbus), and hands the command to
// the context's commands.Bus with the saga id as correlation id and the
// command id as causation of every event it appends. The answer travels
// back as one of those events, through the service's own relay.
//
// A message is acknowledged once its command ran, or when running it
// again could not help: a message that is not a command, a command the
// catalog does not know, or invalid input is parked (logged with its
// body, counted, terminated) rather than redelivered forever. When the
// store cannot be reached the message is asked for again after a growing
// delay, for as long as it takes; a redelivered command appends nothing
// new, as its id shows it was run. Any number of replicas consume the
// same durable consumer and share the commands.
//
// Each run is a consumer span of the service, the child of the message's
// trace context (the publish span of the sagas service's relay), and the
// events the command appends carry the run's span context on.
package cmdconsume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// Runner runs the commands of one context; *commands.Bus is one.
type Runner interface {
	Context() string
	RunWire(ctx context.Context, m commands.Meta, w commands.Wire) (commands.Outcome, error)
}

// ErrInvalidConfig is wrapped by Config.Validate errors.
var ErrInvalidConfig = errors.New("cmdconsume: invalid config")

// Defaults of Config.
const (
	DefaultAckWait     = 30 * time.Second
	DefaultMaxDeliver  = 10
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	DefaultConcurrency = 64
)

// Config configures Run. Context and Bus are required; the zero value of
// every other field is its default.
type Config struct {
	// Context is the context whose commands are consumed, e.g.
	// "inventory": the subjects commands.<Context>.>. It must be the
	// Bus's context.
	Context string
	// Durable names the consumer the replicas share; default
	// "commands-<Context>".
	Durable string
	// Bus runs the commands.
	Bus Runner
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// AckWait is how long JetStream waits for a message's ack before it
	// delivers it again (to any replica), and so bounds one run of a
	// command; default 30s.
	AckWait time.Duration
	// MaxDeliver is how often a command that fails with an unexpected
	// error (neither an answer nor an unreachable store) is delivered
	// before it is parked; default 10. Commands failing because the store
	// is unreachable are retried without limit.
	MaxDeliver int
	// MinBackoff and MaxBackoff bound the delay asked for before a failed
	// command is delivered again, doubling per delivery; defaults 100ms
	// and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Concurrency is how many commands run at once in this replica
	// (commands on different aggregates run in parallel; those on one
	// aggregate queue on its writer); default 64.
	Concurrency int
	// Stats, when set, receives the counts; nil keeps them private.
	Stats *Stats
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Context == "":
		errs = append(errs, errors.New("no context"))
	case !natsbus.ValidSource(c.Context):
		errs = append(errs, fmt.Errorf("context %q is not a subject token", c.Context))
	}
	if c.Bus == nil {
		errs = append(errs, errors.New("no bus"))
	} else if c.Bus.Context() != c.Context {
		errs = append(errs, fmt.Errorf("the bus runs the commands of %q, not %q", c.Bus.Context(), c.Context))
	}
	if c.Durable != "" && !natsbus.ValidSource(c.Durable) {
		errs = append(errs, fmt.Errorf("durable name %q is not a subject token", c.Durable))
	}
	if c.AckWait < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	if c.MaxDeliver < 0 || c.Concurrency < 0 {
		errs = append(errs, errors.New("negative count"))
	}
	if d := c.withDefaults(); d.MinBackoff > d.MaxBackoff {
		errs = append(errs, fmt.Errorf("MinBackoff %s exceeds MaxBackoff %s", d.MinBackoff, d.MaxBackoff))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Durable == "" {
		c.Durable = "commands-" + c.Context
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	return c
}

// Subject is the filter of the commands of context.
func Subject(context string) string { return "commands." + context + ".>" }

// Run consumes the commands of cfg.Context from js until ctx is done, then
// returns nil once the commands in progress have ended. Failures of NATS
// are logged and retried; only an invalid cfg is an error. The COMMANDS
// stream must exist (natsbus.EnsureTopology).
func Run(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if js == nil {
		return fmt.Errorf("%w: nil JetStream", ErrInvalidConfig)
	}
	c := &consumer{cfg: cfg.withDefaults(), tracer: telemetry.NewTracer(cfg.Context)}
	c.log = c.cfg.Logger.With("component", "cmdconsume", "context", c.cfg.Context, "durable", c.cfg.Durable)
	natsbus.ConsumeDurable(ctx, js, natsbus.CommandsStream, jetstream.ConsumerConfig{
		Durable:       c.cfg.Durable,
		Description:   "orderflow: the " + c.cfg.Context + " service runs the commands sagas send it",
		FilterSubject: Subject(c.cfg.Context),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// Parking is decided here, per failure kind (see handle), so the
		// server never drops a command on its own.
		MaxDeliver:    -1,
		MaxAckPending: 4 * c.cfg.Concurrency,
	}, c.cfg.Concurrency, c.log, c.handle)
	return nil
}

type consumer struct {
	cfg    Config
	log    *slog.Logger
	tracer *telemetry.Tracer
}

// handle runs one message's command and settles the message.
func (c *consumer) handle(ctx context.Context, msg jetstream.Msg, delivered int) {
	st := c.cfg.Stats
	st.received.Add(1)
	env, err := natsbus.Decode(msg)
	ctx, span := natsbus.StartConsumeSpan(ctx, c.tracer, "run", msg, delivered, env.Metadata)
	defer span.End()
	if err != nil {
		telemetry.Fail(span, err)
		c.park(ctx, msg, delivered, nil, err)
		return
	}
	cmd, err := natsbus.ParseCommand(env)
	if err == nil && cmd.Context != c.cfg.Context {
		err = fmt.Errorf("command for %q on %s: %w", cmd.Context, msg.Subject(), natsbus.ErrUnroutable)
	}
	if err != nil {
		telemetry.Fail(span, err)
		c.park(ctx, msg, delivered, &env, err)
		return
	}
	m := commands.Meta{
		CommandID:     cmd.CommandID,
		CorrelationID: env.Metadata.CorrelationID,
		RequestID:     env.Metadata.RequestID,
		TraceParent:   env.Metadata.TraceParent,
		TraceState:    env.Metadata.TraceState,
		Now:           time.Now().UTC(),
		Attempt:       delivered,
	}
	if m.CorrelationID == "" {
		// The saga's stream names it.
		m.CorrelationID, _ = strings.CutPrefix(env.Stream, sagas.StreamPrefix)
	}
	// The command's events continue the trace from this run.
	if parent, state := telemetry.Inject(ctx); parent != "" {
		m.TraceParent, m.TraceState = parent, state
	}
	w := commands.Wire{Context: cmd.Context, Name: cmd.Name, Version: cmd.Version, CommandID: cmd.CommandID, Payload: cmd.Payload}
	if span.IsRecording() {
		kind := w.Kind().String()
		span.SetName("run " + kind)
		span.SetAttributes(
			semconv.MessagingMessageID(env.ID),
			telemetry.KeyCommand.String(kind),
			telemetry.KeyCommandID.String(cmd.CommandID),
			telemetry.KeySagaID.String(m.CorrelationID),
		)
	}

	rctx, cancel := context.WithTimeout(ctx, c.cfg.AckWait)
	out, err := c.cfg.Bus.RunWire(rctx, m, w)
	cancel()
	if err == nil {
		if out.Duplicate {
			st.duplicates.Add(1)
		}
		st.answered.Add(1)
		// A lost ack means a redelivery, which the command id absorbs.
		_ = msg.Ack()
		return
	}
	telemetry.Fail(span, err)
	log := c.log.With("command", w.Kind().String(), "command_id", cmd.CommandID, "saga_id", m.CorrelationID, "delivery", delivered)
	switch {
	case permanent(err):
		c.park(ctx, msg, delivered, &env, err)
	case refused(err):
		// A traveling command answers its refusals with an event; a
		// refusal returned instead is a handler's bug, and running it
		// again would refuse it again.
		st.refused.Add(1)
		log.ErrorContext(ctx, "command refused without an answer; acknowledged", "error", err)
		_ = msg.Ack()
	case ctx.Err() != nil:
		// Shutting down: another replica takes it now.
		_ = msg.Nak()
	case transient(err):
		st.retried.Add(1)
		delay := c.backoff(delivered)
		log.WarnContext(ctx, "command failed; asked for it again", "error", err, "delay", delay)
		_ = msg.NakWithDelay(delay)
	case delivered >= c.cfg.MaxDeliver:
		c.park(ctx, msg, delivered, &env, fmt.Errorf("failed %d times, the last with: %w", delivered, err))
	default:
		st.retried.Add(1)
		delay := c.backoff(delivered)
		log.ErrorContext(ctx, "command failed; asked for it again", "error", err, "delay", delay, "max_deliver", c.cfg.MaxDeliver)
		_ = msg.NakWithDelay(delay)
	}
}

// park logs a message that cannot be run, counts it and terminates it so
// that it is never delivered again. The log line holds what an operator
// needs to send it again once fixed, and the trace id of the run's span
// in ctx.
func (c *consumer) park(ctx context.Context, msg jetstream.Msg, delivered int, env *domain.Envelope, cause error) {
	c.cfg.Stats.parked.Add(1)
	var attrs []any
	if env != nil {
		saga := env.Metadata.CorrelationID
		if saga == "" {
			saga, _ = strings.CutPrefix(env.Stream, sagas.StreamPrefix)
		}
		attrs = append(attrs, "event_id", env.ID, "saga_id", saga, "saga_stream", env.Stream)
	}
	natsbus.Park(telemetry.WithTrace(ctx, c.log), "command parked: it cannot be run", msg, delivered, cause, attrs...)
}

// backoff is the redelivery delay after the delivered-th delivery failed.
func (c *consumer) backoff(delivered int) time.Duration {
	return backoff.Policy{Min: c.cfg.MinBackoff, Max: c.cfg.MaxBackoff}.Delay(delivered)
}

// permanent reports errors that running the same command again repeats:
// it is not a command this service knows, or its input is invalid.
func permanent(err error) bool {
	return errors.Is(err, commands.ErrUnknownCommand) || errors.Is(err, commands.ErrUndecodable) ||
		errors.Is(err, domain.ErrInvalid) || errors.Is(err, natsbus.ErrMalformed) || errors.Is(err, natsbus.ErrUnroutable)
}

// refused reports a business refusal returned as an error.
func refused(err error) bool {
	return errors.Is(err, domain.ErrIllegalState) || errors.Is(err, domain.ErrNotFound) || errors.Is(err, domain.ErrInsufficientStock)
}

// transient reports failures that time cures: the store or NATS could
// not be reached, writers in other processes kept winning, a run
// outlasted its ack wait.
func transient(err error) bool {
	return httpx.IsUnavailable(err) || errors.Is(err, domain.ErrVersionConflict) || errors.Is(err, context.DeadlineExceeded)
}

// Stats counts what the consumers given it did. The zero Stats is ready to
// use; its methods are safe for concurrent use.
type Stats struct {
	received   atomic.Uint64
	answered   atomic.Uint64
	duplicates atomic.Uint64
	refused    atomic.Uint64
	retried    atomic.Uint64
	parked     atomic.Uint64
}

// StatsSnapshot is the value of a Stats at one moment.
type StatsSnapshot struct {
	// Received counts the deliveries, redeliveries included.
	Received uint64
	// Answered counts the commands that ran (their answer is stored),
	// Duplicates those of them that had run before.
	Answered   uint64
	Duplicates uint64
	// Refused counts commands acknowledged after a refusal their handler
	// returned instead of answering it.
	Refused uint64
	// Retried counts the deliveries asked for again after a failure.
	Retried uint64
	// Parked counts the messages terminated because they cannot be run.
	Parked uint64
}

// Snapshot returns the counts so far.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		Received:   s.received.Load(),
		Answered:   s.answered.Load(),
		Duplicates: s.duplicates.Load(),
		Refused:    s.refused.Load(),
		Retried:    s.retried.Load(),
		Parked:     s.parked.Load(),
	}
}
