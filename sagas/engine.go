package sagas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/orderflow/orderflow/domain"
)

// Errors of the decisions.
var (
	// ErrNotStarted: the saga has no events (an event for it arrived before
	// the one that starts it; the caller redelivers it later).
	ErrNotStarted = errors.New("saga not started")
	// ErrAlreadyStarted: Start was given a state that already has events.
	ErrAlreadyStarted = errors.New("saga already started")
	// ErrDefinitionMismatch: a decision was given a definition other than
	// the one the saga is pinned to; Definitions.For finds the right one.
	ErrDefinitionMismatch = errors.New("saga pinned to another definition")
)

// Incoming is an event a saga may react to, as the coordinator received it
// with the saga's id as its correlation id.
type Incoming struct {
	// ID is the event's id; a redelivery carries the same one.
	ID string
	// Type is the event's type, e.g. "StockReservationAccepted".
	Type string
	// Data is the event's JSON payload.
	Data json.RawMessage
	// CausationID is the id of what caused the event: for a reply, the
	// command id of the saga's command.
	CausationID string
}

// IncomingFrom returns what a saga needs of a stored event.
func IncomingFrom(e domain.Envelope) Incoming {
	return Incoming{ID: e.ID, Type: e.Type, Data: e.Data, CausationID: e.Metadata.CausationID}
}

// Start decides to start a saga of def with the given id and input: it
// returns SagaStarted and the first step's CommandIssued. The state the
// events are appended to must be empty (Started false); input is checked
// with def.Validate, and a refusal wraps domain.ErrInvalid.
func Start(def *Definition, sagaID string, input json.RawMessage, now time.Time) ([]any, error) {
	if def == nil {
		return nil, fmt.Errorf("start saga %s: no definition: %w", sagaID, ErrUnknownDefinition)
	}
	if !domain.ValidUUID(sagaID) {
		return nil, fmt.Errorf("start %s saga: id %q is not a UUID: %w", def.Name, sagaID, domain.ErrInvalid)
	}
	if !json.Valid(input) {
		return nil, fmt.Errorf("start %s saga %s: input is not JSON: %w", def.Name, sagaID, domain.ErrInvalid)
	}
	if def.Validate != nil {
		if err := def.Validate(input); err != nil {
			return nil, fmt.Errorf("start %s saga %s: %w", def.Name, sagaID, err)
		}
	}
	started := SagaStarted{
		SagaID: sagaID, Definition: def.Name, DefinitionVersion: def.Version,
		Input: compactJSON(input), Steps: make([]StepInfo, len(def.Steps)), At: now.UTC(),
	}
	if def.OrderID != nil {
		started.OrderID = def.OrderID(input)
	}
	for i, s := range def.Steps {
		started.Steps[i] = StepInfo{Name: s.Name, After: s.After}
	}
	d := &decider{def: def, s: &State{}, now: now.UTC()}
	d.emit(started)
	d.next()
	return d.result()
}

// OnEvent decides what an event that names the saga changes:
//   - a reply to the command the saga waits for (its causation id is the
//     command id of one of the action's attempts, its type one the step or
//     action lists) records the outcome and moves on: next step,
//     compensation, or parking;
//   - an AbortOn event calls the saga off (while it runs, after the
//     command in flight is answered or times out; after it completed, at
//     once); past the pivot it is ignored;
//   - the event a step waits for (After) lets that step run.
//
// Anything else (a redelivery, a reply to an earlier step or to an action
// already settled, an event the command caused besides its reply) returns
// no events. Redeliveries need no list of seen event ids: every event
// moves the saga past the point where it means something.
func OnEvent(def *Definition, s *State, in Incoming, now time.Time) ([]any, error) {
	if err := pinned(def, s); err != nil {
		return nil, err
	}
	if in.ID == "" || in.Type == "" {
		return nil, fmt.Errorf("saga %s: event without id or type: %w", s.id, domain.ErrInvalid)
	}
	d := &decider{def: def, s: s.clone(), now: now.UTC()}
	switch {
	case d.reply(in):
	case d.abort(in):
	case d.gate(in):
	}
	return d.result()
}

