package projections

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyThreshold is the number of new rows from which Insert uses COPY; below
// it, the extra round trip COPY needs costs more than it saves.
const copyThreshold = 100

// Columns describes a read-model table for the bulk writes of Apply: one
// statement per batch whatever its size, never one per row.
type Columns struct {
	// Table is the logical table name.
	Table string
	// Names lists the columns in the order rows give their values.
	Names []string
	// Types gives each column's SQL type, for the arrays of unnest.
	Types []string
	// Key is how many leading columns form the primary key.
	Key int
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
	sql := fmt.Sprintf("INSERT INTO %s (%s) SELECT * FROM unnest(%s)", t.Name(c.Table), c.columnList(""), c.arrayParams())
	if _, err := tx.Exec(ctx, sql, c.transpose(rows)...); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", len(rows), t.physical(c.Table), err)
	}
	return nil
}

// Update overwrites the non-key columns of rows that exist, matched by key.
func (c Columns) Update(ctx context.Context, tx pgx.Tx, t Tables, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	set := make([]string, 0, len(c.Names)-c.Key)
	for _, n := range c.Names[c.Key:] {
		q := pgx.Identifier{n}.Sanitize()
		set = append(set, q+" = u."+q)
	}
	match := make([]string, 0, c.Key)
	for _, n := range c.Names[:c.Key] {
		q := pgx.Identifier{n}.Sanitize()
		match = append(match, "d."+q+" = u."+q)
	}
	sql := fmt.Sprintf("UPDATE %s AS d SET %s FROM unnest(%s) AS u(%s) WHERE %s",
		t.Name(c.Table), strings.Join(set, ", "), c.arrayParams(), c.columnList(""), strings.Join(match, " AND "))
	tag, err := tx.Exec(ctx, sql, c.transpose(rows)...)
	if err != nil {
		return fmt.Errorf("update %d rows of %s: %w", len(rows), t.physical(c.Table), err)
	}
	if int(tag.RowsAffected()) != len(rows) {
		return fmt.Errorf("update %d rows of %s: %d matched", len(rows), t.physical(c.Table), tag.RowsAffected())
	}
	return nil
}

// Select returns "SELECT <columns> FROM <table of t>".
func (c Columns) Select(t Tables) string {
	return "SELECT " + c.columnList("") + " FROM " + t.Name(c.Table)
}

func (c Columns) columnList(prefix string) string {
	q := make([]string, len(c.Names))
	for i, n := range c.Names {
		q[i] = prefix + pgx.Identifier{n}.Sanitize()
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
