// Package servetest starts a real service (real PostgreSQL database, real
// event store, the full middleware stack) for the HTTP tests of the
// services, and gives them short helpers to send requests, read problems,
// check HTTP caching and inspect the events that landed in the store.
// Every request and answer is checked against services/api/openapi.yaml
// by an OpenAPI validator library (Contract).
package servetest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve"
)

// Env is a running service and a handle on its event store. Every response
// its helpers receive is checked against services/api/openapi.yaml by the
// OpenAPI validator (see Contract), and so is every request they send: one
// the document refuses must get a 4xx.
type Env struct {
	// URL is the base URL of the service, e.g. "http://127.0.0.1:41234".
	URL string
	// Store reads (and, to set up state, writes) the service's events.
	Store *postgres.Store
	// Pool is a connection pool to the service's database.
	Pool *pgxpool.Pool
	// Handler is the service's HTTP handler (serve.Server.Handler).
	Handler http.Handler
	client  *http.Client
}

// Start runs service on a fresh database; configure, when given, adjusts
// the config first. Everything stops when the test ends.
func Start(t testing.TB, service string, configure ...func(*serve.Config)) *Env {
	t.Helper()
	ctx := context.Background()
	cfg := serve.Config{
		Service:     service,
		DatabaseURL: testenv.Postgres(t),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, c := range configure {
		c(&cfg)
	}
	srv, err := serve.New(ctx, cfg)
	if err != nil {
		t.Fatalf("start %s: %v", service, err)
	}
	t.Cleanup(srv.Close)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return &Env{URL: hs.URL, Store: store, Pool: pool, Handler: srv.Handler(), client: hs.Client()}
}

// Response is an answer read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request; header holds name/value pairs. A non-empty body is
// sent as application/json unless header sets Content-Type.
func (e *Env) Do(t testing.TB, method, path, body string, header ...string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(header)%2 != 0 {
		t.Fatalf("header %q: want name/value pairs", header)
	}
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Every answer must match the published contract, and a request the
	// contract refuses must be refused.
	c, err := LoadContract()
	if err != nil {
		t.Fatalf("load OpenAPI contract: %v", err)
	}
	for _, msg := range c.CheckResponse(method, path, res.StatusCode, res.Header, b) {
		t.Errorf("contract: %s", msg)
	}
	if refusals := c.CheckRequest(method, path, req.Header, []byte(body)); len(refusals) > 0 && !clientError(res.StatusCode) {
		t.Errorf("contract: the document refuses %s %s, the service answered %d: %s", method, path, res.StatusCode, strings.Join(refusals, "; "))
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// clientError reports whether status refuses a request as the client's
// fault (4xx).
func clientError(status int) bool { return status >= 400 && status < 500 }

// Post sends a POST request (see Do).
func (e *Env) Post(t testing.TB, path, body string, header ...string) Response {
	t.Helper()
	return e.Do(t, http.MethodPost, path, body, header...)
}

// Get sends a GET request (see Do).
func (e *Env) Get(t testing.TB, path string, header ...string) Response {
	t.Helper()
	return e.Do(t, http.MethodGet, path, "", header...)
}

// Eventually sends GET path every few milliseconds until done accepts the
// answer, and returns that answer; it fails the test, showing the last
// answer, when within does not suffice. Queries read read models, which
// follow the commands with eventual consistency.
func (e *Env) Eventually(t testing.TB, within time.Duration, path string, done func(Response) bool) Response {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res := e.Get(t, path)
		if done(res) {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: not as expected within %s; last answer %d %s", path, within, res.Status, res.Body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// JSON decodes the body into v, failing the test unless it is
// application/json.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (status %d, body %s)", ct, r.Status, r.Body)
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Problem decodes an application/problem+json body and checks that its
// status matches the response's.
func (r Response) Problem(t testing.TB) httpx.Problem {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json (status %d, body %s)", ct, r.Status, r.Body)
	}
	var p httpx.Problem
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", r.Body, err)
	}
	if p.Status != r.Status || p.Type == "" || p.Title == "" {
		t.Fatalf("malformed problem for status %d: %s", r.Status, r.Body)
	}
	return p
}

// WantProblem checks that r is a problem with the given status and slug
// and, when fields are given, that exactly those fields are named.
func (r Response) WantProblem(t testing.TB, status int, slug string, fields ...string) httpx.Problem {
	t.Helper()
	p := r.Problem(t)
	if p.Status != status || p.Type != httpx.ProblemTypeBase+slug {
		t.Fatalf("got %d %s, want %d %s: %s", p.Status, p.Type, status, httpx.ProblemTypeBase+slug, r.Body)
	}
	if len(fields) > 0 {
		got := make([]string, len(p.Errors))
		for i, f := range p.Errors {
			got[i] = f.Field
			if f.Message == "" {
				t.Fatalf("field %s has no message: %s", f.Field, r.Body)
			}
		}
		if strings.Join(got, ",") != strings.Join(fields, ",") {
			t.Fatalf("problem names fields %q, want %q: %s", got, fields, r.Body)
		}
	}
	return p
}

// Events returns the events of stream.
func (e *Env) Events(t testing.TB, stream string) []domain.Envelope {
	t.Helper()
	evs, err := e.Store.ReadStream(context.Background(), stream, 1, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// Head is the position of the newest event in the store (0 when empty);
// comparing it before and after a request shows whether anything was
// appended.
func (e *Env) Head(t testing.TB) uint64 {
	t.Helper()
	h, err := e.Store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// AppendsNothing runs request (one or more calls of e's helpers) and fails
// the test if the store's head moved meanwhile: a refused or replayed
// request must change nothing.
func (e *Env) AppendsNothing(t testing.TB, request func()) {
	t.Helper()
	before := e.Head(t)
	request()
	if after := e.Head(t); after != before {
		t.Fatalf("appended events: head %d -> %d", before, after)
	}
}

// Pages follows the next cursors of the list at path (which may carry a
// query) and returns every item of every page and the size of each page.
// It fails the test on an answer other than 200, or when 20 pages do not
// reach the last one.
func Pages[T any](t testing.TB, e *Env, path string) (items []T, sizes []int) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	next := path
	for range 20 {
		res := e.Get(t, next)
		if res.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, res.Status, res.Body)
		}
		var p httpx.Page[T]
		res.JSON(t, &p)
		items = append(items, p.Items...)
		sizes = append(sizes, len(p.Items))
		if p.Next == "" {
			return items, sizes
		}
		next = path + sep + "after=" + url.QueryEscape(p.Next)
	}
	t.Fatalf("GET %s: no last page after 20 pages", path)
	return nil, nil
}

// BadQuery is a list request with bad query parameters and the fields its
// validation problem must name, in order.
type BadQuery struct {
	Name   string
	Query  string // without the "?"
	Fields []string
}

// BadLimits are the limit parameters every list refuses, for a list's
// own bad queries to be appended to.
func BadLimits() []BadQuery {
	return []BadQuery{
		{Name: "limit zero", Query: "limit=0", Fields: []string{"limit"}},
		{Name: "limit too big", Query: "limit=501", Fields: []string{"limit"}},
		{Name: "limit negative", Query: "limit=-1", Fields: []string{"limit"}},
		{Name: "limit not a number", Query: "limit=ten", Fields: []string{"limit"}},
		{Name: "limit in exponent form", Query: "limit=1e2", Fields: []string{"limit"}},
		{Name: "limit fraction", Query: "limit=2.5", Fields: []string{"limit"}},
	}
}

// WantBadQueries sends GET path?Query for each of tests, in a subtest of
// its own, and checks that each is refused with a validation problem
// naming exactly its Fields.
func (e *Env) WantBadQueries(t *testing.T, path string, tests []BadQuery) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			e.Get(t, path+"?"+tt.Query).WantProblem(t, http.StatusBadRequest, httpx.SlugValidation, tt.Fields...)
		})
	}
}
