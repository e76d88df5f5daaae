package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	handlers "github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/testenv"
)

// snapshotsDatabase returns a migrated event store database holding a
// snapshot of the current schema for two stock streams and an order
// stream, one of an older schema and one of a stream type no handler
// keeps.
func snapshotsDatabase(t *testing.T) (string, *pgxpool.Pool) {
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
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stock, _ := handlers.SnapshotSchema("stock-A")
	ord, _ := handlers.SnapshotSchema("order-1")
	for _, s := range []struct {
		stream  string
		version int64
		schema  int
	}{
		{"stock-A", 500, stock},
		{"stock-B", 1000, stock},
		{"order-1", 500, ord},
		// Written by an older version of the handlers: saved first, as a
		// save deletes the stream's older schemas.
		{"stock-C", 500, stock},
		{"ledger-1", 500, 1},
	} {
		if err := store.SaveSnapshot(ctx, s.stream, s.version, s.schema, []byte(`{"sku": "x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// stock-C's snapshot is of an older schema than the handlers'.
	if _, err := pool.Exec(ctx, "UPDATE es_snapshots SET schema = 0 WHERE stream = 'stock-C'"); err != nil {
		t.Fatal(err)
	}
	return dbURL, pool
}

func snapshotStreams(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT stream FROM es_snapshots ORDER BY stream")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		names = append(names, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(names, " ")
}

func TestSnapshotsListAndDrop(t *testing.T) {
	t.Run("list", func(t *testing.T) {
		dbURL, _ := snapshotsDatabase(t)
		r := runCLI(t, "snapshots", "list", "--database-url", dbURL)
		if r.code != 0 {
			t.Fatalf("list exit %d: %s", r.code, r.stderr)
		}
		stock, _ := handlers.SnapshotSchema("stock-A")
		for _, want := range []string{
			`(?m)^STREAM +VERSION +SCHEMA +CURRENT +SIZE +TAKEN AT$`,
			fmt.Sprintf(`(?m)^stock-A +500 +%d +yes +[0-9.]+ (B|KiB) +\d{4}-\d\d-\d\dT`, stock),
			fmt.Sprintf(`(?m)^stock-B +1,000 +%d +yes `, stock),
			`(?m)^stock-C +500 +0 +no `,
			`(?m)^ledger-1 +500 +1 +no `,
			`(?m)^order-1 +500 +1 +yes `,
		} {
			if !regexp.MustCompile(want).MatchString(r.stdout) {
				t.Errorf("list output lacks %s:\n%s", want, r.stdout)
			}
		}
		r = runCLI(t, "snapshots", "list", "--database-url", dbURL, "--stream-prefix", "stock-", "--json")
		if r.code != 0 {
			t.Fatalf("list --json exit %d: %s", r.code, r.stderr)
		}
		var got struct {
			Items []struct {
				Stream  string `json:"stream"`
				Current bool   `json:"current"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("list --json: %v\n%s", err, r.stdout)
		}
		if len(got.Items) != 3 || got.Items[0].Stream != "stock-A" || !got.Items[0].Current || got.Items[2].Current {
			t.Errorf("list --stream-prefix stock- --json = %+v, want stock-A, stock-B current and stock-C not", got.Items)
		}
	})

	tests := []struct {
		name string
		args []string
		out  string
		left string
	}{
		{"one stream", []string{"--stream", "stock-A"}, "dropped 1 snapshot(s)", "ledger-1 order-1 stock-B stock-C"},
		{"a stream without one", []string{"--stream", "stock-"}, "dropped 0 snapshot(s)", "ledger-1 order-1 stock-A stock-B stock-C"},
		{"older than the schema", []string{"--older-than-schema"}, "dropped 2 snapshot(s)", "order-1 stock-A stock-B"},
		{"all", []string{"--all"}, "dropped 5 snapshot(s)", ""},
	}
	for _, tc := range tests {
		t.Run("drop "+tc.name, func(t *testing.T) {
			dbURL, pool := snapshotsDatabase(t)
			r := runCLI(t, append([]string{"snapshots", "drop", "--database-url", dbURL}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("drop exit %d: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tc.out) {
				t.Errorf("drop said %q, want %q", r.stdout, tc.out)
			}
			if got := snapshotStreams(t, pool); got != tc.left {
				t.Errorf("left %q, want %q", got, tc.left)
			}
		})
	}
}

func TestSnapshotsUsage(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("OWNER_DATABASE_URL", "")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"snapshots"}, 2, "no subcommand given (list or drop)"},
		{"unknown subcommand", []string{"snapshots", "take"}, 2, `unknown subcommand "take"`},
		{"help", []string{"snapshots", "-h"}, 0, ""},
		{"list help", []string{"snapshots", "list", "-h"}, 0, ""},
		{"drop help", []string{"snapshots", "drop", "-h"}, 0, ""},
		{"no database", []string{"snapshots", "list"}, 2, "no database given: give --database-url URL"},
		{"service without admin URL", []string{"snapshots", "list", "--service", "inventory"}, 2, "--service inventory needs a superuser URL"},
		{"list extra args", []string{"snapshots", "list", "stock-A", "--database-url", "postgres://h/db"}, 2, "unexpected arguments"},
		{"drop nothing chosen", []string{"snapshots", "drop", "--database-url", "postgres://h/db"}, 2, "exactly one of --stream S, --all or --older-than-schema"},
		{"drop two chosen", []string{"snapshots", "drop", "--all", "--stream", "stock-A", "--database-url", "postgres://h/db"}, 2, "exactly one of"},
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
		})
	}
}

// TestSnapshotsWithoutTable: a database that is no event store says so.
func TestSnapshotsWithoutTable(t *testing.T) {
	r := runCLI(t, "snapshots", "list", "--database-url", testenv.Postgres(t))
	if r.code != 1 || !strings.Contains(r.stderr, "has no snapshots table") {
		t.Errorf("exit %d, stderr %q; want 1 and no snapshots table", r.code, r.stderr)
	}
}
