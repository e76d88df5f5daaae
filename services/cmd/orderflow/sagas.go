package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/pgdb"
)

// defaultSagasURL is the sagas service of the dev stack (make run).
const defaultSagasURL = "http://127.0.0.1:8084"

// sagaTerm is where the sagas command writes and what it knows of the
// terminal it writes to. Tests build one over buffers, with a fixed clock.
type sagaTerm struct {
	out, errOut io.Writer
	// color: ANSI colours, only on a terminal and without NO_COLOR.
	color bool
	// cols is the terminal's width, 0 when out is not a terminal.
	cols   int
	now    func() time.Time
	getenv func(string) string
}

func stdSagaTerm() sagaTerm {
	fd := int(os.Stdout.Fd())
	t := sagaTerm{out: os.Stdout, errOut: os.Stderr, now: time.Now, getenv: os.Getenv}
	if term.IsTerminal(fd) {
		t.color = os.Getenv("NO_COLOR") == ""
		if w, _, err := term.GetSize(fd); err == nil && w > 0 {
			t.cols = w
		}
	}
	return t
}

func runSagas(ctx context.Context, args []string) error {
	return runSagasOn(ctx, stdSagaTerm(), args)
}

func runSagasOn(ctx context.Context, t sagaTerm, args []string) error {
	on := func(run func(context.Context, sagaTerm, []string) error) func(context.Context, []string) error {
		return func(ctx context.Context, args []string) error { return run(ctx, t, args) }
	}
	return runSubcommand(ctx, "sagas", args, []subcommand{
		{"show", on(runSagasShow)},
		{"list", on(runSagasList)},
		{"retry", on(runSagasRetry)},
	}, sagasUsage, t.out, t.errOut)
}

func sagasUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage:
  orderflow sagas show ID [flags]
  orderflow sagas list [--status S] [--order-id X] [--limit N] [flags]
  orderflow sagas retry ID [flags]

show draws a saga's timeline: each step with its status, duration, attempts
and the service that answered, its compensations, and the saga's history.
list shows sagas as a table, newest first. retry resumes a saga parked as
failed (POST /api/sagas/{id}/retry).

By default they ask the running sagas service (%s, or --url,
or env ORDERFLOW_SAGAS_URL), as started by make run. show and list can
instead read the sagas service's database directly, running or not:
--database-url URL, --admin-url URL (a superuser URL; the database %s
is derived from it), or --db (env OWNER_DATABASE_URL, else DATABASE_URL).
retry always goes through the service, which owns the saga's decisions.

