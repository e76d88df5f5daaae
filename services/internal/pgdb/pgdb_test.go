package pgdb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/services/internal/pgdb"
	"github.com/orderflow/orderflow/services/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestMigrations(t *testing.T) {
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []int64
		wantErr string
	}{
		{"ordered numerically", fstest.MapFS{
			"10_c.sql":   {Data: []byte("x")},
			"2_b.sql":    {Data: []byte("x")},
			"0001_a.sql": {Data: []byte("x")},
			"README.md":  {Data: []byte("ignored")},
		}, []int64{1, 2, 10}, ""},
		{"no underscore", fstest.MapFS{"0001.sql": {Data: []byte("x")}}, nil, "name must be"},
		{"not a number", fstest.MapFS{"v1_a.sql": {Data: []byte("x")}}, nil, "positive integer"},
		{"zero", fstest.MapFS{"0_a.sql": {Data: []byte("x")}}, nil, "positive integer"},
		{"duplicate", fstest.MapFS{"1_a.sql": {Data: []byte("x")}, "001_b.sql": {Data: []byte("y")}}, nil, "share version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			migs, err := pgdb.Migrations(tt.files)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, m := range migs {
				got = append(got, m.Version)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("versions %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("versions %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestMigrateAppliesOnceConcurrently(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testenv.Postgres(t))
	// Neither file is re-runnable: applying either twice fails.
	files := fstest.MapFS{
		"0001_widgets.sql": {Data: []byte("CREATE TABLE widgets (id int PRIMARY KEY);")},
		"0002_seed.sql":    {Data: []byte("INSERT INTO widgets VALUES (1); ALTER TABLE widgets ADD COLUMN name text;")},
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pgdb.Migrate(ctx, pool, "widgets", files)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE component = 'widgets'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d migrations recorded, want 2", n)
	}

	// Another component with the same versions is independent.
	other := fstest.MapFS{"0001_gadgets.sql": {Data: []byte("CREATE TABLE gadgets (id int);")}}
	if err := pgdb.Migrate(ctx, pool, "gadgets", other); err != nil {
		t.Fatal(err)
	}

	// A later file is applied on the next run; earlier ones are not re-run.
	files["0003_more.sql"] = &fstest.MapFile{Data: []byte("INSERT INTO widgets VALUES (3, 'three');")}
	if err := pgdb.Migrate(ctx, pool, "widgets", files); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM widgets").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("widgets has %d rows, want 2", n)
	}

	// Editing an applied file is refused.
	files["0001_widgets.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE widgets (id bigint PRIMARY KEY);")}
	if err := pgdb.Migrate(ctx, pool, "widgets", files); err == nil || !strings.Contains(err.Error(), "changed after") {
		t.Fatalf("edited migration: err = %v", err)
	}
}

func TestMigrateFailureRollsBackThatFile(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testenv.Postgres(t))
	files := fstest.MapFS{
		"1_ok.sql":  {Data: []byte("CREATE TABLE a (id int);")},
		"2_bad.sql": {Data: []byte("CREATE TABLE b (id int); SELECT * FROM missing_table;")},
	}
	if err := pgdb.Migrate(ctx, pool, "c", files); err == nil || !strings.Contains(err.Error(), "2_bad.sql") {
		t.Fatalf("err = %v, want failure naming 2_bad.sql", err)
	}
	var a, b *string
	if err := pool.QueryRow(ctx, "SELECT to_regclass('a')::text, to_regclass('b')::text").Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	if a == nil || b != nil {
		t.Fatalf("after failed migration: table a %v, table b %v; want a kept, b rolled back", a, b)
	}
	// The advisory lock was released: a fixed file set migrates now.
	files["2_bad.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (id int);")}
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pgdb.Migrate(ctx2, pool, "c", files); err != nil {
		t.Fatal(err)
	}
}

