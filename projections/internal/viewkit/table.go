// Package viewkit is the machinery the read models under projections share.
// Each of them keeps one row per stream of one kind: a batch of events is
// decoded and grouped by row, the rows it touches are loaded in one query,
// folded in memory and written back with one statement for the new rows and
// one for the changed ones; and its queries are a Get by key and a
// keyset-paginated List. What an event does to a row stays with each read
// model; what a row looks like is declared once, by the db tags of its row
// type, from which Columns derives the DDL, the writes and the reads.
package viewkit

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
)

// Spec is what a read model tells its Table: where its rows come from,
// what they hold and what an event does to a row. K is the row key, taken
// from a stream's name, and R a row, whose db tags declare the table's
// columns (see Columns); K is the Go type of R's key column.
type Spec[K comparable, R any] struct {
	// Name is the projection's name.
	Name string
	// Prefix selects the streams the table folds; the rest of a stream's
	// name is its row's key. Events of other streams are ignored.
	Prefix string
	// Register adds the event types of those streams to a registry.
	Register func(*domain.Registry) error
	// Columns is the table's column table, from R's tags.
	Columns *Columns[R]
	// Indexes returns the secondary indexes of the table in version t
	// (nil: none); the primary key comes with the table.
	Indexes func(t projections.Tables) []string
	// Key parses the part of a stream name after Prefix; an error makes the
	// event undecodable.
	Key func(id string) (K, error)
	// Create returns the row with key k as event e leaves it when it is
	// the row's first, or nil when e does not start a row: such an event
	// of a row not stored yet (its first event was parked) changes nothing.
	// It runs while decoding, which a rebuild does ahead of its writes. An
	// error should wrap projections.ErrUndecodable.
	Create func(k K, e domain.Envelope, payload any) (*R, error)
	// Fold applies event e, newer than r, to r in place, including moving
	// r's version to e's. r is never a row Create returned.
	Fold func(r *R, e domain.Envelope, payload any)
}

// Table folds the events of one kind of stream into one read-model table.
// It implements projections.Decoder and projections.Projection.
type Table[K comparable, R any] struct {
	spec Spec[K, R]
	cols *Columns[R]
	reg  *domain.Registry
	load string // the WHERE clause that loads rows by key
}

// New returns the table spec describes. It panics if spec.Register fails
// or the key column's type is not K: both are fixed when the program is
// built.
func New[K comparable, R any](spec Spec[K, R]) *Table[K, R] {
	reg := domain.NewRegistry()
	if err := spec.Register(reg); err != nil {
		panic(err)
	}
	c := spec.Columns
	if got, want := reflect.TypeFor[R]().Field(c.field[0]).Type, reflect.TypeFor[K](); got != want {
		panic(fmt.Sprintf("table %s: key column %s is %s, the stream key %s", c.table, c.bulk.Names[0], got, want))
	}
	key := pgx.Identifier{c.bulk.Names[0]}.Sanitize()
	return &Table[K, R]{spec: spec, cols: c, reg: reg, load: " WHERE " + key + " = ANY($1)"}
}

// Name implements projections.Projection.
func (t *Table[K, R]) Name() string { return t.spec.Name }

// Tables implements projections.Projection.
func (t *Table[K, R]) Tables() []string { return []string{t.cols.table} }

// Schema implements projections.Projection: the table as its columns
// declare it, and the spec's indexes.
func (t *Table[K, R]) Schema(v projections.Tables) projections.Schema {
	s := projections.Schema{Tables: []string{t.cols.CreateTable(v)}}
	if t.spec.Indexes != nil {
		s.Indexes = t.spec.Indexes(v)
	}
	return s
}

// Batch is a decoded batch: the changes per row, rows in the order their
// first event came.
type Batch[K comparable, R any] struct {
	Keys    []K
	changes map[K][]change[R]
}

type change[R any] struct {
	e       domain.Envelope
	payload any
	created *R // from Spec.Create
}

// Apply implements projections.Projection: it decodes the batch, loads
// the rows it touches in one query, folds in memory, then writes the new
// rows and the changed ones with one statement each.
func (t *Table[K, R]) Apply(ctx context.Context, tx pgx.Tx, v projections.Tables, events []domain.Envelope) error {
	b, err := t.decode(events)
	if err != nil {
		return err
	}
	return t.ApplyDecoded(ctx, tx, v, b)
}

