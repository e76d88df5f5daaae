package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow/services/gateway/auth"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

// tokenClaims builds a claim set; fields left zero are left out.
type tokenClaims struct {
	sub, role, iss, aud string
	exp, nbf, iat       time.Duration // relative to now; 0 leaves the claim out
}

func (c tokenClaims) mapClaims() jwt.MapClaims {
	now := time.Now()
	m := jwt.MapClaims{}
	set := func(name, v string) {
		if v != "" {
			m[name] = v
		}
	}
	set("sub", c.sub)
	set("role", c.role)
	set("iss", c.iss)
	set("aud", c.aud)
	for name, d := range map[string]time.Duration{"exp": c.exp, "nbf": c.nbf, "iat": c.iat} {
		if d != 0 {
			m[name] = jwt.NewNumericDate(now.Add(d))
		}
	}
	return m
}

// valid is a customer's claims, good for an hour.
func valid() tokenClaims {
	return tokenClaims{sub: "c-42", role: "customer", exp: time.Hour, iat: -time.Second}
}

// sign signs c with method and key, kid in the header when not empty.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c tokenClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c.mapClaims())
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantReason checks that err is an authentication failure for reason.
func wantReason(t *testing.T, err error, reason auth.Reason) {
	t.Helper()
	if !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
	}
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Reason != reason {
		t.Fatalf("error %v: want reason %q", err, reason)
	}
}

var (
	keysOnce sync.Once
	rsaKeys  [3]*rsa.PrivateKey
	ecKeys   [3]*ecdsa.PrivateKey
)

// testKeys returns three RSA and three P-256 keys, made once per run:
// RSA keys take a while to generate.
func testKeys(t *testing.T) ([3]*rsa.PrivateKey, [3]*ecdsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		for i := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[i] = k
			e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			ecKeys[i] = e
		}
	})
	return rsaKeys, ecKeys
}

func TestHS256(t *testing.T) {
	rsaKeys, _ := testKeys(t)
	customer := valid()
	admin := tokenClaims{sub: "ops-1", role: "admin", exp: time.Hour}
	with := func(change func(c *tokenClaims)) tokenClaims {
		c := valid()
		change(&c)
		return c
	}
	hs := func(c tokenClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, "", c) }
	tests := []struct {
		name   string
		token  string
		want   auth.Principal
		reason auth.Reason
	}{
		{"customer", hs(customer), auth.Principal{Subject: "c-42", Role: auth.RoleCustomer}, ""},
		{"admin", hs(admin), auth.Principal{Subject: "ops-1", Role: auth.RoleAdmin}, ""},
		{"expired within the leeway", hs(with(func(c *tokenClaims) { c.exp = -5 * time.Second })),
			auth.Principal{Subject: "c-42", Role: auth.RoleCustomer}, ""},
		{"expired", hs(with(func(c *tokenClaims) { c.exp = -time.Hour })), auth.Principal{}, auth.ReasonExpired},
		{"not yet valid", hs(with(func(c *tokenClaims) { c.nbf = time.Hour })), auth.Principal{}, auth.ReasonNotYetValid},
		{"issued in the future", hs(with(func(c *tokenClaims) { c.iat = time.Hour })), auth.Principal{}, auth.ReasonInvalidClaims},
		{"no expiry", hs(with(func(c *tokenClaims) { c.exp = 0 })), auth.Principal{}, auth.ReasonMissingExpiry},
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("another secret of at least thirty-two bytes"), "", customer),
			auth.Principal{}, auth.ReasonBadSignature},
		{"tampered claims", tamper(t, hs(customer)), auth.Principal{}, auth.ReasonBadSignature},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", customer),
			auth.Principal{}, auth.ReasonUnsupportedAlgorithm},
		{"wrong alg HS384", sign(t, jwt.SigningMethodHS384, testSecret, "", customer), auth.Principal{}, auth.ReasonUnsupportedAlgorithm},
		{"wrong alg RS256", sign(t, jwt.SigningMethodRS256, rsaKeys[0], "", customer), auth.Principal{}, auth.ReasonUnsupportedAlgorithm},
		{"unknown alg", withHeader(t, hs(customer), `{"alg":"XY999","typ":"JWT"}`), auth.Principal{}, auth.ReasonUnsupportedAlgorithm},
		{"missing sub", hs(with(func(c *tokenClaims) { c.sub = "" })), auth.Principal{}, auth.ReasonMissingSubject},
		{"unknown role", hs(with(func(c *tokenClaims) { c.role = "root" })), auth.Principal{}, auth.ReasonUnknownRole},
		{"no role", hs(with(func(c *tokenClaims) { c.role = "" })), auth.Principal{}, auth.ReasonUnknownRole},
		{"customer sub not a customer_id", hs(with(func(c *tokenClaims) { c.sub = "c 42" })), auth.Principal{}, auth.ReasonInvalidSubject},
		{"customer sub only dots", hs(with(func(c *tokenClaims) { c.sub = ".." })), auth.Principal{}, auth.ReasonInvalidSubject},
		{"admin sub too long", hs(tokenClaims{sub: strings.Repeat("a", auth.MaxSubjectLength+1), role: "admin", exp: time.Hour}),
			auth.Principal{}, auth.ReasonInvalidSubject},
		{"not a JWT", "not-a-token", auth.Principal{}, auth.ReasonMalformed},
		{"bad base64", "a.b.c", auth.Principal{}, auth.ReasonMalformed},
		{"too long", strings.Repeat("a", 9000), auth.Principal{}, auth.ReasonMalformed},
		{"empty", "", auth.Principal{}, auth.ReasonMissing},
	}
	v, err := auth.NewHS256(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tt.token)
			if tt.reason != "" {
				wantReason(t, err, tt.reason)
				if p != (auth.Principal{}) {
					t.Fatalf("a refused token yielded %+v", p)
				}
				return
			}
			if err != nil || p != tt.want {
				t.Fatalf("Verify = %+v, %v; want %+v", p, err, tt.want)
			}
		})
	}
}

