package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

var _ eventstore.Finder = (*Store)(nil)

// FindEvents implements eventstore.Finder with the index of migration
// 0003 (correlation ids) and the unique index on event ids. Ids that are
// not UUIDs cannot be stored and are left out rather than failing the
// cast.
func (s *Store) FindEvents(ctx context.Context, q eventstore.EventQuery) ([]domain.Envelope, error) {
	ids := make([]string, 0, len(q.EventIDs))
	for _, id := range q.EventIDs {
		if domain.ValidUUID(id) {
			ids = append(ids, strings.ToLower(id))
		}
	}
	corr := strings.ToLower(q.CorrelationID)
	if corr == "" && len(ids) == 0 {
		return []domain.Envelope{}, nil
	}
	// Each condition has its own index, which the planner combines.
	rows, err := s.pool.Query(ctx, "SELECT "+selectColumns+" FROM es_events"+
		" WHERE es_correlation_id(metadata) = $1::text OR event_id = ANY($2::uuid[])"+
		" ORDER BY position LIMIT $3", corr, ids, q.Limit())
	if err != nil {
		return nil, fmt.Errorf("find events of correlation %q: %w", q.CorrelationID, err)
	}
	evs, err := scanEvents(rows, q.Limit())
	if err != nil {
		return nil, fmt.Errorf("find events of correlation %q: %w", q.CorrelationID, err)
	}
	return evs, nil
}
