package main

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/bench"
)

// seedEvents is enough order events for several replay batches of 1,000.
const seedEvents = 3000

// cliResult is one finished run of the binary.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary with args, DATABASE_URL unset, and waits for it.
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = envWithout(os.Environ(), "DATABASE_URL")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run orderflow %v: %v", args, err)
	}
	return cliResult{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// seededDatabase returns the URL of a fresh database whose event store holds
// at least seedEvents order events, and a pool on it.
func seededDatabase(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	dbURL := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	seed(t, pool, seedEvents)
	return dbURL, pool
}

func seed(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := bench.SeedOrders(ctx, store, n, 8, nil); err != nil {
		t.Fatal(err)
	}
}

func queryInt(t *testing.T, q projections.Querier, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := q.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

var (
	summaryRE = regexp.MustCompile(`(?m)^replayed ([\d,]+) events into orders in \S+ \(([\d,]+) events/s`)
	servingRE = regexp.MustCompile(`(?m)^orders version (\d+) is now serving queries \(checkpoint ([\d,]+)\)`)
	// The plain progress line printed when stdout is not a terminal.
	lineRE = regexp.MustCompile(`(?m)^replay orders: \w[\w ]* +\d+\.\d% +[\d,]+/[\d,]+ events +[\d,]+ events/s`)
)

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return n
}

// TestProjectionsReplayAndList replays the orders projection of a seeded
// store, twice (the second time over a live version 2), and lists it.
func TestProjectionsReplayAndList(t *testing.T) {
	dbURL, pool := seededDatabase(t)
	placed := queryInt(t, pool, "SELECT count(*) FROM es_events WHERE type = 'OrderPlaced'")
	orderEvents := queryInt(t, pool, "SELECT count(*) FROM es_events WHERE stream LIKE 'order-%'")
	head := queryInt(t, pool, "SELECT max(position) FROM es_events")
	if placed == 0 || orderEvents < seedEvents {
		t.Fatalf("seeded %d events, %d orders", orderEvents, placed)
	}

	for version := 2; version <= 3; version++ {
		r := runCLI(t, "projections", "replay", "orders", "--database-url", dbURL, "--batch-size", "1000")
		if r.code != 0 {
			t.Fatalf("replay exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		m := summaryRE.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no summary line in:\n%s", r.stdout)
		}
		if got := atoi(t, m[1]); got != orderEvents {
			t.Errorf("summary: %d events replayed, want the %d order events", got, orderEvents)
		}
		if atoi(t, m[2]) <= 0 {
			t.Errorf("summary rate %s", m[2])
		}
		s := servingRE.FindStringSubmatch(r.stdout)
		if s == nil {
			t.Fatalf("no line saying which version serves in:\n%s", r.stdout)
		}
		if got := atoi(t, s[1]); got != int64(version) {
			t.Errorf("version %d serving, want %d", got, version)
		}
		if got := atoi(t, s[2]); got != head {
			t.Errorf("checkpoint %d, want the head %d", got, head)
		}
		if !lineRE.MatchString(r.stdout) {
			t.Errorf("no plain progress line (stdout is not a terminal) in:\n%s", r.stdout)
		}
		if strings.ContainsAny(r.stdout, "\r\x1b") {
			t.Errorf("terminal control characters written to a pipe:\n%q", r.stdout)
		}
		if got := queryInt(t, pool, "SELECT count(*) FROM rm_orders"); got != placed {
			t.Errorf("read model holds %d orders, want %d (one per OrderPlaced)", got, placed)
		}
		if got := queryInt(t, pool, "SELECT active_version FROM projection_versions WHERE name = 'orders'"); got != int64(version) {
			t.Errorf("registry: active version %d, want %d", got, version)
		}
		// The old versions are gone.
		if got := queryInt(t, pool, "SELECT count(*) FROM pg_tables WHERE tablename ~ '^orders_v[0-9]+$'"); got != 1 {
			t.Errorf("%d versions of the orders table remain, want 1", got)
		}
	}
	// Every order's status is the one its last event decided.
	statusRE := queryInt(t, pool, `SELECT count(*) FROM rm_orders o JOIN LATERAL (
			SELECT type FROM es_events e WHERE e.stream = 'order-' || o.order_id ORDER BY version DESC LIMIT 1) last ON true
		WHERE o.status <> CASE last.type WHEN 'OrderPlaced' THEN 'pending' WHEN 'OrderConfirmed' THEN 'confirmed'
			WHEN 'OrderRejected' THEN 'rejected' WHEN 'OrderCancelled' THEN 'cancelled' WHEN 'OrderShipped' THEN 'shipped' END`)
	if statusRE != 0 {
		t.Errorf("%d orders have a status other than their last event's", statusRE)
	}

	t.Run("list", func(t *testing.T) {
		r := runCLI(t, "projections", "list", "--database-url", dbURL)
		if r.code != 0 {
			t.Fatalf("list exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("want a header and one row, got:\n%s", r.stdout)
		}
		for _, col := range []string{"NAME", "STATUS", "CHECKPOINT", "HEAD", "LAG", "EVENTS/S", "PARKED"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("header %q lacks %s", lines[0], col)
			}
		}
		hd := groupDigits(uint64(head))
		want := []string{"orders", "stopped", "3", hd, hd, "0", "0", "0"}
		if got := strings.Fields(lines[1]); !slices.Equal(got, want) {
			t.Errorf("row %q, want fields %q", got, want)
		}
	})

	t.Run("list json", func(t *testing.T) {
		r := runCLI(t, "projections", "list", "--json", "--database-url", dbURL)
		if r.code != 0 || !strings.Contains(r.stdout, `"name": "orders"`) || !strings.Contains(r.stdout, `"status": "stopped"`) {
			t.Errorf("exit %d, stdout:\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			code int
			want []string // in stderr
		}{
			{"unknown name", []string{"replay", "nope", "--database-url", dbURL}, 2,
				[]string{`unknown projection "nope"`, "orders, sagas, shipments, stock"}},
			{"unknown name of the service", []string{"replay", "stock", "--service", "orders", "--admin-url", dbURL}, 2,
				[]string{`unknown projection "stock"`, "the orders service's projections: orders"}},
			{"another service's projection", []string{"replay", "stock", "--database-url", dbURL}, 1,
				[]string{"projection stock is not installed", "which has orders", "inventory service's database (orderflow_inventory)"}},
			{"no name", []string{"replay", "--database-url", dbURL}, 2, []string{"no projection named"}},
			{"two names", []string{"replay", "orders", "stock", "--database-url", dbURL}, 2, []string{"one projection at a time"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := runCLI(t, append([]string{"projections"}, tt.args...)...)
				if r.code != tt.code {
					t.Errorf("exit %d, want %d; stderr: %s", r.code, tt.code, r.stderr)
				}
				for _, w := range tt.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
					}
				}
			})
		}
		if got := queryInt(t, pool, "SELECT count(*) FROM projection_versions"); got != 1 {
			t.Errorf("rejected commands changed the registry: %d projections", got)
		}
	})
}

