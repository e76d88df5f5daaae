// Package sagatest runs given/when/then tables against saga definitions:
// given a saga driven to some point (replies, deadlines, outside events),
// when one more thing happens, then the engine decides exactly these
// events. It drives the decisions the way the coordinator does: every
// event goes through the saga event registry (encoded, decoded, compared)
// before it is applied, every delivered event is delivered twice to check
// that a redelivery changes nothing, and every decision is checked to
// leave the state it was given untouched. It is imported by tests only.
package sagatest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/sagas"
)

// Saga is one saga under test, with the clock it is driven by.
type Saga struct {
	T     testing.TB
	Def   *sagas.Definition
	State *sagas.State
	// Now is the simulated clock: Advance and Expire move it.
	Now time.Time
	// Events are the saga's events so far, oldest first.
	Events []any
	reg    *domain.Registry
	seq    int
}

// Start starts a saga of def with input (a value encoded to JSON, or a
// json.RawMessage) at now. The test fails if the start is refused.
func Start(t testing.TB, def *sagas.Definition, sagaID string, input any, now time.Time) *Saga {
	t.Helper()
	s := &Saga{T: t, Def: def, State: &sagas.State{}, Now: now, reg: sagas.NewRegistry()}
	raw, ok := input.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(input); err != nil {
			t.Fatalf("input: %v", err)
		}
	}
	events, err := sagas.Start(def, sagaID, raw, now)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s.record(events)
	return s
}

// Act is something that happens to a saga; it returns the events the
// engine decided.
type Act func(s *Saga) []any

// Decide runs one decision on the saga's state and applies what it
// decided. The decision must not fail and must leave the state alone.
func (s *Saga) Decide(decide func(st *sagas.State) ([]any, error)) []any {
	s.T.Helper()
	events, err := decide(s.State)
	if err != nil {
		s.T.Fatalf("decision failed: %v", err)
	}
	if !reflect.DeepEqual(s.State, s.rebuild()) {
		s.T.Fatalf("the decision changed the state it was given")
	}
	s.record(events)
	return events
}

// record round-trips events through the registry and applies them.
func (s *Saga) record(events []any) {
	s.T.Helper()
	for _, e := range events {
		name, version, data, err := s.reg.Encode(e)
		if err != nil {
			s.T.Fatalf("%T is not a registered saga event: %v", e, err)
		}
		back, err := s.reg.Decode(domain.Envelope{ID: fmt.Sprint(len(s.Events) + 1), Type: name, SchemaVersion: version, Data: data})
		if err != nil {
			s.T.Fatalf("%s does not decode: %v", name, err)
		}
		if !reflect.DeepEqual(back, e) {
			s.T.Fatalf("%s changes on its way through the store:\n got %#v\nwant %#v", name, back, e)
		}
		s.State.Apply(back)
		s.Events = append(s.Events, back)
	}
}

func (s *Saga) rebuild() *sagas.State {
	st := &sagas.State{}
	for _, e := range s.Events {
		st.Apply(e)
	}
	return st
}

// Deliver hands the saga an event, then hands it the same event again and
// checks that the redelivery decides nothing.
func (s *Saga) Deliver(in sagas.Incoming) []any {
	s.T.Helper()
	events := s.Decide(func(st *sagas.State) ([]any, error) { return sagas.OnEvent(s.Def, st, in, s.Now) })
	again := s.Decide(func(st *sagas.State) ([]any, error) { return sagas.OnEvent(s.Def, st, in, s.Now) })
	if len(again) != 0 {
		s.T.Fatalf("redelivering %s decided %s", in.Type, Describe(again...))
	}
	return events
}

// NewIncoming returns a new event (with a fresh id) of type typ and data
// (a value encoded to JSON), caused by causationID.
func (s *Saga) NewIncoming(typ string, data any, causationID string) sagas.Incoming {
	s.T.Helper()
	s.seq++
	raw, err := json.Marshal(data)
	if err != nil {
		s.T.Fatalf("%s data: %v", typ, err)
	}
	return sagas.Incoming{ID: fmt.Sprintf("event-%d", s.seq), Type: typ, Data: raw, CausationID: causationID}
}

