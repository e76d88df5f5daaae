package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/idempotency"
)

// The tests here put real HTTP servers that record what reaches them
// behind the gateway, to see exactly what it forwards, retries and
// refuses; TestGateway has the services themselves behind it.

// seen is a request as an upstream received it.
type seen struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// recorder is an upstream that records every request and answers with
// answer, given the number of the request (1 for the first).
type recorder struct {
	*httptest.Server
	answer func(n int, w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []seen
}

func newRecorder(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *recorder {
	t.Helper()
	rec := &recorder{answer: answer}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		n := len(rec.reqs)
		rec.mu.Unlock()
		rec.answer(n, w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) requests() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

// answerStatus answers every request with code and a JSON body.
func answerStatus(code int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"status": "answered"}`)
	}
}

// everyService resolves every service to urls.
func everyService(urls ...string) gateway.Static {
	s := gateway.Static{}
	for _, svc := range gateway.Services() {
		s[svc] = urls
	}
	return s
}

// fast makes retries quick and keeps the breaker out of the way.
func fast(c *gateway.Config) {
	c.RetryBackoff = backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}
	c.BreakerFailures = 1000
	c.RateLimit = rate.Inf
}

func TestForwardsTheRequestAndTheAnswer(t *testing.T) {
	up := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"7"`)
		w.Header().Set("Cache-Control", "private, max-age=0")
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "1")
		if r.Header.Get("If-None-Match") == `"7"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok": true}`)
	})
	g := startGateway(t, everyService(up.URL), fast)
	admin := token(t, "admin", auth.RoleAdmin)

	res := g.send(t, http.MethodGet, "/api/orders/abc?status=pending&x=%2F", nil, admin,
		"If-None-Match", `"7"`,
		"X-Request-Id", "req-forward-1",
		idempotency.SubjectHeader, "someone-else",
		"Connection", "X-Client-Hop",
		"X-Client-Hop", "1",
		"X-Forwarded-For", "203.0.113.9")
	if res.Status != http.StatusNotModified || res.Header.Get("ETag") != `"7"` || len(res.Body) != 0 {
		t.Fatalf("got %d ETag %q body %q, want the upstream's 304 with its ETag", res.Status, res.Header.Get("ETag"), res.Body)
	}
	if res.Header.Get("Cache-Control") != "private, max-age=0" || res.Header.Get("X-Upstream") != "yes" {
		t.Errorf("answer headers %v, want the upstream's Cache-Control and X-Upstream", res.Header)
	}
	if res.Header.Get("X-Upstream-Hop") != "" {
		t.Error("a hop-by-hop header of the upstream's answer was passed on")
	}
	if got := res.Header.Get("X-Request-Id"); got != "req-forward-1" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}

	reqs := up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	checks := []struct {
		what, got, want string
	}{
		{"method", r.method, http.MethodGet},
		{"path", r.path, "/api/orders/abc"},
		{"query", r.query, "status=pending&x=%2F"},
		{"Authorization", r.header.Get("Authorization"), ""},
		{idempotency.SubjectHeader, strings.Join(r.header.Values(idempotency.SubjectHeader), ","), "admin"},
		{"X-Request-Id", r.header.Get("X-Request-Id"), "req-forward-1"},
		{"If-None-Match", r.header.Get("If-None-Match"), `"7"`},
		{"X-Client-Hop", r.header.Get("X-Client-Hop"), ""},
		{"X-Forwarded-For", r.header.Get("X-Forwarded-For"), "203.0.113.9, 127.0.0.1"},
		{"X-Forwarded-Proto", r.header.Get("X-Forwarded-Proto"), "http"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("upstream saw %s %q, want %q", c.what, c.got, c.want)
		}
	}

	body := `{"customer_id": "c-42", "items": []}`
	res = g.send(t, http.MethodPost, "/api/orders", strings.NewReader(body), admin, "Idempotency-Key", "k-1")
	if res.Status != http.StatusOK {
		t.Fatalf("POST: %d %s", res.Status, res.Body)
	}
	r = up.requests()[1]
	if string(r.body) != body || r.header.Get("Idempotency-Key") != "k-1" {
		t.Errorf("upstream got body %q key %q, want the client's", r.body, r.header.Get("Idempotency-Key"))
	}
}

