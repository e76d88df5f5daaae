package eventstoretest

import (
	"slices"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// testFind checks eventstore.Finder, for the adapters that offer it: the
// events of one correlation id come back from every stream, in global
// order, whatever the case of the id asked for; an event named by id comes
// back whatever its correlation; Max bounds the answer; other
// correlations are left out.
func testFind(t *testing.T, s eventstore.Store, p string) {
	f, ok := s.(eventstore.Finder)
	if !ok {
		t.Skipf("%T does not implement eventstore.Finder (optional)", s)
	}
	corr, other := newID(), newID()
	tag := func(evs []domain.Envelope, c string) []domain.Envelope {
		for i := range evs {
			evs[i].Metadata.CorrelationID = c
		}
		return evs
	}
	var want []string
	a := tag(events(2, "A"), corr)
	mustAppend(t, s, p+"a", domain.NoStream, a)
	noise := tag(events(3, "N"), other)
	mustAppend(t, s, p+"n", domain.NoStream, noise)
	b := tag(events(2, "B"), corr)
	mustAppend(t, s, p+"b", domain.NoStream, b)
	uncorrelated := tag(events(1, "U"), "")
	mustAppend(t, s, p+"u", domain.NoStream, uncorrelated)
	for _, e := range append(slices.Clone(a), b...) {
		want = append(want, e.ID)
	}

	ids := func(evs []domain.Envelope) []string {
		out := make([]string, len(evs))
		for i, e := range evs {
			out[i] = strings.ToLower(e.ID)
		}
		return out
	}
	find := func(q eventstore.EventQuery) []domain.Envelope {
		t.Helper()
		evs, err := f.FindEvents(ctxT(t), q)
		if err != nil {
			t.Fatalf("FindEvents(%+v): %v", q, err)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Position <= evs[i-1].Position {
				t.Fatalf("FindEvents(%+v): positions %d then %d, want global order", q, evs[i-1].Position, evs[i].Position)
			}
		}
		return evs
	}
	tests := []struct {
		name string
		q    eventstore.EventQuery
		want []string
	}{
		{"by correlation", eventstore.EventQuery{CorrelationID: corr}, want},
		{"by correlation, upper case", eventstore.EventQuery{CorrelationID: strings.ToUpper(corr)}, want},
		{"bounded", eventstore.EventQuery{CorrelationID: corr, Max: 3}, want[:3]},
		{"by id too", eventstore.EventQuery{CorrelationID: corr, EventIDs: []string{uncorrelated[0].ID, "not-a-uuid"}},
			append(slices.Clone(want), uncorrelated[0].ID)},
		{"by id alone", eventstore.EventQuery{EventIDs: []string{strings.ToUpper(noise[1].ID), newID()}}, []string{noise[1].ID}},
		{"unknown correlation", eventstore.EventQuery{CorrelationID: newID()}, nil},
		{"empty query", eventstore.EventQuery{}, nil},
	}
	for _, tt := range tests {
		evs := find(tt.q)
		got := ids(evs)
		if !slices.Equal(got, ids(eventsWithIDs(tt.want))) {
			t.Errorf("%s: found %v, want %v", tt.name, got, tt.want)
		}
	}
	// Everything stored comes back: stream, version, type, metadata.
	evs := find(eventstore.EventQuery{CorrelationID: corr, Max: 1})
	if len(evs) != 1 || evs[0].Stream != p+"a" || evs[0].Version != 1 || evs[0].Type != "A" ||
		evs[0].Metadata.CausationID != "cause" || evs[0].Metadata.RequestID != "req" || evs[0].RecordedAt.IsZero() {
		t.Errorf("found %+v, want the first event of %sa as stored", evs, p)
	}
}

// eventsWithIDs wraps ids as envelopes, for comparing id lists.
func eventsWithIDs(ids []string) []domain.Envelope {
	out := make([]domain.Envelope, len(ids))
	for i, id := range ids {
		out[i].ID = id
	}
	return out
}
