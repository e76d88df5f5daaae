package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/sagas"
)

// coordinate is the coordinator's consumer: it decides on one delivered
// event the way services/internal/coordinator does (an OrderPlaced starts
// the saga; any other event goes to the saga its correlation id names) and
// reports whether the delivery is acknowledged. The decision is appended
// before it is acknowledged; under bugAckBeforeAppend it is acknowledged
// first.
func (w *world) coordinate(e domain.Envelope, n int) (acked bool) {
	crashAt := w.chance(pCrashPoint)
	var decide func(def *sagas.Definition, st *sagas.State) ([]any, error)
	var sagaID string
	if defs := w.defs.StartedBy(e.Type); len(defs) > 0 {
		def := defs[0]
		id, err := def.Trigger.SagaID(e.Data)
		if err != nil {
			w.violate("coordinator: %s %s: %v", e.Type, e.ID, err)
			return true
		}
		sagaID = strings.ToLower(id)
		decide = func(_ *sagas.Definition, st *sagas.State) ([]any, error) {
			if st.Started() {
				return nil, nil
			}
			return sagas.Start(def, sagaID, e.Data, w.now)
		}
	} else {
		sagaID = strings.ToLower(e.Metadata.CorrelationID)
		if !domain.ValidUUID(sagaID) {
			return true // names no saga
		}
		in := sagas.IncomingFrom(e)
		decide = func(def *sagas.Definition, st *sagas.State) ([]any, error) {
			if !st.Started() {
				return nil, fmt.Errorf("%s names saga %s: %w", e.Type, sagaID, sagas.ErrNotStarted)
			}
			return sagas.OnEvent(def, st, in, w.now)
		}
	}
	if w.opts.bug == bugAckBeforeAppend && crashAt {
		// The planted defect: the delivery was acknowledged before the
		// decision was recorded, and the process dies in between.
		w.crash(pCoordinator, "after acknowledging "+e.Type+" before appending")
		return true
	}
	err := w.decide(sagaID, decide)
	switch {
	case errors.Is(err, sagas.ErrNotStarted) && !w.outside[e.Type]:
		// A reply names a saga that exists before its command does:
		// without one the event is no saga's (a restock, say).
		return true
	case errors.Is(err, sagas.ErrNotStarted):
		// An outside event may overtake the one that starts its saga:
		// delivered again later, a bounded number of times.
		return n >= notStartedDeliveries
	case err != nil:
		w.violate("coordinator: %s %s for saga %s: %v", e.Type, e.ID, sagaID, err)
		return true
	}
	if crashAt {
		w.crash(pCoordinator, "after appending, before acknowledging "+e.Type)
		return false
	}
	return true
}

// decide is the append-then-act discipline of the coordinator: take the
// saga's state (kept in memory, else folded from its stream), decide,
// append the events at the stream's version, and only then apply them,
// keep the deadline row and let the relay publish the commands.
func (w *world) decide(sagaID string, fn func(*sagas.Definition, *sagas.State) ([]any, error)) error {
	p := w.parts[pCoordinator]
	e, ok := p.cache[sagaID]
	if !ok {
		var err error
		if e, err = w.loadSaga(sagaID); err != nil {
			return err
		}
	}
	var def *sagas.Definition
	if e.st.Started() {
		var err error
		if def, err = w.defs.For(e.st); err != nil {
			return err
		}
	}
	evs, err := fn(def, e.st)
	if err != nil || len(evs) == 0 {
		return err
	}
	envs := make([]domain.Envelope, len(evs))
	decoded := make([]any, len(evs))
	for i, ev := range evs {
		name, sv, data, err := w.sreg.Encode(ev)
		if err != nil {
			return err
		}
		envs[i] = domain.Envelope{ID: w.newID(), Type: name, SchemaVersion: sv, Data: data,
			Metadata: domain.Metadata{CorrelationID: sagaID, CausationID: sagaID}}
		// What a reload would decode is what was built: the registry's
		// round trip has its own tests, and skipping it here keeps a
		// seed cheap.
		decoded[i] = ev
		w.decoded[envs[i].ID] = ev
	}
	if _, err := p.store.Append(w.ctx, sagas.Stream(sagaID), domain.ExactVersion(e.version), envs); err != nil {
		return fmt.Errorf("append to saga %s: %w", sagaID, err)
	}
	for _, d := range decoded {
		e.st.Apply(d)
		switch d.(type) {
		case sagas.AttemptTimedOut, sagas.StepTimedOut:
			w.res.Timeouts++
		case sagas.SagaFailed:
			w.res.Parked++
		case sagas.SagaRetried:
			w.res.Retried++
		}
	}
	e.version += int64(len(envs))
	p.cache[sagaID] = e
	if at, ok := e.st.Deadline(); ok {
		w.deadlines[sagaID] = at
		w.deadlineTimer(sagaID, at)
	} else {
		delete(w.deadlines, sagaID)
	}
	// What the metric of parked sagas tells the operator.
	w.failed[sagaID] = e.st.Status() == sagas.StatusFailed
	w.relaySoon(pCoordinator)
	return nil
}

