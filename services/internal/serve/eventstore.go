package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/kurrentdb"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// The event store a service appends to and reads from is named by a URL
// (Config.EventStoreURL, `serve --event-store`). Whatever it names, the
// rest of the service is the same: the command handlers, the coordinator,
// the relay, the projector and the operations API use the store only
// through eventstore.Store (or a smaller port of it), and the service's
// own tables (read models, idempotency keys, the relay's checkpoint, saga
// deadlines) stay in its PostgreSQL database. ADR 0142 says why.

// ErrEventStoreURL is wrapped by the errors about an event store URL that
// names no store serve can open. The errors never quote the URL, which can
// hold a password.
var ErrEventStoreURL = errors.New("event store URL")

// storeKind is where a service's events live.
type storeKind int

const (
	// storeServiceDB is the service's own PostgreSQL database (the
	// default): the events commit in the same database as everything else
	// of the service.
	storeServiceDB storeKind = iota
	// storePostgres is a PostgreSQL database of its own (any URL other
	// than the database URL: serve does not try to find out whether it
	// reaches the same database under another role or spelling).
	storePostgres
	// storeKurrentDB is a KurrentDB node or cluster.
	storeKurrentDB
)

func (k storeKind) String() string {
	if k == storeKurrentDB {
		return "kurrentdb"
	}
	return "postgres"
}

// eventStoreKind classifies c.EventStoreURL: empty or the database URL is
// the service's database, postgres:// or postgresql:// another PostgreSQL
// database, and any connection string the KurrentDB client accepts
// (kurrentdb://, esdb://, their +discover forms) KurrentDB.
func (c Config) eventStoreKind() (storeKind, error) {
	u := c.EventStoreURL
	switch {
	case u == "" || u == c.DatabaseURL:
		return storeServiceDB, nil
	case hasScheme(u, "postgres", "postgresql"):
		if _, err := pgxpool.ParseConfig(u); err != nil {
			return 0, fmt.Errorf("%w: cannot be parsed as PostgreSQL's", ErrEventStoreURL)
		}
		return storePostgres, nil
	case kurrentdb.CheckConnectionString(u) == nil:
		return storeKurrentDB, nil
	case hasScheme(u, "kurrentdb", "kurrentdb+discover", "esdb", "esdb+discover"):
		return 0, fmt.Errorf("%w: cannot be parsed as KurrentDB's", ErrEventStoreURL)
	default:
		return 0, fmt.Errorf("%w: want postgres://, kurrentdb:// or esdb://", ErrEventStoreURL)
	}
}

// hasScheme reports whether u starts with one of the schemes and "://".
func hasScheme(u string, schemes ...string) bool {
	scheme, _, ok := strings.Cut(u, "://")
	if !ok {
		return false
	}
	for _, s := range schemes {
		if strings.EqualFold(scheme, s) {
			return true
		}
	}
	return false
}

// openStore opens the service's event store. Events in the service's
// database are migrated through the owner's pool, as they always were;
// events in a database of their own through that database's URL, whose
// role must then own the store's tables. KurrentDB needs no migration:
// streams come into being on their first append.
func (s *Server) openStore(ctx context.Context) error {
	kind, err := s.cfg.eventStoreKind()
	if err != nil {
		return err
	}
	s.storeKind = kind
	switch kind {
	case storeKurrentDB:
		st, err := kurrentdb.New(ctx, s.cfg.EventStoreURL, kurrentdb.Config{Logger: s.cfg.Logger.With("component", "kurrentdb")})
		if err != nil {
			return fmt.Errorf("event store: %w", err)
		}
		s.store = st
		return nil
	case storePostgres:
		pool, err := pgxpool.New(ctx, s.cfg.EventStoreURL)
		if err != nil {
			return fmt.Errorf("%w: cannot be parsed as PostgreSQL's", ErrEventStoreURL)
		}
		s.storePool = pool // closed by Close, also when what follows fails
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("event store database: %w", err)
		}
		if err := postgres.Migrate(ctx, pool); err != nil {
			return fmt.Errorf("event store: %w", err)
		}
		if s.store, err = postgres.New(ctx, pool, postgres.Config{}); err != nil {
			return fmt.Errorf("event store: %w", err)
		}
		return nil
	}
	if err := postgres.Migrate(ctx, s.owner); err != nil {
		return err
	}
	if s.store, err = postgres.New(ctx, s.pool, postgres.Config{}); err != nil {
		return err
	}
	return nil
}

// OpenEventStore opens the event store rawURL names, as `serve
// --event-store` reads it, for a tool that works on a service's data
// beside the service (the projections and sagas commands): empty or dbURL
// is the store in the service's database, reached through db; another
// PostgreSQL URL or a KurrentDB connection string opens that store. It
// migrates nothing: the service does that. Closing the store closes
// whatever OpenEventStore opened besides db.
func OpenEventStore(ctx context.Context, rawURL, dbURL string, db *pgxpool.Pool, log *slog.Logger) (eventstore.Store, error) {
	if log == nil {
		log = slog.Default()
	}
	kind, err := Config{EventStoreURL: rawURL, DatabaseURL: dbURL}.eventStoreKind()
	if err != nil {
		return nil, err
	}
	switch kind {
	case storeKurrentDB:
		st, err := kurrentdb.New(ctx, rawURL, kurrentdb.Config{Logger: log.With("component", "kurrentdb")})
		if err != nil {
			return nil, fmt.Errorf("event store: %w", err)
		}
		return st, nil
	case storePostgres:
		pool, err := pgxpool.New(ctx, rawURL)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot be parsed as PostgreSQL's", ErrEventStoreURL)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("event store database: %w", err)
		}
		st, err := postgres.New(ctx, pool, postgres.Config{Committers: 1})
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("event store: %w", err)
		}
		return ownPool{st, pool}, nil
	}
	st, err := postgres.New(ctx, db, postgres.Config{Committers: 1})
	if err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	return st, nil
}

// ownPool is a PostgreSQL store that closes its pool with itself.
type ownPool struct {
	*postgres.Store
	pool *pgxpool.Pool
}

func (s ownPool) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	return err
}

// eventStoreCheck is the readiness check of an event store that is not
// the service's database (which the database check covers), and false
// when there is none.
func (s *Server) eventStoreCheck() (httpx.Check, bool) {
	switch {
	case s.storePool != nil:
		return httpx.Check{Name: "event_store", Probe: s.storePool.Ping}, true
	case s.store != nil && s.storeKind == storeKurrentDB:
		// Head is the cheapest call that needs the server: one small
		// read of the end of $all.
		return httpx.Check{Name: "event_store", Probe: func(ctx context.Context) error {
			_, err := s.store.Head(ctx)
			return err
		}}, true
	}
	return httpx.Check{}, false
}
