package sagas

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Errors of definitions and their catalogue.
var (
	// ErrInvalidDefinition: a definition breaks a rule of Register (a step
	// without a command, a duplicate name, a retry policy without
	// attempts...). It is a programming error, found by the first test that
	// builds the catalogue.
	ErrInvalidDefinition = errors.New("invalid saga definition")
	// ErrUnknownDefinition: no definition is registered under the name and
	// version asked for (a saga stream written by a newer coordinator, or a
	// definition withdrawn too early).
	ErrUnknownDefinition = errors.New("unknown saga definition")
)

// Definition is a saga type: a named, versioned list of steps and what to
// do when the saga must be called off. A definition is a value written
// once per version: a running saga stays pinned to the version it started
// with (SagaStarted records it), so changing the steps means registering
// the next version and keeping the old one until its sagas have ended.
type Definition struct {
	// Name is the saga type, e.g. "order_fulfillment".
	Name string
	// Version is the definition's version, >= 1.
	Version int
	// Trigger, when set, names the event that starts a saga of this type
	// and how the saga's id derives from it.
	Trigger *Trigger
	// Validate, when set, checks a saga's input at Start. The payload
	// builders of the steps may then rely on what it checked.
	Validate func(input json.RawMessage) error
	// OrderID, when set, tells the order a saga is about from its input,
	// for inspection (the order_id of the saga's view).
	OrderID func(input json.RawMessage) string
	// Steps run in order. A step with After set waits for that event: the
	// saga is completed while it waits, and resumes when the event comes.
	// The first such step is the pivot: from there on nothing is undone (a
	// failure parks the saga) and AbortOn events are ignored.
	Steps []Step
	// Closing, when set, is the action an aborted saga runs after the
	// compensations of the steps it knows succeeded and before those of
	// steps whose outcome it never learned (see ADR 0100); its command is
	// built with Data.Reason set to the abort reason. For order_fulfillment
	// it rejects the order. It is skipped, or counts as done, once an event
	// that Settles recognises has arrived.
	Closing *Action
	// Settles, when set, reports whether an event the saga receives shows
	// that what the closing action would close is closed already: for
	// order_fulfillment, the order is cancelled (the customer's cancel) or
	// refuses a command because it is cancelled or rejected.
	Settles func(eventType string, data json.RawMessage) bool
	// AbortOn lists the events (carrying the saga id as correlation id)
	// that call the saga off while it runs or after it completed, before
	// the pivot: everything done so far is compensated in reverse.
	AbortOn []AbortTrigger
}

// Trigger says which event starts a saga and the id of the saga it starts.
type Trigger struct {
	// Event is the type of the starting event, e.g. "OrderPlaced". Its
	// data is the saga's input.
	Event string
	// SagaID returns the id of the saga the event starts, derived from the
	// event's data so that a redelivered event finds the same saga.
	SagaID func(data json.RawMessage) (string, error)
}

// Step is one forward step of a definition.
type Step struct {
	// Name is the step's name, unique in the definition, e.g.
	// "reserve_inventory". It is part of the step's command ids.
	Name string
	// Command is what the step sends.
	Command Command
	// Success lists the reply event types that mean the step succeeded.
	Success []string
	// Failure maps the reply event types that mean the receiver refused
	// the step to the reason the saga records (and aborts with). An empty
	// reason takes the reply's own "reason" field.
	Failure map[string]string
	// Compensation, when set, undoes the step. It is sent when the saga is
	// called off after the step succeeded, or after it timed out (its
	// outcome is then unknown), never after the receiver refused it.
	Compensation *Action
	// Timeout is how long one attempt waits for its reply.
	Timeout time.Duration
	// Retry says how often and how soon an unanswered attempt is repeated.
	Retry RetryPolicy
	// After, when set, is the event type the step waits for before it
	// starts (e.g. "ShipmentDispatched"); see Definition.Steps.
	After string
}

// Action is a command with its replies that is not a forward step: a
// compensation or a definition's closing action.
type Action struct {
	// Name names the action in the saga's history. A closing action's name
	// is also part of its command ids, so it must differ from every step's.
	Name string
	// Command is what the action sends.
	Command Command
	// Done lists the reply event types that mean the action is done.
	Done []string
	// Failure maps reply event types that mean the receiver refused the
	// action to a reason. A refused compensation parks the saga as failed:
	// repeating it would be refused again, so it needs an operator.
	Failure map[string]string
	// Timeout is how long one attempt waits for its reply.
	Timeout time.Duration
	// Retry is the action's own attempt budget; when it is spent the saga
	// is parked as failed until an operator retries it.
	Retry RetryPolicy
}