func TestRetriesOnlyReads(t *testing.T) {
	statuses := func(codes ...int) func(int, http.ResponseWriter, *http.Request) {
		return func(n int, w http.ResponseWriter, r *http.Request) {
			answerStatus(codes[min(n, len(codes))-1])(n, w, r)
		}
	}
	tests := []struct {
		name     string
		method   string
		answers  []int
		want     int
		wantHits int
	}{
		{"GET after two 503s", http.MethodGet, []int{503, 503, 200}, 200, 3},
		{"GET after a 502 and a 504", http.MethodGet, []int{502, 504, 200}, 200, 3},
		{"GET that keeps failing", http.MethodGet, []int{503}, 503, 3},
		{"GET answered 500", http.MethodGet, []int{500, 200}, 500, 1},
		{"GET answered 404", http.MethodGet, []int{404, 200}, 404, 1},
		{"HEAD after a 503", http.MethodHead, []int{503, 200}, 200, 2},
		{"POST answered 503", http.MethodPost, []int{503, 200}, 503, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRecorder(t, statuses(tt.answers...))
			g := startGateway(t, everyService(up.URL), fast)
			var body io.Reader
			if tt.method == http.MethodPost {
				body = strings.NewReader(`{}`)
			}
			res := g.send(t, tt.method, "/api/inventory/SKU-1", body, token(t, "admin", auth.RoleAdmin))
			if res.Status != tt.want {
				t.Errorf("answer %d, want %d", res.Status, tt.want)
			}
			if hits := len(up.requests()); hits != tt.wantHits {
				t.Errorf("upstream got %d requests, want %d", hits, tt.wantHits)
			}
		})
	}
}

func TestInstancesInTurnAndADeadOneSkipped(t *testing.T) {
	admin := token(t, "admin", auth.RoleAdmin)

	a := newRecorder(t, answerStatus(http.StatusOK))
	b := newRecorder(t, answerStatus(http.StatusOK))
	g := startGateway(t, everyService(a.URL, b.URL), fast)
	for range 10 {
		if res := g.send(t, http.MethodGet, "/api/sagas", nil, admin); res.Status != http.StatusOK {
			t.Fatalf("GET: %d %s", res.Status, res.Body)
		}
	}
	if na, nb := len(a.requests()), len(b.requests()); na != 5 || nb != 5 {
		t.Errorf("the instances got %d and %d of 10 requests, want 5 each", na, nb)
	}

	live := newRecorder(t, answerStatus(http.StatusOK))
	dead := newRecorder(t, answerStatus(http.StatusOK))
	dead.Close() // its address now refuses connections
	g = startGateway(t, everyService(dead.URL, live.URL), fast, func(c *gateway.Config) { c.InstanceCooldown = time.Hour })
	// A read that meets the dead instance is retried on the live one.
	for range 6 {
		if res := g.send(t, http.MethodGet, "/api/sagas", nil, admin); res.Status != http.StatusOK {
			t.Fatalf("GET with one dead instance: %d %s", res.Status, res.Body)
		}
	}
	if n := len(live.requests()); n != 6 {
		t.Errorf("the live instance got %d of 6 reads, want all", n)
	}
	// The dead one is skipped now, commands included (not retried).
	for range 4 {
		if res := g.send(t, http.MethodPost, "/api/sagas/x/retry", strings.NewReader(`{}`), admin); res.Status != http.StatusOK {
			t.Errorf("POST with the dead instance skipped: %d %s", res.Status, res.Body)
		}
	}
}

