package aggtest_test

import (
	"fmt"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/aggtest"
)

// counter is a toy aggregate: Added events raise its total.
type counter struct{ total int }

type added struct{ n int }

func (c *counter) Apply(e any) {
	if a, ok := e.(added); ok {
		c.total += a.n
	}
}

func (c *counter) add(n int) ([]any, error) {
	if n <= 0 {
		v := &domain.ValidationError{}
		v.Add("n", "must be positive")
		return nil, v
	}
	if c.total+n > 10 {
		return nil, fmt.Errorf("add %d: %w", n, domain.ErrIllegalState)
	}
	return []any{added{n}}, nil
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheck(t *testing.T) {
	add := func(n int) func(*counter) ([]any, error) { return func(c *counter) ([]any, error) { return c.add(n) } }
	tests := []struct {
		name     string
		c        aggtest.Case[counter]
		wantFail bool
	}{
		{"raises the expected event", aggtest.Case[counter]{Given: []any{added{2}}, When: add(3), Then: []any{added{3}}}, false},
		{"wrong event", aggtest.Case[counter]{When: add(3), Then: []any{added{4}}}, true},
		{"unexpected event for a no-op", aggtest.Case[counter]{When: add(3)}, true},
		{"missing event", aggtest.Case[counter]{When: func(*counter) ([]any, error) { return nil, nil }, Then: []any{added{1}}}, true},
		{"expected error", aggtest.Case[counter]{Given: []any{added{9}}, When: add(2), WantErr: domain.ErrIllegalState}, false},
		{"other error", aggtest.Case[counter]{Given: []any{added{9}}, When: add(2), WantErr: domain.ErrNotFound}, true},
		{"unexpected error", aggtest.Case[counter]{Given: []any{added{9}}, When: add(2), Then: []any{added{2}}}, true},
		{"error expected but none", aggtest.Case[counter]{When: add(2), WantErr: domain.ErrIllegalState}, true},
		{"fields match", aggtest.Case[counter]{When: add(0), WantFields: []string{"n"}}, false},
		{"fields differ", aggtest.Case[counter]{When: add(0), WantFields: []string{"m"}}, true},
		{"fields wanted from a non-validation error", aggtest.Case[counter]{Given: []any{added{9}}, When: add(2), WantErr: domain.ErrIllegalState, WantFields: []string{"n"}}, true},
		{"events raised along with an error", aggtest.Case[counter]{When: func(*counter) ([]any, error) {
			return []any{added{1}}, domain.ErrIllegalState
		}, WantErr: domain.ErrIllegalState}, true},
		{"decision changes the state", aggtest.Case[counter]{When: func(c *counter) ([]any, error) {
			c.total++
			return nil, nil
		}}, true},
		{"check sees the applied events", aggtest.Case[counter]{Given: []any{added{2}}, When: add(3), Then: []any{added{3}},
			Check: func(t testing.TB, c *counter) {
				if c.total != 5 {
					t.Errorf("total = %d, want 5", c.total)
				}
			}}, false},
		{"check fails", aggtest.Case[counter]{When: add(3), Then: []any{added{3}},
			Check: func(t testing.TB, c *counter) { t.Errorf("failed on purpose") }}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			aggtest.Check(r, tt.c)
			if failed := len(r.errs) > 0; failed != tt.wantFail {
				t.Errorf("failed = %v (%q), want %v", failed, r.errs, tt.wantFail)
			}
		})
	}
}

func TestState(t *testing.T) {
	if c := aggtest.State[counter](added{1}, added{4}); c.total != 5 {
		t.Errorf("total = %d, want 5", c.total)
	}
	if c := aggtest.State[counter](); c.total != 0 {
		t.Errorf("empty total = %d, want 0", c.total)
	}
}

// renamed is an event whose fields all reach JSON.
type renamed struct {
	Name string `json:"name"`
}

func TestRoundTrip(t *testing.T) {
	registerAll := func(r *domain.Registry) error {
		if err := r.Register("Renamed", 1, renamed{}); err != nil {
			return err
		}
		return r.Register("Added", 1, added{})
	}
	tests := []struct {
		name     string
		register func(*domain.Registry) error
		events   []any
		wantFail bool
	}{
		{"fields survive", registerAll, []any{renamed{Name: "x"}}, false},
		{"unexported field is lost", registerAll, []any{renamed{Name: "x"}, added{3}}, true},
		{"unregistered event", registerAll, []any{struct{ A int }{1}}, true},
		{"register fails", func(*domain.Registry) error { return domain.ErrInvalid }, []any{renamed{}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			aggtest.RoundTrip(r, tt.register, tt.events...)
			if failed := len(r.errs) > 0; failed != tt.wantFail {
				t.Errorf("failed = %v (%q), want %v", failed, r.errs, tt.wantFail)
			}
		})
	}
}
