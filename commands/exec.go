package commands

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
)

// readPage is how many events one ReadStream call asks for.
const readPage = 512

// Backoff between retries after a version conflict: baseBackoff doubled per
// retry up to maxBackoff, of which a random half to all is waited, so that
// writers that collided do not collide again in step.
const (
	baseBackoff = time.Millisecond
	maxBackoff  = 50 * time.Millisecond
)

// idSpace is the name space of the event and command ids derived from
// command ids. Changing it would make repeated commands look new.
var idSpace = uuid.MustParse("3e0f6f2a-7c1b-4d6e-9a55-1b8f0c2d4e71")

// registry knows every event of the aggregates the handlers load.
var registry = events.NewRegistry()

// executor runs commands against one store: load, decide, append, retry.
type executor struct {
	store      EventStore
	maxRetries int
}

func newExecutor(store EventStore, cfg Config) *executor {
	if store == nil {
		panic("commands: nil EventStore")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &executor{store: store, maxRetries: cfg.withDefaults().MaxRetries}
}

// aggregate is the state of an aggregate, rebuilt by applying its events.
type aggregate interface {
	Apply(event any)
}

// outcome is a command's effect on one stream.
type outcome struct {
	Result
	// appended is true when this run appended events.
	appended bool
	// seen holds the watched command ids that caused events in the stream.
	seen map[string]bool
}

// execute runs one command on one stream: it loads the aggregate, answers a
// duplicate if the stream already holds an event caused by m.CommandID,
// else lets decide choose the events and appends them at the loaded
// version, retrying on a version conflict. The watch ids are reported in
// outcome.seen when they caused events of the stream.
//
// A retry reads only the events appended since the previous attempt and
// applies them to the same state: decisions never change the state they
// are given (aggtest checks that in every domain test case), so the state
// after a failed append is still the state at the loaded version.
func execute[S any, P interface {
	*S
	aggregate
}](ctx context.Context, x *executor, m Meta, stream string, decide func(P) ([]any, error), watch ...string) (outcome, error) {
	watch = append([]string{m.CommandID}, watch...)
	state := P(new(S))
	seen := make(map[string]bool)
	var version int64
	for attempt := 0; ; attempt++ {
		var err error
		version, err = x.load(ctx, stream, state, version, watch, seen)
		if err != nil {
			return outcome{}, err
		}
		out := outcome{Result: Result{Stream: stream, Version: version}, seen: seen}
		if seen[m.CommandID] {
			out.Duplicate = true
			return out, nil
		}
		evs, err := decide(state)
		if err != nil {
			return outcome{}, decisionError(stream, err)
		}
		if len(evs) == 0 {
			return out, nil
		}
		envs, err := envelopes(m, stream, evs)
		if err != nil {
			return outcome{}, err
		}
		res, err := x.store.Append(ctx, stream, domain.ExactVersion(version), envs)
		if err == nil {
			out.Version = res.NextVersion
			out.appended = true
			return out, nil
		}
		if !errors.Is(err, domain.ErrVersionConflict) {
			return outcome{}, fmt.Errorf("append %s: %w", stream, err)
		}
		if attempt >= x.maxRetries {
			return outcome{}, fmt.Errorf("append %s: still conflicting after %d attempts: %w", stream, attempt+1, err)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return outcome{}, fmt.Errorf("append %s: %w", stream, err)
		}
	}
}

// load applies to state the events of stream after version, which state
// already reflects, and returns the stream's new version. It marks in seen
// which of the watched command ids caused any of those events (seen may be
// nil when watch is empty).
func (x *executor) load(ctx context.Context, stream string, state aggregate, version int64, watch []string, seen map[string]bool) (int64, error) {
	for {
		page, err := x.store.ReadStream(ctx, stream, version+1, readPage)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", stream, err)
		}
		for _, e := range page {
			if e.Version != version+1 {
				return 0, fmt.Errorf("read %s: got version %d after %d", stream, e.Version, version)
			}
			payload, err := registry.Decode(e)
			if err != nil {
				return 0, fmt.Errorf("read %s: %w", stream, err)
			}
			state.Apply(payload)
			version = e.Version
			for _, id := range watch {
				if e.Metadata.CausationID == id {
					seen[id] = true
				}
			}
		}
		if len(page) < readPage {
			return version, nil
		}
	}
}

// decisionError adds the stream to a domain error. Validation errors are
// returned as they are, so callers can type-assert them directly.
func decisionError(stream string, err error) error {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		return err
	}
	return fmt.Errorf("%s: %w", stream, err)
}

// envelopes wraps the events a command raised on stream. Their ids derive
// from the command id, the stream and their index, so that a command run
// twice produces the same events.
func envelopes(m Meta, stream string, evs []any) ([]domain.Envelope, error) {
	md := domain.Metadata{
		CorrelationID: m.CorrelationID,
		CausationID:   m.CommandID,
		RequestID:     m.RequestID,
		TraceParent:   m.TraceParent,
		TraceState:    m.TraceState,
	}
	out := make([]domain.Envelope, len(evs))
	for i, e := range evs {
		typ, version, data, err := registry.Encode(e)
		if err != nil {
			return nil, fmt.Errorf("encode for %s: %w", stream, err)
		}
		out[i] = domain.Envelope{
			ID:            deriveID(m.CommandID, stream, strconv.Itoa(i)),
			Type:          typ,
			SchemaVersion: version,
			Data:          data,
			Metadata:      md,
		}
	}
	return out, nil
}

// deriveID returns a UUID determined by parts.
func deriveID(parts ...string) string {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return uuid.NewSHA1(idSpace, b).String()
}

// prepare checks the fields every command carries and fills the defaults:
// the correlation id falls back to the request id, then to the command id,
// and Now to the current time. The returned ValidationError collects the
// command's own field errors too.
func prepare(m Meta) (Meta, *domain.ValidationError) {
	v := &domain.ValidationError{}
	if !domain.ValidUUID(m.CommandID) {
		v.Add("command_id", "must be a UUID")
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.RequestID
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.CommandID
	}
	if m.Now.IsZero() {
		m.Now = time.Now()
	}
	m.Now = m.Now.UTC()
	return m, v
}

// run validates a command on one stream and executes it. v holds the field
// errors found so far (command id, the stream's id). Decisions validate
// their input before they look at the state, so taking the decision on an
// empty state collects every other invalid field without reading the store.
func run[S any, P interface {
	*S
	aggregate
}](ctx context.Context, x *executor, m Meta, v *domain.ValidationError, stream string, decide func(P) ([]any, error)) (Result, error) {
	_, err := decide(P(new(S)))
	merge(v, err)
	if err := v.Err(); err != nil {
		return Result{}, err
	}
	out, err := execute(ctx, x, m, stream, decide)
	return out.Result, err
}

// checkID adds a field error to v unless id is a UUID.
func checkID(v *domain.ValidationError, field, id string) {
	if !domain.ValidUUID(id) {
		v.Add(field, "must be a UUID")
	}
}

// merge adds to v the field errors of err, when it is a
// *domain.ValidationError, that v does not name yet.
func merge(v *domain.ValidationError, err error) {
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		return
	}
	for _, f := range ve.Fields {
		if !slices.ContainsFunc(v.Fields, func(g domain.FieldError) bool { return g.Field == f.Field }) {
			v.Fields = append(v.Fields, f)
		}
	}
}

func backoff(attempt int) time.Duration {
	d := maxBackoff
	if attempt < 6 {
		d = min(baseBackoff<<attempt, maxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
