package pgdb_test

import (
	"context"
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

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/pgdb"
	"github.com/orderflow/orderflow/services/internal/pgdb/pgdbtest"
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

// wantCode fails the test unless err is a PostgreSQL error with code.
func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Errorf("%s: err = %v, want SQLSTATE %s", what, err, code)
	}
}

const insufficientPrivilege = "42501"

// provision provisions a service with a name of its own for this test and
// drops its database and roles when the test ends.
func provision(t *testing.T, prefix string) (service string, urls pgdb.URLs) {
	t.Helper()
	admin := testenv.PostgresAdminURL(t)
	service = pgdbtest.Service(t, admin, prefix)
	urls, err := pgdb.Provision(context.Background(), admin, service)
	if err != nil {
		t.Fatal(err)
	}
	return service, urls
}

// widgetMigrations is a component's schema with a table whose key comes
// from a sequence, a view and a function, as a service's migrations may
// have.
var widgetMigrations = fstest.MapFS{
	"0001_widgets.sql": {Data: []byte(`
		CREATE TABLE widgets (id bigserial PRIMARY KEY, name text NOT NULL);
		CREATE VIEW widget_names AS SELECT name FROM widgets;
		CREATE FUNCTION widget_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM widgets';`)},
}

func TestProvisionLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	alpha, alphaURLs := provision(t, "alpha")
	beta, betaURLs := provision(t, "beta")

	// The owner role runs the migrations.
	if err := pgdb.Migrate(ctx, newPool(t, alphaURLs.Owner), "widgets", widgetMigrations); err != nil {
		t.Fatalf("migrate as the owner: %v", err)
	}
	app := newPool(t, alphaURLs.Service)
	var user string
	if err := app.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != pgdb.ServiceRole(alpha) {
		t.Fatalf("service URL connects as %s, want %s", user, pgdb.ServiceRole(alpha))
	}

	t.Run("service role reads and writes rows", func(t *testing.T) {
		for _, stmt := range []string{
			"INSERT INTO widgets (name) VALUES ('a'), ('b')", // nextval on the owner's sequence
			"UPDATE widgets SET name = 'c' WHERE name = 'b'",
			"DELETE FROM widgets WHERE name = 'a'",
			"SELECT count(*) FROM widget_names",
			"SELECT widget_count()",
			"SELECT count(*) FROM schema_migrations",
			"SELECT pg_advisory_xact_lock(42)",
		} {
			if _, err := app.Exec(ctx, stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
		var names []string
		rows, err := app.Query(ctx, "SELECT name FROM widget_names")
		if err == nil {
			names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil || len(names) != 1 || names[0] != "c" {
			t.Errorf("rows seen by the service role: %v, %v; want [c]", names, err)
		}
	})

	t.Run("service role changes no schema", func(t *testing.T) {
		for _, stmt := range []string{
			"CREATE TABLE intruder (id int)",
			"CREATE VIEW intruder AS SELECT 1",
			"CREATE TEMP TABLE intruder (id int)",
			"CREATE SCHEMA intruder",
			"CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
			"CREATE INDEX ON widgets (name)",
			"ALTER TABLE widgets ADD COLUMN extra int",
			"ALTER TABLE widgets OWNER TO CURRENT_USER",
			"DROP TABLE widgets",
			"DROP VIEW widget_names",
			"TRUNCATE widgets",
			"CREATE OR REPLACE VIEW widget_names AS SELECT name FROM widgets",
		} {
			_, err := app.Exec(ctx, stmt)
			wantCode(t, err, insufficientPrivilege, stmt)
		}
	})

	t.Run("later tables are granted to the service role", func(t *testing.T) {
		more := fstest.MapFS{
			"0001_widgets.sql": widgetMigrations["0001_widgets.sql"],
			"0002_parts.sql":   {Data: []byte("CREATE TABLE parts (id bigserial PRIMARY KEY, widget bigint NOT NULL);")},
		}
		if err := pgdb.Migrate(ctx, newPool(t, alphaURLs.Owner), "widgets", more); err != nil {
			t.Fatalf("migrate as the owner: %v", err)
		}
		if _, err := app.Exec(ctx, "INSERT INTO parts (widget) VALUES (1)"); err != nil {
			t.Errorf("service role on a table created after provisioning: %v", err)
		}
		_, err := app.Exec(ctx, "DROP TABLE parts")
		wantCode(t, err, insufficientPrivilege, "DROP TABLE parts")
	})

	t.Run("no role reaches another database", func(t *testing.T) {
		for _, c := range []struct {
			role, dsn string
			others    []string
		}{
			{"alpha owner", alphaURLs.Owner, []string{pgdb.Name(beta), "postgres", "template1"}},
			{"alpha service", alphaURLs.Service, []string{pgdb.Name(beta), "postgres", "template1"}},
			{"beta owner", betaURLs.Owner, []string{pgdb.Name(alpha), "postgres", "template1"}},
			{"beta service", betaURLs.Service, []string{pgdb.Name(alpha), "postgres", "template1"}},
		} {
			if err := connectErr(ctx, c.dsn); err != nil {
				t.Errorf("%s cannot connect to its own database: %v", c.role, err)
			}
			for _, db := range c.others {
				wantCode(t, connectErr(ctx, withDB(t, c.dsn, db)), insufficientPrivilege, c.role+" connecting to "+db)
			}
		}
	})

	t.Run("superusers still reach the shared databases", func(t *testing.T) {
		admin := testenv.PostgresAdminURL(t)
		for _, db := range pgdb.SharedDatabases {
			if err := connectErr(ctx, withDB(t, admin, db)); err != nil {
				t.Errorf("admin connecting to %s: %v", db, err)
			}
		}
	})
}

func TestReprovisionKeepsDataAndResetsPasswords(t *testing.T) {
	ctx := context.Background()
	admin := testenv.PostgresAdminURL(t)
	svc, first := provision(t, "again")
	if err := pgdb.Migrate(ctx, newPool(t, first.Owner), "widgets", widgetMigrations); err != nil {
		t.Fatal(err)
	}
	if _, err := newPool(t, first.Service).Exec(ctx, "INSERT INTO widgets (name) VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}

	second, err := pgdb.Provision(ctx, admin, svc)
	if err != nil {
		t.Fatal(err)
	}
	if second.Owner == first.Owner || second.Service == first.Service {
		t.Fatal("re-provision returned the same passwords")
	}
	for _, dsn := range []string{second.Owner, second.Service} {
		if err := connectErr(ctx, dsn); err != nil {
			t.Fatalf("new URL: %v", err)
		}
	}
	if passwordsChecked(ctx, t, admin) {
		for _, dsn := range []string{first.Owner, first.Service} {
			if err := connectErr(ctx, dsn); err == nil {
				t.Error("old password still accepted after re-provision")
			}
		}
	} else {
		t.Log("server trusts TCP logins; old-password rejection not checked")
	}
	var n int
	if err := newPool(t, second.Service).QueryRow(ctx, "SELECT count(*) FROM widgets WHERE name = 'kept'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after re-provision: %d, %v; want 1", n, err)
	}
	_, err = newPool(t, second.Service).Exec(ctx, "CREATE TABLE intruder (id int)")
	wantCode(t, err, insufficientPrivilege, "CREATE TABLE after re-provision")
}

// TestProvisionUpgradesSingleRoleDatabase provisions a database laid out as
// before the runtime role existed: one role owning the database and its
// tables. That role becomes the owner role, and the new runtime role gets
// the rows of the existing tables.
func TestProvisionUpgradesSingleRoleDatabase(t *testing.T) {
	ctx := context.Background()
	admin := testenv.PostgresAdminURL(t)
	svc := pgdbtest.Service(t, admin, "legacy")
	owner := pgx.Identifier{pgdb.OwnerRole(svc)}.Sanitize()
	adminConn := pgdbtest.Connect(t, admin)
	for _, stmt := range []string{
		"CREATE ROLE " + owner + " LOGIN",
		"CREATE DATABASE " + pgx.Identifier{pgdb.Name(svc)}.Sanitize() + " OWNER " + owner,
	} {
		if _, err := adminConn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	legacy := pgdbtest.Connect(t, withDB(t, admin, pgdb.Name(svc)))
	for _, stmt := range []string{
		"SET ROLE " + owner,
		"CREATE TABLE old_rows (id bigserial PRIMARY KEY, v text)",
		"INSERT INTO old_rows (v) VALUES ('before')",
	} {
		if _, err := legacy.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}

	urls, err := pgdb.Provision(ctx, admin, svc)
	if err != nil {
		t.Fatal(err)
	}
	app := newPool(t, urls.Service)
	if _, err := app.Exec(ctx, "INSERT INTO old_rows (v) VALUES ('after')"); err != nil {
		t.Fatalf("service role on a table from before the upgrade: %v", err)
	}
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM old_rows").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows: %d, %v; want 2", n, err)
	}
	_, err = app.Exec(ctx, "DROP TABLE old_rows")
	wantCode(t, err, insufficientPrivilege, "DROP TABLE old_rows")
	if _, err := newPool(t, urls.Owner).Exec(ctx, "ALTER TABLE old_rows ADD COLUMN w text"); err != nil {
		t.Fatalf("owner role on its table: %v", err)
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
		{"runtime role suffix", "postgres://localhost/postgres", "orders" + pgdb.ServiceRoleSuffix},
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

// TestProvisionConcurrent provisions two services three times each, all at
// once: every call succeeds, and the passwords of exactly one call per
// service are in force.
func TestProvisionConcurrent(t *testing.T) {
	ctx := context.Background()
	admin := testenv.PostgresAdminURL(t)
	services := []string{pgdbtest.Service(t, admin, "conc_a"), pgdbtest.Service(t, admin, "conc_b")}
	const calls = 3
	var wg sync.WaitGroup
	urls := make([][calls]pgdb.URLs, len(services))
	errs := make([][calls]error, len(services))
	for s, svc := range services {
		for i := range calls {
			wg.Go(func() { urls[s][i], errs[s][i] = pgdb.Provision(ctx, admin, svc) })
		}
	}
	wg.Wait()
	checked := passwordsChecked(ctx, t, admin)
	for s, svc := range services {
		working := 0
		for i := range calls {
			if errs[s][i] != nil {
				t.Fatalf("provision %s, call %d: %v", svc, i, errs[s][i])
			}
			if connectErr(ctx, urls[s][i].Service) == nil && connectErr(ctx, urls[s][i].Owner) == nil {
				working++
			}
		}
		if working == 0 || (checked && working != 1) {
			t.Errorf("%s: %d of %d calls' URLs work, want 1", svc, working, calls)
		}
	}
}