func connectErr(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func withDB(t *testing.T, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

func TestProvisionIsolatesServices(t *testing.T) {
	ctx := context.Background()
	admin := testenv.PostgresAdminURL(t)
	suffix := uniqueSuffix(t)
	alpha, beta := "alpha_"+suffix, "beta_"+suffix
	t.Cleanup(func() { dropService(t, admin, alpha); dropService(t, admin, beta) })

	alphaURL, err := pgdb.Provision(ctx, admin, alpha)
	if err != nil {
		t.Fatal(err)
	}
	betaURL, err := pgdb.Provision(ctx, admin, beta)
	if err != nil {
		t.Fatal(err)
	}

	// Each role reaches its own database and may create tables there.
	for _, dsn := range []string{alphaURL, betaURL} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect to own database: %v", err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE secrets (v text)"); err != nil {
			t.Fatalf("create table in own database: %v", err)
		}
		conn.Close(ctx)
	}

	// alpha's role cannot connect to beta's database (and vice versa).
	for _, c := range []struct{ dsn, db string }{{alphaURL, pgdb.Name(beta)}, {betaURL, pgdb.Name(alpha)}} {
		err := connectErr(ctx, withDB(t, c.dsn, c.db))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Fatalf("connecting to %s with another service's role: err = %v, want permission denied (42501)", c.db, err)
		}
	}

	// Re-provisioning is idempotent and resets the password: the old URL
	// stops working, the new one works.
	alphaURL2, err := pgdb.Provision(ctx, admin, alpha)
	if err != nil {
		t.Fatal(err)
	}
	if alphaURL2 == alphaURL {
		t.Fatal("re-provision returned the same password")
	}
	if err := connectErr(ctx, alphaURL2); err != nil {
		t.Fatalf("new URL: %v", err)
	}
	if passwordsChecked(ctx, t, admin) {
		if err := connectErr(ctx, alphaURL); err == nil {
			t.Fatal("old password still accepted after re-provision")
		}
	} else {
		t.Log("server trusts TCP logins; old-password rejection not checked")
	}
	// The data survived re-provisioning.
	conn, err := pgx.Connect(ctx, alphaURL2)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM secrets").Scan(&n); err != nil {
		t.Fatalf("table lost after re-provision: %v", err)
	}
}

// passwordsChecked reports whether the server authenticates TCP logins by
// password (a trust-authenticated test server accepts any password, so the
// old-password check would be meaningless there).
func passwordsChecked(ctx context.Context, t *testing.T, admin string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var methods []string
	err = conn.QueryRow(ctx, "SELECT coalesce(array_agg(DISTINCT auth_method), '{}') FROM pg_hba_file_rules WHERE type LIKE 'host%'").Scan(&methods)
	if err != nil {
		t.Logf("cannot read pg_hba rules: %v", err)
		return false
	}
	for _, m := range methods {
		if m == "trust" {
			return false
		}
	}
	return len(methods) > 0
}

func TestProvisionRejectsBadInput(t *testing.T) {
	tests := []struct{ name, admin, service string }{
		{"upper case", "postgres://localhost/postgres", "Orders"},
		{"injection", "postgres://localhost/postgres", `x"; DROP ROLE postgres; --`},
		{"empty", "postgres://localhost/postgres", ""},
		{"keyword dsn", "host=localhost dbname=postgres", "orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pgdb.Provision(context.Background(), tt.admin, tt.service); err == nil {
				t.Fatal("Provision accepted bad input")
			}
		})
	}
}

func TestProvisionConcurrent(t *testing.T) {
	ctx := context.Background()
	admin := testenv.PostgresAdminURL(t)
	svc := "conc_" + uniqueSuffix(t)
	t.Cleanup(func() { dropService(t, admin, svc) })
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = pgdb.Provision(ctx, admin, svc)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("provision %d: %v", i, err)
		}
	}
}

// uniqueSuffix keeps names apart across runs: roles are cluster-wide and a
// test server may be shared.
func uniqueSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func dropService(t *testing.T, admin, service string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{pgdb.Name(service)}.Sanitize()
	for _, stmt := range []string{"DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)", "DROP ROLE IF EXISTS " + ident} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Logf("cleanup %s: %v", stmt, err)
		}
	}
}
