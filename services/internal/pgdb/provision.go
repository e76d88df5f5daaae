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

// ServiceRoleSuffix ends the name of a service's runtime role (see
// ServiceRole). A service name may not end with it, so that no service's
// owner role can be another service's runtime role.
const ServiceRoleSuffix = "_app"

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// SharedDatabases are the databases every PostgreSQL server has and that
// PUBLIC may connect to by default. Provision revokes that, so that a
// service's roles reach their own database and nothing else.
var SharedDatabases = []string{"postgres", "template1"}

// ErrNotIsolated is returned by Provision when a provisioned role could
// still connect to one of SharedDatabases afterwards: the admin role may not
// revoke CONNECT from PUBLIC there (it is neither a superuser nor the
// database's owner).
var ErrNotIsolated = errors.New("a provisioned role can connect to a database outside its service")

// PostgreSQL error codes Provision tolerates when another process provisions
// the same service at the same moment.
const (
	codeDuplicateObject   = "42710" // role exists
	codeDuplicateDatabase = "42P04"
	codeUniqueViolation   = "23505" // concurrent CREATE ROLE/DATABASE on the catalog
)

// sharedLockName serialises the changes every provisioner makes to the
// same rows (the ACLs of SharedDatabases): concurrent GRANT/REVOKE on one
// database fail with "tuple concurrently updated".
const sharedLockName = "orderflow.provision.shared"

// Name returns the name of service's database, "orderflow_<service>", which
// is also the name of its owner role (see OwnerRole).
func Name(service string) string { return Prefix + service }

// OwnerRole returns the role that owns service's database, its public
// schema and every table in it: "orderflow_<service>". Migrations and the
// DDL of read-model rebuilds run as it.
func OwnerRole(service string) string { return Name(service) }

// ServiceRole returns the role service runs as, "orderflow_<service>_app":
// it may connect to the service's database and read and write the rows of
// its tables, nothing more.
func ServiceRole(service string) string { return Name(service) + ServiceRoleSuffix }

// URLs are the two connection URLs of a provisioned service, both for its
// own database.
type URLs struct {
	// Owner connects as OwnerRole: for migrations and read-model DDL.
	Owner string
	// Service connects as ServiceRole: for everything the running
	// service does (requests, relay, projectors, idempotency keys).
	Service string
}

// Provision makes sure service has its own database, Name(service), and two
// login roles on the same server as adminURL (a postgres:// URL of a role
// allowed to create roles and databases; a superuser for the revocations
// described below, unless it owns the shared databases):
//
//   - OwnerRole owns the database, its public schema and what is created
//     in it; it runs the migrations.
//   - ServiceRole may connect to the database and use the public schema,
//     and has SELECT, INSERT, UPDATE and DELETE on its tables, USAGE and
//     SELECT on its sequences and EXECUTE on its functions, including
//     those OwnerRole creates later (default privileges). It cannot create,
//     alter, drop or truncate anything.
//
// CONNECT on the database is revoked from PUBLIC, so no other service's
// roles can connect to it, and CONNECT on SharedDatabases too (a
// server-wide change: only superusers, owners and roles granted it
// explicitly may connect there afterwards). Provision fails with
// ErrNotIsolated when that revocation did not take.
//
// It is idempotent and safe to run concurrently. Both roles get freshly
// generated passwords every time (nothing is stored in files; the returned
// URLs are the only copy), so re-provisioning invalidates earlier URLs. A
// database provisioned before the runtime role existed (its one role owns
// everything) is upgraded in place: that role becomes the owner role and
// the runtime role is granted the rows of the existing tables.
func Provision(ctx context.Context, adminURL, service string) (URLs, error) {
	if !serviceName.MatchString(service) || strings.HasSuffix(service, ServiceRoleSuffix) {
		return URLs{}, fmt.Errorf("provision: service name %q must match %s and not end with %q", service, serviceName, ServiceRoleSuffix)
	}
	u, err := parsePostgresURL(adminURL)
	if err != nil {
		return URLs{}, fmt.Errorf("provision %s: %w", service, err)
	}
	owner, app := OwnerRole(service), ServiceRole(service)
	ownerPassword, err := newPassword()
	if err != nil {
		return URLs{}, fmt.Errorf("provision %s: %w", service, err)
	}
	appPassword, err := newPassword()
	if err != nil {
		return URLs{}, fmt.Errorf("provision %s: %w", service, err)
	}

	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return URLs{}, fmt.Errorf("provision %s: connect as admin: %w", service, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// Serialize provisioners of the same service: concurrent ALTER ROLE on
	// one role fails with "tuple concurrently updated". The lock ends with
	// the session.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", "orderflow.provision."+Name(service)); err != nil {
		return URLs{}, fmt.Errorf("provision %s: lock: %w", service, err)
	}
	for _, r := range []struct{ name, password string }{{owner, ownerPassword}, {app, appPassword}} {
		if err := ensureRole(ctx, conn, r.name, r.password); err != nil {
			return URLs{}, fmt.Errorf("provision %s: role %s: %w", service, r.name, err)
		}
	}

	db := pgx.Identifier{Name(service)}.Sanitize()
	if err := ensure(ctx, conn, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", Name(service),
		"CREATE DATABASE "+db+" OWNER "+pgx.Identifier{owner}.Sanitize(), codeDuplicateDatabase); err != nil {
		return URLs{}, fmt.Errorf("provision %s: database: %w", service, err)
	}
	ownerID, appID := pgx.Identifier{owner}.Sanitize(), pgx.Identifier{app}.Sanitize()
	for _, stmt := range []string{
		"ALTER DATABASE " + db + " OWNER TO " + ownerID,
		"REVOKE ALL ON DATABASE " + db + " FROM PUBLIC",
		"GRANT CONNECT, TEMPORARY ON DATABASE " + db + " TO " + ownerID,
		// CONNECT only: without TEMPORARY or CREATE the runtime role can
		// create no object at all, not even a temporary table.
		"REVOKE ALL ON DATABASE " + db + " FROM " + appID,
		"GRANT CONNECT ON DATABASE " + db + " TO " + appID,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return URLs{}, fmt.Errorf("provision %s: %s: %w", service, stmt, err)
		}
	}
	if err := closeSharedDatabases(ctx, conn, owner, app); err != nil {
		return URLs{}, fmt.Errorf("provision %s: %w", service, err)
	}
	if err := grantInDatabase(ctx, u, Name(service), owner, app); err != nil {
		return URLs{}, fmt.Errorf("provision %s: %w", service, err)
	}
	return URLs{
		Owner:   roleURL(u, owner, ownerPassword, Name(service)),
		Service: roleURL(u, app, appPassword, Name(service)),
	}, nil
}

