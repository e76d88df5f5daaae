package pgdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Prefix of every provisioned role and database name.
const Prefix = "orderflow_"

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// PostgreSQL error codes Provision tolerates when another process provisions
// the same service at the same moment.
const (
	codeDuplicateObject   = "42710" // role exists
	codeDuplicateDatabase = "42P04"
	codeUniqueViolation   = "23505" // concurrent CREATE ROLE/DATABASE on the catalog
)

// Name returns the role and database name of service: "orderflow_<service>".
func Name(service string) string { return Prefix + service }

// Provision makes sure service has its own login role and database, both
// named Name(service), and returns a URL for that role and database on the
// same server as adminURL (a postgres:// URL of a role allowed to create
// roles and databases).
//
// It is idempotent and safe to run concurrently. The role gets a freshly
// generated password every time (nothing is stored in files; the returned
// URL is the only copy), so re-provisioning invalidates earlier URLs. The
// database is owned by the role and CONNECT is revoked from PUBLIC, so no
// other service's role can connect to it.
func Provision(ctx context.Context, adminURL, service string) (string, error) {
	if !serviceName.MatchString(service) {
		return "", fmt.Errorf("provision: service name %q must match %s", service, serviceName)
	}
	u, err := parsePostgresURL(adminURL)
	if err != nil {
		return "", fmt.Errorf("provision %s: %w", service, err)
	}
	name := Name(service)
	password, err := newPassword()
	if err != nil {
		return "", fmt.Errorf("provision %s: %w", service, err)
	}

	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("provision %s: connect as admin: %w", service, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	ident := pgx.Identifier{name}.Sanitize()
	// Serialize provisioners of the same service: concurrent ALTER ROLE on
	// one role fails with "tuple concurrently updated". The lock ends with
	// the session.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", "orderflow.provision."+name); err != nil {
		return "", fmt.Errorf("provision %s: lock: %w", service, err)
	}
	// The password is hex, so quoting it as a literal is safe; DDL takes no
	// bind parameters.
	roleOptions := "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '" + password + "'"
	if err := ensure(ctx, conn, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name,
		"CREATE ROLE "+ident+" "+roleOptions, codeDuplicateObject); err != nil {
		return "", fmt.Errorf("provision %s: role: %w", service, err)
	}
	// Also for a role that existed: reset its password and options.
	if _, err := conn.Exec(ctx, "ALTER ROLE "+ident+" "+roleOptions); err != nil {
		return "", fmt.Errorf("provision %s: set role password: %w", service, err)
	}
	if err := ensure(ctx, conn, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name,
		"CREATE DATABASE "+ident+" OWNER "+ident, codeDuplicateDatabase); err != nil {
		return "", fmt.Errorf("provision %s: database: %w", service, err)
	}
	for _, stmt := range []string{
		"ALTER DATABASE " + ident + " OWNER TO " + ident,
		"REVOKE ALL ON DATABASE " + ident + " FROM PUBLIC",
		"GRANT CONNECT, TEMPORARY ON DATABASE " + ident + " TO " + ident,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return "", fmt.Errorf("provision %s: %s: %w", service, strings.Fields(stmt)[0], err)
		}
	}

	if err := ownPublicSchema(ctx, u, name); err != nil {
		return "", fmt.Errorf("provision %s: %w", service, err)
	}

	u.User = url.UserPassword(name, password)
	u.Path = "/" + name
	u.RawPath = ""
	q := u.Query()
	q.Del("user")
	q.Del("password")
	q.Del("dbname")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// ownPublicSchema gives the service role the public schema of its database
// and takes it from everyone else. Databases made from a template whose
// public schema belongs to the admin (clusters upgraded from before
// PostgreSQL 15) would otherwise not let the service create tables.
func ownPublicSchema(ctx context.Context, admin *url.URL, name string) error {
	u := *admin
	u.Path = "/" + name
	u.RawPath = ""
	q := u.Query()
	q.Del("dbname")
	u.RawQuery = q.Encode()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to new database as admin: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{name}.Sanitize()
	for _, stmt := range []string{
		"ALTER SCHEMA public OWNER TO " + ident,
		"REVOKE ALL ON SCHEMA public FROM PUBLIC",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// ensure creates an object unless the existence query says it is there. A
// concurrent creator may win between the check and the CREATE; its
// duplicate error is success.
func ensure(ctx context.Context, conn *pgx.Conn, existsSQL, name, createSQL, dupCode string) error {
	var exists bool
	if err := conn.QueryRow(ctx, existsSQL, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err := conn.Exec(ctx, createSQL)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == dupCode || pgErr.Code == codeUniqueViolation) {
		return nil
	}
	return err
}

func parsePostgresURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("admin URL is not a valid URL")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, errors.New("admin URL must be a postgres:// URL")
	}
	return u, nil
}

func newPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return hex.EncodeToString(b), nil
}
