package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// This file keeps snapshots of aggregate states in es_snapshots, beside the
// events, for the command layer's optional snapshot port (commands.
// SnapshotStore). They are an optimisation only: the events stay the
// truth, and deleting every snapshot changes nothing but the time a long
// stream takes to load. See docs/adr/0150-snapshots-of-long-streams.md.

// LoadSnapshot returns the snapshot of stream encoded with schema: the
// version of the last event it reflects and its data. Version 0 means
// there is none. Snapshots of other schemas are not looked at.
func (s *Store) LoadSnapshot(ctx context.Context, stream string, schema int) (int64, []byte, error) {
	var (
		version int64
		data    []byte
	)
	err := s.pool.QueryRow(ctx, "SELECT version, data FROM es_snapshots WHERE stream = $1 AND schema = $2", stream, schema).Scan(&version, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("load snapshot of %s: %w", stream, err)
	}
	return version, data, nil
}

// LoadSnapshotCovering is LoadSnapshot, and also returns those of ids
// (event ids) stored in stream at a version up to the snapshot's, as
// StoredEventIDs would, in the same round trip: a command on a stream
// loaded from its snapshot must know whether its id is among the events
// the snapshot covers, and asking apart cost a round trip per load. The
// two answers come from one statement, so they agree on the snapshot.
func (s *Store) LoadSnapshotCovering(ctx context.Context, stream string, schema int, ids []string) (int64, []byte, []string, error) {
	var (
		version int64
		data    []byte
		found   []string
	)
	err := s.pool.QueryRow(ctx, `
		SELECT s.version, s.data, ARRAY(
			SELECT event_id::text FROM es_events
			WHERE event_id = ANY($3::uuid[]) AND stream = $1 AND version <= s.version)
		FROM es_snapshots s WHERE s.stream = $1 AND s.schema = $2`, stream, schema, ids).Scan(&version, &data, &found)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil, nil
	}
	if err != nil {
		return 0, nil, nil, fmt.Errorf("load snapshot of %s: %w", stream, err)
	}
	return version, data, found, nil
}

// SaveSnapshot stores data, as the state's codec wrote it, as the state of stream at
// version encoded with schema, unless a snapshot of that schema at a later
// version is stored already (two processes may snapshot the same stream).
// Snapshots of the stream with an older schema are deleted: no process of
// a version that can read them should remain once a newer one writes.
func (s *Store) SaveSnapshot(ctx context.Context, stream string, version int64, schema int, data []byte) error {
	_, err := s.pool.Exec(ctx, `
		WITH older AS (DELETE FROM es_snapshots WHERE stream = $1 AND schema < $3)
		INSERT INTO es_snapshots (stream, schema, version, data) VALUES ($1, $3, $2, $4)
		ON CONFLICT (stream, schema) DO UPDATE
		SET version = excluded.version, data = excluded.data, taken_at = excluded.taken_at
		WHERE es_snapshots.version < excluded.version`, stream, version, schema, data)
	if err != nil {
		return fmt.Errorf("save snapshot of %s at %d: %w", stream, version, err)
	}
	return nil
}

// StoredEventIDs returns those of ids (event ids) that are stored in
// stream at a version up to upTo. The command layer asks it which
// commands caused events that a snapshot covers, since it does not keep
// their ids; the ids are looked up in the event id index.
func (s *Store) StoredEventIDs(ctx context.Context, stream string, ids []string, upTo int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT event_id::text FROM es_events WHERE event_id = ANY($1::uuid[]) AND stream = $2 AND version <= $3", ids, stream, upTo)
	if err != nil {
		return nil, fmt.Errorf("look up event ids in %s: %w", stream, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up event ids in %s: %w", stream, err)
	}
	return found, nil
}

// SnapshotInfo describes one stored snapshot.
type SnapshotInfo struct {
	Stream  string
	Version int64
	Schema  int
	// Size is the bytes the snapshot's data takes in the table.
	Size    int64
	TakenAt time.Time
}

// ListSnapshots returns the snapshots of the streams whose name starts
// with prefix (all when empty), by stream and schema.
func ListSnapshots(ctx context.Context, pool *pgxpool.Pool, prefix string) ([]SnapshotInfo, error) {
	rows, err := pool.Query(ctx, `
		SELECT stream, version, schema, pg_column_size(data), taken_at FROM es_snapshots
		WHERE $1 = '' OR stream LIKE $2 ORDER BY stream, schema`, prefix, likePatterns([]string{prefix})[0])
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SnapshotInfo, error) {
		var i SnapshotInfo
		err := r.Scan(&i.Stream, &i.Version, &i.Schema, &i.Size, &i.TakenAt)
		i.TakenAt = i.TakenAt.UTC()
		return i, err
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return out, nil
}

// DropSnapshots deletes the snapshots that drop selects among those
// listed by ListSnapshots (the caller decides, for instance by schema) and
// returns how many it deleted.
func DropSnapshots(ctx context.Context, pool *pgxpool.Pool, drop []SnapshotInfo) (int64, error) {
	if len(drop) == 0 {
		return 0, nil
	}
	streams := make([]string, len(drop))
	schemas := make([]int32, len(drop))
	for i, d := range drop {
		streams[i], schemas[i] = d.Stream, int32(d.Schema)
	}
	tag, err := pool.Exec(ctx, `
		DELETE FROM es_snapshots s USING unnest($1::text[], $2::int[]) AS d(stream, schema)
		WHERE s.stream = d.stream AND s.schema = d.schema`, streams, schemas)
	if err != nil {
		return 0, fmt.Errorf("drop snapshots: %w", err)
	}
	return tag.RowsAffected(), nil
}