Run "orderflow sagas show -h" for the flags.
`, defaultSagasURL, sagasDatabaseName())
}

func sagasDatabaseName() string { return pgdb.Name("sagas") }

// sagaSourceFlags say where sagas are read from.
type sagaSourceFlags struct {
	url         string
	token       string
	databaseURL string
	adminURL    string
	db          bool
	// eventStore is where the sagas service's events live when not in
	// its database (serve --event-store).
	eventStore string
}

func (f *sagaSourceFlags) register(fs *flag.FlagSet, withDatabase bool) {
	fs.StringVar(&f.url, "url", "", "the sagas service, or the gateway (default: env ORDERFLOW_SAGAS_URL, else "+defaultSagasURL+")")
	fs.StringVar(&f.token, "token", "", "bearer token sent with each request, as the gateway wants (default: env ORDERFLOW_TOKEN); a service's own port needs none")
	if !withDatabase {
		return
	}
	fs.StringVar(&f.databaseURL, "database-url", "", "read the sagas service's database at this URL directly, instead of asking the service")
	fs.StringVar(&f.adminURL, "admin-url", "", "read the sagas service's database directly, at this superuser URL's server (the URL make run prints)")
	fs.BoolVar(&f.db, "db", false, "read the sagas service's database directly, at env OWNER_DATABASE_URL, else DATABASE_URL")
	fs.StringVar(&f.eventStore, "event-store", "", "with a database flag: the sagas service's event store when it is not in its database, as serve --event-store names it (default: env EVENT_STORE_URL)")
}

// open returns the source the flags name: the database when one of the
// database flags is given, else the service.
func (f sagaSourceFlags) open(ctx context.Context, t sagaTerm) (sagaSource, error) {
	given := 0
	for _, b := range []bool{f.databaseURL != "", f.adminURL != "", f.db} {
		if b {
			given++
		}
	}
	if given > 1 {
		return nil, usagef("give one of --database-url, --admin-url and --db")
	}
	if given == 1 && (f.url != "" || f.token != "") {
		return nil, usagef("--url and --token ask the service; they do not go with a database flag")
	}
	dbURL := f.databaseURL
	switch {
	case f.adminURL != "":
		u, err := serviceDatabaseURL(f.adminURL, "sagas")
		if err != nil {
			return nil, usageError{err}
		}
		dbURL = u
	case f.db:
		dbURL = t.getenv("OWNER_DATABASE_URL")
		if dbURL == "" {
			dbURL = t.getenv("DATABASE_URL")
		}
		if dbURL == "" {
			return nil, usagef("--db reads the database at env OWNER_DATABASE_URL or DATABASE_URL, and neither is set")
		}
	}
	if f.eventStore != "" && dbURL == "" {
		return nil, usagef("--event-store goes with --database-url, --admin-url or --db")
	}
	if dbURL != "" {
		es := f.eventStore
		if es == "" {
			es = t.getenv("EVENT_STORE_URL")
		}
		return openSagaDatabase(ctx, dbURL, es)
	}
	return f.service(t)
}

// service returns the sagas service the flags name.
func (f sagaSourceFlags) service(t sagaTerm) (*httpSagaSource, error) {
	base := f.url
	if base == "" {
		base = t.getenv("ORDERFLOW_SAGAS_URL")
	}
	if base == "" {
		base = defaultSagasURL
	}
	token := f.token
	if token == "" {
		token = t.getenv("ORDERFLOW_TOKEN")
	}
	return newHTTPSagaSource(base, token)
}

// sagaIDArg reads the one positional argument of show and retry: a saga id,
// or with --order-id the order whose order_fulfillment saga is meant.
func sagaIDArg(cmd string, pos []string, orderID string) (string, error) {
	switch {
	case orderID != "" && len(pos) > 0:
		return "", usagef("sagas %s: give a saga ID or --order-id, not both", cmd)
	case orderID != "":
		if !domain.ValidUUID(orderID) {
			return "", usagef("sagas %s: --order-id %q is not an order id (a UUID)", cmd, orderID)
		}
		return sagas.SagaID(strings.ToLower(orderID)), nil
	case len(pos) == 0:
		return "", usagef("sagas %s: no saga ID given (the saga_id POST /api/orders answered, or --order-id ORDER_ID)", cmd)
	case len(pos) > 1:
		return "", usagef("sagas %s: one saga at a time, got %q", cmd, pos)
	case !domain.ValidUUID(pos[0]):
		return "", usagef("sagas %s: %q is not a saga id (a UUID)", cmd, pos[0])
	}
	return strings.ToLower(pos[0]), nil
}

func runSagasShow(ctx context.Context, t sagaTerm, args []string) error {
	fs := flag.NewFlagSet("sagas show", flag.ContinueOnError)
	fs.SetOutput(t.errOut)
	var src sagaSourceFlags
	src.register(fs, true)
	orderID := fs.String("order-id", "", "show the order_fulfillment saga of this order instead of naming the saga")
	asJSON := fs.Bool("json", false, "print the saga as GET /api/sagas/{id} answers it, instead of drawing it")
	noHistory := fs.Bool("no-history", false, "draw the steps only, without the history lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow sagas show ID [flags]

Draws the saga's timeline: a line per step with its status, a bar placing
its duration within the saga's span, its attempts and retries, the service
that answered and the error, a line per compensation and for the closing
action, then the saga's history with times relative to its start. Colours
only on a terminal (NO_COLOR turns them off).

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	id, err := sagaIDArg("show", pos, *orderID)
	if err != nil {
		return err
	}
	s, err := src.open(ctx, t)
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Saga(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(t.out, v)
	}
	return renderSaga(t.out, v, timelineOptions{
		color: t.color, cols: t.cols, now: t.now(), history: !*noHistory,
	})
}

func runSagasList(ctx context.Context, t sagaTerm, args []string) error {
	fs := flag.NewFlagSet("sagas list", flag.ContinueOnError)
	fs.SetOutput(t.errOut)
	var src sagaSourceFlags
	src.register(fs, true)
	var q sagaQuery
	fs.StringVar(&q.status, "status", "", "only sagas with this status: running, completed, compensating, compensated or failed")
	fs.StringVar(&q.orderID, "order-id", "", "only the sagas of this order")
	fs.IntVar(&q.limit, "limit", 50, "at most this many sagas (1..500)")
	fs.StringVar(&q.after, "after", "", "the cursor a previous page ended with, to read the next page")
	asJSON := fs.Bool("json", false, "print the page as GET /api/sagas answers it")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow sagas list [flags]

Lists sagas, newest first: id, type, status, the step in progress (or the
one a failed saga is parked on), the order, how long ago it started and how
long it took. "list --status failed" shows what waits for an operator.

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		fs.Usage()
		return usagef("sagas list: unexpected arguments %q", pos)
	case q.limit < 1 || q.limit > 500:
		return usagef("sagas list: --limit %d out of range 1..500", q.limit)
	case q.status != "" && !validSagaStatus(q.status):
		return usagef("sagas list: --status %q: want running, completed, compensating, compensated or failed", q.status)
	case q.orderID != "" && !domain.ValidUUID(q.orderID):
		return usagef("sagas list: --order-id %q is not an order id (a UUID)", q.orderID)
	}
	q.orderID = strings.ToLower(q.orderID)
	s, err := src.open(ctx, t)
	if err != nil {
		return err
	}
	defer s.Close()
	page, err := s.List(ctx, q)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(t.out, page)
	}
	if len(page.Items) == 0 {
		fmt.Fprintln(t.errOut, "no sagas"+q.describe())
		return nil
	}
	if err := renderSagaList(t.out, page.Items, t.now(), t.color); err != nil {
		return err
	}
	if page.Next != "" {
		fmt.Fprintf(t.errOut, "more sagas: add --after %s\n", page.Next)
	}
	return nil
}

func runSagasRetry(ctx context.Context, t sagaTerm, args []string) error {
	fs := flag.NewFlagSet("sagas retry", flag.ContinueOnError)
	fs.SetOutput(t.errOut)
	var src sagaSourceFlags
	src.register(fs, false)
	orderID := fs.String("order-id", "", "retry the order_fulfillment saga of this order instead of naming the saga")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow sagas retry ID [flags]

Resumes a saga parked as failed: the sagas service sends the action it is
parked on again, with a fresh retry budget. Only a failed saga can be
retried. Through the gateway this needs an admin's token (--token).

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	id, err := sagaIDArg("retry", pos, *orderID)
	if err != nil {
		return err
	}
	s, err := src.service(t)
	if err != nil {
		return err
	}
	defer s.Close()
	status, err := s.Retry(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(t.out, "saga %s resumed (%s); follow it with: orderflow sagas show %s\n", id, status, id)
	return nil
}

func validSagaStatus(s string) bool { return sagas.Status(s).Valid() }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