// OnDeadline decides what the saga does when its deadline (State.Deadline)
// has passed: send the next attempt whose backoff is over; or, for an
// attempt gone unanswered, schedule the next one with backoff while the
// budget lasts, and else give up: a forward step times out and the saga
// is called off with ReasonStepTimeout, a compensation parks the saga as
// failed. Called early, or with no deadline, it returns no events, so a
// stale deadline row is harmless.
func OnDeadline(def *Definition, s *State, now time.Time) ([]any, error) {
	if err := pinned(def, s); err != nil {
		return nil, err
	}
	at, ok := s.Deadline()
	if !ok || now.Before(at) {
		return nil, nil
	}
	d := &decider{def: def, s: s.clone(), now: now.UTC()}
	d.deadline()
	return d.result()
}

// Retry decides an operator's retry of a failed saga: the action it is
// parked on is sent again with a fresh attempt budget. A saga that is not
// failed is refused with a *domain.Refusal wrapping ErrIllegalState.
func Retry(def *Definition, s *State, now time.Time) ([]any, error) {
	if err := pinned(def, s); err != nil {
		return nil, err
	}
	if s.status != StatusFailed || s.parked == nil {
		return nil, domain.Refuse(domain.ErrIllegalState, "saga %s is %s; only a failed saga can be retried", s.id, s.status)
	}
	d := &decider{def: def, s: s.clone(), now: now.UTC()}
	ref := *d.s.parked
	attempt := d.s.budget(ref).attempts + 1
	d.emit(SagaRetried{ActionRef: ref, Attempt: attempt, At: d.now})
	d.issue(ref, attempt)
	return d.result()
}

// pinned checks that def is the definition s started with.
func pinned(def *Definition, s *State) error {
	if !s.Started() {
		return fmt.Errorf("saga: %w", ErrNotStarted)
	}
	if def == nil || def.Name != s.definition || def.Version != s.definitionVersion || len(def.Steps) != len(s.steps) {
		name, version := "<nil>", 0
		if def != nil {
			name, version = def.Name, def.Version
		}
		return fmt.Errorf("saga %s is %s v%d, given %s v%d: %w", s.id, s.definition, s.definitionVersion, name, version, ErrDefinitionMismatch)
	}
	return nil
}

// decider takes one decision: it applies each event it emits to a scratch
// copy of the state, so that every later choice in the same decision sees
// the state as it will be once the events are appended.
type decider struct {
	def *Definition
	s   *State
	now time.Time
	out []any
	err error
}

func (d *decider) emit(e any) {
	if d.err != nil {
		return
	}
	d.out = append(d.out, e)
	d.s.Apply(e)
}

func (d *decider) result() ([]any, error) {
	if d.err != nil {
		return nil, d.err
	}
	return d.out, nil
}

// waitingOn returns the action whose replies the saga accepts: the one in
// flight, or the one a failed saga is parked on (a late reply resumes it).
func (s *State) waitingOn() (ActionRef, bool) {
	switch {
	case s.await != nil:
		return s.await.ref, true
	case s.status == StatusFailed && s.parked != nil:
		return *s.parked, true
	}
	return ActionRef{}, false
}

