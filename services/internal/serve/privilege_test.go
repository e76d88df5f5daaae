package serve_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/pgdb"
	"github.com/orderflow/orderflow/services/internal/pgdb/pgdbtest"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestOwnerURLMustReachTheSameDatabase: migrating one database and serving
// from another is refused at start.
func TestOwnerURLMustReachTheSameDatabase(t *testing.T) {
	srv, err := serve.New(context.Background(), serve.Config{
		Service:          "orders",
		DatabaseURL:      testenv.Postgres(t),
		OwnerDatabaseURL: testenv.Postgres(t),
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		srv.Close()
		t.Fatal("New accepted an owner URL for another database")
	}
	if !strings.Contains(err.Error(), "both must reach the service's one database") {
		t.Fatalf("New = %v", err)
	}
}

// TestServesAsRuntimeRole runs a service provisioned with two roles: a
// replay through the operations API builds the new version as the owner;
// the service serves commands and queries, and its projector writes to the
// rebuilt version, as the runtime role, even while the owner cannot log in;
// a replay then fails and the active version keeps serving.
func TestServesAsRuntimeRole(t *testing.T) {
	ctx := context.Background()
	admin := testenv.PostgresAdminURL(t)
	name := pgdbtest.Service(t, admin, "serve")
	urls, err := pgdb.Provision(ctx, admin, name)
	if err != nil {
		t.Fatal(err)
	}
	env := servetest.Start(t, "inventory", func(c *serve.Config) {
		c.DatabaseURL, c.OwnerDatabaseURL = urls.Service, urls.Owner
	})
	adminConn := pgdbtest.Connect(t, admin)
	dbConn := pgdbtest.Connect(t, onDatabase(t, admin, pgdb.Name(name)))

	// servetest's own pool uses the service's URL: the runtime role.
	var user string
	if err := env.Pool.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != pgdb.ServiceRole(name) {
		t.Fatalf("service URL connects as %q (%v), want %s", user, err, pgdb.ServiceRole(name))
	}
	_, err = env.Pool.Exec(ctx, "CREATE TABLE intruder (id int)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("the runtime role created a table: %v", err)
	}
	// Everything the service created belongs to the owner role.
	if owners := tableOwners(t, dbConn); len(owners) != 1 || owners[0] != pgdb.OwnerRole(name) {
		t.Fatalf("tables owned by %v, want only %s", owners, pgdb.OwnerRole(name))
	}

	restock := func(sku, key string, quantity int) {
		t.Helper()
		body := `{"quantity": ` + strconv.Itoa(quantity) + `}`
		if res := env.Post(t, "/api/inventory/"+sku+"/restock", body, "Idempotency-Key", key); res.Status != http.StatusAccepted {
			t.Fatalf("restock %s: %d %s", sku, res.Status, res.Body)
		}
	}
	onHand := func(want string) {
		t.Helper()
		env.Eventually(t, 10*time.Second, "/api/inventory/SKU-1", func(r servetest.Response) bool {
			return r.Status == http.StatusOK && bytes.Contains(r.Body, []byte(`"on_hand":`+want+`,`))
		})
	}
	restock("SKU-1", "k-1", 1)
	env.AppendsNothing(t, func() { restock("SKU-1", "k-1", 1) }) // the stored answer
	restock("SKU-1", "k-2", 2)
	onHand("3")

	// A replay builds version 2 as the owner.
	if res := env.Post(t, "/admin/projections/stock/replay", ``); res.Status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", res.Status, res.Body)
	}
	waitProjection(t, env, "stock", 20*time.Second, func(p projectionItem) bool {
		return p.ActiveVersion == 2 && p.Rebuild == nil && p.Status == "live"
	})
	onHand("3")
	if owners := tableOwners(t, dbConn); len(owners) != 1 || owners[0] != pgdb.OwnerRole(name) {
		t.Fatalf("after the replay, tables owned by %v, want only %s", owners, pgdb.OwnerRole(name))
	}

	// Lock the owner out: requests, idempotency keys and the projector,
	// which writes to the rebuilt version, need only the runtime role.
	lockOut(t, adminConn, pgdb.OwnerRole(name))
	restock("SKU-1", "k-3", 1)
	env.AppendsNothing(t, func() { restock("SKU-1", "k-3", 1) })
	onHand("4")
	// The console's search by correlation id (the index's function)
	// needs only the runtime role too.
	first := env.Events(t, "stock-SKU-1")[0]
	var found eventList
	res := env.Get(t, "/admin/events?correlation_id="+url.QueryEscape(first.Metadata.CorrelationID))
	if res.Status != http.StatusOK {
		t.Fatalf("GET /admin/events as the runtime role: %d %s", res.Status, res.Body)
	}
	if res.JSON(t, &found); len(found.Items) == 0 || found.Items[0].EventID != first.ID {
		t.Errorf("GET /admin/events as the runtime role found %s, want %s first", res.Body, first.ID)
	}

	// A replay needs the owner: without it the replay fails and version 2
	// keeps serving.
	if res := env.Post(t, "/admin/projections/stock/replay", ``); res.Status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", res.Status, res.Body)
	}
	p := waitProjection(t, env, "stock", 10*time.Second, func(p projectionItem) bool { return p.Rebuild == nil })
	if p.ActiveVersion != 2 {
		t.Fatalf("a replay without the owner left version %d active, want 2", p.ActiveVersion)
	}
	onHand("4")
}

// lockOut stops role from logging in and ends its sessions, waiting until
// they are gone.
func lockOut(t *testing.T, admin *pgx.Conn, role string) {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Every session still there is (again) told to end.
		var left int
		err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1", role).Scan(&left)
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions of %s still there", left, role)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tableOwners lists the distinct owners of the tables, views and sequences
// in the public schema of the database conn is connected to.
func tableOwners(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	var owners []string
	rows, err := conn.Query(context.Background(), `SELECT DISTINCT pg_get_userbyid(c.relowner)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S')`)
	if err == nil {
		owners, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	return owners
}

// onDatabase is the URL dsn pointed at database db.
func onDatabase(t *testing.T, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	u.RawPath = ""
	return u.String()
}
