// Package serve runs one orderflow service process: it connects to the
// service's database (and NATS when configured), applies the migrations
// (as the database's owner role when given its URL; the service itself
// then runs with DML rights only),
// wires the service's routes together with the shared middleware,
// operations endpoints and idempotency, runs the service's projections,
// its relay and its own workers in the background, and serves until its
// context ends, then shuts down gracefully.
//
// What differs between services is each one's service.Module (its name,
// port, read models, routes and workers), kept in the registry of
// modules.go; nothing here switches on a service's name.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/projsource"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/discovery"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/idempotency"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/relay"
	"github.com/orderflow/orderflow/services/internal/serve/service"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// DefaultRequestTimeout is Config.RequestTimeout's default.
const DefaultRequestTimeout = 8 * time.Second

// Config configures one service process. Service and DatabaseURL are
// required; the rest defaults.
type Config struct {
	// Service is the name of one of the Modules.
	Service string
	// Addr is the listen address; default ":<the service's port>".
	Addr string
	// DatabaseURL is the service's own PostgreSQL database, connected as
	// the role the service runs as. Everything it does while running
	// (requests, idempotency keys, the relay, the projector's rows) goes
	// through it, so DML rights on the database's tables suffice (the
	// runtime role of pgdb.Provision).
	DatabaseURL string
	// OwnerDatabaseURL is the same database connected as the owner of its
	// tables (pgdb.Provision's owner role). It is used only for DDL: the
	// migrations at start, installing the read model and rebuilding it.
	// Empty means DatabaseURL, whose role must then own the tables (or be
	// a superuser).
	OwnerDatabaseURL string
	// EventStoreURL names the event store (see eventstore.go): empty (the
	// default) or DatabaseURL is the service's own database; another
	// postgres:// URL a PostgreSQL database of its own; kurrentdb:// or
	// esdb:// a KurrentDB. Read models, idempotency keys and the relay's
	// checkpoint stay in the service's database whatever it names.
	EventStoreURL string
	// NATSURL, when set, is connected at start and checked by /readyz,
	// and the service registers there as a NATS micro service
	// (orderflow-<service>) that the gateway can find it by.
	NATSURL string
	// NATSReplicas is how many replicas the JetStream streams (EVENTS and
	// COMMANDS) are created or updated with, by the relay, the command
	// consumers and the coordinator alike: 1..natsbus.MaxReplicas, 0 for
	// natsbus.DefaultReplicas (1). More than one needs a JetStream
	// cluster of at least that many servers; every process of a
	// deployment must give the same number, or each start-up would
	// rescale the streams to its own (ADR 0147). The durable consumers
	// inherit it from their stream.
	NATSReplicas int
	// TLS, when set, makes the service answer HTTPS.
	TLS httpx.TLSFiles
	// AdvertiseURL is the base URL other processes reach this one at,
	// announced in the micro registration; default the listener's
	// address on this machine (http://127.0.0.1:<port>).
	AdvertiseURL string
	// Logger defaults to slog.Default(); Run adds the attribute
	// service=<Service> to every line.
	Logger *slog.Logger
	// Commands tunes the command handlers (retries, served countries).
	Commands commands.Config
	// Coordinator tunes the saga coordinator of the sagas service
	// (timeouts, deadline polling); the other services ignore it.
	Coordinator coordinator.Config
	// Projector tunes the projector of the service's read model.
	Projector projections.Config
	// RequestTimeout bounds the work of one request; default 8s, under
	// the gateway's upstream budget (10s), so that a request stuck on a
	// stalled database ends as this service's 503 with Retry-After (and,
	// for a command, whether it may have been applied) rather than as the
	// gateway's 504, which can say neither.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown; default 10s.
	ShutdownTimeout time.Duration
}

// Validate reports a config Run cannot use.
func (c Config) Validate() error {
	var errs []error
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, ok := Lookup(c.Service); !ok {
		errs = append(errs, fmt.Errorf("service %q: want one of %v", c.Service, Names()))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database URL is required"))
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		// pgx's message can quote the URL; keep passwords out of logs.
		errs = append(errs, errors.New("database URL cannot be parsed"))
	}
	if c.OwnerDatabaseURL != "" {
		if _, err := pgxpool.ParseConfig(c.OwnerDatabaseURL); err != nil {
			errs = append(errs, errors.New("owner database URL cannot be parsed"))
		}
	}
	if _, err := c.eventStoreKind(); err != nil {
		errs = append(errs, err)
	}
	if err := c.topology().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("NATS replicas: %w", err))
	}
	if c.RequestTimeout < 0 || c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if err := c.Commands.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Coordinator.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Projector.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("serve config: %w", err)
	}
	return nil
}

