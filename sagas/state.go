package sagas

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Status is where a saga is in its life (API.md, Sagas).
type Status string

// The saga statuses. The zero Status means the saga was never started.
const (
	StatusRunning      Status = "running"
	StatusCompleted    Status = "completed"
	StatusCompensating Status = "compensating"
	StatusCompensated  Status = "compensated"
	StatusFailed       Status = "failed"
)

// Statuses lists every saga status, in the order of a saga's life.
var Statuses = []Status{StatusRunning, StatusCompleted, StatusCompensating, StatusCompensated, StatusFailed}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool { return slices.Contains(Statuses, s) }

// StepStatus is where one step is (API.md, Sagas).
type StepStatus string

// The step statuses.
const (
	StepStatusPending      StepStatus = "pending"
	StepStatusRunning      StepStatus = "running"
	StepStatusSucceeded    StepStatus = "succeeded"
	StepStatusFailed       StepStatus = "failed"
	StepStatusCompensating StepStatus = "compensating"
	StepStatusCompensated  StepStatus = "compensated"
	StepStatusSkipped      StepStatus = "skipped"
)

// State is a saga's state, rebuilt from its events with Apply. It needs no
// definition: the events say everything the state holds, so a saga whose
// definition is gone can still be inspected. The decisions (Start,
// OnEvent, OnDeadline, Retry) read it and never change it.
type State struct {
	id                string
	definition        string
	definitionVersion int
	orderID           string
	input             json.RawMessage
	status            Status
	reason            string
	startedAt         time.Time
	endedAt           time.Time
	version           int64

	steps   []stepState
	closing actionState

	// await is the action the saga waits on (nil when none): a reply to
	// one of its attempts, or the time of its next attempt.
	await *await
	// parked is the action a failed saga stopped at.
	parked *ActionRef
	// settled: an event showed what the closing action would close
	// closed already (Definition.Settles), so the action is moot.
	settled bool
	// gates holds the events that steps wait for and that have arrived.
	gates map[string]bool
	// commands maps every command id the saga issued to what it was for.
	commands map[string]issued
	// replies holds each succeeded step's reply data, for payload builders.
	replies map[string]json.RawMessage

	history []HistoryEntry
}

type stepState struct {
	name   string
	after  string
	status StepStatus
	// fwd counts the forward attempts, comp those of the compensation.
	fwd  actionState
	comp actionState
	// inDoubt: the step timed out, so it may or may not have taken effect.
	inDoubt bool
	started time.Time
	ended   time.Time
	err     string
}

// actionState counts the attempts of one action. budgetFrom is the attempt
// its current budget started at: an operator's retry starts a new one.
type actionState struct {
	attempts   int
	budgetFrom int
	done       bool
}

type await struct {
	ref     ActionRef
	attempt int
	// deadline is when the attempt counts as unanswered, or, with retry,
	// when the next attempt goes out.
	deadline time.Time
	retry    bool
}

type issued struct {
	ref     ActionRef
	attempt int
	context string
}

// ID returns the saga's id.
func (s *State) ID() string { return s.id }

// Started reports whether the saga has any event.
func (s *State) Started() bool { return s.id != "" }

// Definition returns the name and version of the definition the saga is
// pinned to.
func (s *State) Definition() (name string, version int) { return s.definition, s.definitionVersion }

// OrderID returns the order the saga is about, if its definition says.
func (s *State) OrderID() string { return s.orderID }

// Status returns the saga's status.
func (s *State) Status() Status { return s.status }

// Reason returns why the saga was called off (empty while it was not).
func (s *State) Reason() string { return s.reason }

// Version returns the number of events applied: the stream version the
// next append expects.
func (s *State) Version() int64 { return s.version }

// Deadline returns when the saga must next be woken up if nothing arrives
// (an attempt's reply deadline or the time of the next attempt), and false
// when it waits for nothing with a deadline (ended, parked, or completed
// and waiting for an event). The coordinator keeps this as the saga's one
// deadline row after each append.
func (s *State) Deadline() (time.Time, bool) {
	if s.await == nil || s.status == StatusFailed {
		return time.Time{}, false
	}
	return s.await.deadline, true
}

