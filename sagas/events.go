package sagas

import (
	"encoding/json"
	"time"

	"github.com/orderflow/orderflow/domain"
)

// StreamPrefix starts the name of every saga stream.
const StreamPrefix = "saga-"

// Stream is the name of the stream of the saga with the given id.
func Stream(sagaID string) string { return StreamPrefix + sagaID }

// Saga event type names, as stored in domain.Envelope.Type. Every decision
// of the engine is one or more of these, appended to the saga's stream
// before it takes effect.
const (
	TypeSagaStarted           = "SagaStarted"
	TypeCommandIssued         = "CommandIssued" // the relay publishes it on commands.<context>.<name>
	TypeReplyReceived         = "ReplyReceived"
	TypeStepSucceeded         = "StepSucceeded"
	TypeStepFailed            = "StepFailed"
	TypeAttemptTimedOut       = "AttemptTimedOut"
	TypeStepTimedOut          = "StepTimedOut"
	TypeCompensationStarted   = "CompensationStarted"
	TypeCompensationDone      = "CompensationDone"
	TypeExternalEventReceived = "ExternalEventReceived"
	TypeSagaCompleted         = "SagaCompleted"
	TypeSagaCompensated       = "SagaCompensated"
	TypeSagaFailed            = "SagaFailed"
	TypeSagaRetried           = "SagaRetried"
)

// Reasons the engine itself records.
const (
	// ReasonStepTimeout: a step went unanswered through its whole attempt
	// budget; the saga aborts with it.
	ReasonStepTimeout = "step_timeout"
	// ReasonCompensationTimeout: a compensation or the closing action went
	// unanswered through its budget; the saga is parked with it.
	ReasonCompensationTimeout = "compensation_timeout"
	// ReasonCompensationRefused: the receiver refused a compensation or the
	// closing action; the saga is parked with it.
	ReasonCompensationRefused = "compensation_refused"
	// ReasonStepFailedPastPivot: a step past the pivot failed or went
	// unanswered; nothing can be undone there, so the saga is parked.
	ReasonStepFailedPastPivot = "step_failed_past_pivot"
	// reasonRefused is recorded for a refusal that names no reason.
	reasonRefused = "refused"
)

// Outcomes of a reply.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// ActionRef names what a command was sent for: a forward step
// (Compensation false), the compensation of a step (Compensation true) or
// the closing action (Closing true, Step its name, StepIndex -1).
type ActionRef struct {
	Step         string `json:"step"`
	StepIndex    int    `json:"step_index"`
	Compensation bool   `json:"compensation"`
	Closing      bool   `json:"closing,omitempty"`
}

// StepInfo is what SagaStarted records of each step, so that the state and
// its view need no definition.
type StepInfo struct {
	Name string `json:"name"`
	// After is the event the step waits for, if any.
	After string `json:"after,omitempty"`
}

// SagaStarted: a saga of Definition at DefinitionVersion started; the
// saga stays pinned to that version.
type SagaStarted struct {
	SagaID            string          `json:"saga_id"`
	Definition        string          `json:"definition"`
	DefinitionVersion int             `json:"definition_version"`
	OrderID           string          `json:"order_id,omitempty"`
	Input             json.RawMessage `json:"input"`
	Steps             []StepInfo      `json:"steps"`
	At                time.Time       `json:"at"`
}

// CommandIssued: the saga sends a command. Its first five fields are the
// wire shape the relay routes on (natsbus.Command): the receiving context,
// the command's name and schema version, its id and its payload. Deadline
// is when the attempt counts as unanswered; the coordinator keeps it as a
// durable deadline row (State.Deadline).
type CommandIssued struct {
	Context   string          `json:"context"`
	Name      string          `json:"name"`
	Version   int             `json:"version"`
	CommandID string          `json:"command_id"`
	Payload   json.RawMessage `json:"payload"`
	SagaID    string          `json:"saga_id"`
	ActionRef
	Attempt  int       `json:"attempt"`
	Deadline time.Time `json:"deadline"`
	At       time.Time `json:"at"`
}

