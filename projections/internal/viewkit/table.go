// Package viewkit is the machinery the read models under projections share.
// Each of them keeps one row per stream of one kind: a batch of events is
// decoded and grouped by row, the rows it touches are loaded in one query,
// folded in memory and written back with one statement for the new rows and
// one for the changed ones; and its queries are a Get by key and a
// keyset-paginated List. What an event does to a row, and what a row looks
// like, stays with each read model.
package viewkit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
)

// Row is what a read model's row type R offers through its pointer *R.
type Row[K comparable, R any] interface {
	*R
	// Key returns the row's key.
	Key() K
	// Version is the version of its stream the row reflects; events that
	// are not newer change nothing.
	Version() int64
	// Scan reads the row's columns, in Columns order.
	Scan(pgx.Rows) error
	// Values lists the row's column values in Columns order.
	Values() []any
}

// Spec is what a read model tells its Table: where its rows come from and
// what an event does to a row. K is the row key, taken from a stream's
// name, R a row and P its pointer.
type Spec[K comparable, R any, P Row[K, R]] struct {
	// Name is the projection's name.
	Name string
	// Prefix selects the streams the table folds; the rest of a stream's
	// name is its row's key. Events of other streams are ignored.
	Prefix string
	// Register adds the event types of those streams to a registry.
	Register func(*domain.Registry) error
	// Columns describes the table. Its key is its first column alone.
	Columns projections.Columns
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
// It implements projections.Decoder and all of projections.Projection but
// Schema, which each read model writes.
type Table[K comparable, R any, P Row[K, R]] struct {
	spec Spec[K, R, P]
	reg  *domain.Registry
	load string // the WHERE clause that loads rows by key
}

// New returns the table spec describes. It panics if spec.Register fails:
// the event types are fixed when the program is built.
func New[K comparable, R any, P Row[K, R]](spec Spec[K, R, P]) *Table[K, R, P] {
	reg := domain.NewRegistry()
	if err := spec.Register(reg); err != nil {
		panic(err)
	}
	key := pgx.Identifier{spec.Columns.Names[0]}.Sanitize()
	return &Table[K, R, P]{spec: spec, reg: reg, load: " WHERE " + key + " = ANY($1)"}
}

// Name implements projections.Projection.
func (t *Table[K, R, P]) Name() string { return t.spec.Name }

// Tables implements projections.Projection.
func (t *Table[K, R, P]) Tables() []string { return []string{t.spec.Columns.Table} }

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
func (t *Table[K, R, P]) Apply(ctx context.Context, tx pgx.Tx, v projections.Tables, events []domain.Envelope) error {
	b, err := t.decode(events)
	if err != nil {
		return err
	}
	return t.ApplyDecoded(ctx, tx, v, b)
}

// Decode implements projections.Decoder; it returns a *Batch[K, R].
func (t *Table[K, R, P]) Decode(events []domain.Envelope) (any, error) { return t.decode(events) }

func (t *Table[K, R, P]) decode(events []domain.Envelope) (*Batch[K, R], error) {
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
func (t *Table[K, R, P]) ApplyDecoded(ctx context.Context, tx pgx.Tx, v projections.Tables, decoded any) error {
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
			updates = append(updates, P(r).Values())
		default:
			inserts = append(inserts, P(r).Values())
		}
	}
	if err := t.spec.Columns.Insert(ctx, tx, v, inserts); err != nil {
		return err
	}
	return t.spec.Columns.Update(ctx, tx, v, updates)
}

// fold applies changes to r (nil: not stored yet), which it may change,
// and reports whether any of them changed something.
func (t *Table[K, R, P]) fold(r *R, changes []change[R]) (*R, bool) {
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
		case c.e.Version <= P(r).Version():
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
func (t *Table[K, R, P]) Replay(r *R, events ...domain.Envelope) (*R, bool, error) {
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

func (t *Table[K, R, P]) loadRows(ctx context.Context, tx pgx.Tx, v projections.Tables, keys []K) (map[K]*R, error) {
	rows, err := tx.Query(ctx, t.spec.Columns.Select(v)+t.load, keys)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", t.spec.Columns.Table, err)
	}
	defer rows.Close()
	out := make(map[K]*R, len(keys))
	for rows.Next() {
		r := P(new(R))
		if err := r.Scan(rows); err != nil {
			return nil, fmt.Errorf("load %s: %w", t.spec.Columns.Table, err)
		}
		out[r.Key()] = r
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