// TestProjectionsReplayCancelled interrupts a rebuild that cannot swap
// (a query holds the view) and checks that the serving version survives.
func TestProjectionsReplayCancelled(t *testing.T) {
	dbURL, pool := seededDatabase(t)
	ctx := context.Background()
	if r := runCLI(t, "projections", "replay", "orders", "--database-url", dbURL); r.code != 0 {
		t.Fatalf("first replay exit %d: %s", r.code, r.stderr)
	}
	orders := queryInt(t, pool, "SELECT count(*) FROM rm_orders")

	// A long query on the view: the swap, which must replace the view,
	// waits behind it.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the test's own read
	if _, err := tx.Exec(ctx, "LOCK TABLE rm_orders IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, binary(t), "projections", "replay", "orders", "--database-url", dbURL)
	cmd.Env = envWithout(os.Environ(), "DATABASE_URL")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the rebuild has replayed everything and is stuck at the
	// swap: version 3 exists and is complete.
	deadline := time.Now().Add(time.Minute)
	for {
		var n int64
		err := pool.QueryRow(ctx, "SELECT count(*) FROM orders_v3").Scan(&n)
		if err == nil && n == orders {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the rebuild never filled version 3 (last: %d rows, %v); stdout:\n%s\nstderr:\n%s", n, err, stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Version 2 still answers while version 3 waits.
	if got := queryInt(t, tx, "SELECT count(*) FROM rm_orders"); got != orders {
		t.Errorf("during the rebuild the view shows %d orders, want %d", got, orders)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if err == nil || cmd.ProcessState.ExitCode() <= 0 {
		t.Errorf("cancelled replay exit: %v, want non-zero", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if want := "version 2 keeps serving queries, unchanged"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	if got := queryInt(t, pool, "SELECT active_version FROM projection_versions WHERE name = 'orders'"); got != 2 {
		t.Errorf("active version %d after the cancelled replay, want 2", got)
	}
	if got := queryInt(t, pool, "SELECT count(*) FROM rm_orders"); got != orders {
		t.Errorf("%d orders after the cancelled replay, want %d", got, orders)
	}
	if got := queryInt(t, pool, "SELECT count(*) FROM pg_tables WHERE tablename = 'orders_v3'"); got != 0 {
		t.Error("the cancelled version 3 was not dropped")
	}
	if got := queryInt(t, pool, "SELECT count(*) FROM projection_versions WHERE rebuilding_version IS NOT NULL"); got != 0 {
		t.Error("the cancelled rebuild is still registered")
	}
}

// TestProjectionsReplayKeepsServiceOwner replays as a superuser in a
// database owned by a service role: the new version must belong to the
// service, which must be able to write to it and, later, to drop it.
func TestProjectionsReplayKeepsServiceOwner(t *testing.T) {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.PostgresAdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	role := "svc_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'pw' NOSUPERUSER"); err != nil {
		t.Fatal(err)
	}
	// Registered before the database, so it runs after the database is
	// dropped.
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	dbURL := testenv.Postgres(t)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{cfg.ConnConfig.Database}.Sanitize()+" OWNER TO "+role); err != nil {
		t.Fatal(err)
	}
	// The service connects as its role, like a provisioned service.
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "pw"
	svc, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if err := postgres.Migrate(ctx, svc); err != nil {
		t.Fatal(err)
	}
	seed(t, svc, 500)

	r := runCLI(t, "projections", "replay", "orders", "--database-url", dbURL)
	if r.code != 0 {
		t.Fatalf("replay exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var owners []string
	rows, err := svc.Query(ctx, `SELECT DISTINCT tableowner FROM pg_tables WHERE tablename IN ('orders_v2', 'projection_versions', 'projection_parked')`)
	if err != nil {
		t.Fatal(err)
	}
	owners, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(owners) != 1 || owners[0] != role {
		t.Errorf("read model tables owned by %v, want only %s", owners, role)
	}
	placed := queryInt(t, svc, "SELECT count(*) FROM es_events WHERE type = 'OrderPlaced'")
	if got := queryInt(t, svc, "SELECT count(*) FROM rm_orders"); got != placed {
		t.Errorf("service role sees %d orders, want %d", got, placed)
	}
	// A second replay, by the service's own URL this time, must be able to
	// replace and drop what the superuser's replay built.
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "pw")
	if r := runCLI(t, "projections", "replay", "orders", "--database-url", u.String()); r.code != 0 {
		t.Fatalf("replay as the service role: exit %d\n%s", r.code, r.stderr)
	}
	if got := queryInt(t, svc, "SELECT active_version FROM projection_versions WHERE name = 'orders'"); got != 3 {
		t.Errorf("active version %d, want 3", got)
	}
}

func TestProjectionsUsage(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"projections"}, 2, "no subcommand"},
		{"unknown subcommand", []string{"projections", "rebuild"}, 2, `unknown subcommand "rebuild"`},
		{"help", []string{"projections", "-h"}, 0, ""},
		{"list help", []string{"projections", "list", "-h"}, 0, ""},
		{"replay help", []string{"projections", "replay", "-h"}, 0, ""},
		{"no database", []string{"projections", "list"}, 2, "no database given: give --database-url URL"},
		{"service without admin URL", []string{"projections", "list", "--service", "orders"}, 2, "--service orders needs a superuser URL"},
		{"unknown service", []string{"projections", "list", "--service", "billing", "--admin-url", "postgres://h/db"}, 2, `unknown service "billing"`},
		{"service and database", []string{"projections", "list", "--service", "orders", "--database-url", "postgres://h/db"}, 2, "either --database-url or --service"},
		{"admin URL alone", []string{"projections", "list", "--admin-url", "postgres://h/db"}, 2, "--admin-url goes with --service"},
		{"admin DSN", []string{"projections", "list", "--service", "orders", "--admin-url", "host=h user=u password=secret"}, 2, "must be a postgres:// URL"},
		{"unparsable URL", []string{"projections", "list", "--database-url", "postgres://u:secret@h:notaport/db"}, 2, "cannot be parsed"},
		{"list extra args", []string{"projections", "list", "orders", "--database-url", "postgres://h/db"}, 2, "unexpected arguments"},
		{"replay unknown", []string{"projections", "replay", "nope"}, 2, "known projections: orders, sagas, shipments, stock"},
		{"replay bad batch", []string{"projections", "replay", "orders", "--batch-size", "0"}, 2, "--batch-size 0 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing here may get as far as connecting
			var stderr bytes.Buffer
			if got := exitCode(run(ctx, tt.args), &stderr); got != tt.code {
				t.Errorf("exit code %d, want %d (%s)", got, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("error %q lacks %q", stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), "secret") {
				t.Errorf("error shows the password: %s", stderr.String())
			}
		})
	}
}

// TestProjectionsDatabaseChecks runs the commands against databases that
// are not a service's.
func TestProjectionsDatabaseChecks(t *testing.T) {
	empty := testenv.Postgres(t)
	admin := testenv.PostgresAdminURL(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"list without projections", []string{"list", "--database-url", empty}, "has no projections"},
		{"replay without event store", []string{"replay", "orders", "--database-url", empty}, "has no event store"},
		{"service database missing", []string{"list", "--service", "shipping", "--admin-url", admin}, "database orderflow_shipping does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"projections"}, tt.args...)...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1; stderr: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}

func TestServiceDatabaseURL(t *testing.T) {
	tests := []struct {
		admin, want string
	}{
		{"postgres://postgres:pw@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres:pw@127.0.0.1:5432/orderflow_orders?sslmode=disable"},
		{"postgresql://u@db.example:6432", "postgresql://u@db.example:6432/orderflow_orders"},
		{"postgres://u:p@h/x?dbname=x&sslmode=require", "postgres://u:p@h/orderflow_orders?sslmode=require"},
	}
	for _, tt := range tests {
		got, err := serviceDatabaseURL(tt.admin, "orders")
		if err != nil || got != tt.want {
			t.Errorf("serviceDatabaseURL(%q) = %q, %v; want %q", tt.admin, got, err, tt.want)
		}
	}
	if _, err := serviceDatabaseURL("host=h dbname=postgres", "orders"); err == nil {
		t.Error("a keyword/value DSN was accepted")
	}
	hint := projectionsHint("postgres://postgres:pw@127.0.0.1:5432/postgres", false)
	if strings.Contains(hint, "pw") || !strings.Contains(hint, "/orderflow_orders") {
		t.Errorf("hint %q", hint)
	}
}

func TestRenderProgress(t *testing.T) {
	p := projections.Progress{Phase: "replay", Done: 250_000, Total: 1_000_000, Events: 240_000, EventsPerSecond: 81_234.4, ETA: 9 * time.Second}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"bar", bar(renderBar("orders", p, 3*time.Second, 140, 0)),
			"orders replaying   [██████████░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░]   25.0%  250,000/1,000,000 events  81,234 events/s  ETA 9.0s"},
		{"short bar", bar(renderBar("orders", p, 3*time.Second, 100, 0)),
			"orders replaying   [██░░░░░░░░]   25.0%  250,000/1,000,000 events  81,234 events/s  ETA 9.0s"},
		{"kept width", bar(renderBar("orders", p, 3*time.Second, 140, 20)),
			"orders replaying   [█████░░░░░░░░░░░░░░░]   25.0%  250,000/1,000,000 events  81,234 events/s  ETA 9.0s"},
		{"no room for a bar", bar(renderBar("orders", p, 3*time.Second, 60, 0)),
			"orders replaying   25.0%  250,000/1,000,000 events  81,234 e"},
		{"indexing", renderLine("orders", projections.Progress{Phase: "replay", Done: 10, Total: 10, EventsPerSecond: 5}, 1500*time.Millisecond),
			"replay orders: indexing  100.0%  10/10 events  5 events/s  elapsed 1.5s"},
		{"done", renderLine("stock", projections.Progress{Phase: "done", Done: 1_234_567, Total: 1_234_567, EventsPerSecond: 99_999.6}, 75*time.Second),
			"replay stock: done  100.0%  1,234,567/1,234,567 events  100,000 events/s  took 1m15s"},
		{"empty store", renderLine("orders", projections.Progress{Phase: "done"}, 20*time.Millisecond),
			"replay orders: done  100.0%  0/0 events  0 events/s  took 20ms"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, tt.got, tt.want)
		}
	}
}

func bar(line string, _ int) string { return line }

func TestProgressBarPacing(t *testing.T) {
	var tty, pipe bytes.Buffer
	bars := []*progressBar{
		{w: &tty, label: "orders", tty: true, cols: func() int { return 120 }, start: time.Now()},
		{w: &pipe, label: "orders", start: time.Now()},
	}
	for i := range 50 {
		for _, b := range bars {
			b.Update(projections.Progress{Phase: "replay", Done: uint64(i), Total: 50})
		}
	}
	for _, b := range bars {
		b.Finish()
	}
	// Fifty quick updates: the first and the final state are shown, the
	// rest fall within the redraw period.
	if n := strings.Count(tty.String(), "\r"); n != 2 {
		t.Errorf("terminal: %d redraws, want 2: %q", n, tty.String())
	}
	if !strings.HasSuffix(tty.String(), "\x1b[K\n") {
		t.Errorf("terminal bar does not end its line: %q", tty.String())
	}
	if n := strings.Count(pipe.String(), "\n"); n != 2 || strings.Contains(pipe.String(), "\r") {
		t.Errorf("pipe: want 2 plain lines, got %q", pipe.String())
	}
}

func TestGroupDigitsAndDurations(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", 100000: "100,000"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond: "850ms", 12300 * time.Millisecond: "12.3s", 245 * time.Second: "4m05s", 62 * time.Minute: "1h02m",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestProjectionsReplayFromEventStoreURL replays a read model whose events
// live in another database, as a service run with serve --event-store keeps
// them: without --event-store the replay refuses (the service database has
// no events), with it every order of that store lands in the read model.
func TestProjectionsReplayFromEventStoreURL(t *testing.T) {
	eventsURL, events := seededDatabase(t)
	placed := queryInt(t, events, "SELECT count(*) FROM es_events WHERE type = 'OrderPlaced'")
	serviceURL := testenv.Postgres(t)
	service, err := pgxpool.New(context.Background(), serviceURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(service.Close)

	r := runCLI(t, "projections", "replay", "orders", "--database-url", serviceURL)
	if r.code == 0 || !strings.Contains(r.stderr, "give --event-store") {
		t.Fatalf("replay without --event-store: exit %d, want a refusal naming --event-store\nstderr:\n%s", r.code, r.stderr)
	}
	r = runCLI(t, "projections", "replay", "orders", "--database-url", serviceURL, "--event-store", eventsURL)
	if r.code != 0 {
		t.Fatalf("replay exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "the --event-store store") {
		t.Errorf("the replay does not say where it reads from:\n%s", r.stdout)
	}
	if got := queryInt(t, service, "SELECT count(*) FROM rm_orders"); got != placed {
		t.Errorf("read model holds %d orders, want the %d placed in the event store", got, placed)
	}
	if got := queryInt(t, service, "SELECT (to_regclass('es_events') IS NOT NULL)::int"); got != 0 {
		t.Errorf("the replay created an event store in the service's database")
	}
	r = runCLI(t, "projections", "list", "--database-url", serviceURL, "--event-store", eventsURL)
	if r.code != 0 || !strings.Contains(r.stdout, "orders") {
		t.Fatalf("list exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
