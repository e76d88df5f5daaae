package sagas_test

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/aggtest"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
)

const toyID = "5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

// toy is a small definition that exercises what order_fulfillment does not:
// a refused compensation, a reason read from the reply, a step retried
// without waiting, a failing payload builder. Version 2 adds a step.
func toy(version int) *sagas.Definition {
	cmd := func(name string) sagas.Command {
		return sagas.Command{Context: "toys", Name: name, Version: 1, Payload: func(d sagas.Data) (any, error) {
			if strings.Contains(string(d.Input), "explode") {
				return nil, errors.New("cannot build")
			}
			return map[string]string{"saga_id": d.SagaID, "reason": d.Reason}, nil
		}}
	}
	retry := sagas.RetryPolicy{MaxAttempts: 2, Initial: time.Second, Multiplier: 2}
	def := &sagas.Definition{Name: "toy", Version: version, Steps: []sagas.Step{
		{
			Name: "a", Command: cmd("do_a"), Success: []string{"ADone"}, Failure: map[string]string{"ARefused": ""},
			Compensation: &sagas.Action{
				Name: "undo_a", Command: cmd("undo_a"), Done: []string{"AUndone"}, Failure: map[string]string{"AUndoRefused": "locked"},
				Timeout: time.Second, Retry: retry,
			},
			Timeout: time.Second, Retry: retry,
		},
		{
			Name: "b", Command: cmd("do_b"), Success: []string{"BDone"}, Failure: map[string]string{"BRefused": "b_refused"},
			Timeout: time.Second, Retry: sagas.RetryPolicy{MaxAttempts: 3}, // retried at once
		},
	}}
	if version >= 2 {
		def.Steps = append(def.Steps, sagas.Step{Name: "c", Command: cmd("do_c"), Success: []string{"CDone"}, Timeout: time.Second, Retry: retry})
	}
	return def
}

func startToy(t testing.TB) *sagatest.Saga {
	t.Helper()
	return sagatest.Start(t, toy(1), toyID, map[string]string{}, t0)
}

func TestEngineRefusals(t *testing.T) {
	aDone := sagatest.Reply("ADone", nil)
	bRefused := sagatest.Reply("BRefused", nil)
	undoRefused := sagatest.Reply("AUndoRefused", nil)
	sagatest.Run(t, startToy, []sagatest.Case{
		{
			Name: "a refusal's reason is the reply's own when the step names none",
			When: sagatest.Reply("ARefused", map[string]string{"reason": "sold_out"}),
			Then: []string{"ReplyReceived ARefused failure sold_out", "StepFailed a sold_out", "CompensationStarted sold_out", "SagaCompensated sold_out"},
		},
		{
			Name: "a refusal without any reason is recorded as refused",
			When: sagatest.Reply("ARefused", map[string]string{}),
			Then: []string{"ReplyReceived ARefused failure refused", "StepFailed a refused", "CompensationStarted refused", "SagaCompensated refused"},
		},
		{
			Name:  "a refused compensation parks the saga at once",
			Given: []sagatest.Act{aDone, bRefused},
			When:  undoRefused,
			Then:  []string{"ReplyReceived AUndoRefused failure locked", "SagaFailed a compensation_refused"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				if s.State.Status() != sagas.StatusFailed {
					t.Errorf("status = %s", s.State.Status())
				}
			},
		},
		{
			Name:  "a parked compensation refused again stays parked",
			Given: []sagatest.Act{aDone, bRefused, undoRefused},
			When:  sagatest.ReplyTo(sagas.CommandID(toyID, "a", 1, true), "AUndoRefused", nil),
		},
		{
			Name:  "a retried compensation that is done ends the saga compensated",
			Given: []sagatest.Act{aDone, bRefused, undoRefused, sagatest.Retry()},
			When:  sagatest.Reply("AUndone", nil),
			Then:  []string{"ReplyReceived AUndone success", "CompensationDone a", "SagaCompensated b_refused"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				if got := sagatest.Commands(s.Events...); !slices.Equal(got, []string{"toys.do_a", "toys.do_b", "undo toys.undo_a", "undo toys.undo_a"}) {
					t.Errorf("commands = %q", got)
				}
				if c := s.Issued()[3]; string(c.Payload) != `{"reason":"b_refused","saga_id":"`+toyID+`"}` || c.Attempt != 2 {
					t.Errorf("retried compensation = %+v, payload %s", c, c.Payload)
				}
			},
		},
		{
			Name:  "a refusal from before an operator's retry is stale",
			Given: []sagatest.Act{aDone, bRefused, undoRefused, sagatest.Retry()},
			When:  sagatest.ReplyTo(sagas.CommandID(toyID, "a", 1, true), "AUndoRefused", nil),
		},
		{
			Name:  "a success from before an operator's retry is taken",
			Given: []sagatest.Act{aDone, bRefused, undoRefused, sagatest.Retry()},
			When:  sagatest.ReplyTo(sagas.CommandID(toyID, "a", 1, true), "AUndone", nil),
			Then:  []string{"ReplyReceived AUndone success", "CompensationDone a", "SagaCompensated b_refused"},
		},
		{
			Name:  "a step without backoff is sent again in the same decision",
			Given: []sagatest.Act{aDone},
			When:  sagatest.Expire(),
			Then:  []string{"AttemptTimedOut b #1", "CommandIssued toys.do_b #2"},
		},
	})
}

