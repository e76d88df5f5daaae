package viewkit

import "github.com/orderflow/orderflow/projections"

// Bulk returns the bulk writes of the table (projections.Columns), for a
// read model that folds its rows itself rather than through a Table (the
// saga read model, whose rows are computed from a saga's whole state)
// but declares its columns once all the same.
func (c *Columns[R]) Bulk() projections.Columns {
	b := c.bulk
	b.Names = append([]string(nil), b.Names...)
	b.Types = append([]string(nil), b.Types...)
	b.Mutable = append([]string(nil), b.Mutable...)
	return b
}

// Values lists r's column values in table order, as Bulk's Insert and
// Update take a row.
func (c *Columns[R]) Values(r *R) []any { return c.values(r) }
