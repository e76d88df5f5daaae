package auth_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// gateway serves Middleware and Enforce in front of a handler that echoes
// the principal it sees and the query it was given.
func gateway(t *testing.T) *httptest.Server {
	t.Helper()
	v, err := auth.NewHS256(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok {
			http.Error(w, "no principal", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %s %s", p.Role, p.Subject, r.URL.RawQuery)
	})
	srv := httptest.NewServer(auth.Middleware(v)(auth.Enforce(newOwners())(echo)))
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status    int
	challenge string
	problem   httpx.Problem
	body      string
}

func get(t *testing.T, srv *httptest.Server, path string, authorization ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range authorization {
		req.Header.Add("Authorization", a)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: res.StatusCode, challenge: res.Header.Get("WWW-Authenticate"), body: string(body)}
	if res.Header.Get("Content-Type") == "application/problem+json" {
		if err := json.Unmarshal(body, &a.problem); err != nil {
			t.Fatalf("problem body %s: %v", body, err)
		}
	}
	return a
}

func TestMiddlewareRefusesWith401(t *testing.T) {
	srv := gateway(t)
	hs := func(c tokenClaims) string { return "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, "", c) }
	expired := valid()
	expired.exp = -time.Hour
	badRole := valid()
	badRole.role = "superuser"
	tests := []struct {
		name          string
		authorization []string
		reason        auth.Reason
	}{
		{"missing", nil, auth.ReasonMissing},
		{"another scheme", []string{"Basic YWRtaW46YWRtaW4="}, auth.ReasonMissing},
		{"scheme without a token", []string{"Bearer"}, auth.ReasonMissing},
		{"two tokens", []string{"Bearer a b"}, auth.ReasonMalformed},
		{"two headers", []string{hs(valid()), hs(valid())}, auth.ReasonMalformed},
		{"malformed", []string{"Bearer not.a.jwt"}, auth.ReasonMalformed},
		{"expired", []string{hs(expired)}, auth.ReasonExpired},
		{"bad signature", []string{"Bearer " + sign(t, jwt.SigningMethodHS256, []byte("some other secret, thirty-two bytes long"), "", valid())},
			auth.ReasonBadSignature},
		{"unknown role", []string{hs(badRole)}, auth.ReasonUnknownRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := get(t, srv, "/api/inventory", tt.authorization...)
			if a.status != http.StatusUnauthorized || a.problem.Status != http.StatusUnauthorized ||
				a.problem.Type != httpx.ProblemTypeBase+httpx.SlugUnauthorized || a.problem.Detail != string(tt.reason) {
				t.Fatalf("got %d %s, want 401 problem %q", a.status, a.body, tt.reason)
			}
			if !strings.HasPrefix(a.challenge, "Bearer ") {
				t.Fatalf("WWW-Authenticate %q, want a Bearer challenge", a.challenge)
			}
			invalid := strings.Contains(a.challenge, `error="invalid_token"`)
			if invalid != (tt.reason != auth.ReasonMissing) {
				t.Fatalf("WWW-Authenticate %q: invalid_token must be said exactly when a token was sent", a.challenge)
			}
		})
	}
}

func TestMiddlewareAndEnforce(t *testing.T) {
	srv := gateway(t)
	bearer := func(sub, role string) string {
		tok, err := auth.Sign(testSecret, auth.Principal{Subject: sub, Role: auth.Role(role)}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	tests := []struct {
		name          string
		path          string
		authorization string
		status        int
		body          string // of a 200
		slug          string // of a problem
	}{
		{"admin", "/admin/projections", bearer("ops", "admin"), http.StatusOK, "admin ops ", ""},
		{"scheme in lower case", "/admin/projections", strings.Replace(bearer("ops", "admin"), "Bearer", "bearer", 1), http.StatusOK, "admin ops ", ""},
		{"customer's list is narrowed", "/api/orders?status=pending", bearer("c-1", "customer"), http.StatusOK,
			"customer c-1 customer_id=c-1&status=pending", ""},
		{"customer on /admin", "/admin/projections", bearer("c-1", "customer"), http.StatusForbidden, "", httpx.SlugForbidden},
		{"customer on another's order", "/api/orders/" + orderC2, bearer("c-1", "customer"), http.StatusForbidden, "", httpx.SlugForbidden},
		{"customer on an order that does not exist", "/api/orders/" + orderNone, bearer("c-1", "customer"), http.StatusNotFound, "", httpx.SlugNotFound},
		{"owner lookup down", "/api/orders/" + orderDown, bearer("c-1", "customer"), http.StatusServiceUnavailable, "", httpx.SlugUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := get(t, srv, tt.path, tt.authorization)
			if a.status != tt.status {
				t.Fatalf("got %d %s, want %d", a.status, a.body, tt.status)
			}
			if tt.slug == "" && a.body != tt.body {
				t.Fatalf("handler saw %q, want %q", a.body, tt.body)
			}
			if tt.slug != "" && (a.problem.Type != httpx.ProblemTypeBase+tt.slug || a.problem.Detail == "") {
				t.Fatalf("got %s, want problem %s with a detail", a.body, tt.slug)
			}
			if a.challenge != "" {
				t.Fatalf("WWW-Authenticate %q on a %d", a.challenge, a.status)
			}
		})
	}
}

func TestEnforceWithoutPrincipalIs401(t *testing.T) {
	h := auth.Enforce(newOwners())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the handler ran without a principal")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/inventory", nil))
	if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("got %d %v", rec.Code, rec.Header())
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		slug   string
		detail string
	}{
		{"unauthenticated", &auth.Error{Reason: auth.ReasonExpired}, http.StatusUnauthorized, httpx.SlugUnauthorized, string(auth.ReasonExpired)},
		{"bare unauthenticated", fmt.Errorf("x: %w", auth.ErrUnauthenticated), http.StatusUnauthorized, httpx.SlugUnauthorized, string(auth.ReasonMalformed)},
		{"forbidden", domain.Refuse(auth.ErrForbidden, "not yours"), http.StatusForbidden, httpx.SlugForbidden, "not yours"},
		{"bare forbidden", auth.ErrForbidden, http.StatusForbidden, httpx.SlugForbidden, "this request is not allowed for your role"},
		{"not found", domain.Refuse(domain.ErrNotFound, "no order with id %q", "x"), http.StatusNotFound, httpx.SlugNotFound, `no order with id "x"`},
		{"problem", httpx.BadRequest(httpx.SlugBadRequest, "bad query"), http.StatusBadRequest, httpx.SlugBadRequest, "bad query"},
		{"unavailable", errOrdersDown, http.StatusServiceUnavailable, httpx.SlugUnavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			auth.WriteError(rec, httptest.NewRequest(http.MethodGet, "/api/orders", nil), tt.err)
			var p httpx.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.status || p.Type != httpx.ProblemTypeBase+tt.slug || (tt.detail != "" && p.Detail != tt.detail) {
				t.Fatalf("got %d %s, want %d %s %q", rec.Code, rec.Body, tt.status, tt.slug, tt.detail)
			}
			if (rec.Header().Get("WWW-Authenticate") != "") != (tt.status == http.StatusUnauthorized) {
				t.Fatalf("WWW-Authenticate %q on a %d", rec.Header().Get("WWW-Authenticate"), rec.Code)
			}
		})
	}
}
