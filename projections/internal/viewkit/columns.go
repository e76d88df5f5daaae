package viewkit

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/projections"
)

// Columns is the column table of a read model whose rows have type R. It
// is read once, from the db tags of R's exported fields, and everything
// that lists the columns is derived from it: the CREATE TABLE, the bulk
// inserts and updates, loading rows and the queries' SELECT. A column is
// therefore declared in one place, beside the field that holds it, the
// way pgx's RowToStructByName reads a struct:
//
//	type row struct {
//		ID      [16]byte  `db:"order_id,uuid,key"`
//		Items   []byte    `db:"items,json,fixed"`
//		Status  string    `db:"status,text"`
//		Version int64     `db:"version,bigint"`
//	}
//
// The tag is the column's name, its SQL type, then options:
//
//	key          the primary key (exactly one column; first in the table)
//	fixed        written when the row is inserted, never by an update
//	             (only the event that creates the row sets it)
//	collate=X    the column's collation, e.g. collate=C
//
// Every column is NOT NULL. Columns are in field order. A column named
// version, of Go type int64, is required: it holds the version of the
// row's stream the row reflects. Fields without a db tag, or tagged "-",
// are not columns.
type Columns[R any] struct {
	table string
	bulk  projections.Columns
	// field is the index of R's field holding each column.
	field []int
	// constraint is what follows each column's type in the DDL.
	constraint []string
	version    int // the column index of version
}

// NewColumns reads the column table of table (its logical name) from R's
// db tags. It panics when they are not valid: they are fixed when the
// program is built, and a test of every read model builds them.
func NewColumns[R any](table string) *Columns[R] {
	c, err := parseColumns[R](table)
	if err != nil {
		panic(err)
	}
	return c
}

func parseColumns[R any](table string) (*Columns[R], error) {
	typ := reflect.TypeFor[R]()
	if typ.Kind() != reflect.Struct {
		return nil, fmt.Errorf("columns of %s: %s is not a struct", table, typ)
	}
	c := &Columns[R]{table: table, bulk: projections.Columns{Table: table, Key: 1}, version: -1}
	var mutable []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, ok := f.Tag.Lookup("db")
		if !ok || tag == "-" {
			continue
		}
		if !f.IsExported() {
			return nil, fmt.Errorf("columns of %s: field %s has a db tag but is not exported", table, f.Name)
		}
		parts := strings.Split(tag, ",")
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("columns of %s: field %s: tag %q, want \"name,type[,options]\"", table, f.Name, tag)
		}
		name, sqlType := parts[0], parts[1]
		if c.index(name) >= 0 {
			return nil, fmt.Errorf("columns of %s: column %s declared twice", table, name)
		}
		key, fixed, collate := false, false, ""
		for _, opt := range parts[2:] {
			switch {
			case opt == "key":
				key = true
			case opt == "fixed":
				fixed = true
			case strings.HasPrefix(opt, "collate="):
				collate = strings.TrimPrefix(opt, "collate=")
			default:
				return nil, fmt.Errorf("columns of %s: column %s: unknown option %q", table, name, opt)
			}
		}
		constraint := "NOT NULL"
		switch {
		case key && len(c.field) > 0:
			return nil, fmt.Errorf("columns of %s: key column %s must be the first column, and the only key", table, name)
		case key && fixed:
			return nil, fmt.Errorf("columns of %s: key column %s is never updated; it cannot be fixed too", table, name)
		case key:
			constraint = "PRIMARY KEY"
		case len(c.field) == 0:
			return nil, fmt.Errorf("columns of %s: the first column, %s, must be the key", table, name)
		case !fixed:
			mutable = append(mutable, name)
		}
		if collate != "" {
			constraint += " COLLATE " + pgx.Identifier{collate}.Sanitize()
		}
		if name == "version" {
			if f.Type.Kind() != reflect.Int64 {
				return nil, fmt.Errorf("columns of %s: column version is %s, want int64", table, f.Type)
			}
			c.version = len(c.field)
		}
		c.bulk.Names = append(c.bulk.Names, name)
		c.bulk.Types = append(c.bulk.Types, sqlType)
		c.field = append(c.field, i)
		c.constraint = append(c.constraint, constraint)
	}
	if len(c.field) == 0 {
		return nil, fmt.Errorf("columns of %s: %s has no db tags", table, typ)
	}
	if c.version < 0 {
		return nil, fmt.Errorf("columns of %s: no column named version", table)
	}
	if len(mutable) == 0 {
		// projections.Columns reads an empty Mutable as "all of them";
		// version, never fixed, keeps this list from being empty.
		return nil, fmt.Errorf("columns of %s: every column is fixed", table)
	}
	c.bulk.Mutable = mutable
	return c, nil
}