// Terminal reports whether nothing more will happen to the saga without
// an outside event: completed (perhaps waiting for an event that resumes
// it), compensated, or failed (waiting for an operator).
func (s *State) Terminal() bool {
	switch s.status {
	case StatusCompleted, StatusCompensated, StatusFailed:
		return true
	}
	return false
}

// Apply records one saga event (a value of one of this package's event
// types, as domain.Registry.Decode returns it). Other values are ignored.
func (s *State) Apply(event any) {
	s.version++
	switch e := event.(type) {
	case SagaStarted:
		s.id = e.SagaID
		s.definition = e.Definition
		s.definitionVersion = e.DefinitionVersion
		s.orderID = e.OrderID
		s.input = e.Input
		s.status = StatusRunning
		s.startedAt = e.At
		s.steps = make([]stepState, len(e.Steps))
		for i, st := range e.Steps {
			s.steps[i] = stepState{name: st.Name, after: st.After, status: StepStatusPending}
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeSagaStarted, Detail: map[string]any{
			"definition": e.Definition, "definition_version": e.DefinitionVersion, "order_id": e.OrderID,
		}})
	case CommandIssued:
		s.applyIssued(e)
	case ReplyReceived:
		if e.Settles {
			s.settled = true
		}
		if e.Outcome == OutcomeSuccess && !e.Compensation {
			if s.replies == nil {
				s.replies = make(map[string]json.RawMessage)
			}
			s.replies[e.Step] = e.Data
		}
		detail := map[string]any{
			"step": e.Step, "from": s.commands[e.CommandID].context, "command_id": e.CommandID,
			"attempt": e.Attempt, "outcome": e.Outcome, "compensation": e.Compensation,
		}
		if e.Reason != "" {
			detail["reason"] = e.Reason
		}
		if len(e.Data) > 0 {
			detail["data"] = e.Data
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: e.EventType, Detail: detail})
	case StepSucceeded:
		st := s.step(e.StepIndex)
		st.status, st.ended, st.err, st.inDoubt = StepStatusSucceeded, e.At, "", false
		s.await = nil
		if s.status == StatusFailed {
			// A late reply did what the parked step waited for.
			s.status, s.parked = StatusRunning, nil
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeStepSucceeded, Detail: map[string]any{
			"step": e.Step, "attempt": e.Attempt,
		}})
	case StepFailed:
		st := s.step(e.StepIndex)
		st.status, st.ended, st.err, st.inDoubt = StepStatusFailed, e.At, e.Reason, false
		s.await = nil
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeStepFailed, Detail: map[string]any{
			"step": e.Step, "attempt": e.Attempt, "reason": e.Reason,
		}})
	case AttemptTimedOut:
		if s.await != nil {
			s.await.deadline, s.await.retry = e.RetryAt, true
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeAttemptTimedOut, Detail: map[string]any{
			"step": e.Step, "attempt": e.Attempt, "compensation": e.Compensation, "retry_at": e.RetryAt,
		}})
	case StepTimedOut:
		st := s.step(e.StepIndex)
		st.status, st.ended, st.inDoubt = StepStatusFailed, e.At, true
		st.err = "no answer after " + plural(e.Attempts, "attempt")
		s.await = nil
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeStepTimedOut, Detail: map[string]any{
			"step": e.Step, "attempts": e.Attempts,
		}})
	case CompensationStarted:
		s.status, s.reason, s.endedAt = StatusCompensating, e.Reason, time.Time{}
		for i := range s.steps {
			if s.steps[i].status == StepStatusPending {
				s.steps[i].status = StepStatusSkipped
			}
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeCompensationStarted, Detail: map[string]any{
			"reason": e.Reason, "cause": e.Cause,
		}})
	case CompensationDone:
		if e.Closing {
			s.closing.done = true
		} else {
			st := s.step(e.StepIndex)
			st.status, st.ended, st.comp.done = StepStatusCompensated, e.At, true
		}
		s.await = nil
		if s.status == StatusFailed {
			// A late reply did what the parked action waited for.
			s.status, s.parked = StatusCompensating, nil
		}
		detail := map[string]any{"step": e.Step, "attempt": e.Attempt, "closing": e.Closing}
		if e.Note != "" {
			detail["note"] = e.Note
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeCompensationDone, Detail: detail})
	case ExternalEventReceived:
		if e.Settles {
			s.settled = true
		}
		if e.Gate {
			s.gates = setTrue(s.gates, e.EventType)
		}
		detail := map[string]any{"external": true}
		if len(e.Data) > 0 {
			detail["data"] = e.Data
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: e.EventType, Detail: detail})
	case SagaCompleted:
		s.status, s.endedAt, s.await = StatusCompleted, e.At, nil
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeSagaCompleted, Detail: map[string]any{}})
	case SagaCompensated:
		s.status, s.endedAt, s.await = StatusCompensated, e.At, nil
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeSagaCompensated, Detail: map[string]any{
			"reason": e.Reason,
		}})
	case SagaFailed:
		s.status, s.endedAt = StatusFailed, time.Time{}
		ref := e.ActionRef
		s.parked, s.await = &ref, nil
		if !e.Closing {
			s.step(e.StepIndex).err = e.Reason + ": " + e.Detail
		}
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeSagaFailed, Detail: map[string]any{
			"step": e.Step, "compensation": e.Compensation, "reason": e.Reason, "detail": e.Detail,
		}})
	case SagaRetried:
		if e.Compensation {
			s.status = StatusCompensating
		} else {
			s.status = StatusRunning
		}
		s.parked = nil
		s.budget(e.ActionRef).budgetFrom = e.Attempt
		s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeSagaRetried, Detail: map[string]any{
			"step": e.Step, "compensation": e.Compensation, "attempt": e.Attempt,
		}})
	default:
		s.version-- // not a saga event
	}
}

