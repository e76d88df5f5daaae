// Package aggtest runs given/when/then tables against the aggregates of the
// domain packages: given past events, when a decision is taken, then it
// raises exactly these events or fails with this error. It is imported by
// tests only.
package aggtest

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/domain"
)

// Aggregate is the constraint on an aggregate's state: a pointer to S whose
// Apply records one past event.
type Aggregate[S any] interface {
	*S
	Apply(event any)
}

// Case is one row of a given/when/then table.
type Case[S any] struct {
	Name string
	// Given are the events the state is built from, oldest first.
	Given []any
	// When takes the decision under test.
	When func(state *S) ([]any, error)
	// Then are the events the decision must raise (none for a no-op).
	Then []any
	// WantErr, when set, is the error the decision must fail with
	// (matched with errors.Is).
	WantErr error
	// WantFields, when set, are the field paths the decision's
	// *domain.ValidationError must name, in order.
	WantFields []string
	// Check, when set, inspects the state after Given and Then are applied.
	Check func(t testing.TB, state *S)
}

// Run runs every case as a subtest.
func Run[S any, P Aggregate[S]](t *testing.T, cases []Case[S]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Helper()
			Check[S, P](t, c)
		})
	}
}

// Check runs one case. Besides the outcome it verifies that the decision
// left the state untouched: decisions only read state, Apply alone changes it.
func Check[S any, P Aggregate[S]](t testing.TB, c Case[S]) {
	t.Helper()
	state := given[S, P](c.Given)
	got, err := c.When(state)
	if !reflect.DeepEqual(state, given[S, P](c.Given)) {
		t.Errorf("the decision changed the state it was given")
	}
	wantErr := c.WantErr
	if wantErr == nil && c.WantFields != nil {
		wantErr = domain.ErrInvalid
	}
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Errorf("error = %v, want %v", err, wantErr)
		}
		if len(got) != 0 {
			t.Errorf("a failed decision raised events: %#v", got)
		}
		if c.WantFields != nil {
			var ve *domain.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("error %v is not a *domain.ValidationError", err)
				return
			}
			if fields := fieldNames(ve); !slices.Equal(fields, c.WantFields) {
				t.Errorf("invalid fields = %q, want %q (%v)", fields, c.WantFields, ve.Fields)
			}
		}
		return
	}
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return
	}
	if len(got) != len(c.Then) || (len(got) > 0 && !reflect.DeepEqual(got, c.Then)) {
		t.Errorf("raised events:\n got %#v\nwant %#v", got, c.Then)
		return
	}
	if c.Check != nil {
		for _, e := range got {
			P(state).Apply(e)
		}
		c.Check(t, state)
	}
}

// RoundTrip checks that a registry filled by register encodes each event
// and decodes it back to an equal value, so that no field is lost on the
// way to the store.
func RoundTrip(t testing.TB, register func(*domain.Registry) error, events ...any) {
	t.Helper()
	r := domain.NewRegistry()
	if err := register(r); err != nil {
		t.Errorf("register: %v", err)
		return
	}
	for _, e := range events {
		name, version, data, err := r.Encode(e)
		if err != nil {
			t.Errorf("%T: %v", e, err)
			continue
		}
		got, err := r.Decode(domain.Envelope{Type: name, SchemaVersion: version, Data: data})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s: decoded %#v, want %#v", name, got, e)
		}
	}
}

// State builds an aggregate's state from events, oldest first.
func State[S any, P Aggregate[S]](events ...any) *S {
	return given[S, P](events)
}

func given[S any, P Aggregate[S]](events []any) *S {
	s := new(S)
	for _, e := range events {
		P(s).Apply(e)
	}
	return s
}

func fieldNames(ve *domain.ValidationError) []string {
	names := make([]string, len(ve.Fields))
	for i, f := range ve.Fields {
		names[i] = f.Field
	}
	return names
}
