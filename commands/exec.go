package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/backoff"
)

// readPage is how many events one ReadStream call asks for.
const readPage = 512

// Backoff between retries after a version conflict: 1 ms doubled per
// retry up to 100 ms, of which a random half to all is waited, so that
// writers that collided do not collide again in step. Within the default
// budget of 2 s that is about 25 attempts.
var conflictBackoff = backoff.Policy{Min: time.Millisecond, Max: 100 * time.Millisecond}

// idSpace is the name space of the event and command ids derived from
// command ids. Changing it would make repeated commands look new.
var idSpace = uuid.MustParse("3e0f6f2a-7c1b-4d6e-9a55-1b8f0c2d4e71")

// registry knows every event of the aggregates the handlers load.
var registry = events.NewRegistry()

// outcome is a command's effect on one stream.
type outcome struct {
	Result
	// appended is true when this run appended events.
	appended bool
	// seen holds the watched command ids that caused events in the stream.
	seen map[string]bool
	// types are the types of the events appended, when appended.
	types []string
}

// through runs f, the command kind with the value cmd, through the
// configured hook.
func (x *executor) through(ctx context.Context, kind Kind, m Meta, cmd any, f func(context.Context, Meta) (Outcome, error)) (Outcome, error) {
	if x.hook == nil {
		return f(ctx, m)
	}
	return x.hook(func(ctx context.Context, c Call) (Outcome, error) {
		return f(ctx, c.Meta)
	})(ctx, Call{Kind: kind, Meta: m, Command: cmd})
}

// single runs f, a command on one stream, through the hook and returns
// its result.
func (x *executor) single(ctx context.Context, kind Kind, m Meta, cmd any, f func(context.Context, Meta) (Result, error)) (Result, error) {
	if x.hook == nil {
		return f(ctx, m)
	}
	o, err := x.through(ctx, kind, m, cmd, func(ctx context.Context, m Meta) (Outcome, error) {
		r, err := f(ctx, m)
		return Outcome{Results: []Result{r}, Duplicate: r.Duplicate}, err
	})
	if err != nil || len(o.Results) == 0 {
		return Result{}, err
	}
	return o.Results[0], nil
}

// multi is single for a command on several streams.
func (x *executor) multi(ctx context.Context, kind Kind, m Meta, cmd any, f func(context.Context, Meta) ([]Result, error)) ([]Result, error) {
	if x.hook == nil {
		return f(ctx, m)
	}
	o, err := x.through(ctx, kind, m, cmd, func(ctx context.Context, m Meta) (Outcome, error) {
		rs, err := f(ctx, m)
		return Outcome{Results: rs, Duplicate: len(rs) > 0 && !slices.ContainsFunc(rs, func(r Result) bool { return !r.Duplicate })}, err
	})
	if err != nil {
		return nil, err
	}
	return o.Results, nil
}

// execute runs one command on one stream through the stream's writer (see
// writer.go): it answers a duplicate if the stream already holds an event
// caused by m.CommandID, else lets decide choose the events and appends
// them at the stream's version, retrying after a version conflict with
// another process within the retry budget. The watch ids are reported in
// outcome.seen when they caused events of the stream.
//
// The writer keeps the stream's state between commands and, after a
// conflict, reads only the events appended since: decisions never change
// the state they are given (aggtest checks that in every domain test
// case), so the state after a failed append is still the state at the
// version it was read at.
func execute[S any, P state[S]](ctx context.Context, x *executor, m Meta, stream string, decide func(P) ([]any, error), watch ...string) (outcome, error) {
	id, err := uuid.Parse(m.CommandID)
	if err != nil {
		// prepare has checked the id; this is a caller's bug.
		return outcome{}, fmt.Errorf("command id %q: %w", m.CommandID, domain.ErrInvalid)
	}
	return x.submit(ctx, stream, &call{
		m:      m,
		id:     id,
		watch:  watch,
		decide: func(a aggregate) ([]any, error) { return decide(a.(P)) },
		fresh:  func() aggregate { return P(new(S)) },
		clone:  func(a aggregate) aggregate { return P(a.(P).Clone()) },
		codec:  codecOf[S](),
	})
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
func run[S any, P state[S]](ctx context.Context, x *executor, m Meta, v *domain.ValidationError, stream string, decide func(P) ([]any, error)) (Result, error) {
	out, err := validateAndExecute(ctx, x, m, v, stream, decide)
	return out.Result, err
}

// answer runs a traveling command of the given kind on stream, the stream
// of the aggregate whose id, named field in validation errors, is id,
// through the hook: its decision answers every outcome with an event, so
// the outcome names the event appended.
func answer[S any, P state[S]](ctx context.Context, x *executor, kind Kind, m Meta, cmd any, field, id, stream string, decide func(P) ([]any, error)) (Outcome, error) {
	return x.through(ctx, kind, m, cmd, func(ctx context.Context, m Meta) (Outcome, error) {
		m, v := prepare(m)
		checkID(v, field, id)
		out, err := validateAndExecute(ctx, x, m, v, stream, decide)
		if err != nil {
			return Outcome{}, err
		}
		return outcomeOf(out), nil
	})
}

// validateAndExecute is run's body: it adds to v the field errors the
// decision finds on an empty state and executes the command when there
// are none.
func validateAndExecute[S any, P state[S]](ctx context.Context, x *executor, m Meta, v *domain.ValidationError, stream string, decide func(P) ([]any, error)) (outcome, error) {
	_, err := decide(P(new(S)))
	merge(v, err)
	if err := v.Err(); err != nil {
		return outcome{}, err
	}
	return execute(ctx, x, m, stream, decide)
}

// rejections are the answers that say a traveling command was not
// carried out.
var rejections = map[string]bool{
	inventory.TypeStockReservationRejected: true,
	shipping.TypeShipmentRefused:           true,
	shipping.TypeShipmentCommandRejected:   true,
	order.TypeOrderCommandRejected:         true,
}

// outcomeOf describes the effect of a traveling command on the stream of
// its answer.
func outcomeOf(out outcome) Outcome {
	o := Outcome{Results: []Result{out.Result}, Duplicate: out.Duplicate}
	if n := len(out.types); n > 0 {
		o.Reply = out.types[n-1]
		o.Rejected = rejections[o.Reply]
	}
	return o
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
