package httpx

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// unavailableRetryAfter is the Retry-After, in seconds, of a 503 caused by
// an unreachable dependency. PostgreSQL restarts or fails over in seconds,
// and a dropped connection is replaced on the next request.
const unavailableRetryAfter = 1

// IsUnavailable reports whether err says that a dependency could not be
// reached or dropped the connection, rather than that the request or the
// code is wrong: the request may succeed when repeated later, so it is
// answered 503 with Retry-After instead of 500. It recognises:
//
//   - domain.ErrUnavailable, which adapters wrap to mark their own
//     transient failures;
//   - PostgreSQL connection failures: a failed connect, a connection the
//     driver already closed, the server's connection-exception class 08,
//     admin shutdown, crash shutdown, "cannot connect now" while it starts
//     or stops (57P01..57P03), idle-session and idle-in-transaction
//     timeouts that end the session (57P05, 25P03), too many connections
//     (53300) and the insufficient-resources class 53;
//   - a pool that is closed (the service is shutting down);
//   - the event store closed (eventstore.ErrClosed);
//   - network errors, and io.EOF / io.ErrUnexpectedEOF from a connection
//     that the peer closed;
//   - NATS: no servers, connection closed, draining or reconnecting,
//     disconnected, stale connection, server connection limit, timeouts,
//     no responders, and JetStream answering 503 or not at all.
//
// Context cancellation and deadlines are answered 503 too, but by
// ProblemFor directly: they are not a dependency's failure.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var (
		pgErr      *pgconn.PgError
		connectErr *pgconn.ConnectError
		netErr     net.Error
		apiErr     *jetstream.APIError
	)
	switch {
	case errors.Is(err, domain.ErrUnavailable),
		errors.As(err, &connectErr),
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, puddle.ErrClosedPool),
		errors.Is(err, eventstore.ErrClosed),
		pgconn.Timeout(err):
		return true
	case errors.As(err, &pgErr):
		return unavailableSQLState(pgErr.Code)
	case errors.As(err, &netErr), // *net.OpError, *net.DNSError, timeouts, ...
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrStaleConnection),
		errors.Is(err, nats.ErrMaxConnectionsExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503
	}
	return false
}

// unavailableSQLState reports whether a PostgreSQL error code means the
// server cannot serve the session now rather than that the statement is
// wrong.
func unavailableSQLState(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", // connection exception
		"53": // insufficient resources: too many connections, out of memory, disk full
		return true
	}
	switch code {
	case "57P01", // admin_shutdown: pg_terminate_backend, fast shutdown
		"57P02", // crash_shutdown: another backend crashed
		"57P03", // cannot_connect_now: starting up or shutting down
		"57P05", // idle_session_timeout
		"25P03": // idle_in_transaction_session_timeout
		return true
	}
	return false
}
