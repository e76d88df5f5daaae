package viewkit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
)

// Query runs sql and reads every row it returns with scan; no rows is an
// empty slice, not nil, so that an empty list encodes as [].
func Query[V any](ctx context.Context, q projections.Querier, scan func(pgx.Rows) (V, error), sql string, args ...any) ([]V, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	views := []V{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return views, nil
}

// Get returns the view sql finds for key, given as $1, or an error
// wrapping domain.ErrNotFound; noun names the thing in errors. A key that
// is not valid is not looked up: no row can have it.
func Get[V any](ctx context.Context, q projections.Querier, scan func(pgx.Rows) (V, error), noun, key string, valid bool, sql string) (V, error) {
	var zero V
	if !valid {
		return zero, fmt.Errorf("%s %q: %w", noun, key, domain.ErrNotFound)
	}
	views, err := Query(ctx, q, scan, sql, key)
	if err != nil {
		return zero, fmt.Errorf("get %s %s: %w", noun, key, err)
	}
	if len(views) == 0 {
		return zero, fmt.Errorf("%s %s: %w", noun, key, domain.ErrNotFound)
	}
	return views[0], nil
}

// Page is one page of a keyset-paginated list being built: its size, and
// the filters of its query with their arguments.
type Page struct {
	limit int
	where []string
	args  []any
}

// NewPage begins a page of up to limit rows (0: projections.DefaultLimit)
// once limit and filter (nil: none) are valid; the error of the first one
// that is not is a *domain.ValidationError.
func NewPage(limit int, filter interface{ Validate() error }) (*Page, error) {
	limit, err := projections.PageLimit(limit)
	if err != nil {
		return nil, err
	}
	if filter != nil {
		if err := filter.Validate(); err != nil {
			return nil, err
		}
	}
	return &Page{limit: limit}, nil
}

// Arg adds an argument and returns its placeholder.
func (p *Page) Arg(v any) string {
	p.args = append(p.args, v)
	return fmt.Sprintf("$%d", len(p.args))
}

// Where adds a condition every row of the page must meet.
func (p *Page) Where(cond string) { p.where = append(p.where, cond) }

// List runs the page's query: sql (a SELECT without WHERE) filtered by the
// page's conditions, in the order orderBy. It returns the rows and the
// cursor of the next page, made from the last row by cursor, or "" on the
// last page.
func List[V any](ctx context.Context, q projections.Querier, scan func(pgx.Rows) (V, error), p *Page, sql, orderBy string, cursor func(V) any) ([]V, string, error) {
	if len(p.where) > 0 {
		sql += " WHERE " + strings.Join(p.where, " AND ")
	}
	// One row more than the page tells whether there is a next one.
	sql += " ORDER BY " + orderBy + " LIMIT " + p.Arg(p.limit+1)
	views, err := Query(ctx, q, scan, sql, p.args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(views) > p.limit {
		views = views[:p.limit]
		next = projections.EncodeCursor(cursor(views[p.limit-1]))
	}
	return views, next, nil
}

// NewestFirst orders a list newest first by (created_at, the UUID column it
// names), which breaks ties; a cursor holds both of the last row.
type NewestFirst string

type createdCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
}

// OrderBy is the list's ORDER BY.
func (o NewestFirst) OrderBy() string { return "created_at DESC, " + string(o) + " DESC" }

// After narrows p to the rows after cursor (empty: from the start); a
// cursor this order did not make is a *domain.ValidationError.
func (o NewestFirst) After(p *Page, cursor string) error {
	if cursor == "" {
		return nil
	}
	var c createdCursor
	if err := projections.DecodeCursor(cursor, &c, func() bool { return !c.CreatedAt.IsZero() && domain.ValidUUID(c.ID) }); err != nil {
		return err
	}
	p.Where(fmt.Sprintf("(created_at, %s) < (%s, %s)", string(o), p.Arg(c.CreatedAt), p.Arg(c.ID)))
	return nil
}

// IndexOn is an index that serves the lists filtered by a column: Name is
// the index's suffix in t.Index, Column the column filtered on.
type IndexOn struct{ Name, Column string }

// Indexes returns the statements that create the indexes of table the
// lists this order sorts need: by_created for the unfiltered list, and one
// per filter with the filter's column first, so that every page, filtered
// or not, is one index range scan in the order OrderBy asks for.
func (o NewestFirst) Indexes(t projections.Tables, table string, filters ...IndexOn) []string {
	name := t.Name(table)
	out := []string{`CREATE INDEX ` + t.Index(table, "by_created") + ` ON ` + name + ` (` + o.OrderBy() + `)`}
	for _, f := range filters {
		out = append(out, `CREATE INDEX `+t.Index(table, f.Name)+` ON `+name+` (`+f.Column+`, `+o.OrderBy()+`)`)
	}
	return out
}

// Cursor returns the key of a row for List's cursor.
func (NewestFirst) Cursor(createdAt time.Time, id string) any {
	return createdCursor{CreatedAt: createdAt, ID: id}
}