func TestNewHS256RefusesShortSecrets(t *testing.T) {
	if _, err := auth.NewHS256(make([]byte, auth.MinSecretLength-1)); err == nil {
		t.Fatal("a 31-byte secret was accepted")
	}
	if _, err := auth.NewHS256(make([]byte, auth.MinSecretLength)); err != nil {
		t.Fatalf("a 32-byte secret was refused: %v", err)
	}
}

// tamper changes the subject in token's claims, keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	c := valid()
	c.sub = "c-43"
	other := sign(t, jwt.SigningMethodHS256, testSecret, "", c)
	parts[1] = strings.Split(other, ".")[1]
	return strings.Join(parts, ".")
}

// withHeader replaces token's header with header (JSON).
func withHeader(t *testing.T, token, header string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(header))
	return strings.Join(parts, ".")
}

// jwksServer serves a JWK Set that a test can replace, counting fetches.
type jwksServer struct {
	t       *testing.T
	srv     *httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	body    []byte
	status  int
}

// jwk is a public key with its key id and algorithm.
type jwk struct {
	kid string
	alg jwkset.ALG
	key any // *rsa.PublicKey or *ecdsa.PublicKey
}

func newJWKSServer(t *testing.T, keys ...jwk) *jwksServer {
	t.Helper()
	s := &jwksServer{t: t, status: http.StatusOK}
	s.set(keys...)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
		s.fetches.Add(1)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// set makes keys the served key set.
func (s *jwksServer) set(keys ...jwk) {
	s.t.Helper()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: jwkset.UseSig},
		})
		if err != nil {
			s.t.Fatal(err)
		}
		if err := store.KeyWrite(context.Background(), j); err != nil {
			s.t.Fatal(err)
		}
	}
	body, err := store.JSONPublic(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *jwksServer) url() string { return s.srv.URL + "/.well-known/jwks.json" }

