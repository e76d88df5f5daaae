// Package service declares what a service contributes to the process that
// serve runs: a Module with its name, default port, read models, HTTP
// routes and background workers. Each service package (services/orders,
// ...) exports one Module; serve keeps the registry of them and does
// everything they share (databases and roles, migrations, NATS, the relay,
// the projector, metrics, idempotency, the operations API) the same way
// for each. Adding a service is one new module and one line in serve's
// registry; nothing in serve switches on a service's name.
//
// The package is separate from serve because serve imports the service
// packages to build its registry, and they import this one.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

// Module is one service as serve runs it.
type Module struct {
	// Name is the service's name: `orderflow serve NAME`, its database
	// (pgdb.Name), its relay and its NATS context, the service=NAME of its
	// log lines.
	Name string
	// Port is the default listen port, the dev stack's layout.
	Port int
	// ReadModels are the read models the service keeps in its database,
	// fed from its own event store. serve installs and runs them; the
	// projections command lists and rebuilds them.
	ReadModels []ReadModel
	// Wire builds the service's parts from what serve has set up. serve
	// calls it once per process, after the shared metrics are registered
	// (so that d.Commands.Stats is the one they read), and fails to start
	// when it fails.
	Wire func(d Deps) (Parts, error)
}

// ReadModel is a read model fed from its service's own event store.
type ReadModel struct {
	// Name is the projection's name (projection_versions, operations API);
	// New().Name() must return it.
	Name string
	// StreamPrefixes are the streams the projection reads.
	StreamPrefixes []string
	// New builds the projection.
	New func() projections.Projection
}

// Deps is what serve hands a Module's Wire: the process's connections and
// shared components, all set up and owned by serve (Wire must not close
// them).
type Deps struct {
	// Logger has the attribute service=<Name>.
	Logger *slog.Logger
	// Pool is the service's database, as the role the service runs as (DML
	// rights only); queries read the read models through it.
	Pool *pgxpool.Pool
	// Store is the service's event store: on Pool by default, or the one
	// serve's event store URL names (another database, KurrentDB).
	Store eventstore.Store
	// Commands configures the command handlers; build them with it so that
	// their counts reach /metrics.
	Commands commands.Config
	// Coordinator tunes the saga coordinator (the sagas service's).
	Coordinator coordinator.Config
	// Metrics is the service's /metrics, for the service's own figures.
	Metrics *httpx.Metrics
	// NATS and JetStream are nil when the process runs without NATS (no
	// NATS URL given); workers that need them are then not started.
	NATS      *nats.Conn
	JetStream jetstream.JetStream
	// Topology is what the process's workers pass to
	// natsbus.EnsureTopology (the streams' replicas), the same as its
	// relay does.
	Topology natsbus.TopologyConfig
}

// Parts is what a Module's Wire returns.
type Parts struct {
	// Routes registers the service's API on r, inside serve's shared
	// middleware (request timeout, idempotency keys).
	Routes func(r chi.Router)
	// Workers run in the background from start until the process stops.
	Workers []Worker
}

// Worker is a background task of a service, such as a consumer of the
// commands sent to it over NATS.
type Worker struct {
	// Name identifies the worker in log lines (component=<Name>).
	Name string
	// Run works until ctx ends, then returns. It should ride out failures
	// of its dependencies itself (retrying with backoff): serve logs an
	// error it returns before ctx ended, and does not start it again.
	Run func(ctx context.Context) error
}

// Validate reports a module serve cannot run.
func (m Module) Validate() error {
	var errs []error
	if m.Name == "" {
		errs = append(errs, errors.New("no name"))
	}
	if m.Port <= 0 || m.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", m.Port))
	}
	if m.Wire == nil {
		errs = append(errs, errors.New("no Wire"))
	}
	seen := make(map[string]bool)
	for _, rm := range m.ReadModels {
		switch {
		case rm.Name == "" || rm.New == nil:
			errs = append(errs, fmt.Errorf("read model %q: a name and New are required", rm.Name))
		case seen[rm.Name]:
			errs = append(errs, fmt.Errorf("read model %s listed twice", rm.Name))
		case len(rm.StreamPrefixes) == 0:
			errs = append(errs, fmt.Errorf("read model %s: no stream prefixes", rm.Name))
		}
		seen[rm.Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("module %q: %w", m.Name, err)
	}
	return nil
}
