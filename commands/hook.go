package commands

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/orderflow/orderflow/domain"
)

// Call is one command on its way to its handler, as a Hook sees it.
type Call struct {
	Kind Kind
	// Meta is the command's metadata as the caller gave it.
	Meta Meta
	// Command is the command's value: one of the catalog's structs for a
	// traveling command, the handler's own arguments otherwise.
	Command any
}

// Outcome is what a command did.
type Outcome struct {
	// Results holds the command's effect on each stream it visited.
	Results []Result
	// Reply is the type of the event that answered a traveling command in
	// this run ("" when nothing new was appended, or for a command that
	// is not answered).
	Reply string
	// Rejected is true when Reply says the command was not carried out
	// (StockReservationRejected, ShipmentRefused, OrderCommandRejected,
	// ShipmentCommandRejected).
	Rejected bool
	// Duplicate is true when the command id had been applied before and
	// nothing new was appended.
	Duplicate bool
}

// Handle runs a command.
type Handle func(ctx context.Context, c Call) (Outcome, error)

// Hook wraps the handling of every command a handler runs: HTTP and
// traveling commands alike pass through it once, so that metrics, logs or
// retry counts are attached in one place. A hook may call next more than
// once: commands are idempotent by their id.
type Hook func(next Handle) Handle

// Chain returns a hook that applies hooks in order, the first outermost.
// Nil hooks are skipped.
func Chain(hooks ...Hook) Hook {
	hooks = slices.DeleteFunc(slices.Clone(hooks), func(h Hook) bool { return h == nil })
	return func(next Handle) Handle {
		for _, h := range slices.Backward(hooks) {
			next = h(next)
		}
		return next
	}
}

// Outcome labels, as OutcomeLabel gives them.
const (
	OutcomeOK          = "ok"
	OutcomeRejected    = "rejected"
	OutcomeDuplicate   = "duplicate"
	OutcomeInvalid     = "invalid"
	OutcomeRefused     = "refused"
	OutcomeConflict    = "conflict"
	OutcomeUnknown     = "unknown_command"
	OutcomeCanceled    = "canceled"
	OutcomeUnavailable = "unavailable"
	OutcomeError       = "error"
)

// OutcomeLabel sorts a command's result into a few labels for metrics:
// ok, rejected (answered with a refusal), duplicate, invalid, refused (a
// business error returned to the caller), conflict (retry budget spent),
// unknown_command, canceled, unavailable and error.
func OutcomeLabel(o Outcome, err error) string {
	switch {
	case err == nil && o.Duplicate:
		return OutcomeDuplicate
	case err == nil && o.Rejected:
		return OutcomeRejected
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrUnknownCommand), errors.Is(err, ErrUndecodable):
		return OutcomeUnknown
	case errors.Is(err, domain.ErrInvalid):
		return OutcomeInvalid
	case errors.Is(err, domain.ErrIllegalState), errors.Is(err, domain.ErrNotFound), errors.Is(err, domain.ErrInsufficientStock):
		return OutcomeRefused
	case errors.Is(err, domain.ErrVersionConflict):
		return OutcomeConflict
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case errors.Is(err, domain.ErrUnavailable):
		return OutcomeUnavailable
	}
	return OutcomeError
}

// Counter counts commands by kind and outcome label, and the commands
// that arrived again after an earlier delivery (Meta.Attempt > 1). Its
// Hook is meant to be installed once (Config.Hook); its methods are safe
// for concurrent use.
type Counter struct {
	mu      sync.Mutex
	counts  map[countKey]uint64
	retried map[Kind]uint64
}

type countKey struct {
	kind    Kind
	outcome string
}

// Count is one row of a Counter's snapshot.
type Count struct {
	Kind    Kind
	Outcome string
	N       uint64
}

// CounterSnapshot is the value of a Counter at one moment, sorted by kind
// then outcome.
type CounterSnapshot struct {
	Counts []Count
	// Redelivered counts, per kind, the commands that came again after an
	// earlier delivery.
	Redelivered []Count
}

// NewCounter returns a Counter with nothing counted.
func NewCounter() *Counter {
	return &Counter{counts: make(map[countKey]uint64), retried: make(map[Kind]uint64)}
}

// Hook returns the hook that counts.
func (c *Counter) Hook() Hook {
	return func(next Handle) Handle {
		return func(ctx context.Context, call Call) (Outcome, error) {
			o, err := next(ctx, call)
			label := OutcomeLabel(o, err)
			c.mu.Lock()
			c.counts[countKey{call.Kind, label}]++
			if call.Meta.Attempt > 1 {
				c.retried[call.Kind]++
			}
			c.mu.Unlock()
			return o, err
		}
	}
}

// Snapshot returns the counts so far.
func (c *Counter) Snapshot() CounterSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s CounterSnapshot
	for k, n := range c.counts {
		s.Counts = append(s.Counts, Count{Kind: k.kind, Outcome: k.outcome, N: n})
	}
	for k, n := range c.retried {
		s.Redelivered = append(s.Redelivered, Count{Kind: k, N: n})
	}
	byKind := func(a, b Count) int {
		return cmp.Or(compareKinds(a.Kind, b.Kind), cmp.Compare(a.Outcome, b.Outcome))
	}
	slices.SortFunc(s.Counts, byKind)
	slices.SortFunc(s.Redelivered, byKind)
	return s
}