func TestJWKS(t *testing.T) {
	rsaKeys, ecKeys := testKeys(t)
	srv := newJWKSServer(t,
		jwk{"r1", jwkset.AlgRS256, &rsaKeys[0].PublicKey},
		jwk{"e1", jwkset.AlgES256, &ecKeys[0].PublicKey})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := auth.NewJWKS(ctx, srv.url())
	if err != nil {
		t.Fatal(err)
	}
	rsaPublic, err := x509.MarshalPKIXPublicKey(&rsaKeys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	admin := tokenClaims{sub: "ops-1", role: "admin", exp: time.Hour}
	expired := valid()
	expired.exp = -time.Hour
	tests := []struct {
		name   string
		token  string
		want   auth.Principal
		reason auth.Reason
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKeys[0], "r1", valid()), auth.Principal{Subject: "c-42", Role: auth.RoleCustomer}, ""},
		{"ES256", sign(t, jwt.SigningMethodES256, ecKeys[0], "e1", admin), auth.Principal{Subject: "ops-1", Role: auth.RoleAdmin}, ""},
		{"no kid: every key is tried", sign(t, jwt.SigningMethodES256, ecKeys[0], "", valid()),
			auth.Principal{Subject: "c-42", Role: auth.RoleCustomer}, ""},
		{"RS256 by another key under a known kid", sign(t, jwt.SigningMethodRS256, rsaKeys[2], "r1", valid()),
			auth.Principal{}, auth.ReasonBadSignature},
		{"ES256 naming the RSA key", sign(t, jwt.SigningMethodES256, ecKeys[0], "r1", valid()), auth.Principal{}, auth.ReasonUnknownKey},
		{"HS256 keyed with the public RSA key", sign(t, jwt.SigningMethodHS256, rsaPublic, "r1", valid()),
			auth.Principal{}, auth.ReasonUnsupportedAlgorithm},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "r1", valid()),
			auth.Principal{}, auth.ReasonUnsupportedAlgorithm},
		{"RS384", sign(t, jwt.SigningMethodRS384, rsaKeys[0], "r1", valid()), auth.Principal{}, auth.ReasonUnsupportedAlgorithm},
		{"expired", sign(t, jwt.SigningMethodES256, ecKeys[0], "e1", expired), auth.Principal{}, auth.ReasonExpired},
		{"unknown role", sign(t, jwt.SigningMethodES256, ecKeys[0], "e1", tokenClaims{sub: "x", role: "owner", exp: time.Hour}),
			auth.Principal{}, auth.ReasonUnknownRole},
		// Last: an unknown kid spends the verifier's one immediate refresh.
		{"unknown kid", sign(t, jwt.SigningMethodRS256, rsaKeys[2], "r9", valid()), auth.Principal{}, auth.ReasonUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tt.token)
			if tt.reason != "" {
				wantReason(t, err, tt.reason)
				return
			}
			if err != nil || p != tt.want {
				t.Fatalf("Verify = %+v, %v; want %+v", p, err, tt.want)
			}
		})
	}
}

// TestJWKSRotation: the identity provider replaces its keys while the
// verifier runs. A token signed by a new key is accepted at once (its
// unknown kid makes the verifier fetch the set again); tokens signed by
// the removed keys are refused from then on. No restart, no waiting for
// the periodic refresh.
func TestJWKSRotation(t *testing.T) {
	rsaKeys, ecKeys := testKeys(t)
	srv := newJWKSServer(t,
		jwk{"r1", jwkset.AlgRS256, &rsaKeys[0].PublicKey},
		jwk{"e1", jwkset.AlgES256, &ecKeys[0].PublicKey})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := auth.NewJWKS(ctx, srv.url())
	if err != nil {
		t.Fatal(err)
	}
	oldRSA := sign(t, jwt.SigningMethodRS256, rsaKeys[0], "r1", valid())
	oldEC := sign(t, jwt.SigningMethodES256, ecKeys[0], "e1", valid())
	newRSA := sign(t, jwt.SigningMethodRS256, rsaKeys[1], "r2", valid())
	newEC := sign(t, jwt.SigningMethodES256, ecKeys[1], "e2", valid())
	for _, tok := range []string{oldRSA, oldEC} {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("before the rotation: %v", err)
		}
	}
	// (Not asking about the new keys yet: a refused unknown kid would
	// spend the refresh that the rotation needs; TestJWKS covers it.)

	srv.set(jwk{"r2", jwkset.AlgRS256, &rsaKeys[1].PublicKey}, jwk{"e2", jwkset.AlgES256, &ecKeys[1].PublicKey})
	before := srv.fetches.Load()
	p, err := v.Verify(t.Context(), newRSA)
	if err != nil || p.Subject != "c-42" {
		t.Fatalf("the rotated-in RSA key: %+v, %v", p, err)
	}
	if after := srv.fetches.Load(); after != before+1 {
		t.Fatalf("%d fetches for the new kid, want 1", after-before)
	}
	if _, err := v.Verify(t.Context(), newEC); err != nil {
		t.Fatalf("the rotated-in EC key: %v", err)
	}
	for name, tok := range map[string]string{"RSA": oldRSA, "EC": oldEC} {
		_, err := v.Verify(t.Context(), tok)
		wantReason(t, err, auth.ReasonUnknownKey)
		if t.Failed() {
			t.Fatalf("the removed %s key", name)
		}
	}
}

