// Package pgtest opens PostgreSQL event stores for tests: each on a fresh
// database from testenv, migrated, and closed with its pool at cleanup. A
// test package that uses it needs TestMain to call testenv.Main.
package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/testenv"
)

// maxConns leaves room for the committers, concurrent readers and whatever
// else the test runs on the same pool.
const maxConns = 20

// New returns a store with cfg on a fresh, migrated database, and the pool it
// uses, on which the test may create tables of its own.
func New(t testing.TB, cfg postgres.Config) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pcfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.New(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, pool
}
