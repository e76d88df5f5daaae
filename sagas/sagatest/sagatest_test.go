package sagatest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
)

// recorder is a testing.TB that records failures; Fatalf ends the
// goroutine it is called on, as testing's does.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// run runs f on its own goroutine (so that Fatalf can end it) and returns
// the failures recorded.
func run(t *testing.T, f func(tb testing.TB)) []string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.errs
}

const sagaID = "5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func def() *sagas.Definition {
	return &sagas.Definition{Name: "probe", Version: 1, Steps: []sagas.Step{{
		Name:    "only",
		Command: sagas.Command{Context: "probes", Name: "do", Version: 1, Payload: func(sagas.Data) (any, error) { return struct{}{}, nil }},
		Success: []string{"Done"}, Timeout: time.Second, Retry: sagas.RetryPolicy{MaxAttempts: 1},
	}}}
}

func TestHarnessCatchesFaults(t *testing.T) {
	tests := []struct {
		name string
		f    func(tb testing.TB)
		want string
	}{
		{"a decision that changes its state", func(tb testing.TB) {
			s := sagatest.Start(tb, def(), sagaID, map[string]any{}, t0)
			s.Decide(func(st *sagas.State) ([]any, error) {
				st.Apply(sagas.SagaCompleted{At: t0})
				return nil, nil
			})
		}, "changed the state"},
		{"a decision that fails", func(tb testing.TB) {
			s := sagatest.Start(tb, def(), sagaID, map[string]any{}, t0)
			s.Decide(func(*sagas.State) ([]any, error) { return nil, fmt.Errorf("boom") })
		}, "decision failed: boom"},
		{"an event the registry does not know", func(tb testing.TB) {
			s := sagatest.Start(tb, def(), sagaID, map[string]any{}, t0)
			s.Decide(func(*sagas.State) ([]any, error) { return []any{struct{ X int }{1}}, nil })
		}, "not a registered saga event"},
		{"a deadline the saga does not have", func(tb testing.TB) {
			s := sagatest.Start(tb, def(), sagaID, map[string]any{}, t0)
			sagatest.Reply("Done", nil)(s)
			sagatest.Expire()(s)
		}, "has no deadline"},
		{"a start that is refused", func(tb testing.TB) {
			sagatest.Start(tb, def(), "not-a-uuid", map[string]any{}, t0)
		}, "start:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := run(t, tt.f)
			if len(errs) != 1 || !strings.Contains(errs[0], tt.want) {
				t.Errorf("failures = %q, want one containing %q", errs, tt.want)
			}
		})
	}
	if errs := run(t, func(tb testing.TB) {
		s := sagatest.Start(tb, def(), sagaID, map[string]any{}, t0)
		sagatest.Reply("Done", nil)(s)
	}); len(errs) != 0 {
		t.Errorf("a correct run failed: %q", errs)
	}
}

func TestDescribe(t *testing.T) {
	ref := sagas.ActionRef{Step: "a", StepIndex: 0}
	undo := sagas.ActionRef{Step: "a", StepIndex: 0, Compensation: true}
	closing := sagas.ActionRef{Step: "close_it", StepIndex: -1, Compensation: true, Closing: true}
	events := []any{
		sagas.SagaStarted{Definition: "d", DefinitionVersion: 2},
		sagas.CommandIssued{Context: "c", Name: "n", ActionRef: ref, Attempt: 1},
		sagas.CommandIssued{Context: "c", Name: "u", ActionRef: undo, Attempt: 2},
		sagas.CommandIssued{Context: "c", Name: "x", ActionRef: closing, Attempt: 1},
		sagas.ReplyReceived{EventType: "T", Outcome: "success"},
		sagas.ReplyReceived{EventType: "T", Outcome: "failure", Reason: "r"},
		sagas.StepSucceeded{Step: "a"},
		sagas.StepFailed{Step: "a", Reason: "r"},
		sagas.AttemptTimedOut{ActionRef: ref, Attempt: 3},
		sagas.StepTimedOut{Step: "a"},
		sagas.CompensationStarted{Reason: "r"},
		sagas.CompensationDone{ActionRef: undo},
		sagas.ExternalEventReceived{EventType: "E"},
		sagas.SagaCompleted{},
		sagas.SagaCompensated{Reason: "r"},
		sagas.SagaFailed{ActionRef: undo, Reason: "r"},
		sagas.SagaRetried{ActionRef: undo, Attempt: 4},
	}
	want := `SagaStarted d v2
CommandIssued c.n #1
CommandIssued undo c.u #2
CommandIssued close c.x #1
ReplyReceived T success
ReplyReceived T failure r
StepSucceeded a
StepFailed a r
AttemptTimedOut a #3
StepTimedOut a
CompensationStarted r
CompensationDone a
ExternalEventReceived E
SagaCompleted
SagaCompensated r
SagaFailed a r
SagaRetried a #4`
	if got := sagatest.Describe(events...); got != want {
		t.Errorf("Describe:\n%s\nwant:\n%s", got, want)
	}
	if got := strings.Join(sagatest.Commands(events...), ","); got != "c.n,undo c.u,close c.x" {
		t.Errorf("Commands = %s", got)
	}
}
