package projections

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
)

// schemaLockKey serialises the creation of the runtime tables by services
// starting at the same time; its value is arbitrary but fixed.
const schemaLockKey int64 = 0x6f66_7072_6f6a_7363 // "ofprojsc"

// runtimeSchema holds the projector's own tables. projection_versions is the
// registry: which version of each read model serves queries, and the
// checkpoint that goes with it.
var runtimeSchema = []string{
	`CREATE TABLE IF NOT EXISTS projection_versions (
		name               text             PRIMARY KEY,
		active_version     integer          NOT NULL CHECK (active_version > 0),
		checkpoint         bigint           NOT NULL DEFAULT 0 CHECK (checkpoint >= 0),
		rebuilding_version integer,
		rebuild_started_at timestamptz,
		heartbeat_at       timestamptz,
		events_per_second  double precision NOT NULL DEFAULT 0,
		swapped_at         timestamptz,
		-- feed is "store" (checkpoint = global position of the event
		-- store) or "jetstream" (checkpoint = stream sequence).
		feed               text             NOT NULL DEFAULT 'store',
		-- schema_hash fingerprints the DDL of the active version; code
		-- with another schema must not write to it (see SchemaHash).
		schema_hash        text             NOT NULL DEFAULT '',
		created_at         timestamptz      NOT NULL DEFAULT now()
	)`,
	`CREATE TABLE IF NOT EXISTS projection_parked (
		projection text        NOT NULL,
		event_id   text        NOT NULL,
		position   bigint      NOT NULL,
		stream     text        NOT NULL DEFAULT '',
		type       text        NOT NULL,
		error      text        NOT NULL,
		parked_at  timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (projection, event_id)
	)`,
	`CREATE TABLE IF NOT EXISTS projection_seen (
		projection text        NOT NULL,
		event_id   text        NOT NULL,
		seen_at    timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (projection, event_id)
	)`,
	`CREATE INDEX IF NOT EXISTS projection_seen_by_time ON projection_seen (seen_at)`,
}

// EnsureSchema creates the runtime tables (projection_versions,
// projection_parked, projection_seen) when they do not exist yet.
func EnsureSchema(ctx context.Context, db *pgxpool.Pool) error {
	return inTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
			return err
		}
		for _, stmt := range runtimeSchema {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
}

// runtimeTables are the tables runtimeSchema creates.
var runtimeTables = []string{"projection_versions", "projection_parked", "projection_seen"}

// Install creates the runtime tables and, for a projection seen for the
// first time, version 1 of its tables, its views and its registry row. It
// changes nothing for a projection that is already installed, and then
// runs no DDL at all: a projector connected as a role with DML rights only
// calls it on every start, after the owner of the read models installed
// them.
func Install(ctx context.Context, db *pgxpool.Pool, p Projection) error {
	if ok, err := installed(ctx, db, p.Name()); err != nil {
		return fmt.Errorf("install projection %s: %w", p.Name(), err)
	} else if ok {
		return nil
	}
	if err := EnsureSchema(ctx, db); err != nil {
		return fmt.Errorf("install projection %s: %w", p.Name(), err)
	}
	err := inTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", liveLockKey(p.Name())); err != nil {
			return err
		}
		var active int
		err := tx.QueryRow(ctx, "SELECT active_version FROM projection_versions WHERE name = $1", p.Name()).Scan(&active)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		t := Tables{Version: 1}
		s := p.Schema(t)
		if err := execAll(ctx, tx, s.Tables); err != nil {
			return err
		}
		if err := execAll(ctx, tx, s.Indexes); err != nil {
			return err
		}
		if err := pointViews(ctx, tx, p, t); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO projection_versions (name, active_version, schema_hash) VALUES ($1, 1, $2)", p.Name(), SchemaHash(p))
		return err
	})
	if err != nil {
		return fmt.Errorf("install projection %s: %w", p.Name(), err)
	}
	return nil
}