func (s *State) applyIssued(e CommandIssued) {
	if s.commands == nil {
		s.commands = make(map[string]issued)
	}
	s.commands[e.CommandID] = issued{ref: e.ActionRef, attempt: e.Attempt, context: e.Context}
	s.await = &await{ref: e.ActionRef, attempt: e.Attempt, deadline: e.Deadline}
	b := s.budget(e.ActionRef)
	if e.Attempt > b.attempts {
		b.attempts = e.Attempt
	}
	if b.budgetFrom == 0 {
		b.budgetFrom = e.Attempt
	}
	switch {
	case e.Closing:
	case e.Compensation:
		st := s.step(e.StepIndex)
		st.status = StepStatusCompensating
	default:
		st := s.step(e.StepIndex)
		st.status = StepStatusRunning
		if st.started.IsZero() {
			st.started = e.At
		}
		if s.status == StatusCompleted {
			// A step that waited for an event runs: the saga runs again.
			s.status, s.endedAt = StatusRunning, time.Time{}
		}
	}
	s.history = append(s.history, HistoryEntry{At: e.At, Event: TypeCommandIssued, Detail: map[string]any{
		"step": e.Step, "command": e.Context + "." + e.Name, "version": e.Version, "command_id": e.CommandID,
		"attempt": e.Attempt, "compensation": e.Compensation, "deadline": e.Deadline, "payload": e.Payload,
	}})
}

// budget returns the attempt counters of the action ref names.
func (s *State) budget(ref ActionRef) *actionState {
	switch {
	case ref.Closing:
		return &s.closing
	case ref.Compensation:
		return &s.step(ref.StepIndex).comp
	default:
		return &s.step(ref.StepIndex).fwd
	}
}

// step returns the state of step i; an index out of range (an event that
// does not belong to this saga's steps) gets a scratch slot so that Apply
// never panics on a foreign stream.
func (s *State) step(i int) *stepState {
	if i < 0 || i >= len(s.steps) {
		return &stepState{}
	}
	return &s.steps[i]
}

// clone returns a copy that a decision can apply events to without
// touching s.
func (s *State) clone() *State {
	c := *s
	c.steps = slices.Clone(s.steps)
	c.history = slices.Clip(s.history)
	c.gates = maps.Clone(s.gates)
	c.commands = maps.Clone(s.commands)
	c.replies = maps.Clone(s.replies)
	if s.await != nil {
		a := *s.await
		c.await = &a
	}
	if s.parked != nil {
		p := *s.parked
		c.parked = &p
	}
	return &c
}

// data is what the payload builders of the saga may read.
func (s *State) data() Data {
	return Data{SagaID: s.id, Input: s.input, Reason: s.reason, replies: s.replies}
}

func setTrue(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = make(map[string]bool)
	}
	m[k] = true
	return m
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
