package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/natsbus/natsbustest"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// within bounds every wait for something the system does within
// milliseconds when idle; a machine running other suites needs far more.
const within = 45 * time.Second

// testSecret signs the tokens of the tests' gateways.
var testSecret = []byte("the gateway tests' secret, 32 bytes or more")

// token signs a token for sub with role, valid for an hour.
func token(t testing.TB, sub string, role auth.Role) string {
	t.Helper()
	tok, err := auth.Sign(testSecret, auth.Principal{Subject: sub, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken signs claims with HS256 and key as they are, for tokens
// auth.Sign refuses to make (expired ones, say).
func rawToken(t testing.TB, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// stack is the four services in the test process, each a real service
// (serve.New on a database of its own, migrations, relay, projector,
// workers) on one NATS server. It is the gateways' Resolver: a service
// is found at the address it last listened on, also while it is stopped
// (a request there is refused, as one to a dead process is), and it comes
// back on the same address when it can.
type stack struct {
	t       *testing.T
	natsURL string
	dbs     map[string]string

	mu      sync.Mutex
	running map[string]*process
	addrs   map[string]string // service -> host:port it listens or listened on
}

type process struct {
	srv *serve.Server
	hs  *httptest.Server
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{t: t, natsURL: natsbustest.Server(t), dbs: make(map[string]string),
		running: make(map[string]*process), addrs: make(map[string]string)}
	for _, svc := range gateway.Services() {
		s.dbs[svc] = testenv.Postgres(t)
	}
	// Before the databases and NATS go away (cleanups run last in,
	// first out).
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for name, p := range s.running {
			p.hs.Close()
			p.srv.Close()
			delete(s.running, name)
		}
	})
	for _, svc := range gateway.Services() {
		s.start(svc)
	}
	return s
}

// start runs svc on its database, on the address it had before if it ran
// already and the address is free.
func (s *stack) start(svc string) {
	s.t.Helper()
	srv, err := serve.New(context.Background(), serve.Config{
		Service:     svc,
		DatabaseURL: s.dbs[svc],
		NATSURL:     s.natsURL,
		Logger:      testLogger(s.t, svc, slog.LevelWarn, nil),
	})
	if err != nil {
		s.t.Fatalf("start %s: %v", svc, err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[svc]; ok {
		s.t.Fatalf("%s already runs", svc)
	}
	if addr, ok := s.addrs[svc]; ok {
		if ln, err := net.Listen("tcp", addr); err == nil {
			hs.Listener.Close()
			hs.Listener = ln
		}
	}
	hs.Start()
	s.addrs[svc] = hs.Listener.Addr().String()
	s.running[svc] = &process{srv: srv, hs: hs}
}

// stop ends svc as a shutdown does; its address then refuses connections.
func (s *stack) stop(svc string) {
	s.t.Helper()
	s.mu.Lock()
	p, ok := s.running[svc]
	delete(s.running, svc)
	s.mu.Unlock()
	if !ok {
		s.t.Fatalf("%s does not run", svc)
	}
	p.hs.Close()
	p.srv.Close()
}

// Instances makes the stack a gateway.Resolver.
func (s *stack) Instances(svc string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if addr, ok := s.addrs[svc]; ok {
		return []string{"http://" + addr}
	}
	return nil
}

// direct returns a client of svc's own port.
func (s *stack) direct(t testing.TB, svc string) *client {
	t.Helper()
	urls := s.Instances(svc)
	if len(urls) == 0 {
		t.Fatalf("%s never ran", svc)
	}
	return newClient(t, urls[0])
}

// gw is a gateway serving over HTTP, with its log.
type gw struct {
	*gateway.Gateway
	*client
	logs *syncBuffer
}

// startGateway runs a gateway with the tests' secret in front of the
// services r finds; configure adjusts its config first.
func startGateway(t *testing.T, r gateway.Resolver, configure ...func(*gateway.Config)) *gw {
	t.Helper()
	logs := &syncBuffer{}
	cfg := gateway.Config{
		Resolver:  r,
		JWTSecret: testSecret,
		Logger:    testLogger(t, "gateway", slog.LevelInfo, logs),
	}
	for _, c := range configure {
		c(&cfg)
	}
	g, err := gateway.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(g.Close)
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	return &gw{Gateway: g, client: newClient(t, hs.URL), logs: logs}
}

// client sends requests to one base URL and checks every answer against
// the API's published contract.
type client struct {
	base     string
	http     *http.Client
	contract *servetest.Contract
}

func newClient(t testing.TB, base string) *client {
	t.Helper()
	contract, err := servetest.LoadContract()
	if err != nil {
		t.Fatalf("load OpenAPI contract: %v", err)
	}
	return &client{base: base, http: &http.Client{Timeout: 30 * time.Second}, contract: contract}
}

// response is an answer read in full.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request with token as its bearer token (none when empty);
// header holds further name/value pairs. A non-empty body is sent as
// application/json. Each way the answer breaks the contract is an error
// of the test.
func (c *client) do(t testing.TB, method, path, body, token string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	res := c.send(t, method, path, rd, token, header...)
	for _, msg := range c.contract.CheckResponse(method, path, res.Status, res.Header, res.Body) {
		t.Errorf("contract: %s %s: %s", method, path, msg)
	}
	return res
}

// send sends a request with body as it is (a reader of unknown length is
// sent chunked) and returns the answer, unchecked.
func (c *client) send(t testing.TB, method, path string, body io.Reader, token string, header ...string) response {
	t.Helper()
	if len(header)%2 != 0 {
		t.Fatalf("header %q: want name/value pairs", header)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// json decodes the body into v.
func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %d %s: %v", r.Status, r.Body, err)
	}
}

// problem checks that r is a problem+json of status and slug, and
// returns its detail.
func (r response) problem(t testing.TB, status int, slug string) string {
	t.Helper()
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("got %d %q %s, want a %d problem", r.Status, ct, r.Body, status)
	}
	r.json(t, &p)
	if r.Status != status || p.Status != status || p.Type != "https://orderflow.dev/problems/"+slug {
		t.Fatalf("got %d %s, want %d %s: %s", r.Status, p.Type, status, slug, r.Body)
	}
	return p.Detail
}

// retryAfter returns the Retry-After seconds, failing the test unless
// there is a positive number.
func (r response) retryAfter(t testing.TB) int {
	t.Helper()
	n, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want whole seconds >= 1 (%d %s)", r.Header.Get("Retry-After"), r.Status, r.Body)
	}
	return n
}

// metric returns the value of the sample of metric whose labels include
// every given name="value" pair (summed over the samples that match),
// from c's /metrics.
func (c *client) metric(t testing.TB, metric string, labels ...string) float64 {
	t.Helper()
	res := c.send(t, http.MethodGet, "/metrics", nil, "")
	if res.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", res.Status)
	}
	var sum float64
	found := false
next:
	for _, line := range strings.Split(string(res.Body), "\n") {
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			name, rest, ok = strings.Cut(line, " ")
			if !ok || name != metric || len(labels) > 0 {
				continue
			}
			rest = "} " + rest
		} else if name != metric {
			continue
		}
		set, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+set+",", fmt.Sprintf(",%s=%q,", labels[i], labels[i+1])) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metric line %q", line)
		}
		sum += v
		found = true
	}
	if !found {
		return 0
	}
	return sum
}

// syncBuffer collects output written from several goroutines.
type syncBuffer = testenv.Buffer

// testLogger logs at level and above to also (when set), and the lines
// at warning level and above to the test's log, shown when it fails.
func testLogger(t *testing.T, name string, level slog.Level, also io.Writer) *slog.Logger {
	var w io.Writer = &testWriter{t: t, prefix: name + ": ", level: level}
	if also != nil {
		w = io.MultiWriter(also, w)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	t      *testing.T
	prefix string
	level  slog.Level
	mu     sync.Mutex
	done   bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || (w.level < slog.LevelWarn && !bytes.Contains(p, []byte("level=WARN")) && !bytes.Contains(p, []byte("level=ERROR"))) {
		return len(p), nil
	}
	defer func() {
		// t.Log panics once the test has ended; a late line of a
		// server still stopping is dropped.
		if recover() != nil {
			w.done = true
		}
	}()
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
