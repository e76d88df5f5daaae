package sagaview

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/sagas"
)

func TestFilterValidate(t *testing.T) {
	tests := []struct {
		name   string
		filter Filter
		fields []string
	}{
		{"none", Filter{}, nil},
		{"every status", Filter{Status: "failed"}, nil},
		{"order in upper case", Filter{OrderID: "7C9E6679-7425-40DE-944B-E07FC1F90AE7"}, nil},
		{"unknown status", Filter{Status: "done"}, []string{"status"}},
		{"order not a uuid", Filter{OrderID: "42"}, []string{"order_id"}},
		{"both", Filter{Status: "Failed", OrderID: "x"}, []string{"status", "order_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.filter.Validate()
			var v *domain.ValidationError
			if len(tt.fields) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.As(err, &v) {
				t.Fatalf("err %v, want a *domain.ValidationError", err)
			}
			var got []string
			for _, f := range v.Fields {
				got = append(got, f.Field)
			}
			if len(got) != len(tt.fields) {
				t.Fatalf("fields %v, want %v", got, tt.fields)
			}
			for i := range got {
				if got[i] != tt.fields[i] {
					t.Fatalf("fields %v, want %v", got, tt.fields)
				}
			}
		})
	}
}

// TestStateCache: states are taken out while in use and the least
// recently used one is evicted when full; a state is kept per table
// version, which a rebuild writes beside the live one.
func TestStateCache(t *testing.T) {
	c := newStateCache(2)
	a, b, d := cacheKey{1, uuid.New()}, cacheKey{1, uuid.New()}, cacheKey{1, uuid.New()}
	sa, sb, sd := &sagas.State{}, &sagas.State{}, &sagas.State{}
	c.put(a, sa, 3)
	c.put(b, sb, 5)
	if st, v, ok := c.take(a); !ok || st != sa || v != 3 {
		t.Fatalf("take a: %v %d %v", st, v, ok)
	}
	if _, _, ok := c.take(a); ok {
		t.Fatal("a taken twice")
	}
	c.put(a, sa, 4) // a is now the most recent
	c.put(d, sd, 1) // evicts b
	if _, _, ok := c.take(b); ok {
		t.Error("b not evicted")
	}
	if st, v, ok := c.take(a); !ok || st != sa || v != 4 {
		t.Errorf("take a: %v %d %v", st, v, ok)
	}
	if _, _, ok := c.take(cacheKey{2, d.id}); ok {
		t.Error("a state of another table version")
	}
	if st, _, ok := c.take(d); !ok || st != sd {
		t.Error("d lost")
	}
}

// TestSchema: one table, keyed by saga id, and the indexes the list and
// the deadline poller read by.
func TestSchema(t *testing.T) {
	p := New(nil, 0)
	if p.Name() != Name || len(p.Tables()) != 1 {
		t.Fatalf("name %s, tables %v", p.Name(), p.Tables())
	}
	s := p.Schema(projections.Tables{Version: 3})
	if len(s.Tables) != 1 || len(s.Indexes) != 4 {
		t.Fatalf("schema %+v", s)
	}
	if got := columns.Names(); got[0] != "saga_id" || got[len(got)-1] != "version" {
		t.Errorf("columns %v", got)
	}
}
