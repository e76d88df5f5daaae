package sagas

import (
	"time"
)

// HistoryEntry is one line of a saga's history: one saga event, named by
// its type, or by the type of the event it received (a reply such as
// StockReservationAccepted, or an outside event such as OrderCancelled).
// Detail holds the event's particulars: the step, the command and its id,
// the attempt, the context that answered ("from"), the reason, the data.
type HistoryEntry struct {
	At     time.Time      `json:"at"`
	Event  string         `json:"event"`
	Detail map[string]any `json:"detail"`
}

// Summary is a saga as GET /api/sagas lists it (API.md, Sagas).
// Timestamps are RFC 3339 UTC, or "" while not reached.
type Summary struct {
	SagaID            string `json:"saga_id"`
	Type              string `json:"type"`
	DefinitionVersion int    `json:"definition_version"`
	OrderID           string `json:"order_id"`
	Status            Status `json:"status"`
	// CurrentStep is the step (or closing action) in progress, or the one
	// a failed saga is parked on; "" once the saga has ended.
	CurrentStep string     `json:"current_step"`
	Steps       []StepView `json:"steps"`
	StartedAt   string     `json:"started_at"`
	EndedAt     string     `json:"ended_at"`
}

// View is a saga as GET /api/sagas/{id} shows it: the summary and the full
// history, oldest first. The HTTP layer only marshals it.
type View struct {
	Summary
	History []HistoryEntry `json:"history"`
}

// StepView is one step of a saga's view. A step that waits for an event,
// and the steps after it, are listed once that event has come.
type StepView struct {
	Name   string     `json:"name"`
	Status StepStatus `json:"status"`
	// Attempts counts the forward attempts.
	Attempts  int    `json:"attempts"`
	StartedAt string `json:"started_at"`
	// EndedAt is when the step reached its present status: succeeded or
	// failed, or compensated.
	EndedAt string `json:"ended_at"`
	// DurationMS is EndedAt - StartedAt in milliseconds (0 while running).
	DurationMS int64 `json:"duration_ms"`
	// Error is the step's last failure, "" when none.
	Error string `json:"error"`
	// CompensationAttempts counts the attempts of the step's compensation.
	CompensationAttempts int `json:"compensation_attempts"`
}

// Summarize returns the summary of the saga (its view without history).
func (s *State) Summarize() Summary {
	sum := Summary{
		SagaID: s.id, Type: s.definition, DefinitionVersion: s.definitionVersion, OrderID: s.orderID,
		Status: s.status, Steps: make([]StepView, 0, len(s.steps)),
		StartedAt: timestamp(s.startedAt), EndedAt: timestamp(s.endedAt),
	}
	if ref, ok := s.waitingOn(); ok {
		sum.CurrentStep = ref.Step
	}
	waiting := false // behind a step whose event has not come
	for _, st := range s.steps {
		if st.after != "" && !s.gates[st.after] {
			waiting = true
		}
		if waiting && (st.status == StepStatusPending || st.status == StepStatusSkipped) {
			continue
		}
		v := StepView{
			Name: st.name, Status: st.status, Attempts: st.fwd.attempts,
			StartedAt: timestamp(st.started), EndedAt: timestamp(st.ended), Error: st.err,
			CompensationAttempts: st.comp.attempts,
		}
		if !st.started.IsZero() && !st.ended.IsZero() {
			v.DurationMS = st.ended.Sub(st.started).Milliseconds()
		}
		if st.status == StepStatusRunning || st.status == StepStatusCompensating {
			v.EndedAt, v.DurationMS = "", 0
		}
		sum.Steps = append(sum.Steps, v)
	}
	return sum
}

// View returns the saga as GET /api/sagas/{id} shows it.
func (s *State) View() View {
	h := make([]HistoryEntry, len(s.history))
	copy(h, s.history)
	return View{Summary: s.Summarize(), History: h}
}

func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
