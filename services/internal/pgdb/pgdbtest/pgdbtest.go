// Package pgdbtest holds the test helpers for code that provisions service
// databases with pgdb: names that do not collide on a shared server, the
// cleanup of what Provision made, and connections that close with the test.
package pgdbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/services/internal/pgdb"
)

// Service returns a service name made of prefix and a random suffix, and
// drops the database and roles that pgdb.Provision makes for it (through
// adminURL) when the test ends. Roles are cluster-wide and a test server
// may be shared, hence the suffix.
func Service(t *testing.T, adminURL, prefix string) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	service := prefix + "_" + hex.EncodeToString(b)
	t.Cleanup(func() { drop(t, adminURL, service) })
	return service
}

// drop removes what pgdb.Provision made for service: the database first,
// which holds the objects and default privileges the roles' dependencies
// point at.
func drop(t *testing.T, adminURL, service string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + pgx.Identifier{pgdb.Name(service)}.Sanitize() + " WITH (FORCE)",
		"DROP ROLE IF EXISTS " + pgx.Identifier{pgdb.ServiceRole(service)}.Sanitize(),
		"DROP ROLE IF EXISTS " + pgx.Identifier{pgdb.OwnerRole(service)}.Sanitize(),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Errorf("cleanup %s: %v", stmt, err)
		}
	}
}

// Connect opens a connection to dsn that closes when the test ends.
func Connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
