package coordinator

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/sagaview"
)

// LoadStream is the sagaview.Loader of the PostgreSQL event store the
// sagas service keeps its streams in: it reads a saga's events up to a
// version from the store's table (es_events) through the read model's own
// transaction, in the same database. Only what decoding a saga event
// needs is read. A test appends through the store and reads back through
// here, so that a change of the store's table shows.
func LoadStream(ctx context.Context, q projections.Querier, stream string, upTo int64) ([]domain.Envelope, error) {
	rows, err := q.Query(ctx, `SELECT event_id::text, version, type, schema_version, data
		FROM es_events WHERE stream = $1 AND version <= $2 ORDER BY version`, stream, upTo)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", stream, err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Envelope, error) {
		e := domain.Envelope{Stream: stream}
		var data []byte
		err := r.Scan(&e.ID, &e.Version, &e.Type, &e.SchemaVersion, &data)
		e.Data = data
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", stream, err)
	}
	return evs, nil
}

var _ sagaview.Loader = LoadStream