func TestVersionPinning(t *testing.T) {
	defs := sagas.NewDefinitions()
	for _, d := range []*sagas.Definition{toy(1), toy(2)} {
		if err := defs.Register(d); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := defs.Latest("toy")
	if err != nil || latest.Version != 2 {
		t.Fatalf("latest = %v, %v", latest, err)
	}
	// A saga started under v1 keeps running v1 after v2 is registered.
	s := sagatest.Start(t, toy(1), toyID, map[string]string{}, t0)
	pinned, err := defs.For(s.State)
	if err != nil || pinned.Version != 1 {
		t.Fatalf("For = %v, %v; want v1", pinned, err)
	}
	s.Def = pinned
	in := s.NewIncoming("ADone", nil, s.Pending().CommandID)
	if _, err := sagas.OnEvent(latest, s.State, in, t0); !errors.Is(err, sagas.ErrDefinitionMismatch) {
		t.Errorf("deciding a v1 saga with v2: %v, want ErrDefinitionMismatch", err)
	}
	s.Deliver(in)
	got := sagatest.Reply("BDone", nil)(s)
	if want := "ReplyReceived BDone success\nStepSucceeded b\nSagaCompleted"; sagatest.Describe(got...) != want {
		t.Errorf("a v1 saga after its last step decided:\n%s\nwant:\n%s", sagatest.Describe(got...), want)
	}
	// A saga started under v2 runs its third step.
	s2 := sagatest.Start(t, latest, toyID, map[string]string{}, t0)
	sagatest.Reply("ADone", nil)(s2)
	got = sagatest.Reply("BDone", nil)(s2)
	if want := "ReplyReceived BDone success\nStepSucceeded b\nCommandIssued toys.do_c #1"; sagatest.Describe(got...) != want {
		t.Errorf("a v2 saga after b decided:\n%s\nwant:\n%s", sagatest.Describe(got...), want)
	}
	if v := s2.State.View(); v.DefinitionVersion != 2 || len(v.Steps) != 3 {
		t.Errorf("v2 view: version %d, %d steps", v.DefinitionVersion, len(v.Steps))
	}
	if _, err := defs.Lookup("toy", 3); !errors.Is(err, sagas.ErrUnknownDefinition) {
		t.Errorf("Lookup v3: %v, want ErrUnknownDefinition", err)
	}
}

func TestDeterministicDecisions(t *testing.T) {
	input, _ := json.Marshal(placed())
	first, err := sagas.Start(fulfillment, sagaID, input, t0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sagas.Start(fulfillment, sagaID, input, t0)
	if err != nil || !reflect.DeepEqual(first, again) {
		t.Fatalf("starting twice differs:\n%#v\n%#v (%v)", first, again, err)
	}
	// A coordinator that crashed before appending decides the same again.
	s := sagatest.Start(t, fulfillment, sagaID, placed(), t0)
	sagatest.Expire()(s)
	at, _ := s.State.Deadline()
	d1, err1 := sagas.OnDeadline(fulfillment, s.State, at)
	d2, err2 := sagas.OnDeadline(fulfillment, s.State, at)
	if err1 != nil || err2 != nil || len(d1) != 1 || !reflect.DeepEqual(d1, d2) {
		t.Fatalf("deciding the retry twice: %v / %v, %v / %v", d1, d2, err1, err2)
	}
	if c := d1[0].(sagas.CommandIssued); c.CommandID != sagas.CommandID(sagaID, sagas.StepReserveInventory, 2, false) {
		t.Errorf("retry command id = %s", c.CommandID)
	}

	ids := map[string]string{}
	for _, c := range []struct {
		saga, step string
		attempt    int
		undo       bool
	}{
		{sagaID, "reserve_inventory", 1, false},
		{sagaID, "reserve_inventory", 2, false},
		{sagaID, "reserve_inventory", 1, true},
		{sagaID, "schedule_shipment", 1, false},
		{sagas.SagaID("11111111-2222-4333-8444-555555555555"), "reserve_inventory", 1, false},
	} {
		id := sagas.CommandID(c.saga, c.step, c.attempt, c.undo)
		if id != sagas.CommandID(c.saga, c.step, c.attempt, c.undo) || !domain.ValidUUID(id) {
			t.Errorf("%+v: id %s is not a stable UUID", c, id)
		}
		key := c.saga + c.step + string(rune('0'+c.attempt)) + map[bool]string{true: "undo"}[c.undo]
		for other, otherID := range ids {
			if otherID == id {
				t.Errorf("%s and %s share command id %s", key, other, id)
			}
		}
		ids[key] = id
	}
}

func TestDecisionErrors(t *testing.T) {
	input, _ := json.Marshal(placed())
	s := sagatest.Start(t, fulfillment, sagaID, placed(), t0)
	in := sagas.Incoming{ID: "e-1", Type: "StockReservationAccepted", CausationID: s.Pending().CommandID}
	tests := []struct {
		name   string
		decide func() ([]any, error)
		want   error
	}{
		{"an event for a saga not started", func() ([]any, error) { return sagas.OnEvent(fulfillment, &sagas.State{}, in, t0) }, sagas.ErrNotStarted},
		{"a deadline of a saga not started", func() ([]any, error) { return sagas.OnDeadline(fulfillment, &sagas.State{}, t0) }, sagas.ErrNotStarted},
		{"another definition", func() ([]any, error) { return sagas.OnEvent(toy(1), s.State, in, t0) }, sagas.ErrDefinitionMismatch},
		{"no definition", func() ([]any, error) { return sagas.OnDeadline(nil, s.State, t0) }, sagas.ErrDefinitionMismatch},
		{"an event without id", func() ([]any, error) {
			return sagas.OnEvent(fulfillment, s.State, sagas.Incoming{Type: "X"}, t0)
		}, domain.ErrInvalid},
		{"a retry of a running saga", func() ([]any, error) { return sagas.Retry(fulfillment, s.State, t0) }, domain.ErrIllegalState},
		{"a saga id that is not a UUID", func() ([]any, error) { return sagas.Start(fulfillment, "saga-1", input, t0) }, domain.ErrInvalid},
		{"an input that is not JSON", func() ([]any, error) { return sagas.Start(fulfillment, sagaID, []byte("{"), t0) }, domain.ErrInvalid},
		{"an order without items", func() ([]any, error) {
			return sagas.Start(fulfillment, sagaID, []byte(`{"order_id":"`+orderID+`","shipping_address":{"country":"US"}}`), t0)
		}, domain.ErrInvalid},
		{"a payload that cannot be built", func() ([]any, error) { return sagas.Start(toy(1), toyID, []byte(`"explode"`), t0) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := tt.decide()
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
			if len(events) != 0 {
				t.Errorf("a failed decision decided %s", sagatest.Describe(events...))
			}
		})
	}
	var refusal *domain.Refusal
	if _, err := sagas.Retry(fulfillment, s.State, t0); !errors.As(err, &refusal) || !strings.Contains(refusal.Detail, "only a failed saga") {
		t.Errorf("retry refusal = %v", err)
	}
	var ve *domain.ValidationError
	if _, err := sagas.Start(fulfillment, sagaID, []byte(`{"order_id":"x","items":[{"sku":"","quantity":0}]}`), t0); !errors.As(err, &ve) {
		t.Errorf("invalid input: %v, want a *domain.ValidationError", err)
	} else if got := fieldNames(ve); !slices.Equal(got, []string{"order_id", "items[0].sku", "items[0].quantity", "shipping_address.country"}) {
		t.Errorf("invalid fields = %q", got)
	}
}

func fieldNames(ve *domain.ValidationError) []string {
	var out []string
	for _, f := range ve.Fields {
		out = append(out, f.Field)
	}
	return out
}

func TestRegister(t *testing.T) {
	edit := func(f func(d *sagas.Definition)) *sagas.Definition {
		d := toy(1)
		f(d)
		return d
	}
	tests := []struct {
		name string
		def  *sagas.Definition
	}{
		{"nil", nil},
		{"no name", edit(func(d *sagas.Definition) { d.Name = "" })},
		{"a name with a dot", edit(func(d *sagas.Definition) { d.Name = "toy.x" })},
		{"version 0", edit(func(d *sagas.Definition) { d.Version = 0 })},
		{"no steps", edit(func(d *sagas.Definition) { d.Steps = nil })},
		{"a step name used twice", edit(func(d *sagas.Definition) { d.Steps[1].Name = "a" })},
		{"a step without payload", edit(func(d *sagas.Definition) { d.Steps[0].Command.Payload = nil })},
		{"a command name that is no subject token", edit(func(d *sagas.Definition) { d.Steps[0].Command.Name = "do a" })},
		{"a command version 0", edit(func(d *sagas.Definition) { d.Steps[0].Command.Version = 0 })},
		{"no success reply", edit(func(d *sagas.Definition) { d.Steps[0].Success = nil })},
		{"a reply both success and failure", edit(func(d *sagas.Definition) { d.Steps[0].Failure = map[string]string{"ADone": ""} })},
		{"no timeout", edit(func(d *sagas.Definition) { d.Steps[0].Timeout = 0 })},
		{"no attempts", edit(func(d *sagas.Definition) { d.Steps[0].Retry.MaxAttempts = 0 })},
		{"jitter above 1", edit(func(d *sagas.Definition) { d.Steps[0].Retry.Jitter = 1.5 })},
		{"a compensation without done reply", edit(func(d *sagas.Definition) { d.Steps[0].Compensation.Done = nil })},
		{"a compensation past the pivot", edit(func(d *sagas.Definition) { d.Steps[0].After = "Go" })},
		{"a closing action named like a step", edit(func(d *sagas.Definition) {
			c := *d.Steps[0].Compensation
			c.Name = "b"
			d.Closing = &c
		})},
		{"an event that both aborts and gates", edit(func(d *sagas.Definition) {
			d.Steps[1].After = "Go"
			d.AbortOn = []sagas.AbortTrigger{{Event: "Go"}}
		})},
		{"a trigger without saga id", edit(func(d *sagas.Definition) { d.Trigger = &sagas.Trigger{Event: "Go"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := sagas.NewDefinitions().Register(tt.def); !errors.Is(err, sagas.ErrInvalidDefinition) {
				t.Errorf("Register = %v, want ErrInvalidDefinition", err)
			}
		})
	}
	defs := sagas.NewDefinitions()
	if err := defs.Register(toy(1)); err != nil {
		t.Fatalf("a valid definition: %v", err)
	}
	if err := defs.Register(toy(1)); !errors.Is(err, sagas.ErrInvalidDefinition) {
		t.Errorf("registering v1 twice: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	p := sagas.RetryPolicy{MaxAttempts: 9, Initial: time.Second, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.25}
	tests := []struct {
		policy   sagas.RetryPolicy
		attempt  int
		min, max time.Duration
	}{
		{p, 1, 750 * time.Millisecond, time.Second},
		{p, 2, 1500 * time.Millisecond, 2 * time.Second},
		{p, 3, 3 * time.Second, 4 * time.Second},
		{p, 4, 3750 * time.Millisecond, 5 * time.Second}, // capped
		{p, 60, 3750 * time.Millisecond, 5 * time.Second},
		{sagas.RetryPolicy{Initial: time.Second}, 5, time.Second, time.Second}, // no multiplier, no jitter
		{sagas.RetryPolicy{}, 3, 0, 0},
	}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for i := range 50 {
			seed := sagas.CommandID(toyID, "a", i, false)
			d := tt.policy.Backoff(tt.attempt, seed)
			if d < tt.min || d > tt.max {
				t.Errorf("%+v attempt %d: %v, want within [%v, %v]", tt.policy, tt.attempt, d, tt.min, tt.max)
			}
			if d != tt.policy.Backoff(tt.attempt, seed) {
				t.Errorf("the same seed gave two waits")
			}
			seen[d] = true
		}
		if tt.policy.Jitter > 0 && len(seen) < 25 {
			t.Errorf("%+v attempt %d: only %d distinct waits in 50 seeds", tt.policy, tt.attempt, len(seen))
		}
	}
}

func TestEventsRoundTrip(t *testing.T) {
	ref := sagas.ActionRef{Step: "schedule_shipment", StepIndex: 1, Compensation: true}
	closing := sagas.ActionRef{Step: "reject_order", StepIndex: -1, Compensation: true, Closing: true}
	aggtest.RoundTrip(t, sagas.RegisterEvents,
		sagas.SagaStarted{SagaID: sagaID, Definition: "order_fulfillment", DefinitionVersion: 1, OrderID: orderID,
			Input: json.RawMessage(`{"order_id":"x"}`), Steps: []sagas.StepInfo{{Name: "a"}, {Name: "b", After: "Go"}}, At: t0},
		sagas.CommandIssued{Context: "shipping", Name: "cancel_shipment", Version: 1, CommandID: "c-1", Payload: json.RawMessage(`{"a":1}`),
			SagaID: sagaID, ActionRef: ref, Attempt: 2, Deadline: t0.Add(time.Second), At: t0},
		sagas.ReplyReceived{ActionRef: closing, Attempt: 1, CommandID: "c-2", EventID: "e-1", EventType: "OrderRejected",
			Outcome: sagas.OutcomeFailure, Reason: "r", Settles: true, Data: json.RawMessage(`{"b":2}`), At: t0},
		sagas.StepSucceeded{Step: "a", StepIndex: 0, Attempt: 3, At: t0},
		sagas.StepFailed{Step: "a", StepIndex: 0, Attempt: 1, Reason: "insufficient_stock", At: t0},
		sagas.AttemptTimedOut{ActionRef: ref, Attempt: 1, RetryAt: t0.Add(time.Second), At: t0},
		sagas.StepTimedOut{Step: "a", StepIndex: 0, Attempts: 3, At: t0},
		sagas.CompensationStarted{Reason: "step_timeout", Cause: "step_timeout", At: t0},
		sagas.CompensationDone{ActionRef: closing, Attempt: 2, Note: "settled by OrderCancelled", At: t0},
		sagas.ExternalEventReceived{EventID: "e-2", EventType: "OrderCancelled", Settles: true, Gate: true, Data: json.RawMessage(`{}`), At: t0},
		sagas.SagaCompleted{At: t0},
		sagas.SagaCompensated{Reason: "destination_not_served", At: t0},
		sagas.SagaFailed{ActionRef: ref, Reason: "compensation_timeout", Detail: "no answer", At: t0},
		sagas.SagaRetried{ActionRef: ref, Attempt: 4, At: t0},
	)
	// Every registered type is in the list above.
	r := sagas.NewRegistry()
	for _, typ := range []string{sagas.TypeSagaStarted, sagas.TypeCommandIssued, sagas.TypeReplyReceived, sagas.TypeStepSucceeded,
		sagas.TypeStepFailed, sagas.TypeAttemptTimedOut, sagas.TypeStepTimedOut, sagas.TypeCompensationStarted,
		sagas.TypeCompensationDone, sagas.TypeExternalEventReceived, sagas.TypeSagaCompleted, sagas.TypeSagaCompensated,
		sagas.TypeSagaFailed, sagas.TypeSagaRetried} {
		if _, err := r.Decode(domain.Envelope{Type: typ, SchemaVersion: 1, Data: json.RawMessage(`{}`)}); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

// TestCommandIssuedWireShape pins the fields the relay and the receiving
// services read from a CommandIssued event.
func TestCommandIssuedWireShape(t *testing.T) {
	s := startFulfillment(t)
	_, _, data, err := sagas.NewRegistry().Encode(s.Pending())
	if err != nil {
		t.Fatal(err)
	}
	var wire map[string]any
	if err := json.Unmarshal(data, &wire); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"context": "inventory", "name": "reserve_stock", "version": float64(1),
		"command_id": sagas.CommandID(sagaID, sagas.StepReserveInventory, 1, false),
		"saga_id":    sagaID, "step": "reserve_inventory", "step_index": float64(0), "attempt": float64(1), "compensation": false,
		"deadline": t0.Add(5 * time.Second).Format(time.RFC3339), "at": t0.Format(time.RFC3339),
		"payload": map[string]any{"order_id": orderID, "lines": []any{
			map[string]any{"sku": "SKU-1", "quantity": float64(2)}, map[string]any{"sku": "SKU-2", "quantity": float64(1)},
		}},
	}
	if !reflect.DeepEqual(wire, want) {
		t.Errorf("CommandIssued data:\n got %v\nwant %v", wire, want)
	}
}

// TestViewShape checks the view against API.md's GET /api/sagas/{id}.
func TestViewShape(t *testing.T) {
	s := startFulfillment(t)
	sagatest.Seq(reserved, sagatest.Advance(1500*time.Millisecond), refused)(s)
	raw, err := json.Marshal(s.State.View())
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(v)), []string{"current_step", "definition_version", "ended_at", "history",
		"order_id", "saga_id", "started_at", "status", "steps", "type"}; !slices.Equal(got, want) {
		t.Errorf("view keys = %q, want %q", got, want)
	}
	wantFields := map[string]any{
		"saga_id": sagaID, "type": "order_fulfillment", "definition_version": float64(1), "order_id": orderID,
		"status": "compensating", "current_step": "reserve_inventory", "started_at": "2025-03-04T05:06:07Z", "ended_at": "",
	}
	for k, want := range wantFields {
		if v[k] != want {
			t.Errorf("%s = %#v, want %#v", k, v[k], want)
		}
	}
	steps := v["steps"].([]any)
	if len(steps) != 3 {
		t.Fatalf("%d steps, want 3", len(steps))
	}
	schedule := steps[1].(map[string]any)
	for _, k := range []string{"name", "status", "attempts", "started_at", "ended_at", "error"} {
		if _, ok := schedule[k]; !ok {
			t.Errorf("step has no %s: %v", k, schedule)
		}
	}
	if schedule["status"] != "failed" || schedule["error"] != "destination_not_served" || schedule["attempts"] != float64(1) ||
		schedule["started_at"] != "2025-03-04T05:06:07Z" || schedule["ended_at"] != "2025-03-04T05:06:08.5Z" || schedule["duration_ms"] != float64(1500) {
		t.Errorf("schedule step = %v", schedule)
	}
	if confirm := steps[2].(map[string]any); confirm["status"] != "skipped" || confirm["started_at"] != "" {
		t.Errorf("confirm step = %v", confirm)
	}
	history := v["history"].([]any)
	var events []string
	for _, h := range history {
		e := h.(map[string]any)
		if _, ok := e["detail"].(map[string]any); !ok || e["at"] == "" {
			t.Errorf("history entry %v", e)
		}
		events = append(events, e["event"].(string))
	}
	want := []string{"SagaStarted", "CommandIssued", "StockReservationAccepted", "StepSucceeded", "CommandIssued",
		"ShipmentRefused", "StepFailed", "CompensationStarted", "CommandIssued"}
	if !slices.Equal(events, want) {
		t.Errorf("history events = %q, want %q", events, want)
	}
	refusal := history[5].(map[string]any)["detail"].(map[string]any)
	if refusal["from"] != "shipping" || refusal["outcome"] != "failure" || refusal["step"] != "schedule_shipment" {
		t.Errorf("refusal detail = %v", refusal)
	}
	if sum, _ := json.Marshal(s.State.Summarize()); strings.Contains(string(sum), `"history"`) {
		t.Errorf("the summary has a history: %s", sum)
	}
}