// Pending returns the command the saga waits on an answer to; the test
// fails when it waits on none.
func (s *Saga) Pending() sagas.CommandIssued {
	s.T.Helper()
	if _, ok := s.State.Deadline(); !ok {
		s.T.Fatalf("the saga (%s) waits on no command", s.State.Status())
	}
	for i := len(s.Events) - 1; i >= 0; i-- {
		if c, ok := s.Events[i].(sagas.CommandIssued); ok {
			return c
		}
	}
	s.T.Fatalf("the saga has issued no command")
	return sagas.CommandIssued{}
}

// Issued returns every command the saga issued, oldest first.
func (s *Saga) Issued() []sagas.CommandIssued {
	var out []sagas.CommandIssued
	for _, e := range s.Events {
		if c, ok := e.(sagas.CommandIssued); ok {
			out = append(out, c)
		}
	}
	return out
}

// Reply answers the pending command with an event of type typ and data.
func Reply(typ string, data any) Act {
	return func(s *Saga) []any {
		s.T.Helper()
		return s.Deliver(s.NewIncoming(typ, data, s.Pending().CommandID))
	}
}

// ReplyTo answers the command with the given id (an earlier attempt, an
// earlier step) with an event of type typ and data.
func ReplyTo(commandID, typ string, data any) Act {
	return func(s *Saga) []any {
		s.T.Helper()
		return s.Deliver(s.NewIncoming(typ, data, commandID))
	}
}

// External delivers an event the saga did not ask for (no causation by
// any of its commands).
func External(typ string, data any) Act {
	return func(s *Saga) []any {
		s.T.Helper()
		return s.Deliver(s.NewIncoming(typ, data, "not-a-saga-command"))
	}
}

// Expire moves the clock to the saga's deadline and lets it pass; the
// test fails when the saga has no deadline. Calling the deadline a moment
// early first checks that an early call decides nothing.
func Expire() Act {
	return func(s *Saga) []any {
		s.T.Helper()
		at, ok := s.State.Deadline()
		if !ok {
			s.T.Fatalf("the saga (%s) has no deadline", s.State.Status())
		}
		if early := s.Decide(func(st *sagas.State) ([]any, error) {
			return sagas.OnDeadline(s.Def, st, at.Add(-time.Nanosecond))
		}); len(early) != 0 {
			s.T.Fatalf("a deadline called early decided %s", Describe(early...))
		}
		if at.After(s.Now) {
			s.Now = at
		}
		return s.Decide(func(st *sagas.State) ([]any, error) { return sagas.OnDeadline(s.Def, st, s.Now) })
	}
}

// Retry is an operator's retry.
func Retry() Act {
	return func(s *Saga) []any {
		s.T.Helper()
		return s.Decide(func(st *sagas.State) ([]any, error) { return sagas.Retry(s.Def, st, s.Now) })
	}
}

// Advance moves the clock on by d and decides nothing.
func Advance(d time.Duration) Act {
	return func(s *Saga) []any {
		s.Now = s.Now.Add(d)
		return nil
	}
}

// Seq performs acts one after the other and returns every decided event.
func Seq(acts ...Act) Act {
	return func(s *Saga) []any {
		s.T.Helper()
		var out []any
		for _, a := range acts {
			out = append(out, a(s)...)
		}
		return out
	}
}

// Case is one row of a given/when/then table.
type Case struct {
	Name string
	// Given drives the saga, just started, to the point under test.
	Given []Act
	// When is what happens next.
	When Act
	// Then describes, in order, the events When must decide (see
	// Describe); none for a decision that changes nothing.
	Then []string
	// Check, when set, inspects the saga afterwards.
	Check func(t testing.TB, s *Saga)
}