func TestAHungInstanceIsSkipped(t *testing.T) {
	release := make(chan struct{})
	hung := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	good := newRecorder(t, answerStatus(http.StatusOK))
	// Trailing slashes: a base URL is written either way.
	g := startGateway(t, everyService(good.URL+"/", hung.URL+"/"), fast, func(c *gateway.Config) {
		c.UpstreamTimeout, c.InstanceCooldown = 300*time.Millisecond, time.Hour
	})
	admin := token(t, "admin", auth.RoleAdmin)
	// The first request goes to the second instance, the hung one.
	if res := g.send(t, http.MethodGet, "/api/orders", nil, admin); res.Status != http.StatusGatewayTimeout {
		t.Fatalf("the request to the hung instance: %d %s, want 504", res.Status, res.Body)
	}
	for i := range 4 {
		if res := g.send(t, http.MethodGet, "/api/orders", nil, admin); res.Status != http.StatusOK {
			t.Errorf("request %d after the timeout: %d %s, want 200 from the other instance", i+2, res.Status, res.Body)
		}
	}
	if n := len(hung.requests()); n != 1 {
		t.Errorf("the hung instance got %d requests, want 1: skipped after it timed out", n)
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) {
	release := make(chan struct{})
	up := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // before the server's Close
	const timeout = 300 * time.Millisecond
	g := startGateway(t, everyService(up.URL), fast, func(c *gateway.Config) { c.UpstreamTimeout = timeout })
	admin := token(t, "admin", auth.RoleAdmin)

	start := time.Now()
	res := g.do(t, http.MethodGet, "/api/inventory/SKU-1", "", admin)
	took := time.Since(start)
	if d := res.problem(t, http.StatusGatewayTimeout, gateway.SlugGatewayTimeout); !strings.Contains(d, "did not answer within") {
		t.Errorf("detail %q, want the timeout named", d)
	}
	res.retryAfter(t)
	if took > within/2 {
		t.Errorf("the answer took %s with a %s timeout", took, timeout)
	}
	res = g.do(t, http.MethodPost, "/api/inventory/SKU-1/restock", `{"quantity": 1}`, admin)
	if d := res.problem(t, http.StatusGatewayTimeout, gateway.SlugGatewayTimeout); !strings.Contains(d, "may or may not have been applied") {
		t.Errorf("a command's timeout says %q, want that its outcome is unknown", d)
	}
}

func TestBreakerStopsCallingAFailingUpstream(t *testing.T) {
	up := newRecorder(t, answerStatus(http.StatusInternalServerError))
	g := startGateway(t, everyService(up.URL), fast, func(c *gateway.Config) {
		c.BreakerFailures, c.BreakerOpen = 2, time.Hour
	})
	admin := token(t, "admin", auth.RoleAdmin)
	for range 2 {
		if res := g.send(t, http.MethodPost, "/api/orders", strings.NewReader(`{}`), admin); res.Status != http.StatusInternalServerError {
			t.Fatalf("answer %d, want the upstream's 500 passed on", res.Status)
		}
	}
	res := g.do(t, http.MethodPost, "/api/orders", `{}`, admin)
	if d := res.problem(t, http.StatusServiceUnavailable, "unavailable"); !strings.Contains(d, "not sent") {
		t.Errorf("the open breaker's detail %q, want that the command was not sent", d)
	}
	if n := res.retryAfter(t); n < 3000 {
		t.Errorf("Retry-After %d, want about the hour the breaker stays open", n)
	}
	if hits := len(up.requests()); hits != 2 {
		t.Errorf("upstream got %d requests, want 2: none once the breaker opened", hits)
	}
	// The other services have breakers of their own.
	if res := g.send(t, http.MethodGet, "/api/sagas", nil, admin); res.Status != http.StatusInternalServerError {
		t.Errorf("another service: %d, want its own answer", res.Status)
	}
	if got := g.metric(t, "orderflow_gateway_circuit_breaker_state", "upstream", "orders"); got != 2 {
		t.Errorf("orders breaker state %v, want 2 (open)", got)
	}
}

func TestRefusedRequestsDoNotReachTheServices(t *testing.T) {
	up := newRecorder(t, answerStatus(http.StatusOK))
	g := startGateway(t, everyService(up.URL), fast, func(c *gateway.Config) { c.MaxBodyBytes = 100 })
	admin := token(t, "admin", auth.RoleAdmin)
	tests := []struct {
		name   string
		body   io.Reader
		token  string
		status int
	}{
		{"no token", strings.NewReader(`{}`), "", http.StatusUnauthorized},
		{"too large", strings.NewReader(strings.Repeat(" ", 101)), admin, http.StatusRequestEntityTooLarge},
		{"too large, streamed", struct{ io.Reader }{strings.NewReader(strings.Repeat(" ", 101))}, admin, http.StatusRequestEntityTooLarge},
		{"a customer restocking", strings.NewReader(`{}`), token(t, "c-42", auth.RoleCustomer), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := g.send(t, http.MethodPost, "/api/inventory/SKU-1/restock", tt.body, tt.token)
			if res.Status != tt.status || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("got %d %q, want a %d problem", res.Status, res.Header.Get("Content-Type"), tt.status)
			}
		})
	}
	if res := g.send(t, http.MethodPost, "/api/inventory/SKU-1/restock", strings.NewReader(strings.Repeat(" ", 100)), admin); res.Status != http.StatusOK {
		t.Errorf("a body at the limit: %d, want it forwarded", res.Status)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want only the one within the limits", n)
	}
}

func TestReadyzAsksEveryService(t *testing.T) {
	var mu sync.Mutex
	readyStatus := http.StatusOK
	ready := newRecorder(t, answerStatus(http.StatusOK))
	flaky := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		code := readyStatus
		mu.Unlock()
		answerStatus(code)(n, w, r)
	})
	g := startGateway(t, gateway.Static{
		gateway.Orders: {ready.URL}, gateway.Inventory: {ready.URL},
		gateway.Shipping: {flaky.URL}, gateway.Sagas: {ready.URL},
	})
	if res := g.do(t, http.MethodGet, "/readyz", "", ""); res.Status != http.StatusOK {
		t.Fatalf("readyz: %d %s", res.Status, res.Body)
	}
	mu.Lock()
	readyStatus = http.StatusServiceUnavailable
	mu.Unlock()
	res := g.do(t, http.MethodGet, "/readyz", "", "")
	if d := res.problem(t, http.StatusServiceUnavailable, "not-ready"); !strings.Contains(d, "shipping") || strings.Contains(d, "orders") {
		t.Errorf("detail %q, want shipping named and only it", d)
	}
}