// reply handles in if it answers the action the saga waits on.
func (d *decider) reply(in Incoming) bool {
	s := d.s
	c, ok := s.commands[in.CausationID]
	if !ok {
		return false
	}
	ref, ok := s.waitingOn()
	if !ok || ref != c.ref {
		return false // an answer to something already settled
	}
	outcome, reason, ok := d.def.classify(ref, in.Type, in.Data)
	if !ok {
		return false // another event the command caused
	}
	settles := d.def.settles(in)
	note := ""
	if ref.Closing && settles && outcome == OutcomeFailure {
		// Refused because what it would close is closed: done all the same.
		outcome, reason, note = OutcomeSuccess, "", "settled by "+in.Type
	}
	if outcome == OutcomeFailure && (s.status == StatusFailed || c.attempt < s.budget(ref).budgetFrom) {
		// A refusal of a parked action leaves it parked, and one from
		// before an operator's retry says nothing about the new attempts.
		// A success is taken from any attempt: its effect has happened.
		return true
	}
	d.emit(ReplyReceived{
		ActionRef: ref, Attempt: c.attempt, CommandID: in.CausationID, EventID: in.ID, EventType: in.Type,
		Outcome: outcome, Reason: reason, Settles: settles, Data: compactJSON(in.Data), At: d.now,
	})
	forward := !ref.Compensation && !ref.Closing
	switch {
	case forward && outcome == OutcomeSuccess:
		d.emit(StepSucceeded{Step: ref.Step, StepIndex: ref.StepIndex, Attempt: c.attempt, At: d.now})
		d.next()
	case forward:
		d.emit(StepFailed{Step: ref.Step, StepIndex: ref.StepIndex, Attempt: c.attempt, Reason: reason, At: d.now})
		d.giveUp(ref, reason, in.Type, refusal(in, reason))
	case outcome == OutcomeSuccess:
		d.emit(CompensationDone{ActionRef: ref, Attempt: c.attempt, Note: note, At: d.now})
		d.next()
	default:
		d.emit(SagaFailed{ActionRef: ref, Reason: ReasonCompensationRefused, Detail: refusal(in, reason), At: d.now})
	}
	return true
}

// giveUp follows a forward step that failed or timed out: a saga already
// being called off goes on compensating; one that runs is called off with
// reason, or parked when it is past the pivot (the step is, or the event
// the pivot waits for has come: a dispatched shipment cannot be undone).
func (d *decider) giveUp(ref ActionRef, reason, cause, detail string) {
	switch {
	case d.s.status == StatusCompensating:
		d.next()
	case ref.StepIndex >= d.def.pivot() || len(d.s.gates) > 0:
		d.emit(SagaFailed{ActionRef: ref, Reason: ReasonStepFailedPastPivot, Detail: detail, At: d.now})
	default:
		d.emit(CompensationStarted{Reason: reason, Cause: cause, At: d.now})
		d.next()
	}
}

// abort handles in if it is one of the definition's AbortOn events.
func (d *decider) abort(in Incoming) bool {
	t, ok := d.def.abortTrigger(in.Type)
	if !ok {
		return false
	}
	s := d.s
	reason := reasonOf(in.Data)
	if reason == "" {
		reason = t.Reason
	}
	settles := d.def.settles(in)
	received := ExternalEventReceived{EventID: in.ID, EventType: in.Type, Settles: settles, Data: compactJSON(in.Data), At: d.now}
	switch s.status {
	case StatusRunning, StatusCompleted:
		if len(s.gates) > 0 {
			return true // past the pivot nothing is undone
		}
		d.emit(received)
		d.emit(CompensationStarted{Reason: reason, Cause: in.Type, At: d.now})
		if a := s.await; a != nil {
			if !a.retry {
				// Let the attempt in flight answer (or time out) first, so
				// its compensation does not overtake it at the receiver.
				return true
			}
			d.emit(StepTimedOut{Step: a.ref.Step, StepIndex: a.ref.StepIndex, Attempts: a.attempt, At: d.now})
		}
		d.next()
	case StatusCompensating, StatusFailed:
		if !settles || s.settled {
			return true
		}
		d.emit(received)
		// The event closed what the closing action would close.
		if ref, ok := s.waitingOn(); ok && ref.Closing {
			d.emit(CompensationDone{ActionRef: ref, Attempt: s.closing.attempts, Note: "settled by " + in.Type, At: d.now})
			d.next()
		}
	}
	return true
}