// ReplyReceived: an event answering one of the saga's commands (its
// causation id is CommandID) arrived while the saga waited for it.
type ReplyReceived struct {
	ActionRef
	// Attempt is the attempt whose command the reply answers.
	Attempt   int    `json:"attempt"`
	CommandID string `json:"command_id"`
	// EventID and EventType are the reply's.
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// Outcome is OutcomeSuccess or OutcomeFailure.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Settles is set when the reply shows what the closing action would
	// close closed already (see Definition.Settles).
	Settles bool            `json:"settles,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	At      time.Time       `json:"at"`
}

// StepSucceeded: a forward step is done.
type StepSucceeded struct {
	Step      string    `json:"step"`
	StepIndex int       `json:"step_index"`
	Attempt   int       `json:"attempt"`
	At        time.Time `json:"at"`
}

// StepFailed: the receiver refused a forward step; nothing of it needs
// undoing.
type StepFailed struct {
	Step      string    `json:"step"`
	StepIndex int       `json:"step_index"`
	Attempt   int       `json:"attempt"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

// AttemptTimedOut: an attempt went unanswered past its deadline and the
// budget allows another; the next attempt goes out at RetryAt (the saga's
// deadline meanwhile).
type AttemptTimedOut struct {
	ActionRef
	Attempt int       `json:"attempt"`
	RetryAt time.Time `json:"retry_at"`
	At      time.Time `json:"at"`
}

// StepTimedOut: a forward step went unanswered through its budget (or the
// saga, being called off, stopped waiting). Its outcome is unknown, so it
// is compensated like a step that succeeded.
type StepTimedOut struct {
	Step      string    `json:"step"`
	StepIndex int       `json:"step_index"`
	Attempts  int       `json:"attempts"`
	At        time.Time `json:"at"`
}

// CompensationStarted: the saga is called off with Reason; Cause is the
// event type (a refusal, an AbortOn event) or ReasonStepTimeout. What is
// done so far is compensated in reverse from here on.
type CompensationStarted struct {
	Reason string    `json:"reason"`
	Cause  string    `json:"cause"`
	At     time.Time `json:"at"`
}

// CompensationDone: a compensation or the closing action is done. Note
// says why when no reply of its own did it (an event that settled the
// saga).
type CompensationDone struct {
	ActionRef
	Attempt int       `json:"attempt"`
	Note    string    `json:"note,omitempty"`
	At      time.Time `json:"at"`
}

// ExternalEventReceived: an event the saga reacts to without having asked
// for it arrived: an AbortOn event (Settles when Definition.Settles
// recognises it) or the event a step waits for (Gate).
type ExternalEventReceived struct {
	EventID   string          `json:"event_id"`
	EventType string          `json:"event_type"`
	Settles   bool            `json:"settles,omitempty"`
	Gate      bool            `json:"gate,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	At        time.Time       `json:"at"`
}

// SagaCompleted: every step that can run has succeeded. A saga whose next
// step waits for an event is completed until that event comes, then runs
// again and completes again.
type SagaCompleted struct {
	At time.Time `json:"at"`
}

// SagaCompensated: the saga was called off and everything it did is
// undone; Reason is why it was called off.
type SagaCompensated struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// SagaFailed: the action ActionRef names could not complete within its
// budget, or was refused, and nothing else can be done safely: the saga
// is parked for an operator (Retry). A late reply to the parked action
// still resumes it.
type SagaFailed struct {
	ActionRef
	Reason string    `json:"reason"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
}

// SagaRetried: an operator resumed a failed saga; the parked action gets a
// fresh budget starting at Attempt, whose CommandIssued follows.
type SagaRetried struct {
	ActionRef
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
}

// RegisterEvents registers the saga events (all at schema version 1).
func RegisterEvents(r *domain.Registry) error {
	for _, e := range []struct {
		name    string
		example any
	}{
		{TypeSagaStarted, SagaStarted{}},
		{TypeCommandIssued, CommandIssued{}},
		{TypeReplyReceived, ReplyReceived{}},
		{TypeStepSucceeded, StepSucceeded{}},
		{TypeStepFailed, StepFailed{}},
		{TypeAttemptTimedOut, AttemptTimedOut{}},
		{TypeStepTimedOut, StepTimedOut{}},
		{TypeCompensationStarted, CompensationStarted{}},
		{TypeCompensationDone, CompensationDone{}},
		{TypeExternalEventReceived, ExternalEventReceived{}},
		{TypeSagaCompleted, SagaCompleted{}},
		{TypeSagaCompensated, SagaCompensated{}},
		{TypeSagaFailed, SagaFailed{}},
		{TypeSagaRetried, SagaRetried{}},
	} {
		if err := r.Register(e.name, 1, e.example); err != nil {
			return err
		}
	}
	return nil
}

// NewRegistry returns a registry that knows every saga event.
func NewRegistry() *domain.Registry {
	r := domain.NewRegistry()
	if err := RegisterEvents(r); err != nil {
		// The event types are fixed at compile time; a clash is a
		// programming error that every test would hit.
		panic(err)
	}
	return r
}
