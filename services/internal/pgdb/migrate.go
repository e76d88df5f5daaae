// Package pgdb holds the PostgreSQL chores every service shares: applying a
// component's embedded schema migrations exactly once, and provisioning a
// service's own database with its two roles, an owner that runs the
// migrations and a runtime role with DML rights only (database per
// service, least privilege).
package pgdb

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrateLockKey is the session advisory lock held while any component
// migrates, so that services starting at the same time apply each file
// once. Its value is arbitrary but fixed.
const migrateLockKey int64 = 0x6f66_6d69_6772_6174 // "ofmigrat"

// Migration is one schema change file.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// Migrations lists the *.sql files at the root of fsys in version order.
// A file is named "<version>_<description>.sql", e.g. "0001_init.sql";
// versions must be unique positive integers.
func Migrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	out := make([]Migration, 0, len(names))
	seen := make(map[int64]string)
	for _, name := range names {
		prefix, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name must be <version>_<description>.sql", name)
		}
		v, err := strconv.ParseInt(prefix, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: version %q is not a positive integer", name, prefix)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, v)
		}
		seen[v] = name
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	return out, nil
}

func checksum(sql string) string {
	sum := sha256.Sum256([]byte(sql))
	return hex.EncodeToString(sum[:])
}

// Migrate applies the migrations in fsys (see Migrations) that the database
// has not yet recorded for component, each in its own transaction together
// with its row in schema_migrations. It holds a session advisory lock for
// the whole run, so concurrent callers (several replicas starting at once)
// wait for each other and every file is applied once. A file whose content
// changed after it was applied is an error: migrations are append-only.
func Migrate(ctx context.Context, pool *pgxpool.Pool, component string, fsys fs.FS) (err error) {
	if component == "" {
		return errors.New("migrate: empty component name")
	}
	migs, err := Migrations(fsys)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: acquire connection: %w", component, err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", component, err)
	}
	defer func() {
		// Unlock even when ctx is done; a connection that cannot unlock is
		// closed so the lock never goes back to the pool with it.
		uctx := context.WithoutCancel(ctx)
		if _, uerr := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", migrateLockKey); uerr != nil {
			_ = conn.Conn().Close(uctx)
			if err == nil {
				err = fmt.Errorf("migrate %s: unlock: %w", component, uerr)
			}
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  text        NOT NULL,
		version    bigint      NOT NULL,
		name       text        NOT NULL,
		checksum   text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (component, version)
	)`); err != nil {
		return fmt.Errorf("migrate %s: create schema_migrations: %w", component, err)
	}

	rows, err := conn.Query(ctx, "SELECT version, checksum FROM schema_migrations WHERE component = $1", component)
	if err != nil {
		return fmt.Errorf("migrate %s: read applied: %w", component, err)
	}
	applied := make(map[int64]string)
	var v int64
	var sum string
	if _, err := pgx.ForEachRow(rows, []any{&v, &sum}, func() error {
		applied[v] = sum
		return nil
	}); err != nil {
		return fmt.Errorf("migrate %s: read applied: %w", component, err)
	}

	for _, m := range migs {
		sum := checksum(m.SQL)
		if got, ok := applied[m.Version]; ok {
			if got != sum {
				return fmt.Errorf("migrate %s: %s was changed after it was applied", component, m.Name)
			}
			continue
		}
		if err := apply(ctx, conn.Conn(), component, m, sum); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, conn *pgx.Conn, component string, m Migration, sum string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s %s: begin: %w", component, m.Name, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// Without arguments pgx uses the simple protocol, which allows a file
	// to hold several statements.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return fmt.Errorf("migrate %s %s: %w", component, m.Name, err)
	}
	if _, err := tx.Exec(ctx,
		"INSERT INTO schema_migrations (component, version, name, checksum) VALUES ($1, $2, $3, $4)",
		component, m.Version, m.Name, sum); err != nil {
		return fmt.Errorf("migrate %s %s: record: %w", component, m.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %s %s: commit: %w", component, m.Name, err)
	}
	return nil
}