// ensureRole creates login role name unless it exists, and (also for a
// role that existed) sets its password and resets its options.
func ensureRole(ctx context.Context, conn *pgx.Conn, name, password string) error {
	ident := pgx.Identifier{name}.Sanitize()
	// The password is hex, so quoting it as a literal is safe; DDL takes no
	// bind parameters.
	options := "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '" + password + "'"
	if err := ensure(ctx, conn, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name,
		"CREATE ROLE "+ident+" "+options, codeDuplicateObject); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE "+ident+" "+options); err != nil {
		return fmt.Errorf("set password and options: %w", err)
	}
	return nil
}

// closeSharedDatabases revokes CONNECT on SharedDatabases from PUBLIC where
// PUBLIC still has it, then checks that none of roles may connect there.
// The revocation is skipped when already done, so that provisioners do not
// rewrite the same catalog rows again and again.
func closeSharedDatabases(ctx context.Context, conn *pgx.Conn, roles ...string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", sharedLockName); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer func() {
		// The session ends soon anyway, which would release the lock too.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtextextended($1, 0))", sharedLockName)
	}()
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database
		WHERE datname = ANY($1) AND has_database_privilege('public', datname, 'CONNECT')`, SharedDatabases)
	if err != nil {
		return fmt.Errorf("read database privileges: %w", err)
	}
	open, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read database privileges: %w", err)
	}
	for _, name := range open {
		// A non-superuser that does not own the database gets a warning,
		// not an error, and nothing changes; the check below catches it.
		if _, err := conn.Exec(ctx, "REVOKE CONNECT ON DATABASE "+pgx.Identifier{name}.Sanitize()+" FROM PUBLIC"); err != nil {
			return fmt.Errorf("revoke CONNECT on %s from PUBLIC: %w", name, err)
		}
	}
	var role, db string
	err = conn.QueryRow(ctx, `SELECT r, d FROM unnest($1::text[]) AS r, unnest($2::text[]) AS d
		WHERE EXISTS (SELECT 1 FROM pg_database WHERE datname = d) AND has_database_privilege(r, d, 'CONNECT')
		LIMIT 1`, roles, SharedDatabases).Scan(&role, &db)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("check database privileges: %w", err)
	}
	return fmt.Errorf("%w: %s may connect to %s; revoke CONNECT on it from PUBLIC as a superuser or its owner, or provision as one", ErrNotIsolated, role, db)
}

// grantInDatabase sets the privileges inside the service's database, in one
// transaction so that a service starting meanwhile sees all of them or
// none: the owner role owns the public schema, which nobody else may
// create objects in; the runtime role may use it and gets DML on the
// tables, sequences and functions that exist (a database provisioned
// before the runtime role existed) and, by default privileges, on those
// the owner role creates later. Databases made from a template whose public
// schema belongs to the admin (clusters upgraded from before PostgreSQL 15)
// would otherwise not even let the owner create tables.
func grantInDatabase(ctx context.Context, admin *url.URL, db, owner, app string) error {
	conn, err := pgx.Connect(ctx, dbURL(admin, db))
	if err != nil {
		return fmt.Errorf("connect to the service's database as admin: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ownerID, appID := pgx.Identifier{owner}.Sanitize(), pgx.Identifier{app}.Sanitize()
	const dml = "SELECT, INSERT, UPDATE, DELETE"
	defaults := "ALTER DEFAULT PRIVILEGES FOR ROLE " + ownerID + " IN SCHEMA public GRANT "
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	for _, stmt := range []string{
		"ALTER SCHEMA public OWNER TO " + ownerID,
		"REVOKE ALL ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + appID,
		"GRANT " + dml + " ON ALL TABLES IN SCHEMA public TO " + appID,
		"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO " + appID,
		"GRANT EXECUTE ON ALL ROUTINES IN SCHEMA public TO " + appID,
		defaults + dml + " ON TABLES TO " + appID,
		defaults + "USAGE, SELECT ON SEQUENCES TO " + appID,
		defaults + "EXECUTE ON ROUTINES TO " + appID,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return tx.Commit(ctx)
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

// roleURL is admin pointed at database db as user with password.
func roleURL(admin *url.URL, user, password, db string) string {
	u := *admin
	u.User = url.UserPassword(user, password)
	q := u.Query()
	q.Del("user")
	q.Del("password")
	u.RawQuery = q.Encode()
	return dbURL(&u, db)
}

// dbURL is admin, with its role, pointed at database db.
func dbURL(admin *url.URL, db string) string {
	u := *admin
	u.Path = "/" + db
	u.RawPath = ""
	q := u.Query()
	q.Del("dbname")
	u.RawQuery = q.Encode()
	return u.String()
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