// gate handles in if a step waits for it.
func (d *decider) gate(in Incoming) bool {
	if !d.def.gates(in.Type) {
		return false
	}
	s := d.s
	if s.gates[in.Type] || (s.status != StatusRunning && s.status != StatusCompleted) {
		return true
	}
	d.emit(ExternalEventReceived{EventID: in.ID, EventType: in.Type, Gate: true, Data: compactJSON(in.Data), At: d.now})
	if s.status == StatusCompleted {
		d.next()
	}
	return true
}

// deadline handles a passed deadline.
func (d *decider) deadline() {
	s := d.s
	a := *s.await
	forward := !a.ref.Compensation && !a.ref.Closing
	if forward && s.status == StatusCompensating {
		// Called off while this attempt was in flight: stop waiting.
		d.emit(StepTimedOut{Step: a.ref.Step, StepIndex: a.ref.StepIndex, Attempts: a.attempt, At: d.now})
		d.next()
		return
	}
	if a.retry {
		d.issue(a.ref, a.attempt+1)
		return
	}
	// n counts the attempts of the current budget (an operator's retry
	// starts a new one).
	n := a.attempt - s.budget(a.ref).budgetFrom + 1
	sp, _ := d.def.spec(a.ref) // a.ref was issued, so def has it
	if n < sp.retry.MaxAttempts {
		cmdID := CommandID(s.id, a.ref.Step, a.attempt, a.ref.Compensation)
		retryAt := d.now.Add(sp.retry.Backoff(n, cmdID))
		d.emit(AttemptTimedOut{ActionRef: a.ref, Attempt: a.attempt, RetryAt: retryAt, At: d.now})
		if !retryAt.After(d.now) {
			d.issue(a.ref, a.attempt+1)
		}
		return
	}
	spent := "no answer after " + plural(n, "attempt")
	if forward {
		d.emit(StepTimedOut{Step: a.ref.Step, StepIndex: a.ref.StepIndex, Attempts: a.attempt, At: d.now})
		d.giveUp(a.ref, ReasonStepTimeout, ReasonStepTimeout, spent)
		return
	}
	d.emit(SagaFailed{ActionRef: a.ref, Reason: ReasonCompensationTimeout, Detail: spent, At: d.now})
}

// next sends what comes after the last settled action, or ends the saga.
// It does nothing while an action is in flight.
func (d *decider) next() {
	s := d.s
	if d.err != nil || s.await != nil {
		return
	}
	switch s.status {
	case StatusRunning, StatusCompleted:
		i := slices.IndexFunc(s.steps, func(st stepState) bool { return st.status == StepStatusPending })
		if i < 0 || (s.steps[i].after != "" && !s.gates[s.steps[i].after]) {
			if s.status == StatusRunning {
				d.emit(SagaCompleted{At: d.now})
			}
			return
		}
		d.issue(ActionRef{Step: s.steps[i].name, StepIndex: i}, s.steps[i].fwd.attempts+1)
	case StatusCompensating:
		// What is known to have happened is undone first, newest first;
		// then the closing action; then what may or may not have happened
		// (a step that timed out), whose receiver may be the one that is
		// down, so that it cannot hold up the closing action.
		for j := len(s.steps) - 1; j >= 0; j-- {
			if s.steps[j].status == StepStatusSucceeded && d.def.Steps[j].Compensation != nil {
				d.issue(ActionRef{Step: s.steps[j].name, StepIndex: j, Compensation: true}, s.steps[j].comp.attempts+1)
				return
			}
		}
		if c := d.def.Closing; c != nil && !s.settled && !s.closing.done {
			d.issue(ActionRef{Step: c.Name, StepIndex: -1, Compensation: true, Closing: true}, s.closing.attempts+1)
			return
		}
		for j := len(s.steps) - 1; j >= 0; j-- {
			if st := s.steps[j]; st.status == StepStatusFailed && st.inDoubt && d.def.Steps[j].Compensation != nil {
				d.issue(ActionRef{Step: st.name, StepIndex: j, Compensation: true}, st.comp.attempts+1)
				return
			}
		}
		d.emit(SagaCompensated{Reason: s.reason, At: d.now})
	}
}