func TestNoInstanceIs503(t *testing.T) {
	up := newRecorder(t, answerStatus(http.StatusOK))
	g := startGateway(t, gateway.Static{gateway.Orders: {up.URL}})
	res := g.do(t, http.MethodGet, "/api/sagas", "", token(t, "admin", auth.RoleAdmin))
	if d := res.problem(t, http.StatusServiceUnavailable, "unavailable"); !strings.Contains(d, "no instance of the sagas service") {
		t.Errorf("detail %q", d)
	}
	res.retryAfter(t)
}

// TestJWKS runs a gateway that verifies ES256 tokens with the keys a
// JWK Set URL publishes.
func TestJWKS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(map[string]any{"keys": []any{jwk(t, key, "key-1")}})
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(jwks.Close)
	up := newRecorder(t, answerStatus(http.StatusOK))
	g := startGateway(t, everyService(up.URL), func(c *gateway.Config) {
		c.JWTSecret, c.JWKSURL = nil, jwks.URL
	})

	sign := func(k *ecdsa.PrivateKey, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"sub": "admin", "role": "admin", "exp": time.Now().Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"signed with the published key", sign(key, "key-1"), http.StatusOK},
		{"signed with another key", sign(other, "key-1"), http.StatusUnauthorized},
		{"naming an unknown key", sign(other, "key-2"), http.StatusUnauthorized},
		{"HS256 with the dev secret", token(t, "admin", auth.RoleAdmin), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := g.send(t, http.MethodGet, "/api/orders", nil, tt.token); res.Status != tt.want {
				t.Errorf("got %d %s, want %d", res.Status, res.Body, tt.want)
			}
		})
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want the one with the good token", n)
	}
}

// jwk is the public half of key as a JSON Web Key.
func jwk(t *testing.T, key *ecdsa.PrivateKey, kid string) map[string]string {
	t.Helper()
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	point := pub.Bytes() // 0x04 || X || Y
	enc := base64.RawURLEncoding.EncodeToString
	return map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
		"x": enc(point[1:33]), "y": enc(point[33:])}
}

func TestConfigValidate(t *testing.T) {
	all := everyService("http://127.0.0.1:1")
	tests := []struct {
		name string
		cfg  gateway.Config
		want string // in the error; "" for a valid config
	}{
		{"static upstreams", gateway.Config{Upstreams: all, JWTSecret: testSecret}, ""},
		{"a resolver", gateway.Config{Resolver: gateway.Static{}, JWKSURL: "https://idp.example/jwks"}, ""},
		{"a service missing", gateway.Config{Upstreams: map[string][]string{gateway.Orders: {"http://a"}}, JWTSecret: testSecret}, "no base URL for inventory, shipping, sagas"},
		{"an unknown service", gateway.Config{Upstreams: map[string][]string{"billing": {"http://a"}}, Resolver: gateway.Static{}, JWTSecret: testSecret}, `upstream "billing"`},
		{"a bad URL", gateway.Config{Upstreams: map[string][]string{gateway.Orders: {"ftp://a"}}, Resolver: gateway.Static{}, JWTSecret: testSecret}, "base URL"},
		{"no verifier", gateway.Config{Upstreams: all}, "exactly one"},
		{"two verifiers", gateway.Config{Upstreams: all, JWTSecret: testSecret, JWKSURL: "https://idp.example/jwks"}, "exactly one"},
		{"a bad JWKS URL", gateway.Config{Upstreams: all, JWKSURL: "idp.example/jwks"}, "JWKS URL"},
		{"a negative rate", gateway.Config{Upstreams: all, JWTSecret: testSecret, RateLimit: -1}, "negative"},
		{"a negative timeout", gateway.Config{Upstreams: all, JWTSecret: testSecret, UpstreamTimeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want an error with %q", err, tt.want)
			}
		})
	}
	if _, err := gateway.New(context.Background(), gateway.Config{Upstreams: all, JWTSecret: []byte("short")}); err == nil {
		t.Error("New took a 5-byte secret")
	}
	if _, err := gateway.New(context.Background(), gateway.Config{}); err == nil || errors.Unwrap(err) == nil {
		t.Errorf("New with an empty config: %v, want the validation error", err)
	}
}
