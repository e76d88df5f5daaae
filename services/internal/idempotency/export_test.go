package idempotency

import (
	"context"
	"io/fs"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/services/internal/pgdb"
)

// MigrateThrough applies the migrations up to and including version only,
// leaving pool's database as an older release left it.
func MigrateThrough(ctx context.Context, pool *pgxpool.Pool, version int64) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	migs, err := pgdb.Migrations(sub)
	if err != nil {
		return err
	}
	older := fstest.MapFS{}
	for _, m := range migs {
		if m.Version <= version {
			older[m.Name] = &fstest.MapFile{Data: []byte(m.SQL)}
		}
	}
	return pgdb.Migrate(ctx, pool, "idempotency", older)
}