// installed reports whether the runtime tables and the registry row of
// projection name exist. Reading them needs no lock: a projection once
// installed stays installed.
func installed(ctx context.Context, q Querier, name string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest($1::text[]) AS t`, runtimeTables).Scan(&ok)
	if err != nil || !ok {
		return false, err
	}
	err = q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM projection_versions WHERE name = $1)", name).Scan(&ok)
	return ok, err
}

// SchemaHash fingerprints the DDL of p's tables. A projector only writes to
// a version built for the same fingerprint: when the code's schema changes,
// the version in the database must be rebuilt by the new code first (the
// Runner starts that rebuild by itself). A change in how Apply folds events
// that leaves the DDL alone is not detected; such a change should come with
// a rebuild requested through the operations API.
func SchemaHash(p Projection) string {
	s := p.Schema(Tables{Version: 0})
	h := sha256.New()
	for _, stmt := range append(append([]string{p.Name()}, s.Tables...), s.Indexes...) {
		h.Write([]byte(stmt))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ErrSchemaChanged is returned by a projector whose projection's schema is
// not the one of the active version: it waits for a rebuild.
var ErrSchemaChanged = errors.New("projection schema differs from the active version's")

// registryRow is a projection's row of projection_versions.
type registryRow struct {
	active     int
	checkpoint uint64
	rebuilding bool
	schemaHash string
}

const registrySQL = "SELECT active_version, checkpoint, rebuilding_version, schema_hash FROM projection_versions WHERE name = $1"

func readRegistry(ctx context.Context, q Querier, name string) (registryRow, error) {
	return scanRegistry(q.QueryRow(ctx, registrySQL, name), name)
}

func scanRegistry(row pgx.Row, name string) (registryRow, error) {
	var (
		r          registryRow
		cp         int64
		rebuilding *int32
	)
	err := row.Scan(&r.active, &cp, &rebuilding, &r.schemaHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("projection %s is not installed: %w", name, domain.ErrNotFound)
	}
	r.checkpoint = uint64(cp)
	r.rebuilding = rebuilding != nil
	return r, err
}

// lockedRegistry takes the projection's transaction-scoped lock, then reads
// its registry row. The two run as separate statements on purpose: under
// READ COMMITTED a statement sees the data committed when it started, so
// the row must be read after the lock is granted to see a swap that
// committed while this transaction waited for it. They are sent together,
// in one round trip: the server starts the read only once the lock is
// granted.
func lockedRegistry(ctx context.Context, tx pgx.Tx, name string) (registryRow, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1)", liveLockKey(name))
	b.Queue(registrySQL, name)
	br := tx.SendBatch(ctx, b)
	var (
		reg registryRow
		err error
	)
	if _, err = br.Exec(); err == nil {
		reg, err = scanRegistry(br.QueryRow(), name)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return reg, err
}

// pointViews makes every view of p read the tables of version t, in tx.
// CREATE OR REPLACE keeps the view's identity (queries planned against it
// stay valid) but refuses a different column list; a version whose columns
// changed gets a new view instead, in the same transaction.
func pointViews(ctx context.Context, tx pgx.Tx, p Projection, t Tables) error {
	for _, name := range p.Tables() {
		view := pgx.Identifier{View(name)}.Sanitize()
		body := "SELECT * FROM " + t.Name(name)
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, "CREATE OR REPLACE VIEW "+view+" AS "+body); err == nil {
			if err := sp.Commit(ctx); err != nil {
				return err
			}
			continue
		}
		if err := sp.Rollback(ctx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP VIEW IF EXISTS "+view); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE VIEW "+view+" AS "+body); err != nil {
			return err
		}
	}
	return nil
}

// dropVersions drops every version of p's tables other than keep. A table
// still read by a query that began before a swap is waited for, but not
// forever: what cannot be dropped now is dropped by the next rebuild.
func dropVersions(ctx context.Context, db *pgxpool.Pool, p Projection, keep int) error {
	var errs []error
	for _, name := range p.Tables() {
		versions, err := tableVersions(ctx, db, name)
		if err != nil {
			return err
		}
		for _, v := range versions {
			if v == keep {
				continue
			}
			err := inTx(ctx, db, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+Tables{Version: v}.Name(name))
				return err
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("drop %s version %d: %w", name, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

// tableVersions lists the versions of logical table name present in the
// current schema.
func tableVersions(ctx context.Context, q Querier, name string) ([]int, error) {
	pattern := "^" + regexp.QuoteMeta(name) + `_v([0-9]+)$`
	rows, err := q.Query(ctx, `SELECT substring(tablename from $1) FROM pg_tables
		WHERE schemaname = current_schema() AND tablename ~ $1`, pattern)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("table %s_v%s: %w", name, s, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// liveLockKey is the advisory lock every batch transaction of projection
// name holds, in every process; a rebuild takes it to swap versions.
func liveLockKey(name string) int64 { return lockKey("projection live " + name) }

// rebuildLockKey is the session lock held for the whole of a rebuild, so
// that two rebuilds of one projection never run at once.
func rebuildLockKey(name string) int64 { return lockKey("projection rebuild " + name) }

func lockKey(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return int64(h.Sum64())
}

func execAll(ctx context.Context, tx pgx.Tx, stmts []string) error {
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%.60s...: %w", s, err)
		}
	}
	return nil
}

// beginner starts transactions: a *pgxpool.Pool or a *pgxpool.Conn.
type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// inTx runs fn in a transaction and commits when fn succeeds.
func inTx(ctx context.Context, db beginner, fn func(pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
