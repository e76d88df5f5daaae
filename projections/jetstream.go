package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/backoff"
)

// JetStreamConfig tunes a JetStreamProjector. Subjects is required; the zero
// value of every other field gives its default.
type JetStreamConfig struct {
	// Stream is the JetStream stream holding the events. Default "EVENTS".
	Stream string
	// Durable names the durable consumer. Default "projection-<name>".
	Durable string
	// Subjects filters the stream, e.g. "events.shipping.>".
	Subjects []string
	// BatchSize caps the messages applied in one transaction (and the
	// consumer's unacknowledged messages). Default 500.
	BatchSize int
	// AckWait is how long JetStream waits for an ack before redelivering.
	// Default 30s.
	AckWait time.Duration
	// NakDelay is the redelivery delay asked for after a database error;
	// it doubles while the errors last, up to MaxBackoff. Default 1s.
	NakDelay time.Duration
	// FetchWait bounds one wait for new messages. Default 5s.
	FetchWait time.Duration
	// Retries and RetryDelay: as in Config. Defaults 2 and 50ms.
	Retries    int
	RetryDelay time.Duration
	// MaxBackoff caps the pause after repeated errors. Default 30s.
	MaxBackoff time.Duration
	// SeenRetention is how long an event id is remembered for
	// deduplication. Default 7 days.
	SeenRetention time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports settings out of range.
func (c JetStreamConfig) Validate() error {
	switch {
	case len(c.Subjects) == 0:
		return errors.New("jetstream projector: no subjects")
	case c.BatchSize < 0 || c.BatchSize > 10_000:
		return fmt.Errorf("jetstream projector: BatchSize %d out of range 1..10000", c.BatchSize)
	case c.AckWait < 0 || c.NakDelay < 0 || c.FetchWait < 0 || c.RetryDelay < 0 || c.MaxBackoff < 0 || c.SeenRetention < 0:
		return errors.New("jetstream projector: negative duration")
	}
	return nil
}

func (c *JetStreamConfig) setDefaults(name string) {
	if c.Stream == "" {
		c.Stream = "EVENTS"
	}
	if c.Durable == "" {
		c.Durable = "projection-" + name
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.NakDelay == 0 {
		c.NakDelay = time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = 5 * time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.SeenRetention == 0 {
		c.SeenRetention = 7 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// JetStreamProjector keeps a projection up to date with the events of other
// contexts, consumed from a durable JetStream consumer. Each message body is
// a JSON domain.Envelope. A batch is applied in one transaction that also
// records the event ids in projection_seen; ids seen before are skipped, so
// a redelivered or republished event changes nothing twice. Messages are
// acknowledged after the commit.
type JetStreamProjector struct {
	db   *pgxpool.Pool
	js   jetstream.JetStream
	proj Projection
	hash string
	cfg  JetStreamConfig
	live

	// Only Run's goroutine touches these.
	lastPrune time.Time
	lastInfo  time.Time
	lastBeat  time.Time
}

// NewJetStreamProjector returns a projector of p fed by js, writing to db.
func NewJetStreamProjector(db *pgxpool.Pool, js jetstream.JetStream, p Projection, cfg JetStreamConfig) (*JetStreamProjector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil || js == nil || p == nil {
		return nil, errors.New("jetstream projector: nil database, JetStream or projection")
	}
	cfg.setDefaults(p.Name())
	return &JetStreamProjector{db: db, js: js, proj: p, hash: SchemaHash(p), cfg: cfg,
		live: live{name: p.Name(), log: cfg.Logger, stats: Stats{Name: p.Name()}}}, nil
}

// Name is the projection's name.
func (j *JetStreamProjector) Name() string { return j.proj.Name() }

// Stats reports the projector's progress. Checkpoint is the stream sequence
// of the last message applied, Lag the messages not yet acknowledged.
func (j *JetStreamProjector) Stats() Stats { return j.snapshot(false) }

// Run consumes until ctx is done, then returns nil. Errors are logged and
// retried with backoff.
func (j *JetStreamProjector) Run(ctx context.Context) error {
	return j.runRetrying(ctx, "jetstream projector", j.cfg.NakDelay, j.cfg.MaxBackoff, j.run)
}

func (j *JetStreamProjector) run(ctx context.Context, progress func()) error {
	if err := Install(ctx, j.db, j.proj); err != nil {
		return err
	}
	if _, err := j.db.Exec(ctx, "UPDATE projection_versions SET feed = 'jetstream' WHERE name = $1 AND feed <> 'jetstream'", j.Name()); err != nil {
		return err
	}
	if err := j.loadParked(ctx, j.db); err != nil {
		return err
	}
	cons, err := j.js.CreateOrUpdateConsumer(ctx, j.cfg.Stream, jetstream.ConsumerConfig{
		Durable:        j.cfg.Durable,
		FilterSubjects: j.cfg.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        j.cfg.AckWait,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxDeliver:     -1,
		// Nothing newer is delivered while a batch waits for its
		// redelivery, which keeps the events of a stream in order.
		MaxAckPending: j.cfg.BatchSize,
	})
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", j.cfg.Durable, j.cfg.Stream, err)
	}
	nakDelay := j.cfg.NakDelay
	for {
		msgs, err := j.fetch(ctx, cons)
		if err != nil {
			return err
		}
		j.refreshInfo(ctx, cons)
		j.prune(ctx)
		if len(msgs) == 0 {
			j.heartbeat(ctx)
			continue
		}
		if err := j.process(ctx, msgs); err != nil {
			if ctx.Err() != nil {
				return err
			}
			// Ask for the whole batch again after a delay and fetch
			// nothing meanwhile: JetStream then delivers the batch again
			// before anything newer.
			for _, m := range msgs {
				_ = m.NakWithDelay(nakDelay)
			}
			j.cfg.Logger.Warn("jetstream projector could not apply a batch; asked for redelivery", "projection", j.Name(),
				"messages", len(msgs), "delay", nakDelay, "error", err)
			if err := backoff.Sleep(ctx, nakDelay); err != nil {
				return err
			}
			nakDelay = min(2*nakDelay, j.cfg.MaxBackoff)
			continue
		}
		nakDelay = j.cfg.NakDelay
		progress()
	}
}

// fetch returns the messages available now, up to a batch; when there are
// none it waits for the first one (up to FetchWait) and adds whatever else
// arrived with it.
func (j *JetStreamProjector) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	msgs, err := collect(cons.FetchNoWait(j.cfg.BatchSize))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	wctx, cancel := context.WithTimeout(ctx, j.cfg.FetchWait)
	defer cancel()
	msgs, err = collect(cons.Fetch(1, jetstream.FetchContext(wctx)))
	if err != nil || len(msgs) == 0 {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, nil
	}
	more, err := collect(cons.FetchNoWait(j.cfg.BatchSize - 1))
	if err != nil {
		// The first message is still ours to apply.
		return msgs, nil //nolint:nilerr // the rest is fetched next time
	}
	return append(msgs, more...), nil
}

func collect(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	if err := b.Error(); err != nil && len(msgs) == 0 && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	return msgs, nil
}

// jsEvent is a message with its decoded envelope.
type jsEvent struct {
	msg jetstream.Msg
	seq uint64
	env domain.Envelope
}

// process applies one batch and acknowledges it. Messages that are not
// envelopes are parked and terminated at once.
func (j *JetStreamProjector) process(ctx context.Context, msgs []jetstream.Msg) error {
	c := &jsCommitter{j: j, seqs: make(map[string]uint64, len(msgs))}
	var (
		events []domain.Envelope
		good   []jetstream.Msg
	)
	for _, m := range msgs {
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		var e domain.Envelope
		err := json.Unmarshal(m.Data(), &e)
		if err == nil && (e.ID == "" || e.Type == "" || e.Stream == "") {
			err = errors.New("envelope without id, type or stream")
		}
		if err != nil {
			id := m.Headers().Get("Nats-Msg-Id")
			if id == "" {
				id = "nats-seq-" + strconv.FormatUint(seq, 10)
			}
			if err := j.parkRaw(ctx, id, seq, m.Subject(), e.Type, fmt.Errorf("%w: message %d on %s: %w", ErrUndecodable, seq, m.Subject(), err)); err != nil {
				return err
			}
			_ = m.Term()
			continue
		}
		c.seqs[e.ID] = max(c.seqs[e.ID], seq)
		events = append(events, e)
		good = append(good, m)
	}
	if len(events) > 0 {
		rp := newRetryPolicy(j.cfg.Retries, j.cfg.RetryDelay)
		if err := commitIsolating(ctx, c, rp, events, 0); err != nil {
			return err
		}
	}
	for _, m := range good {
		// A lost ack means a redelivery, which projection_seen absorbs.
		_ = m.Ack()
	}
	j.rate.add(time.Now(), c.applied)
	return nil
}

// parkRaw parks a message that is not an event envelope.
func (j *JetStreamProjector) parkRaw(ctx context.Context, id string, seq uint64, subject, typ string, cause error) error {
	var parked bool
	err := inTx(ctx, j.db, func(tx pgx.Tx) error {
		if _, err := lockedRegistry(ctx, tx, j.Name()); err != nil {
			return err
		}
		var err error
		parked, err = insertParked(ctx, tx, j.Name(), id, seq, subject, typ, cause)
		return err
	})
	if err == nil && parked {
		j.noteParked(id, seq, typ, cause)
	}
	return err
}

func (j *JetStreamProjector) note(reg registryRow, checkpoint uint64) {
	j.mu.Lock()
	j.stats.ActiveVersion = reg.active
	j.stats.Checkpoint = max(j.stats.Checkpoint, checkpoint)
	j.stats.Head = max(j.stats.Head, j.stats.Checkpoint)
	j.stats.Lag = lag(j.stats.Head, j.stats.Checkpoint)
	j.mu.Unlock()
	j.rebuilding.Store(reg.rebuilding)
}

// refreshInfo asks the consumer how much is left, now and then.
func (j *JetStreamProjector) refreshInfo(ctx context.Context, cons jetstream.Consumer) {
	if time.Since(j.lastInfo) < time.Second {
		return
	}
	j.lastInfo = time.Now()
	info, err := cons.Info(ctx)
	if err != nil {
		return
	}
	j.mu.Lock()
	j.stats.Lag = info.NumPending + uint64(info.NumAckPending)
	j.stats.Head = j.stats.Checkpoint + j.stats.Lag
	j.mu.Unlock()
}

// heartbeat tells ListStats that an idle projector is still running.
func (j *JetStreamProjector) heartbeat(ctx context.Context) {
	if time.Since(j.lastBeat) < heartbeatEvery {
		return
	}
	if _, err := j.db.Exec(ctx, "UPDATE projection_versions SET heartbeat_at = now(), events_per_second = 0 WHERE name = $1", j.Name()); err == nil {
		j.lastBeat = time.Now()
	}
}

// prune forgets event ids older than SeenRetention, now and then.
func (j *JetStreamProjector) prune(ctx context.Context) {
	if time.Since(j.lastPrune) < 10*time.Minute {
		return
	}
	j.lastPrune = time.Now()
	if _, err := j.db.Exec(ctx, "DELETE FROM projection_seen WHERE projection = $1 AND seen_at < now() - $2::interval",
		j.Name(), j.cfg.SeenRetention); err != nil {
		j.cfg.Logger.Warn("jetstream projector could not prune projection_seen", "projection", j.Name(), "error", err)
	}
}

// jsCommitter applies JetStream batches; the checkpoint it keeps is the
// stream sequence.
type jsCommitter struct {
	j       *JetStreamProjector
	seqs    map[string]uint64
	applied int
}

func (c *jsCommitter) through(events []domain.Envelope) uint64 {
	var s uint64
	for _, e := range events {
		s = max(s, c.seqs[e.ID])
	}
	return s
}

func (c *jsCommitter) commit(ctx context.Context, events []domain.Envelope, _ uint64) error {
	j := c.j
	through := c.through(events)
	var (
		reg     registryRow
		applied int
	)
	err := inTx(ctx, j.db, func(tx pgx.Tx) error {
		var err error
		if reg, err = lockedRegistry(ctx, tx, j.Name()); err != nil {
			return err
		}
		if reg.schemaHash != "" && reg.schemaHash != j.hash {
			return ErrSchemaChanged
		}
		fresh, err := unseen(ctx, tx, j.Name(), events)
		if err != nil {
			return err
		}
		if len(fresh) > 0 {
			if err := j.proj.Apply(ctx, tx, Tables{Version: reg.active}, fresh); err != nil {
				return fmt.Errorf("apply %d events: %w", len(fresh), err)
			}
		}
		applied = len(fresh)
		_, err = tx.Exec(ctx, `UPDATE projection_versions SET checkpoint = greatest(checkpoint, $2), heartbeat_at = now(),
			events_per_second = $3 WHERE name = $1`, j.Name(), int64(through), j.rate.rate(time.Now()))
		return err
	})
	if err == nil {
		c.applied += applied
		j.lastBeat = time.Now()
		j.note(reg, through)
	}
	return err
}

// unseen records the events' ids in projection_seen and returns the events
// whose id was not there yet, each once.
func unseen(ctx context.Context, tx pgx.Tx, projection string, events []domain.Envelope) ([]domain.Envelope, error) {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, err := tx.Query(ctx, `INSERT INTO projection_seen (projection, event_id)
		SELECT $1, id FROM unnest($2::text[]) AS id ON CONFLICT DO NOTHING RETURNING event_id`, projection, ids)
	if err != nil {
		return nil, fmt.Errorf("record seen events: %w", err)
	}
	fresh := make(map[string]bool, len(events))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		fresh[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("record seen events: %w", err)
	}
	out := make([]domain.Envelope, 0, len(fresh))
	for _, e := range events {
		if fresh[e.ID] {
			out = append(out, e)
			delete(fresh, e.ID)
		}
	}
	return out, nil
}

func (c *jsCommitter) park(ctx context.Context, e domain.Envelope, cause error, _ uint64) error {
	j := c.j
	seq := c.seqs[e.ID]
	var parked bool
	err := inTx(ctx, j.db, func(tx pgx.Tx) error {
		reg, err := lockedRegistry(ctx, tx, j.Name())
		if err != nil {
			return err
		}
		if parked, err = insertParked(ctx, tx, j.Name(), e.ID, seq, e.Stream, e.Type, cause); err != nil {
			return err
		}
		// Remembered as seen, so that a redelivery is skipped too.
		if _, err := tx.Exec(ctx, "INSERT INTO projection_seen (projection, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", j.Name(), e.ID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE projection_versions SET checkpoint = greatest(checkpoint, $2) WHERE name = $1", j.Name(), int64(seq))
		if err == nil {
			j.note(reg, seq)
		}
		return err
	})
	if err == nil && parked {
		j.noteParked(e.ID, seq, e.Type, cause)
	}
	return err
}

func (c *jsCommitter) ping(ctx context.Context) error { return c.j.db.Ping(ctx) }
