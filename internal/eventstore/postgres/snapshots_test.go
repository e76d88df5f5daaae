package postgres_test

import (
	"context"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// TestSnapshots checks the rules of the snapshot table: a save keeps the
// later version of a schema, replaces older schemas and leaves newer ones
// alone; a load sees its schema only.
func TestSnapshots(t *testing.T) {
	type save struct {
		version int64
		schema  int
		data    string
	}
	type load struct {
		schema  int
		version int64
		data    string
	}
	tests := []struct {
		name  string
		saves []save
		loads []load
	}{
		{"none", nil, []load{{1, 0, ""}}},
		{"one", []save{{10, 1, `{"a": 1}`}}, []load{{1, 10, `{"a": 1}`}, {2, 0, ""}}},
		{"later replaces earlier", []save{{10, 1, `{"a": 1}`}, {20, 1, `{"a": 2}`}}, []load{{1, 20, `{"a": 2}`}}},
		{"earlier does not replace later", []save{{20, 1, `{"a": 2}`}, {10, 1, `{"a": 1}`}}, []load{{1, 20, `{"a": 2}`}}},
		{"newer schema replaces older", []save{{10, 1, `{"a": 1}`}, {5, 2, `{"b": 1}`}}, []load{{1, 0, ""}, {2, 5, `{"b": 1}`}}},
		{"older schema leaves newer", []save{{5, 2, `{"b": 1}`}, {10, 1, `{"a": 1}`}}, []load{{1, 10, `{"a": 1}`}, {2, 5, `{"b": 1}`}}},
	}
	s, _ := newStore(t, postgres.Config{})
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := "stock-" + tc.name
			for _, sv := range tc.saves {
				if err := s.SaveSnapshot(ctx, stream, sv.version, sv.schema, []byte(sv.data)); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range tc.loads {
				v, data, err := s.LoadSnapshot(ctx, stream, l.schema)
				if err != nil || v != l.version || string(data) != l.data {
					t.Errorf("load schema %d = %d %q %v, want %d %q", l.schema, v, data, err, l.version, l.data)
				}
			}
		})
	}
}

// TestStoredEventIDs: the ids found are those stored in the stream up to
// the version asked.
func TestStoredEventIDs(t *testing.T) {
	s, _ := newStore(t, postgres.Config{})
	ctx := context.Background()
	ids := []string{"6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e01", "6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e02", "6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e03"}
	for i, id := range ids {
		stream := "s"
		if i == 2 {
			stream = "other"
		}
		e := domain.Envelope{ID: id, Type: "E", Data: []byte(`{}`)}
		if _, err := s.Append(ctx, stream, domain.AnyVersion, []domain.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		upTo int64
		want []string
	}{
		{0, nil},
		{1, ids[:1]},
		{2, ids[:2]},
	}
	for _, tc := range tests {
		got, err := s.StoredEventIDs(ctx, "s", append(slices.Clone(ids), "6f1c1a52-8d3e-4b43-9a43-2f0d9a0c1eff"), tc.upTo)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("up to %d: %v %v, want %v", tc.upTo, got, err, tc.want)
		}
	}
}