// Run runs every case as a subtest; start starts a fresh saga for each.
func Run(t *testing.T, start func(t testing.TB) *Saga, cases []Case) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Helper()
			s := start(t)
			for _, g := range c.Given {
				g(s)
			}
			got := Describe(c.When(s)...)
			if want := strings.Join(c.Then, "\n"); got != want {
				t.Errorf("decided:\n%s\nwant:\n%s", indent(got), indent(want))
			}
			if c.Check != nil {
				c.Check(t, s)
			}
		})
	}
}

func indent(s string) string {
	if s == "" {
		return "  (nothing)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// Describe renders events one per line in a short form that table rows
// can spell out:
//
//	SagaStarted order_fulfillment v1
//	CommandIssued inventory.reserve_stock #1                 (forward step, attempt 1)
//	CommandIssued undo inventory.release_stock #1            (compensation)
//	CommandIssued close orders.reject_order #1               (closing action)
//	ReplyReceived StockReservationRejected failure insufficient_stock
//	StepSucceeded reserve_inventory
//	StepFailed reserve_inventory insufficient_stock
//	AttemptTimedOut reserve_inventory #1
//	StepTimedOut reserve_inventory
//	CompensationStarted step_timeout
//	CompensationDone reserve_inventory
//	ExternalEventReceived OrderCancelled
//	SagaCompleted
//	SagaCompensated insufficient_stock
//	SagaFailed reserve_inventory compensation_timeout
//	SagaRetried reserve_inventory #4
func Describe(events ...any) string {
	lines := make([]string, 0, len(events))
	for _, e := range events {
		lines = append(lines, describe(e))
	}
	return strings.Join(lines, "\n")
}

func describe(e any) string {
	switch e := e.(type) {
	case sagas.SagaStarted:
		return fmt.Sprintf("SagaStarted %s v%d", e.Definition, e.DefinitionVersion)
	case sagas.CommandIssued:
		kind := ""
		switch {
		case e.Closing:
			kind = "close "
		case e.Compensation:
			kind = "undo "
		}
		return fmt.Sprintf("CommandIssued %s%s.%s #%d", kind, e.Context, e.Name, e.Attempt)
	case sagas.ReplyReceived:
		return strings.TrimSpace(fmt.Sprintf("ReplyReceived %s %s %s", e.EventType, e.Outcome, e.Reason))
	case sagas.StepSucceeded:
		return "StepSucceeded " + e.Step
	case sagas.StepFailed:
		return "StepFailed " + e.Step + " " + e.Reason
	case sagas.AttemptTimedOut:
		return fmt.Sprintf("AttemptTimedOut %s #%d", e.Step, e.Attempt)
	case sagas.StepTimedOut:
		return "StepTimedOut " + e.Step
	case sagas.CompensationStarted:
		return "CompensationStarted " + e.Reason
	case sagas.CompensationDone:
		return "CompensationDone " + e.Step
	case sagas.ExternalEventReceived:
		return "ExternalEventReceived " + e.EventType
	case sagas.SagaCompleted:
		return "SagaCompleted"
	case sagas.SagaCompensated:
		return "SagaCompensated " + e.Reason
	case sagas.SagaFailed:
		return "SagaFailed " + e.Step + " " + e.Reason
	case sagas.SagaRetried:
		return fmt.Sprintf("SagaRetried %s #%d", e.Step, e.Attempt)
	}
	return fmt.Sprintf("%T", e)
}

// Commands returns the commands among events as "context.name" (with the
// "undo " or "close " prefix of Describe), in order.
func Commands(events ...any) []string {
	var out []string
	for _, e := range events {
		if c, ok := e.(sagas.CommandIssued); ok {
			d := describe(c)
			d = strings.TrimPrefix(d, "CommandIssued ")
			out = append(out, d[:strings.LastIndex(d, " #")])
		}
	}
	return slices.Clip(out)
}
