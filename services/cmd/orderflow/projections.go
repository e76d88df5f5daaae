package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/projsource"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/pgdb"
	"github.com/orderflow/orderflow/services/internal/serve"
)

// replayable is a projection the CLI can rebuild from a service's own event
// store, with the service whose database holds it.
type replayable struct {
	name     string
	service  string
	prefixes []string
	build    func() projections.Projection
}

// catalog lists the projections fed from a service's event store. Those fed
// from JetStream (events of other contexts) are rebuilt by their service,
// which holds the NATS connection: POST /admin/projections/{name}/replay.
func catalog() []replayable {
	var out []replayable
	for _, m := range serve.ReadModels() {
		out = append(out, replayable{m.Name, m.Service, m.StreamPrefixes, m.New})
	}
	return out
}

// catalogNames lists the catalog's names, of service only when it is set.
func catalogNames(service string) []string {
	var names []string
	for _, r := range catalog() {
		if service == "" || r.service == service {
			names = append(names, r.name)
		}
	}
	slices.Sort(names)
	return names
}

func runProjections(ctx context.Context, args []string) error {
	return runSubcommand(ctx, "projections", args, []subcommand{
		{"list", runProjectionsList},
		{"replay", runProjectionsReplay},
	}, projectionsUsage, os.Stdout, os.Stderr)
}

func projectionsUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage:
  orderflow projections list [flags]
  orderflow projections replay NAME [flags]

Work directly on a service's database, with or without the service running:
list shows every projection's status and lag; replay rebuilds projection
NAME (one of %s) from the event store in that database while the current
version keeps serving queries, then swaps the new version in.

The database is --database-url URL (default: env OWNER_DATABASE_URL, else
DATABASE_URL; a replay must connect as the owner of the read models or as a
superuser), or --service SERVICE with a superuser URL (--admin-url, default:
env DATABASE_URL) from which the service's database %s<service> is derived.