// Command describes the command a step or an action sends: the receiving
// context, the command's name and schema version (the same triple the
// commands catalogue registers), and how its payload is built.
type Command struct {
	Context string
	Name    string
	Version int
	// Payload builds the command's payload (a value that encodes to JSON)
	// from the saga's data. It must be deterministic: a decision taken
	// again after a crash must send the same command.
	Payload func(d Data) (any, error)
}

// Data is what a payload builder may read.
type Data struct {
	// SagaID is the saga's id.
	SagaID string
	// Input is the saga's input, as given to Start.
	Input json.RawMessage
	// Reason is the reason the saga is being called off (empty while it
	// runs forward).
	Reason string
	// replies holds the data of each succeeded step's reply, by step name.
	replies map[string]json.RawMessage
}

// Reply returns the data of the reply that made step succeed.
func (d Data) Reply(step string) (json.RawMessage, bool) {
	r, ok := d.replies[step]
	return r, ok
}

// AbortTrigger is an event that calls a saga off (see Definition.AbortOn).
type AbortTrigger struct {
	// Event is the event type, e.g. "OrderCancelled".
	Event string
	// Reason is the abort reason when the event's data has no "reason".
	Reason string
}

// RetryPolicy is the attempt budget of a step or an action and the wait
// between attempts: exponential backoff with jitter. The jitter is derived
// from the command id of the attempt that went unanswered, so a decision
// taken again computes the same wait and no random source is needed.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts, the first included (>= 1).
	MaxAttempts int
	// Initial is the wait before the second attempt.
	Initial time.Duration
	// Max caps the wait (0: no cap).
	Max time.Duration
	// Multiplier grows the wait per attempt (< 1 is taken as 1).
	Multiplier float64
	// Jitter in [0, 1] is the largest fraction taken off a wait at random,
	// so that sagas that failed together do not retry together.
	Jitter float64
}

// Backoff returns the wait after attempt (1-based) went unanswered, jittered
// by seed (the unanswered command's id).
func (p RetryPolicy) Backoff(attempt int, seed string) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	m := p.Multiplier
	if m < 1 {
		m = 1
	}
	d := float64(p.Initial) * math.Pow(m, float64(attempt-1))
	if p.Max > 0 && d > float64(p.Max) {
		d = float64(p.Max)
	}
	if d > math.MaxInt64/2 {
		d = math.MaxInt64 / 2
	}
	d *= 1 - p.Jitter*unitFloat(seed)
	return time.Duration(d)
}

// unitFloat maps seed to [0, 1) with FNV-1a, evenly enough for jitter.
func unitFloat(seed string) float64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(seed); i++ {
		h ^= uint64(seed[i])
		h *= 1099511628211
	}
	return float64(h>>11) / float64(1<<53)
}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("retry policy: %d attempts, want >= 1", p.MaxAttempts)
	case p.Initial < 0 || p.Max < 0:
		return errors.New("retry policy: negative wait")
	case p.Jitter < 0 || p.Jitter > 1 || math.IsNaN(p.Jitter):
		return fmt.Errorf("retry policy: jitter %v, want within [0, 1]", p.Jitter)
	case math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0):
		return errors.New("retry policy: multiplier is not a number")
	}
	return nil
}

func (c Command) validate() error {
	switch {
	case !validToken(c.Context):
		return fmt.Errorf("command context %q is not a subject token", c.Context)
	case !validToken(c.Name):
		return fmt.Errorf("command name %q is not a subject token", c.Name)
	case c.Version < 1:
		return fmt.Errorf("command %s.%s: version %d, want >= 1", c.Context, c.Name, c.Version)
	case c.Payload == nil:
		return fmt.Errorf("command %s.%s: no payload builder", c.Context, c.Name)
	}
	return nil
}

