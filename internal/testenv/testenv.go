// Package testenv gives tests real infrastructure: a fresh PostgreSQL
// database per test and a NATS server with JetStream per test.
//
// PostgreSQL comes from TEST_POSTGRES_URL (a superuser URL) when set, else
// from a testcontainers container when a Docker engine answers, else from a
// private cluster started from the PostgreSQL binaries on the machine. The
// server is set up once per test binary, lazily; every test then gets its own
// database, cloned from an empty template and dropped when the test ends.
// NATS comes from TEST_NATS_URL when set, else from a server embedded in the
// test binary, fresh for each test.
//
// A package whose tests use PostgreSQL must route TestMain through Main so
// that what the binary started is stopped when it ends:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/natsembed"
)

// Environment variables that point the tests at servers run elsewhere.
const (
	EnvPostgresURL = "TEST_POSTGRES_URL"
	EnvNATSURL     = "TEST_NATS_URL"
)

// templateDB is the empty database every test database is cloned from. It
// refuses connections, because CREATE DATABASE ... TEMPLATE fails while
// anyone is connected to the template.
const templateDB = "orderflow_test_template"

var mainCalled atomic.Bool

var exit struct {
	mu    sync.Mutex
	hooks []func(context.Context) error
}

// atExit registers fn to run when Main ends, after the tests, in reverse
// order of registration. Whatever a source starts once per binary (a
// server, a container) registers its stop here.
func atExit(fn func(context.Context) error) {
	exit.mu.Lock()
	defer exit.mu.Unlock()
	exit.hooks = append(exit.hooks, fn)
}

// AtExit registers fn to run when Main finishes, after the tests and
// before the servers started for this binary stop; for package-level
// fixtures such as a binary built once for all tests.
func AtExit(fn func()) {
	atExit(func(context.Context) error { fn(); return nil })
}

// Main runs the tests, stops the servers this binary started and exits with
// the tests' code (1 if they passed but cleaning up failed).
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	exit.mu.Lock()
	hooks := exit.hooks
	exit.hooks = nil
	exit.mu.Unlock()
	for i := len(hooks) - 1; i >= 0; i-- {
		if err := hooks[i](ctx); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: cleanup: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	cancel()
	os.Exit(code)
}

// postgresEnv is the server all tests of the binary share.
type postgresEnv struct {
	adminURL string
	admin    *pgxpool.Pool
}

var pg struct {
	once sync.Once
	env  *postgresEnv
	err  error
}

// PostgresAdminURL returns the superuser URL of the shared server: the
// "postgres" database of a server this binary started, or TEST_POSTGRES_URL
// as given. Tests that need a database of their own use Postgres.
func PostgresAdminURL(t testing.TB) string {
	t.Helper()
	return postgresServer(t).adminURL
}

// Postgres creates an empty database for this test and returns a superuser
// URL for it. The database is dropped, connections and all, when the test
// ends.
func Postgres(t testing.TB) string {
	t.Helper()
	env := postgresServer(t)
	name := "t_" + randomHex(8)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+templateDB); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := env.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(env.adminURL, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return u
}

// postgresServer sets the shared server up on first use and fails the test
// (every test, once it has failed) when that is impossible.
func postgresServer(t testing.TB) *postgresEnv {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("testenv: the package's TestMain must call testenv.Main(m), which stops the PostgreSQL server when the tests end")
	}
	pg.once.Do(func() { pg.env, pg.err = setupPostgres() })
	if pg.err != nil {
		t.Fatalf("testenv: PostgreSQL unavailable: %v", pg.err)
	}
	return pg.env
}

func setupPostgres() (*postgresEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	adminURL, source, err := startPostgres(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "testenv: PostgreSQL from %s\n", source)

	cfg, err := pgxpool.ParseConfig(adminURL)
	if err != nil {
		return nil, fmt.Errorf("admin URL: %w", err)
	}
	cfg.MaxConns = 4
	admin, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect admin pool: %w", err)
	}
	atExit(func(context.Context) error { admin.Close(); return nil })

	if err := ensureTemplate(ctx, admin); err != nil {
		return nil, err
	}
	return &postgresEnv{adminURL: adminURL, admin: admin}, nil
}

// startPostgres picks the source in the documented order and returns the
// superuser URL and a description of the source for the log.
func startPostgres(ctx context.Context) (url, source string, err error) {
	if u := os.Getenv(EnvPostgresURL); u != "" {
		return u, EnvPostgresURL + " (" + redact(u) + ")", nil
	}
	if dockerAvailable() {
		u, err := startContainer(ctx)
		if err != nil {
			return "", "", fmt.Errorf("a Docker engine answers but the PostgreSQL container failed (set %s to use another server): %w", EnvPostgresURL, err)
		}
		return u, "a testcontainers container (" + redact(u) + ")", nil
	}
	u, err := startLocal(ctx)
	if err != nil {
		return "", "", fmt.Errorf("no %s, no Docker engine, and the private cluster failed: %w", EnvPostgresURL, err)
	}
	return u, "a private cluster started from the local PostgreSQL binaries (" + redact(u) + ", fsync off)", nil
}

func ensureTemplate(ctx context.Context, admin *pgxpool.Pool) error {
	_, err := admin.Exec(ctx, "CREATE DATABASE "+templateDB+
		" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' IS_TEMPLATE true ALLOW_CONNECTIONS false")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Another test binary sharing the server may have created it first
		// (duplicate_database, or unique_violation when the two raced).
		if pgErr.Code == "42P04" || pgErr.Code == "23505" {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	return nil
}

// NATS returns the URL of a NATS server with JetStream: TEST_NATS_URL when
// set (shared, so tests must use names of their own), else an embedded
// server for this test alone, shut down when it ends.
func NATS(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvNATSURL); u != "" {
		logNATSOnce.Do(func() { fmt.Fprintf(os.Stderr, "testenv: NATS from %s (%s)\n", EnvNATSURL, redact(u)) })
		return u
	}
	logNATSOnce.Do(func() { fmt.Fprintln(os.Stderr, "testenv: NATS from an embedded server per test") })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := natsembed.Start(ctx, natsembed.Config{})
	if err != nil {
		t.Fatalf("testenv: start embedded NATS: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s.URL()
}

var logNATSOnce sync.Once

// withDatabase points a PostgreSQL URL or keyword/value DSN at database db.
func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", redact(dsn), err)
		}
		u.Path = "/" + db
		u.RawPath = ""
		q := u.Query()
		if q.Has("dbname") {
			q.Set("dbname", db)
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// In a keyword/value DSN the last setting of a keyword wins.
	return strings.TrimSpace(dsn) + " dbname=" + db, nil
}

// redact hides the password of a URL meant for a log line.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "a DSN"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail on supported platforms
	return hex.EncodeToString(b)
}