// Decode implements projections.Decoder; it returns a *Batch[K, R].
func (t *Table[K, R]) Decode(events []domain.Envelope) (any, error) { return t.decode(events) }

func (t *Table[K, R]) decode(events []domain.Envelope) (*Batch[K, R], error) {
	b := &Batch[K, R]{changes: make(map[K][]change[R])}
	for _, e := range events {
		id, ok := strings.CutPrefix(e.Stream, t.spec.Prefix)
		if !ok {
			continue
		}
		payload, err := t.reg.Decode(e)
		if err != nil {
			return nil, projections.Undecodable(e, err)
		}
		k, err := t.spec.Key(id)
		if err != nil {
			return nil, projections.Undecodable(e, fmt.Errorf("stream %s: %w", e.Stream, err))
		}
		created, err := t.spec.Create(k, e, payload)
		if err != nil {
			return nil, err
		}
		if _, ok := b.changes[k]; !ok {
			b.Keys = append(b.Keys, k)
		}
		b.changes[k] = append(b.changes[k], change[R]{e: e, payload: payload, created: created})
	}
	return b, nil
}

// ApplyDecoded implements projections.Decoder.
func (t *Table[K, R]) ApplyDecoded(ctx context.Context, tx pgx.Tx, v projections.Tables, decoded any) error {
	b := decoded.(*Batch[K, R])
	if len(b.Keys) == 0 {
		return nil
	}
	stored, err := t.loadRows(ctx, tx, v, b.Keys)
	if err != nil {
		return err
	}
	var inserts, updates [][]any
	for _, k := range b.Keys {
		r, exists := stored[k]
		r, changed := t.fold(r, b.changes[k])
		switch {
		case !changed:
		case exists:
			updates = append(updates, t.cols.values(r))
		default:
			inserts = append(inserts, t.cols.values(r))
		}
	}
	if err := t.cols.bulk.Insert(ctx, tx, v, inserts); err != nil {
		return err
	}
	return t.cols.bulk.Update(ctx, tx, v, updates)
}

// fold applies changes to r (nil: not stored yet), which it may change,
// and reports whether any of them changed something.
func (t *Table[K, R]) fold(r *R, changes []change[R]) (*R, bool) {
	changed := false
	for _, c := range changes {
		switch {
		case r == nil:
			if c.created == nil {
				continue
			}
			// A copy: a batch that failed is applied again.
			n := *c.created
			r = &n
		case c.e.Version <= t.cols.rowVersion(r):
			continue // already reflected
		default:
			t.spec.Fold(r, c.e, c.payload)
		}
		changed = true
	}
	return r, changed
}

// Replay returns the row r (nil: not stored) becomes after events, all of
// one row, as Apply would write it but without a database, and whether
// they changed it; r itself is left as it is. It lets a read model test
// its Spec.
func (t *Table[K, R]) Replay(r *R, events ...domain.Envelope) (*R, bool, error) {
	b, err := t.decode(events)
	if err != nil {
		return nil, false, err
	}
	if len(b.Keys) > 1 {
		return nil, false, fmt.Errorf("replay: events of %d rows", len(b.Keys))
	}
	if r != nil {
		n := *r
		r = &n
	}
	if len(b.Keys) == 0 {
		return r, false, nil
	}
	r, changed := t.fold(r, b.changes[b.Keys[0]])
	return r, changed, nil
}

func (t *Table[K, R]) loadRows(ctx context.Context, tx pgx.Tx, v projections.Tables, keys []K) (map[K]*R, error) {
	rows, err := tx.Query(ctx, t.cols.bulk.Select(v)+t.load, keys)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", t.cols.table, err)
	}
	defer rows.Close()
	out := make(map[K]*R, len(keys))
	for rows.Next() {
		r := new(R)
		if err := t.cols.Scan(rows, r); err != nil {
			return nil, fmt.Errorf("load %s: %w", t.cols.table, err)
		}
		out[key[K](t.cols, r)] = r
	}
	return out, rows.Err()
}

// UUIDKey is a Spec.Key for streams named by a UUID.
func UUIDKey(id string) ([16]byte, error) { return uuid.Parse(id) }

// StringKey is a Spec.Key for streams named by any string.
func StringKey(id string) (string, error) { return id, nil }

// JSON encodes v, a part of event e's payload, for a json column; a
// failure makes e undecodable.
func JSON(e domain.Envelope, v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, projections.Undecodable(e, err)
	}
	return b, nil
}