// topology is the JetStream topology every EnsureTopology call of the
// process applies.
func (c Config) topology() natsbus.TopologyConfig {
	return natsbus.TopologyConfig{Replicas: c.NATSReplicas}
}

func (c *Config) setDefaults(m service.Module) {
	if c.Addr == "" {
		c.Addr = ":" + strconv.Itoa(m.Port)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	// Lines logged with a request's or a message's context name its trace.
	c.Logger = telemetry.Logger(c.Logger).With("service", c.Service)
	c.snapshotDefaults()
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.OwnerDatabaseURL == "" {
		c.OwnerDatabaseURL = c.DatabaseURL
	}
	if c.Commands.Stats == nil {
		// The command handlers count into it and the metrics read it.
		c.Commands.Stats = new(commands.Stats)
	}
}

// Run serves cfg.Service on cfg.Addr until ctx ends. It installs the
// process's tracer provider (telemetry.Start: OTLP export when the
// environment names a collector, else a no-op) and flushes it on the way
// out; New leaves that to its caller, since one process may run several
// services (tests).
func Run(ctx context.Context, cfg Config) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	stopTelemetry, err := telemetry.Start(ctx, cfg.Service, telemetry.WithLogger(logger.With("service", cfg.Service)))
	if err != nil {
		return fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTelemetry(sctx); err != nil {
			logger.Warn("telemetry: spans lost at shutdown", "service", cfg.Service, "error", err)
		}
	}()
	s, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := httpx.Listen(s.cfg.Addr, s.cfg.TLS)
	if err != nil {
		return fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	return s.Serve(ctx, ln)
}

// Server is a started service: connected, migrated, routes built.
type Server struct {
	cfg     Config
	module  service.Module
	pool    *pgxpool.Pool
	owner   *pgxpool.Pool // for DDL only; pool unless an owner URL was given
	nc      *nats.Conn
	store   eventstore.Store
	relay   *relay.Relay
	runner  *projections.Runner
	handler http.Handler
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// storeKind is where the events live; storePool is the pool of an
	// event store database other than the service's (nil otherwise).
	storeKind storeKind
	storePool *pgxpool.Pool
}

// New connects and migrates the service's database, installs its read
// model (both through the owner's URL), connects NATS when configured and
// builds the HTTP handler. Its background work (the projector, rebuilds
// requested through the operations API, the relay, purging old idempotency
// keys) runs until Close.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	module, _ := Lookup(cfg.Service) // Validate checked it is there
	cfg.setDefaults(module)
	log := cfg.Logger
	s := &Server{cfg: cfg, module: module}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	s.pool, err = pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("serve %s: database: %w", cfg.Service, err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("serve %s: database: %w", cfg.Service, err)
	}
	if err := s.openOwner(ctx); err != nil {
		return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	if err := s.openStore(ctx); err != nil {
		return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	if err := idempotency.Migrate(ctx, s.owner); err != nil {
		return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	if err := relay.Migrate(ctx, s.owner); err != nil {
		return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	idem, err := idempotency.New(s.pool, idempotency.Config{Service: cfg.Service, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	if s.runner, err = s.newRunner(ctx); err != nil {
		return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	if cfg.NATSURL != "" {
		s.nc, err = nats.Connect(cfg.NATSURL,
			nats.Name("orderflow-"+cfg.Service),
			nats.MaxReconnects(-1),
			nats.RetryOnFailedConnect(true),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("nats disconnected", "error", err)
				}
			}),
			nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }))
		if err != nil {
			return nil, fmt.Errorf("serve %s: nats: %w", cfg.Service, err)
		}
	}

	var js jetstream.JetStream
	if s.nc != nil {
		if js, err = jetstream.New(s.nc); err != nil {
			return nil, fmt.Errorf("serve %s: jetstream: %w", cfg.Service, err)
		}
	}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Go(func() { idem.RunPurger(bg) })
	s.wg.Go(func() { _ = s.runner.Run(bg) }) // returns when bg ends
	if js != nil {
		s.relay, err = relay.New(s.store, js, relay.NewCheckpoints(s.pool), relay.Config{Name: cfg.Service, Logger: log.With("component", "relay")})
		if err != nil {
			return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
		}
		s.wg.Go(func() { s.runRelay(bg, js) })
	}

	var workers []service.Worker
	if s.handler, workers, err = s.routes(idem, js); err != nil {
		return nil, fmt.Errorf("serve %s: %w", cfg.Service, err)
	}
	for _, w := range workers {
		s.wg.Go(func() { s.runWorker(bg, w) })
	}
	log.Info("service ready", "event_store", s.storeKind)
	return s, nil
}

// runWorker runs one of the module's background workers until ctx ends.
func (s *Server) runWorker(ctx context.Context, w service.Worker) {
	if err := w.Run(ctx); err != nil && ctx.Err() == nil {
		s.cfg.Logger.Error("worker stopped", "component", w.Name, "error", err)
	}
}

// openOwner connects the owner's pool, or shares the service's pool when
// no separate owner URL was given. The owner's few connections serve
// migrations and rebuilds (a rebuild holds one for its lock and its writes
// and uses another for drops) and close when idle.
func (s *Server) openOwner(ctx context.Context) error {
	if s.cfg.OwnerDatabaseURL == s.cfg.DatabaseURL {
		s.owner = s.pool
		return nil
	}
	pc, err := pgxpool.ParseConfig(s.cfg.OwnerDatabaseURL)
	if err != nil {
		return errors.New("owner database URL cannot be parsed")
	}
	pc.MaxConns = 4
	pc.MaxConnIdleTime = time.Minute
	if s.owner, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return fmt.Errorf("owner database: %w", err)
	}
	// Migrating one database and serving another would fail late, with
	// errors that do not point here.
	const which = "SELECT current_database(), (SELECT oid FROM pg_database WHERE datname = current_database())::bigint"
	var (
		db, ownerDB   string
		oid, ownerOID int64
	)
	if err := s.pool.QueryRow(ctx, which).Scan(&db, &oid); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := s.owner.QueryRow(ctx, which).Scan(&ownerDB, &ownerOID); err != nil {
		return fmt.Errorf("owner database: %w", err)
	}
	if db != ownerDB || oid != ownerOID {
		return fmt.Errorf("the owner database URL reaches database %s, the database URL %s: both must reach the service's one database", ownerDB, db)
	}
	return nil
}

// newRunner builds the runner of the service's read models, fed from the
// service's own store, and installs their tables and views so that
// queries answer (empty) from the first request on.
func (s *Server) newRunner(ctx context.Context) (*projections.Runner, error) {
	r := projections.NewRunner(s.pool, s.cfg.Logger.With("component", "projections"), projections.WithOwner(s.owner))
	for _, model := range s.module.ReadModels {
		src, err := projsource.New(s.store, eventstore.Filter{StreamPrefixes: model.StreamPrefixes}, projsource.Config{})
		if err != nil {
			return nil, err
		}
		if err := r.Add(model.New(), src, s.cfg.Projector); err != nil {
			return nil, err
		}
	}
	if err := r.Install(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// runRelay makes sure the JetStream streams exist, retrying while NATS is
// unreachable, then publishes the service's events until ctx ends.
func (s *Server) runRelay(ctx context.Context, js jetstream.JetStream) {
	log := s.cfg.Logger.With("component", "relay")
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := natsbus.EnsureTopology(ctx, js, s.cfg.topology())
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("jetstream topology not ready; retrying", "error", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
	}
	if err := s.relay.Run(ctx); err != nil {
		log.Error("relay stopped", "error", err)
	}
}

// Handler is the service's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers HTTP on ln until ctx ends, then stops accepting, lets the
// requests in progress finish (within ShutdownTimeout) and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.cfg.Logger.Info("listening", "addr", ln.Addr().String())
	unregister := s.register(ln)

	select {
	case err := <-errc:
		unregister()
		return fmt.Errorf("serve %s: %w", s.cfg.Service, err)
	case <-ctx.Done():
	}
	// Leave the registry first, so that the gateway stops sending new
	// requests while the ones in progress finish.
	unregister()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("serve %s: shutdown: %w", s.cfg.Service, err)
	}
	s.cfg.Logger.Info("stopped")
	return nil
}

// register announces the service on NATS (when connected) as a micro
// service whose status endpoint runs the /readyz checks; the returned
// func withdraws it. A failed registration is logged, not fatal: the
// gateway can still be given the service's address.
func (s *Server) register(ln net.Listener) func() {
	if s.nc == nil {
		return func() {}
	}
	url := s.cfg.AdvertiseURL
	if url == "" {
		url = discovery.LocalURL(s.cfg.TLS.Enabled(), ln.Addr())
	}
	stop, err := discovery.Register(s.nc, discovery.Info{Service: s.cfg.Service, HTTPURL: url, Checks: s.readinessChecks()})
	if err != nil {
		s.cfg.Logger.Warn("cannot register on NATS for discovery; the gateway must be given this service's URL", "error", err)
		return func() {}
	}
	return func() {
		if err := stop(); err != nil {
			s.cfg.Logger.Warn("leaving the NATS registry", "error", err)
		}
	}
}

// Close stops the background work and releases the connections.
func (s *Server) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.store != nil {
		_ = s.store.Close()
	}
	if s.storePool != nil {
		s.storePool.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.owner != nil && s.owner != s.pool {
		s.owner.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

// routes wires the service's module (see service.Module.Wire) and builds
// the HTTP handler: the shared middleware and endpoints, the module's
// routes and the operations API. It returns the module's workers, which
// New starts.
func (s *Server) routes(idem *idempotency.Store, js jetstream.JetStream) (http.Handler, []service.Worker, error) {
	metrics := httpx.NewMetrics()
	metrics.GaugeFunc("orderflow_db_pool_acquired_connections",
		"Database connections in use.", func() float64 { return float64(s.pool.Stat().AcquiredConns()) })
	s.registerMetrics(metrics)
	// The coordinator creates the streams too, with the same topology.
	coord := s.cfg.Coordinator
	coord.Topology = s.cfg.topology()
	parts, err := s.module.Wire(service.Deps{
		Logger:      s.cfg.Logger,
		Pool:        s.pool,
		Store:       s.store,
		Commands:    s.cfg.Commands,
		Coordinator: coord,
		Metrics:     metrics,
		NATS:        s.nc,
		JetStream:   js,
		Topology:    s.cfg.topology(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("wire %s: %w", s.module.Name, err)
	}

	r := chi.NewRouter()
	r.Use(httpx.RequestID, httpx.Trace(s.cfg.Service, untraced...), httpx.AccessLog(s.cfg.Logger), metrics.Middleware, httpx.Recover)
	r.NotFound(httpx.NotFound)
	r.MethodNotAllowed(httpx.MethodNotAllowed)

	r.Get("/healthz", httpx.Healthz)
	r.Get("/readyz", httpx.Readyz(2*time.Second, s.readinessChecks()...))
	r.Method(http.MethodGet, "/metrics", metrics)

	r.Group(func(r chi.Router) {
		r.Use(timeout(s.cfg.RequestTimeout), idem.Middleware)
		if parts.Routes != nil {
			parts.Routes(r)
		}
		// The operations API is open here; the gateway, the only entry
		// point exposed to clients, restricts /admin to the admin role.
		adminRoutes(r, s.runner, s.pool, s.store)
		eventRoutes(r, s.cfg.Service, s.store)
	})
	return r, parts.Workers, nil
}

// untraced are the paths of probes and metric scrapes, which would only
// bury the traces of orders under their own.
var untraced = []string{"/healthz", "/readyz", "/metrics"}

func (s *Server) readinessChecks() []httpx.Check {
	checks := []httpx.Check{{Name: "database", Probe: s.pool.Ping}}
	if c, ok := s.eventStoreCheck(); ok {
		checks = append(checks, c)
	}
	if s.nc != nil {
		checks = append(checks, httpx.Check{Name: "nats", Probe: func(context.Context) error {
			if st := s.nc.Status(); st != nats.CONNECTED {
				return fmt.Errorf("nats connection is %s", st)
			}
			return nil
		}})
	}
	return checks
}

// timeout bounds the context of each request, so that a stuck dependency
// ends in a 503 problem rather than a hung client.
func timeout(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