Run "orderflow projections list -h" for the flags.
`, strings.Join(catalogNames(""), ", "), pgdb.Prefix)
}

// dbFlags name the database to work on.
type dbFlags struct {
	databaseURL string
	service     string
	adminURL    string
	// eventStore is where the service's events live when not in its
	// database, as `serve --event-store` names it.
	eventStore string
}

func (f *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.databaseURL, "database-url", "", "the service's database URL, as its owner role or a superuser (default: env OWNER_DATABASE_URL, else DATABASE_URL)")
	fs.StringVar(&f.service, "service", "", "work on this service's database: "+strings.Join(serveNames(), ", ")+"; needs --admin-url")
	fs.StringVar(&f.adminURL, "admin-url", "", "with --service: a superuser URL of the server (default: env DATABASE_URL)")
	fs.StringVar(&f.eventStore, "event-store", os.Getenv("EVENT_STORE_URL"),
		"the service's event store when it is not in its database, as serve --event-store names it: postgres://..., kurrentdb://... or esdb://... (env EVENT_STORE_URL)")
}

// resolve returns the URL of the database to work on.
func (f dbFlags) resolve() (string, error) {
	hint := "give --database-url URL (the service's database; or env OWNER_DATABASE_URL or DATABASE_URL), or --service " +
		strings.Join(serveNames(), "|") + " with --admin-url URL (a superuser URL; or env DATABASE_URL)"
	if f.service == "" {
		if f.adminURL != "" {
			return "", usagef("--admin-url goes with --service; %s", hint)
		}
		// Where a service runs, DATABASE_URL is its runtime role, which
		// may not build tables; the owner's URL beside it may.
		u := f.databaseURL
		if u == "" {
			u = os.Getenv("OWNER_DATABASE_URL")
		}
		if u == "" {
			u = os.Getenv("DATABASE_URL")
		}
		if u == "" {
			return "", usagef("no database given: %s", hint)
		}
		return u, nil
	}
	if !slices.Contains(serveNames(), f.service) {
		return "", usagef("unknown service %q: want one of %s", f.service, strings.Join(serveNames(), ", "))
	}
	if f.databaseURL != "" {
		return "", usagef("give either --database-url or --service, not both")
	}
	admin := f.adminURL
	if admin == "" {
		admin = os.Getenv("DATABASE_URL")
	}
	if admin == "" {
		return "", usagef("--service %s needs a superuser URL of the server: --admin-url URL or env DATABASE_URL", f.service)
	}
	u, err := serviceDatabaseURL(admin, f.service)
	if err != nil {
		return "", usageError{err}
	}
	return u, nil
}

// open opens the database the flags name.
func (f dbFlags) open(ctx context.Context) (*database, error) {
	u, err := f.resolve()
	if err != nil {
		return nil, err
	}
	d, err := openDatabase(ctx, u)
	if err != nil {
		return nil, err
	}
	d.url, d.eventStore = u, f.eventStore
	return d, nil
}

// serviceDatabaseURL is adminURL (a postgres:// URL) pointed at service's
// own database: same host and credentials, database pgdb.Name(service).
func serviceDatabaseURL(adminURL, service string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// url.Parse's error quotes the URL, password included.
		return "", errors.New("the superuser URL must be a postgres:// URL")
	}
	u.Path = "/" + pgdb.Name(service)
	u.RawPath = ""
	q := u.Query()
	q.Del("dbname")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// projectionsHint is the command a developer runs to see the orders
// service's projections in a dev stack whose superuser URL is adminURL.
func projectionsHint(adminURL string, showPassword bool) string {
	u, err := serviceDatabaseURL(adminURL, "orders")
	if err != nil {
		return "orderflow projections list --service orders (with DATABASE_URL set to the superuser URL)"
	}
	if !showPassword {
		u = redactURL(u)
	}
	return "orderflow projections list --database-url '" + u + "'"
}

// database is an open service database.
type database struct {
	pool *pgxpool.Pool
	name string
	// hasEvents and hasProjections say whether the event store's table and
	// the projection registry exist.
	hasEvents, hasProjections bool
	// actAs is the role the pool's sessions act as (see openDatabase).
	actAs string
	// url is the database's URL and eventStore the --event-store URL.
	url, eventStore string
}

// externalStore reports whether the events live outside the database.
func (d *database) externalStore() bool { return d.eventStore != "" && d.eventStore != d.url }

// openStore opens the service's event store: the one in the database or
// the one --event-store names.
func (d *database) openStore(ctx context.Context) (eventstore.Store, error) {
	if d.externalStore() {
		return serve.OpenEventStore(ctx, d.eventStore, d.url, d.pool, slog.New(slog.DiscardHandler))
	}
	return postgres.New(ctx, d.pool, postgres.Config{})
}

func (d *database) Close() { d.pool.Close() }

// openDatabase connects to the database at rawURL.
//
// The read models must stay owned by the service's role: a rebuild creates
// the tables of the new version, and if a superuser created them the
// service could neither write to them nor drop them later. So every session
// sets its role to the owner of the projection registry (or, before there
// is one, of the database) whenever the connected user may act as it, as a
// superuser may.
func openDatabase(ctx context.Context, rawURL string) (*database, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		// pgx's message can quote the URL; keep the password out of it.
		return nil, usagef("the database URL cannot be parsed")
	}
	// A rebuild holds one connection for its lock and uses one to read
	// ahead and one to write.
	cfg.MaxConns = 8
	d := &database{}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
	if err != nil {
		return nil, connectError(cfg.ConnConfig.Database, err)
	}
	var (
		user, owner string
		member      bool
	)
	err = conn.QueryRow(ctx, `
		WITH o AS (
			SELECT coalesce(
				(SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'projection_versions'),
				(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database())) AS owner)
		SELECT current_database(), current_user, o.owner, pg_has_role(current_user, o.owner, 'MEMBER'),
			to_regclass('es_events') IS NOT NULL, to_regclass('projection_versions') IS NOT NULL
		FROM o`).Scan(&d.name, &user, &owner, &member, &d.hasEvents, &d.hasProjections)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("inspect database %s: %w", cfg.ConnConfig.Database, err)
	}
	d.actAs = user
	if owner != user {
		if !member {
			return nil, fmt.Errorf("database %s: connected as %s, but its read models belong to %s; connect as %s (the service's OWNER_DATABASE_URL) or as a superuser", d.name, user, owner, owner)
		}
		setRole := "SET ROLE " + pgx.Identifier{owner}.Sanitize()
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, setRole)
			return err
		}
		d.actAs = owner
	}
	d.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(d.name, err)
	}
	return d, nil
}

func connectError(db string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" {
		return fmt.Errorf("database %s does not exist: is the URL right, and has the service's database been provisioned (orderflow dev or serve does it)?", db)
	}
	return fmt.Errorf("connect to database %s: %w", db, err)
}

// errNoProjections explains an empty registry.
func (d *database) errNoProjections() error {
	return fmt.Errorf("database %s has no projections: is it a service's database? A service installs its projections when it starts, and \"orderflow projections replay NAME\" builds one (NAME: %s)",
		d.name, strings.Join(catalogNames(""), ", "))
}

// installed lists the names in the projection registry.
func (d *database) installed(ctx context.Context) ([]string, error) {
	if !d.hasProjections {
		return nil, nil
	}
	rows, err := d.pool.Query(ctx, "SELECT name FROM projection_versions ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read the projection registry of %s: %w", d.name, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the projection registry of %s: %w", d.name, err)
	}
	return names, nil
}

// stats reads the registry, with the event store's head when it has one.
func (d *database) stats(ctx context.Context) ([]projections.Stats, error) {
	var head projections.Header
	if d.hasEvents || d.externalStore() {
		store, err := d.openStore(ctx)
		if err != nil {
			return nil, err
		}
		defer store.Close()
		head = store
	}
	st, err := projections.ListStats(ctx, d.pool, head)
	if err != nil {
		return nil, fmt.Errorf("read the projections of %s: %w", d.name, err)
	}
	return st, nil
}

func runProjectionsList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("projections list", flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	asJSON := fs.Bool("json", false, "print {\"items\": [...]} as GET /admin/projections does, with a few more fields")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow projections list [flags]

Shows every projection of a service's database: status (live while a
projector runs, rebuilding, else stopped), the checkpoint of the version
serving queries, the event store's head, the lag between them, the
projector's rate and the events it parked.

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return usagef("projections list: unexpected arguments %q", pos)
	}
	d, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	if !d.hasProjections {
		return d.errNoProjections()
	}
	st, err := d.stats(ctx)
	if err != nil {
		return err
	}
	if len(st) == 0 {
		return d.errNoProjections()
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"items": st})
	}
	return printStats(os.Stdout, st)
}

func printStats(w io.Writer, st []projections.Stats) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// AlignRight suits the numbers; the trailing tab keeps the last column
	// aligned too.
	fmt.Fprintln(tw, "NAME\tSTATUS\tVERSION\tCHECKPOINT\tHEAD\tLAG\tEVENTS/S\tPARKED\t")
	for _, s := range st {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t\n", s.Name, s.Status, s.ActiveVersion,
			groupDigits(s.Checkpoint), groupDigits(s.Head), groupDigits(s.Lag),
			groupDigits(uint64(s.EventsPerSecond+0.5)), s.Parked)
	}
	return tw.Flush()
}

func runProjectionsReplay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("projections replay", flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	batch := fs.Int("batch-size", 10_000, "events per replay transaction (1..100000)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: orderflow projections replay NAME [flags]

Rebuilds projection NAME (%s) from the event store in the service's
database with zero downtime: a new version of its tables is built from
position zero while the current version keeps serving queries, then the
views are switched to it in one transaction and the old version is dropped.
A running service keeps projecting meanwhile. Ctrl-C cancels the rebuild
and leaves the current version serving, unchanged.

On a terminal a progress bar is redrawn in place; otherwise a progress line
is printed every few seconds.

Flags:
`, strings.Join(catalogNames(""), ", "))
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		fs.Usage()
		return usagef("projections replay: no projection named (one of %s)", strings.Join(catalogNames(db.service), ", "))
	case len(pos) > 1:
		fs.Usage()
		return usagef("projections replay: one projection at a time, got %q", pos)
	case *batch < 1 || *batch > 100_000:
		return usagef("projections replay: --batch-size %d out of range 1..100000", *batch)
	}
	name := pos[0]
	i := slices.IndexFunc(catalog(), func(r replayable) bool {
		return r.name == name && (db.service == "" || r.service == db.service)
	})
	if i < 0 {
		what := "known projections"
		if db.service != "" {
			what = "the " + db.service + " service's projections"
		}
		return usagef("projections replay: unknown projection %q; %s: %s", name, what, strings.Join(catalogNames(db.service), ", "))
	}
	entry := catalog()[i]
	d, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	return replay(ctx, d, entry, *batch)
}