// issue sends attempt of the action ref names.
func (d *decider) issue(ref ActionRef, attempt int) {
	if d.err != nil {
		return
	}
	sp, ok := d.def.spec(ref)
	if !ok {
		// pinned checked the definition; a ref it lacks is a foreign event.
		d.err = fmt.Errorf("saga %s: %s: no such action: %w", d.s.id, ref.Step, ErrDefinitionMismatch)
		return
	}
	cmd := sp.cmd
	v, err := cmd.Payload(d.s.data())
	var payload []byte
	if err == nil {
		payload, err = json.Marshal(v)
	}
	if err != nil {
		d.err = fmt.Errorf("saga %s: %s command %s.%s: payload: %w", d.s.id, ref.Step, cmd.Context, cmd.Name, err)
		return
	}
	d.emit(CommandIssued{
		Context: cmd.Context, Name: cmd.Name, Version: cmd.Version,
		CommandID: CommandID(d.s.id, ref.Step, attempt, ref.Compensation),
		Payload:   payload, SagaID: d.s.id, ActionRef: ref, Attempt: attempt,
		Deadline: d.now.Add(sp.timeout), At: d.now,
	})
}

// spec is what a definition says of one action: its command, the replies
// that settle it, how long an attempt waits and its attempt budget.
type spec struct {
	cmd     Command
	success []string
	failure map[string]string
	timeout time.Duration
	retry   RetryPolicy
}

// spec returns what def says of the action ref names, and false when def
// has no such action.
func (def *Definition) spec(ref ActionRef) (spec, bool) {
	var a *Action
	switch {
	case ref.Closing:
		a = def.Closing
	case ref.StepIndex < 0 || ref.StepIndex >= len(def.Steps):
		return spec{}, false
	case ref.Compensation:
		a = def.Steps[ref.StepIndex].Compensation
	default:
		s := def.Steps[ref.StepIndex]
		return spec{cmd: s.Command, success: s.Success, failure: s.Failure, timeout: s.Timeout, retry: s.Retry}, true
	}
	if a == nil {
		return spec{}, false
	}
	return spec{cmd: a.Command, success: a.Done, failure: a.Failure, timeout: a.Timeout, retry: a.Retry}, true
}

// classify tells what a reply of type typ means for the action ref names.
func (def *Definition) classify(ref ActionRef, typ string, data json.RawMessage) (outcome, reason string, ok bool) {
	sp, ok := def.spec(ref)
	if !ok {
		return "", "", false
	}
	if slices.Contains(sp.success, typ) {
		return OutcomeSuccess, "", true
	}
	r, ok := sp.failure[typ]
	if !ok {
		return "", "", false
	}
	if r == "" {
		r = reasonOf(data)
	}
	if r == "" {
		r = reasonRefused
	}
	return OutcomeFailure, r, true
}

// reasonOf reads the "reason" field of an event's data, if any.
func reasonOf(data json.RawMessage) string {
	var v struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(data, &v) != nil {
		return ""
	}
	return v.Reason
}

// refusal describes a refusing reply for an operator: its type, the
// reason recorded, and the reply's own "detail" when it has one.
func refusal(in Incoming, reason string) string {
	var v struct {
		Detail string `json:"detail"`
	}
	s := in.Type + ": " + reason
	if json.Unmarshal(in.Data, &v) == nil && v.Detail != "" {
		s += ": " + v.Detail
	}
	return s
}

// compactJSON returns data without insignificant white space (as a store
// may hand it back), so that what is recorded does not depend on the
// store's formatting; data that is not JSON is dropped.
func compactJSON(data json.RawMessage) json.RawMessage {
	if len(data) == 0 {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return nil
	}
	return b.Bytes()
}
