package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// closedPort returns a local TCP address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// realConnectError is what pgx returns when PostgreSQL does not listen.
func realConnectError(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, "postgres://u:secret@"+closedPort(t)+"/db?sslmode=disable&connect_timeout=5")
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a closed port")
	}
	return err
}

// realNetError is what a dial to a closed port returns.
func realNetError(t *testing.T) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", closedPort(t), 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("dialed a closed port")
	}
	return err
}

func TestIsUnavailable(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("append stock-A: %w", &pgconn.PgError{Severity: "FATAL", Code: code, Message: "x"})
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"marked by an adapter", fmt.Errorf("publish: %w", domain.ErrUnavailable), true},
		{"connect refused", fmt.Errorf("read order-1: %w", realConnectError(t)), true},
		{"dial refused", realNetError(t), true},
		{"conn closed by the driver", fmt.Errorf("query: %w", pgconn.ErrConnClosed), true},
		{"closed pool", fmt.Errorf("acquire: %w", puddle.ErrClosedPool), true},
		{"event store closed", fmt.Errorf("append: %w", eventstore.ErrClosed), true},
		{"admin shutdown (pg_terminate_backend)", pg("57P01"), true},
		{"crash shutdown", pg("57P02"), true},
		{"cannot connect now", pg("57P03"), true},
		{"idle session timeout", pg("57P05"), true},
		{"idle in transaction timeout", pg("25P03"), true},
		{"connection failure", pg("08006"), true},
		{"connection does not exist", pg("08003"), true},
		{"too many connections", pg("53300"), true},
		{"out of memory", pg("53200"), true},
		{"unique violation", pg("23505"), false},
		{"undefined table", pg("42P01"), false},
		{"query canceled", pg("57014"), false},
		{"syntax error", pg("42601"), false},
		{"unexpected EOF", fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), true},
		{"EOF", fmt.Errorf("read: %w", io.EOF), true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"net closed", fmt.Errorf("use: %w", net.ErrClosed), true},
		{"nats no servers", fmt.Errorf("publish: %w", nats.ErrNoServers), true},
		{"nats closed", nats.ErrConnectionClosed, true},
		{"nats draining", nats.ErrConnectionDraining, true},
		{"nats reconnecting", nats.ErrConnectionReconnecting, true},
		{"nats disconnected", nats.ErrDisconnected, true},
		{"nats timeout", fmt.Errorf("request: %w", nats.ErrTimeout), true},
		{"nats no responders", nats.ErrNoResponders, true},
		{"jetstream no response", jetstream.ErrNoStreamResponse, true},
		{"jetstream 503", fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, Description: "jetstream temporarily unavailable"}), true},
		{"jetstream 400", &jetstream.APIError{Code: 400, Description: "bad request"}, false},
		{"jetstream not found", jetstream.ErrStreamNotFound, false},
		{"a bug", errors.New("nil map"), false},
		{"text that looks like a fault", errors.New("dial tcp 10.0.0.1:5432: connection refused"), false},
		{"version conflict", domain.ErrVersionConflict, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsUnavailable(tt.err); got != tt.want {
				t.Fatalf("IsUnavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestProblemForFaults: a dependency's failure is 503 with Retry-After and
// no internals; a command's 503 says a same-key retry is safe, a read's
// does not mention keys.
func TestProblemForFaults(t *testing.T) {
	connect := realConnectError(t)
	tests := []struct {
		name    string
		err     error
		command bool
	}{
		{"read, database down", fmt.Errorf("get order o-1: %w", connect), false},
		{"command, database down", fmt.Errorf("read order-1: %w", connect), true},
		{"command, connection lost during the commit", fmt.Errorf("append order-1: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}), true},
		{"command, deadline", fmt.Errorf("append stock-A: %w", context.DeadlineExceeded), true},
		{"read, nats down", fmt.Errorf("request: %w", nats.ErrNoServers), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := problemFor(tt.err, tt.command)
			if p.Status != http.StatusServiceUnavailable || p.Type != ProblemTypeBase+SlugUnavailable || p.RetryAfter < 1 {
				t.Fatalf("problem %+v, want 503 unavailable with Retry-After", p)
			}
			for _, leak := range []string{"order-", "stock-", "secret", "127.0.0.1", "SQLSTATE", "nats:", "deadline", "failed to connect"} {
				if strings.Contains(p.Detail, leak) {
					t.Fatalf("detail %q leaks %q", p.Detail, leak)
				}
			}
			if mentions := strings.Contains(p.Detail, "Idempotency-Key"); mentions != tt.command {
				t.Fatalf("detail %q: mentions the Idempotency-Key %v, want %v", p.Detail, mentions, tt.command)
			}
		})
	}
}

// TestProblemForDetails: a refusal's own sentence reaches the client
// whatever wraps it; a sentinel alone gets a fixed sentence, never the
// error chain.
func TestProblemForDetails(t *testing.T) {
	refusal := domain.Refuse(domain.ErrIllegalState, "order o-1 is shipped; only a pending or confirmed order can be cancelled")
	tests := []struct {
		name       string
		err        error
		status     int
		slug       string
		detail     string // exact, when set
		retryAfter int
	}{
		{"refusal through the command layer", fmt.Errorf("append order-o-1: %w", fmt.Errorf("order-o-1: %w", refusal)),
			409, SlugIllegalState, refusal.Detail, 0},
		{"not found refusal", fmt.Errorf("shipment-s-1: %w", domain.Refuse(domain.ErrNotFound, "the shipment does not exist")),
			404, SlugNotFound, "the shipment does not exist", 0},
		{"stock refusal", fmt.Errorf("reserve A for order o-1: stock-A: %w", domain.Refuse(domain.ErrInsufficientStock, "sku A has 1 available; 2 requested")),
			409, SlugInsufficientStock, "sku A has 1 available; 2 requested", 0},
		{"bare illegal state", fmt.Errorf("order-o-1: cancel: %w", domain.ErrIllegalState), 409, SlugIllegalState, "", 0},
		{"bare not found", fmt.Errorf("load order-o-1: %w", domain.ErrNotFound), 404, SlugNotFound, "", 0},
		{"bare invalid", fmt.Errorf("stock-x: %w", domain.ErrInvalid), 400, SlugValidation, "", 0},
		{"version conflict after the retry budget", fmt.Errorf("append stock-A: still conflicting after 6 attempts: %w", domain.ErrVersionConflict),
			409, SlugVersionConflict, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ProblemFor(tt.err)
			if p.Status != tt.status || p.Type != ProblemTypeBase+tt.slug || p.RetryAfter != tt.retryAfter {
				t.Fatalf("problem %+v, want %d %s Retry-After %d", p, tt.status, tt.slug, tt.retryAfter)
			}
			if tt.detail != "" && p.Detail != tt.detail {
				t.Fatalf("detail %q, want %q", p.Detail, tt.detail)
			}
			for _, leak := range []string{"order-", "stock-", "shipment-", "illegal state transition", "not found", "attempts", ": "} {
				if strings.Contains(p.Detail, leak) {
					t.Fatalf("detail %q leaks %q", p.Detail, leak)
				}
			}
		})
	}
}

// TestWriteErrorUnavailable: the Retry-After header is sent, and only a
// command's 503 speaks of the Idempotency-Key.
func TestWriteErrorUnavailable(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			rr := httptest.NewRecorder()
			WriteError(rr, httptest.NewRequest(method, "/api/orders", nil), fmt.Errorf("append order-1: %w", io.ErrUnexpectedEOF))
			res := rr.Result()
			p := decodeProblem(t, res)
			if p.Status != 503 || res.Header.Get("Retry-After") != "1" {
				t.Fatalf("status %d Retry-After %q, want 503 and 1", p.Status, res.Header.Get("Retry-After"))
			}
			if got, want := strings.Contains(p.Detail, "Idempotency-Key"), method == http.MethodPost; got != want {
				t.Fatalf("%s: detail %q", method, p.Detail)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	r := chi.NewRouter()
	r.NotFound(NotFound)
	r.MethodNotAllowed(MethodNotAllowed)
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
	r.Get("/things/{id}", ok)
	r.Post("/things/{id}", ok)
	r.Group(func(r chi.Router) { r.Delete("/things/{id}", ok) })
	r.Post("/things/{id}/poke", ok)
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodPut, "/things/1", 405, "GET, POST, DELETE"},
		{http.MethodHead, "/things/1", 405, "GET, POST, DELETE"},
		{http.MethodGet, "/things/1/poke", 405, "POST"},
		{"BREW", "/things/1", 405, "GET, POST, DELETE"},
		{"BREW", "/nowhere", 404, ""},
		{http.MethodGet, "/things/1", 204, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rr := httptest.NewRecorder()
			r.ServeHTTP(rr, httptest.NewRequest(tt.method, tt.path, nil))
			if rr.Code != tt.status || rr.Header().Get("Allow") != tt.allow {
				t.Fatalf("got %d Allow %q, want %d Allow %q", rr.Code, rr.Header().Get("Allow"), tt.status, tt.allow)
			}
			if tt.status == 405 {
				var p Problem
				if err := json.Unmarshal(rr.Body.Bytes(), &p); err != nil || p.Type != ProblemTypeBase+SlugMethodNotAllowed {
					t.Fatalf("body %s is not a method-not-allowed problem (%v)", rr.Body, err)
				}
			}
		})
	}
}