// TestJWKSUnknownKIDRefreshIsRateLimited: tokens with made-up key ids
// cause one fetch per interval, not one each.
func TestJWKSUnknownKIDRefreshIsRateLimited(t *testing.T) {
	rsaKeys, _ := testKeys(t)
	srv := newJWKSServer(t, jwk{"r1", jwkset.AlgRS256, &rsaKeys[0].PublicKey})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := auth.NewJWKSWithOptions(ctx, srv.url(), auth.JWKSOptions{UnknownKIDInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, rsaKeys[2], "made-up-"+string(rune('a'+i)), valid()))
		wantReason(t, err, auth.ReasonUnknownKey)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (the first and one refresh)", n)
	}
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, rsaKeys[0], "r1", valid())); err != nil {
		t.Fatalf("a known key after the flood: %v", err)
	}
}

// TestJWKSBackgroundRefresh: the periodic refresh alone picks up a new
// key set. The one refresh an unknown kid may cause is spent first, so
// only the background refresh can make the new key known.
func TestJWKSBackgroundRefresh(t *testing.T) {
	rsaKeys, _ := testKeys(t)
	srv := newJWKSServer(t, jwk{"r1", jwkset.AlgRS256, &rsaKeys[0].PublicKey})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := auth.NewJWKSWithOptions(ctx, srv.url(), auth.JWKSOptions{
		RefreshInterval:    50 * time.Millisecond,
		UnknownKIDInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	newToken := sign(t, jwt.SigningMethodRS256, rsaKeys[1], "r2", valid())
	_, err = v.Verify(t.Context(), newToken)
	wantReason(t, err, auth.ReasonUnknownKey)

	srv.set(jwk{"r2", jwkset.AlgRS256, &rsaKeys[1].PublicKey})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := v.Verify(t.Context(), newToken); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key was not picked up by the background refresh within 30s (%d fetches)", srv.fetches.Load())
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for the condition
	}
	_, err = v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, rsaKeys[0], "r1", valid()))
	wantReason(t, err, auth.ReasonUnknownKey)

	// Once ctx ends, the refresh stops: the fetch count settles. Poll
	// until two readings a few intervals apart agree.
	cancel()
	deadline = time.Now().Add(30 * time.Second)
	for last := srv.fetches.Load(); ; {
		time.Sleep(200 * time.Millisecond) // four refresh intervals between readings
		n := srv.fetches.Load()
		if n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background refresh did not stop after ctx ended (%d fetches)", n)
		}
		last = n
	}
}

func TestNewJWKSErrors(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<html>"))
	}))
	t.Cleanup(notJSON.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name string
		url  string
		opts auth.JWKSOptions
	}{
		{"empty", "", auth.JWKSOptions{}},
		{"relative", "/jwks.json", auth.JWKSOptions{}},
		{"not http", "ftp://idp.test/jwks.json", auth.JWKSOptions{}},
		{"server error", failing.URL, auth.JWKSOptions{}},
		{"not a key set", notJSON.URL, auth.JWKSOptions{}},
		{"unreachable", closed.URL, auth.JWKSOptions{FetchTimeout: 5 * time.Second}},
		{"negative interval", failing.URL, auth.JWKSOptions{RefreshInterval: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := auth.NewJWKSWithOptions(t.Context(), tt.url, tt.opts)
			if err == nil || v != nil {
				t.Fatalf("NewJWKS(%q) = %v, %v; want an error", tt.url, v, err)
			}
		})
	}
}