// loadSaga folds a saga's stream.
func (w *world) loadSaga(sagaID string) (*sagaEntry, error) {
	evs, err := w.parts[pCoordinator].store.ReadStream(w.ctx, sagas.Stream(sagaID), 1, 0)
	if err != nil {
		return nil, err
	}
	e := &sagaEntry{st: &sagas.State{}}
	for _, ev := range evs {
		v, err := w.decodeSaga(ev)
		if err != nil {
			return nil, err
		}
		e.st.Apply(v)
		e.version = ev.Version
	}
	return e, nil
}

// decodeSaga decodes a stored saga event. Stored events never change, so
// each is decoded once per run and the value shared by every reader,
// restarted processes included: a fold after a crash still applies every
// event, it only skips the JSON.
func (w *world) decodeSaga(e domain.Envelope) (any, error) {
	if v, ok := w.decoded[e.ID]; ok {
		return v, nil
	}
	v, err := w.sreg.Decode(e)
	if err != nil {
		return nil, err
	}
	w.decoded[e.ID] = v
	return v, nil
}

// deadlineTimer fires the saga's deadline at at, if the coordinator that
// set it still runs (a restarted one sets its timers again from the
// durable table) and the deadline is still the saga's.
func (w *world) deadlineTimer(sagaID string, at time.Time) {
	p := w.parts[pCoordinator]
	life := p.life
	d := max(at.Sub(w.now), 0)
	w.at(d, "deadline of saga "+short(sagaID), func() {
		if !p.up || p.life != life {
			return
		}
		if cur, ok := w.deadlines[sagaID]; !ok || !cur.Equal(at) {
			return // stale
		}
		crashAt := w.chance(pCrashPoint)
		err := w.decide(sagaID, func(def *sagas.Definition, st *sagas.State) ([]any, error) {
			return sagas.OnDeadline(def, st, w.now)
		})
		if err != nil {
			w.violate("coordinator: deadline of saga %s: %v", sagaID, err)
			return
		}
		if crashAt {
			// The poller dies after the append; the row says when next.
			w.crash(pCoordinator, "after firing a deadline")
		}
	})
}

// operatorRetry retries every saga parked as failed, and reports whether
// there was one.
func (w *world) operatorRetry() bool {
	if !w.parts[pCoordinator].up {
		w.start(pCoordinator)
	}
	found := false
	for _, o := range w.orders {
		if w.failed[o.sagaID] {
			found = true
			if err := w.decide(o.sagaID, func(def *sagas.Definition, st *sagas.State) ([]any, error) {
				return sagas.Retry(def, st, w.now)
			}); err != nil {
				w.violate("operator: retry saga %s: %v", o.sagaID, err)
			}
		}
	}
	return found
}

// serve is a service's command consumer: it runs the command a
// CommandIssued event carries on the service's bus, as
// services/internal/cmdconsume does, and reports whether the delivery is
// acknowledged.
func (w *world) serve(to int, e domain.Envelope, n int) (acked bool) {
	p := w.parts[to]
	var c struct {
		Context   string          `json:"context"`
		Name      string          `json:"name"`
		Version   int             `json:"version"`
		CommandID string          `json:"command_id"`
		Payload   json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(e.Data, &c); err != nil {
		w.violate("%s: undecodable command %s: %v", participantNames[to], e.ID, err)
		return true
	}
	m := commands.Meta{CommandID: c.CommandID, CorrelationID: e.Metadata.CorrelationID, Now: w.now, Attempt: n}
	wire := commands.Wire{Context: c.Context, Name: c.Name, Version: c.Version, CommandID: c.CommandID, Payload: c.Payload}
	w.armMidCommand(p)
	_, err := p.bus.RunWire(w.ctx, m, wire)
	p.store.failAt = -1
	switch {
	case errors.Is(err, errCrashed):
		w.crash(to, "in the middle of "+c.Name)
		return false
	case errors.Is(err, commands.ErrUnknownCommand), errors.Is(err, commands.ErrUndecodable), errors.Is(err, domain.ErrInvalid):
		w.violate("%s: command %s %s parked: %v", participantNames[to], c.Name, c.CommandID, err)
		return true
	case err != nil:
		var r *domain.Refusal
		if errors.As(err, &r) {
			// A traveling command answers refusals with an event; a
			// refusal returned instead is a handler's bug.
			w.violate("%s: command %s %s refused without an answer: %v", participantNames[to], c.Name, c.CommandID, err)
			return true
		}
		return false // transient: delivered again
	}
	w.relaySoon(to)
	if w.chance(pCrashPoint) {
		w.crash(to, "after "+c.Name+", before acknowledging")
		return false
	}
	return true
}

// armMidCommand may make the next command die after a few of its appends.
func (w *world) armMidCommand(p *participant) {
	if w.chance(pMidCommand) {
		p.store.failAt = w.rng.IntN(3)
	}
}