func (c *Columns[R]) index(name string) int {
	for i, n := range c.bulk.Names {
		if n == name {
			return i
		}
	}
	return -1
}

// Table returns the logical table name.
func (c *Columns[R]) Table() string { return c.table }

// Names lists the column names in table order.
func (c *Columns[R]) Names() []string { return append([]string(nil), c.bulk.Names...) }

// Updated lists the columns an update writes: every column but the key
// and the fixed ones.
func (c *Columns[R]) Updated() []string { return append([]string(nil), c.bulk.Mutable...) }

// CreateTable returns the DDL of the table in version t. Its layout (one
// column a line, names and types aligned) is part of what
// projections.SchemaHash fingerprints, so it stays as the read models
// wrote it by hand before: changing it would make every deployment
// rebuild its read models.
func (c *Columns[R]) CreateTable(t projections.Tables) string {
	nameWidth, typeWidth := 0, 0
	for i, n := range c.bulk.Names {
		nameWidth = max(nameWidth, len(n))
		typeWidth = max(typeWidth, len(c.bulk.Types[i]))
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE " + t.Name(c.table) + " (")
	for i, n := range c.bulk.Names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n\t\t\t%-*s %-*s %s", nameWidth, n, typeWidth, c.bulk.Types[i], c.constraint[i])
	}
	b.WriteString("\n\t\t)")
	return b.String()
}

// SelectView returns "SELECT <every column> FROM <the table's view>", the
// start of a query read with Scan.
func (c *Columns[R]) SelectView() string {
	return "SELECT " + c.list() + " FROM " + projections.View(c.table)
}

func (c *Columns[R]) list() string {
	q := make([]string, len(c.bulk.Names))
	for i, n := range c.bulk.Names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// Scan reads a row of every column in table order, as SelectView and
// Table's loads select them, into r.
func (c *Columns[R]) Scan(rows pgx.Rows, r *R) error {
	v := reflect.ValueOf(r).Elem()
	dest := make([]any, len(c.field))
	for i, f := range c.field {
		dest[i] = v.Field(f).Addr().Interface()
	}
	return rows.Scan(dest...)
}

// values lists r's column values in table order.
func (c *Columns[R]) values(r *R) []any {
	v := reflect.ValueOf(r).Elem()
	out := make([]any, len(c.field))
	for i, f := range c.field {
		out[i] = v.Field(f).Interface()
	}
	return out
}

// key returns r's key column; its Go type has been checked to be K.
func key[K any, R any](c *Columns[R], r *R) K {
	return reflect.ValueOf(r).Elem().Field(c.field[0]).Interface().(K)
}

// rowVersion returns r's version column.
func (c *Columns[R]) rowVersion(r *R) int64 {
	return reflect.ValueOf(r).Elem().Field(c.field[c.version]).Int()
}

// Scanner returns a scan function for Query, Get and List that reads a
// row selected by SelectView and turns it into a view with view.
func Scanner[R, V any](c *Columns[R], view func(*R) (V, error)) func(pgx.Rows) (V, error) {
	return func(rows pgx.Rows) (V, error) {
		var r R
		if err := c.Scan(rows, &r); err != nil {
			var zero V
			return zero, err
		}
		return view(&r)
	}
}
