package projections

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyThreshold is the number of new rows from which Insert uses COPY; below
// it, the extra round trip COPY needs costs more than it saves.
const copyThreshold = 100

// Columns describes a read-model table for the bulk writes of Apply: one
// statement per batch whatever its size, never one per row. The read
// models do not write it by hand: viewkit.Columns derives it from the db
// tags of a row type, where each column is declared once.
type Columns struct {
	// Table is the logical table name.
	Table string
	// Names lists the columns in the order rows give their values.
	Names []string
	// Types gives each column's SQL type, for the arrays of unnest.
	Types []string
	// Key is how many leading columns form the primary key.
	Key int
	// Mutable names the columns an update may change; empty means every
	// column but the key. Writing back only these keeps updates narrow.
	Mutable []string
}

// Insert writes rows that are not in the table yet (the batch's new keys,
// which the projection's lock guarantees no one else inserts meanwhile).
func (c Columns) Insert(ctx context.Context, tx pgx.Tx, t Tables, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if len(rows) >= copyThreshold {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{t.physical(c.Table)}, c.Names, pgx.CopyFromRows(rows))
		if err != nil {
			return fmt.Errorf("copy %d rows into %s: %w", len(rows), t.physical(c.Table), err)
		}
		return nil
	}
	sql := fmt.Sprintf("INSERT INTO %s (%s) SELECT * FROM unnest(%s)", t.Name(c.Table), c.columnList(), c.arrayParams())
	if _, err := tx.Exec(ctx, sql, c.transpose(rows)...); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", len(rows), t.physical(c.Table), err)
	}
	return nil
}

// Update writes rows that exist, matched by key: every row is given in
// full, as for Insert, and only the key and the Mutable columns are sent.
func (c Columns) Update(ctx context.Context, tx pgx.Tx, t Tables, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	idx := c.updated()
	names := make([]string, len(idx))
	params := make([]string, len(idx))
	cols := make([]any, len(idx))
	for k, j := range idx {
		names[k] = pgx.Identifier{c.Names[j]}.Sanitize()
		params[k] = fmt.Sprintf("$%d::%s[]", k+1, c.Types[j])
		col := make([]any, len(rows))
		for i, r := range rows {
			col[i] = r[j]
		}
		cols[k] = col
	}
	set := make([]string, 0, len(idx)-c.Key)
	for _, n := range names[c.Key:] {
		set = append(set, n+" = u."+n)
	}
	match := make([]string, 0, c.Key)
	for _, n := range names[:c.Key] {
		match = append(match, "d."+n+" = u."+n)
	}
	sql := fmt.Sprintf("UPDATE %s AS d SET %s FROM unnest(%s) AS u(%s) WHERE %s",
		t.Name(c.Table), strings.Join(set, ", "), strings.Join(params, ", "), strings.Join(names, ", "), strings.Join(match, " AND "))
	tag, err := tx.Exec(ctx, sql, cols...)
	if err != nil {
		return fmt.Errorf("update %d rows of %s: %w", len(rows), t.physical(c.Table), err)
	}
	if int(tag.RowsAffected()) != len(rows) {
		return fmt.Errorf("update %d rows of %s: %d matched", len(rows), t.physical(c.Table), tag.RowsAffected())
	}
	return nil
}

// updated returns the indexes of the key and mutable columns.
func (c Columns) updated() []int {
	idx := make([]int, 0, len(c.Names))
	for j := range c.Key {
		idx = append(idx, j)
	}
	for j := c.Key; j < len(c.Names); j++ {
		if len(c.Mutable) == 0 || slices.Contains(c.Mutable, c.Names[j]) {
			idx = append(idx, j)
		}
	}
	return idx
}

// Select returns "SELECT <columns> FROM <table of t>".
func (c Columns) Select(t Tables) string {
	return "SELECT " + c.columnList() + " FROM " + t.Name(c.Table)
}

func (c Columns) columnList() string {
	q := make([]string, len(c.Names))
	for i, n := range c.Names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

func (c Columns) arrayParams() string {
	p := make([]string, len(c.Types))
	for i, typ := range c.Types {
		p[i] = fmt.Sprintf("$%d::%s[]", i+1, typ)
	}
	return strings.Join(p, ", ")
}

// transpose turns rows into one array per column, for unnest.
func (c Columns) transpose(rows [][]any) []any {
	cols := make([]any, len(c.Names))
	for j := range c.Names {
		col := make([]any, len(rows))
		for i, r := range rows {
			col[i] = r[j]
		}
		cols[j] = col
	}
	return cols
}
