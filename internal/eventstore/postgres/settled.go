package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// settledOrdersQuery finds settled orders: $1 stream, $2 order ids, $3
// the last version to look at.
const settledOrdersQuery = `
	SELECT DISTINCT es_order_id(data) FROM es_events
	WHERE stream = $1 AND es_order_id(data) = ANY($2::text[]) AND version <= $3
	  AND type IN ('StockReleased', 'StockConsumed')`

// SettledOrders returns those of orderIDs whose reservation was released
// or consumed on the stock stream at a version up to upTo (events
// StockReleased and StockConsumed, matched on their order_id as stored).
// A Stock restored from a snapshot does not hold them; the command
// handlers ask for the orders a reservation names (ADR 0159). The query
// reads the partial index of migration 0005, whose predicate it repeats
// literally so that every plan can use it.
func (s *Store) SettledOrders(ctx context.Context, stream string, orderIDs []string, upTo int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, settledOrdersQuery, stream, orderIDs, upTo)
	if err != nil {
		return nil, fmt.Errorf("look up settled orders in %s: %w", stream, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up settled orders in %s: %w", stream, err)
	}
	return found, nil
}
