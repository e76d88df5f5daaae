package postgres_test

import (
	"context"
	"fmt"
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

// TestLoadSnapshotCovering: the snapshot comes with the asked ids stored
// in its stream up to its version, and with nothing when there is none.
func TestLoadSnapshotCovering(t *testing.T) {
	s, _ := newStore(t, postgres.Config{})
	ctx := context.Background()
	ids := []string{"7f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e01", "7f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e02", "7f1c1a52-8d3e-4b43-9a43-2f0d9a0c1e03"}
	for i, id := range ids {
		stream := "covered"
		if i == 2 {
			stream = "other"
		}
		e := domain.Envelope{ID: id, Type: "E", Data: []byte(`{}`)}
		if _, err := s.Append(ctx, stream, domain.AnyVersion, []domain.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	ask := append(slices.Clone(ids), "7f1c1a52-8d3e-4b43-9a43-2f0d9a0c1eff")
	// In order: each save replaces the one before.
	tests := []struct {
		name        string
		save        int64 // version of the snapshot saved first, 0 for none
		schema      int   // schema loaded
		ask         []string
		wantVersion int64
		wantFound   []string
	}{
		{"none yet", 0, 1, ask, 0, nil},
		{"at 1", 1, 1, ask, 1, ids[:1]},
		{"at 2", 2, 1, ask, 2, ids[:2]},
		{"nothing asked", 0, 1, nil, 2, nil},
		{"other schema", 0, 2, ask, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := fmt.Sprintf("state at %d\n\x00\xff", tc.wantVersion)
			if tc.save > 0 {
				if err := s.SaveSnapshot(ctx, "covered", tc.save, 1, []byte(data)); err != nil {
					t.Fatal(err)
				}
			}
			v, got, found, err := s.LoadSnapshotCovering(ctx, "covered", tc.schema, tc.ask)
			slices.Sort(found)
			if err != nil || v != tc.wantVersion || !slices.Equal(found, tc.wantFound) {
				t.Fatalf("load = %d %v %v, want %d %v", v, found, err, tc.wantVersion, tc.wantFound)
			}
			if v > 0 && string(got) != data {
				t.Errorf("data = %q, want %q as saved", got, data)
			}
		})
	}
}

// TestSnapshotColumn: the data column is bytea stored out of line without
// compression (migration 0004), also when the migrations run again.
func TestSnapshotColumn(t *testing.T) {
	_, pool := newStore(t, postgres.Config{})
	ctx := context.Background()
	for run := range 2 {
		if run > 0 {
			if err := postgres.Migrate(ctx, pool); err != nil {
				t.Fatalf("migrating again: %v", err)
			}
		}
		var typ, storage string
		err := pool.QueryRow(ctx, `SELECT atttypid::regtype::text, attstorage::text FROM pg_attribute
			WHERE attrelid = 'es_snapshots'::regclass AND attname = 'data'`).Scan(&typ, &storage)
		if err != nil || typ != "bytea" || storage != "e" {
			t.Errorf("run %d: es_snapshots.data is %q with storage %q (%v), want bytea, e", run, typ, storage, err)
		}
	}
}

// TestSnapshotsFromJSONB: a table from before migration 0004, with jsonb
// data, is converted in place; its JSON snapshots stay loadable as text.
func TestSnapshotsFromJSONB(t *testing.T) {
	s, pool := newStore(t, postgres.Config{})
	ctx := context.Background()
	for _, q := range []string{
		"DROP TABLE es_snapshots",
		`CREATE TABLE es_snapshots (stream text NOT NULL, schema integer NOT NULL, version bigint NOT NULL,
			data jsonb NOT NULL, taken_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, schema))`,
		`INSERT INTO es_snapshots (stream, schema, version, data) VALUES ('order-1', 1, 7, '{"id":"1","total_cents":5}')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	v, data, err := s.LoadSnapshot(ctx, "order-1", 1)
	if want := `{"id": "1", "total_cents": 5}`; err != nil || v != 7 || string(data) != want {
		t.Errorf("after the migration: %d %q %v, want 7 %q", v, data, err, want)
	}
}
