package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/services/gateway"
)

// startGateway runs a gateway whose upstreams nobody answers: the console
// needs none of them.
func startGateway(t *testing.T) string {
	t.Helper()
	up := map[string][]string{}
	for _, svc := range gateway.Services() {
		up[svc] = []string{"http://127.0.0.1:9"}
	}
	g, err := gateway.New(context.Background(), gateway.Config{
		Upstreams: up,
		JWTSecret: []byte("the console tests' secret, 32 bytes or more"),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestServed: the gateway serves the page and its assets without a token,
// under a policy that lets them reach their own origin only, and nothing
// else under /console; the API behind them still wants a token.
func TestServed(t *testing.T) {
	base := startGateway(t)
	for _, tt := range []struct {
		method, path string
		status       int
		contentType  string
		body         string // a part of the body, for 200s
	}{
		{http.MethodGet, "/console", http.StatusOK, "text/html; charset=utf-8", `<script src="/console/app.js" defer>`},
		{http.MethodGet, "/console/", http.StatusOK, "text/html; charset=utf-8", `id="login-form"`},
		{http.MethodHead, "/console/", http.StatusOK, "text/html; charset=utf-8", ""},
		{http.MethodGet, "/console/app.js", http.StatusOK, "text/javascript; charset=utf-8", "/admin/updates"},
		{http.MethodGet, "/console/app.css", http.StatusOK, "text/css; charset=utf-8", ".tl-bar"},
		{http.MethodGet, "/console/icon.svg", http.StatusOK, "image/svg+xml", "<svg"},
		{http.MethodGet, "/console/nothing.js", http.StatusNotFound, "application/problem+json", ""},
		{http.MethodGet, "/console/assets/app.js", http.StatusNotFound, "application/problem+json", ""},
		{http.MethodPost, "/console/", http.StatusMethodNotAllowed, "application/problem+json", ""},
		// A path that climbs out stays under /console: nothing there.
		{http.MethodGet, "/console/../api/sagas", http.StatusNotFound, "application/problem+json", ""},
		{http.MethodGet, "/admin/projections", http.StatusUnauthorized, "application/problem+json", ""},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status || res.Header.Get("Content-Type") != tt.contentType {
				t.Fatalf("%d %q, want %d %q: %.200s", res.StatusCode, res.Header.Get("Content-Type"), tt.status, tt.contentType, b)
			}
			if !strings.Contains(string(b), tt.body) {
				t.Errorf("body lacks %q: %.300s", tt.body, b)
			}
			if tt.status != http.StatusOK {
				return
			}
			if tt.method == http.MethodHead && len(b) != 0 {
				t.Errorf("HEAD answered a body of %d bytes", len(b))
			}
			h := res.Header
			if csp := h.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self';") {
				t.Errorf("Content-Security-Policy %q, want default-src 'self' first", csp)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-cache" {
				t.Errorf("headers %v", h)
			}
		})
	}
}

// TestNoThirdPartyHosts: nothing the page loads names another host, so
// the policy's 'self' is all it needs.
func TestNoThirdPartyHosts(t *testing.T) {
	base := startGateway(t)
	for _, path := range []string{"/console/", "/console/app.js", "/console/app.css"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "eval(", "new Function"} {
			text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
			if strings.Contains(text, bad) {
				t.Errorf("%s contains %q", path, bad)
			}
		}
	}
}