func replay(ctx context.Context, d *database, entry replayable, batch int) error {
	if !d.hasEvents && !d.externalStore() {
		return fmt.Errorf("database %s has no event store (no es_events table; give --event-store if the service keeps its events elsewhere): a projection is replayed from the event store in its service's own database; is this the %s service's database?", d.name, entry.service)
	}
	installed, err := d.installed(ctx)
	if err != nil {
		return err
	}
	// A database holding other projections but not this one is most
	// likely another service's: building this one there would only leave
	// an unused read model behind.
	if len(installed) > 0 && !slices.Contains(installed, entry.name) {
		return fmt.Errorf("projection %s is not installed in database %s, which has %s; %s belongs to the %s service's database (%s)",
			entry.name, d.name, strings.Join(installed, ", "), entry.name, entry.service, pgdb.Name(entry.service))
	}
	store, err := d.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	src, err := projsource.New(store, eventstore.Filter{StreamPrefixes: entry.prefixes}, projsource.Config{})
	if err != nil {
		return err
	}
	head, err := store.Head(ctx)
	if err != nil {
		return fmt.Errorf("read the event store of %s: %w", d.name, err)
	}
	before, err := activeVersion(ctx, d, entry.name)
	if err != nil {
		return err
	}
	serving := "it is not installed yet"
	if before > 0 {
		serving = fmt.Sprintf("version %d serves queries until the swap", before)
	}
	where := "the store of database " + d.name
	if d.externalStore() {
		where = "the --event-store store"
	}
	fmt.Printf("replay %s: %s events in %s; %s\n", entry.name, groupDigits(head), where, serving)

	bar := newProgressBar(os.Stdout, entry.name)
	var last projections.Progress
	barCtx, stopBar := context.WithCancel(ctx)
	barDone := make(chan struct{})
	go func() {
		defer close(barDone)
		bar.Run(barCtx)
	}()
	start := time.Now()
	err = projections.RebuildWith(ctx, d.pool, src, entry.build(), projections.RebuildConfig{
		BatchSize: batch,
		Progress: func(p projections.Progress) {
			last = p
			bar.Update(p)
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	took := time.Since(start)
	stopBar()
	<-barDone
	bar.Finish()

	switch {
	case err != nil && ctx.Err() != nil:
		kept := fmt.Sprintf("version %d keeps serving queries, unchanged", before)
		if before == 0 {
			// The rebuild installed an empty version 1 before replaying.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			v, verr := activeVersion(cctx, d, entry.name)
			cancel()
			kept = "the projection is not installed"
			if verr == nil && v > 0 {
				kept = fmt.Sprintf("the projection stays installed, empty (version %d), until a replay completes", v)
			}
		}
		fmt.Fprintf(os.Stderr, "replay of %s cancelled after %s: the partial version was dropped; %s\n", entry.name, shortDuration(took), kept)
		return errors.New("projections replay: cancelled")
	case errors.Is(err, projections.ErrRebuildRunning):
		return fmt.Errorf("a rebuild of %s is already running in database %s (by its service or another replay); the current version keeps serving, try again when it ends", entry.name, d.name)
	case err != nil:
		return fmt.Errorf("projections replay: %w (the current version keeps serving)", err)
	}

	after, err := activeVersion(ctx, d, entry.name)
	if err != nil {
		return err
	}
	st, err := projections.ListStats(ctx, d.pool, store)
	if err != nil {
		return err
	}
	var checkpoint uint64
	for _, s := range st {
		if s.Name == entry.name {
			checkpoint = s.Checkpoint
		}
	}
	rate := 0.0
	if took > 0 {
		rate = float64(last.Events) / took.Seconds()
	}
	fmt.Printf("replayed %s events into %s in %s (%s events/s; %s store positions scanned)\n",
		groupDigits(last.Events), entry.name, shortDuration(took), groupDigits(uint64(rate+0.5)), groupDigits(last.Done))
	replaced := ""
	if before > 0 {
		replaced = fmt.Sprintf("; it replaced version %d", before)
	}
	fmt.Printf("%s version %d is now serving queries (checkpoint %s)%s\n",
		entry.name, after, groupDigits(checkpoint), replaced)
	return nil
}

// activeVersion is the version of name serving queries, 0 when it is not
// installed.
func activeVersion(ctx context.Context, d *database, name string) (int, error) {
	if !d.hasProjections {
		// Rebuild creates the registry; look again once it has run.
		var ok bool
		if err := d.pool.QueryRow(ctx, "SELECT to_regclass('projection_versions') IS NOT NULL").Scan(&ok); err != nil || !ok {
			return 0, err
		}
	}
	var v int
	err := d.pool.QueryRow(ctx, "SELECT active_version FROM projection_versions WHERE name = $1", name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the projection registry of %s: %w", d.name, err)
	}
	return v, nil
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// A "--" ends the flags: everything after it is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