func (a *Action) validate() error {
	if a.Name == "" {
		return errors.New("action without a name")
	}
	if err := a.Command.validate(); err != nil {
		return fmt.Errorf("action %s: %w", a.Name, err)
	}
	if len(a.Done) == 0 {
		return fmt.Errorf("action %s: no reply means done", a.Name)
	}
	if a.Timeout <= 0 {
		return fmt.Errorf("action %s: timeout %v, want > 0", a.Name, a.Timeout)
	}
	if err := a.Retry.validate(); err != nil {
		return fmt.Errorf("action %s: %w", a.Name, err)
	}
	return overlap(a.Name, a.Done, a.Failure)
}

// validate checks the rules Register enforces.
func (d *Definition) validate() error {
	if !validToken(d.Name) {
		return fmt.Errorf("name %q: want letters, digits, '_' or '-'", d.Name)
	}
	if d.Version < 1 {
		return fmt.Errorf("version %d, want >= 1", d.Version)
	}
	if len(d.Steps) == 0 {
		return errors.New("no steps")
	}
	if d.Trigger != nil && (d.Trigger.Event == "" || d.Trigger.SagaID == nil) {
		return errors.New("trigger without an event or a saga id")
	}
	names := make(map[string]bool)
	for i, s := range d.Steps {
		if !validToken(s.Name) {
			return fmt.Errorf("step %d: name %q: want letters, digits, '_' or '-'", i, s.Name)
		}
		if names[s.Name] {
			return fmt.Errorf("step %s: name used twice", s.Name)
		}
		names[s.Name] = true
		if err := s.Command.validate(); err != nil {
			return fmt.Errorf("step %s: %w", s.Name, err)
		}
		if len(s.Success) == 0 {
			return fmt.Errorf("step %s: no reply means success", s.Name)
		}
		if s.Timeout <= 0 {
			return fmt.Errorf("step %s: timeout %v, want > 0", s.Name, s.Timeout)
		}
		if err := s.Retry.validate(); err != nil {
			return fmt.Errorf("step %s: %w", s.Name, err)
		}
		if err := overlap(s.Name, s.Success, s.Failure); err != nil {
			return err
		}
		if s.Compensation != nil {
			if err := s.Compensation.validate(); err != nil {
				return fmt.Errorf("step %s: compensation: %w", s.Name, err)
			}
			if i >= d.pivot() {
				return fmt.Errorf("step %s: a step past the pivot cannot be compensated", s.Name)
			}
		}
	}
	if d.Closing != nil {
		if err := d.Closing.validate(); err != nil {
			return fmt.Errorf("closing: %w", err)
		}
		if names[d.Closing.Name] {
			return fmt.Errorf("closing action %s: a step has that name", d.Closing.Name)
		}
	}
	for _, a := range d.AbortOn {
		if a.Event == "" {
			return errors.New("abort trigger without an event")
		}
		for _, s := range d.Steps {
			if s.After == a.Event {
				return fmt.Errorf("event %s both aborts the saga and starts step %s", a.Event, s.Name)
			}
		}
	}
	return nil
}

// overlap refuses a reply type listed as both success and failure.
func overlap(name string, ok []string, failure map[string]string) error {
	for _, t := range ok {
		if t == "" {
			return fmt.Errorf("%s: empty reply type", name)
		}
		if _, both := failure[t]; both {
			return fmt.Errorf("%s: reply %s means both success and failure", name, t)
		}
	}
	return nil
}

// pivot is the index of the first step that waits for an event, or
// len(Steps) when none does.
func (d *Definition) pivot() int {
	for i, s := range d.Steps {
		if s.After != "" {
			return i
		}
	}
	return len(d.Steps)
}

// abortTrigger returns the AbortOn entry for an event type.
func (d *Definition) abortTrigger(eventType string) (AbortTrigger, bool) {
	for _, a := range d.AbortOn {
		if a.Event == eventType {
			return a, true
		}
	}
	return AbortTrigger{}, false
}

// settles reports whether in shows the saga's subject closed already.
func (d *Definition) settles(in Incoming) bool {
	return d.Settles != nil && d.Settles(in.Type, in.Data)
}

// gates reports whether some step waits for eventType.
func (d *Definition) gates(eventType string) bool {
	for _, s := range d.Steps {
		if s.After == eventType {
			return true
		}
	}
	return false
}

// validToken accepts names that can be a NATS subject token and read well
// in one: letters, digits, '_' and '-'.
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
