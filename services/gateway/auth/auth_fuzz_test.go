package auth_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// fuzzSecret signs the fuzz targets' tokens.
var fuzzSecret = []byte("fuzz-secret-0123456789abcdef-0123456789")

// farFuture is an exp (2100-01-01) that keeps committed seed tokens valid.
const farFuture = 4102444800

// fuzzToken signs header and payload (JSON texts) with fuzzSecret, as an
// issuer holding the secret would, whatever they say.
func fuzzToken(header, payload []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, fuzzSecret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// signedWithSecret reports whether token is three base64url parts whose
// third is the HS256 signature of the first two under fuzzSecret: the
// test's own check, without the JWT library.
func signedWithSecret(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, fuzzSecret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	return hmac.Equal(sig, mac.Sum(nil))
}

func hs256(t testing.TB) auth.Verifier {
	t.Helper()
	v, err := auth.NewHS256(fuzzSecret)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const hsHeader = `{"alg":"HS256","typ":"JWT"}`

// verifySeeds are headers and claims, valid and known-bad, signed with
// the secret by the fuzz targets.
var verifySeeds = []struct{ header, payload string }{
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"customer","exp":%d,"iat":1767225600}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"ops","role":"admin","exp":%d}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"customer","exp":%d,"nbf":%d}`, farFuture, farFuture-1)},
	{hsHeader, `{"sub":"c-42","role":"customer","exp":1000000000}`},
	{hsHeader, `{"sub":"c-42","role":"customer"}`},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"customer","exp":"%d"}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"root","exp":%d}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c 42","role":"customer","exp":%d}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"","role":"admin","exp":%d}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"customer","role":"admin","exp":%d}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","ROLE":"admin","exp":%d}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"customer","exp":%d,"iat":%d}`, farFuture, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"customer","exp":%d.5}`, farFuture)},
	{hsHeader, fmt.Sprintf(`{"sub":"c-42","role":"customer","exp":1e300}`)},
	{`{"alg":"none","typ":"JWT"}`, fmt.Sprintf(`{"sub":"ops","role":"admin","exp":%d}`, farFuture)},
	{`{"alg":"RS256","typ":"JWT"}`, fmt.Sprintf(`{"sub":"ops","role":"admin","exp":%d}`, farFuture)},
	{`{"alg":"hs256"}`, fmt.Sprintf(`{"sub":"ops","role":"admin","exp":%d}`, farFuture)},
	{`{"typ":"JWT"}`, fmt.Sprintf(`{"sub":"ops","role":"admin","exp":%d}`, farFuture)},
	{`not json`, `not json`},
	{hsHeader, `[]`},
}

// FuzzVerify: any text as a bearer token never panics the HS256
// verifier, whose failures all wrap ErrUnauthenticated as an *auth.Error;
// and it authenticates no token whose signature the test's own HMAC
// check does not confirm. Tokens that are correctly signed by the
// secret's holder come from the seeds (signed here) and their mutations.
func FuzzVerify(f *testing.F) {
	for _, s := range verifySeeds {
		tok := fuzzToken([]byte(s.header), []byte(s.payload))
		f.Add(tok)
		f.Add(tok[:strings.LastIndexByte(tok, '.')+1])         // signature cut off
		f.Add(tok[:strings.LastIndexByte(tok, '.')] + ".AAAA") // another signature
		f.Add(strings.Replace(tok, ".", "=.", 1))              // padded base64
		f.Add(tok + ".")                                       // a fourth part
		f.Add(tok[:len(tok)-2] + "xy")                         // tampered
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "Bearer x", strings.Repeat("a", 9<<10), "\x00.\xff.\n"} {
		f.Add(s)
	}
	v := hs256(f)
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(context.Background(), token)
		if err != nil {
			var ae *auth.Error
			if !errors.Is(err, auth.ErrUnauthenticated) || !errors.As(err, &ae) {
				t.Fatalf("Verify(%q): %v is not an *auth.Error wrapping ErrUnauthenticated", token, err)
			}
			if p != (auth.Principal{}) {
				t.Fatalf("Verify(%q) failed but returned %+v", token, p)
			}
			return
		}
		if !signedWithSecret(token) {
			t.Fatalf("Verify(%q) authenticated %+v without a valid signature", token, p)
		}
		checkAccepted(t, token, p)
	})
}

// FuzzVerifyClaims: a token correctly signed with the secret, whatever
// its header and claims say, is authenticated only with alg HS256, an
// expiry not passed, no nbf or iat in the future (beyond the leeway) and
// a holder whose role and subject are valid and are the token's.
func FuzzVerifyClaims(f *testing.F) {
	for _, s := range verifySeeds {
		f.Add([]byte(s.header), []byte(s.payload))
	}
	v := hs256(f)
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		token := fuzzToken(header, payload)
		p, err := v.Verify(context.Background(), token)
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("Verify(%q): %v does not wrap ErrUnauthenticated", token, err)
			}
			return
		}
		checkAccepted(t, token, p)
	})
}

// checkAccepted checks what an authenticated token must be, reading its
// header and claims with encoding/json as the issuer wrote them.
func checkAccepted(t *testing.T, token string, p auth.Principal) {
	t.Helper()
	parts := strings.Split(token, ".")
	header, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	payload, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("Verify accepted %q, whose parts are not base64url: %v, %v", token, err1, err2)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(header, &h); err != nil || h.Alg != "HS256" {
		t.Fatalf("Verify accepted header %s (alg %q, %v), want alg HS256", header, h.Alg, err)
	}
	var c struct {
		Sub  string `json:"sub"`
		Role string `json:"role"`
		// The JWT library reads a date given as a numeric string too.
		Exp, Nbf, Iat *json.Number
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("Verify accepted claims %s that do not decode: %v", payload, err)
	}
	now := float64(time.Now().Unix())
	leeway := auth.Leeway.Seconds() + 5 // the verifier read the clock a moment earlier
	date := func(n *json.Number) float64 {
		f, err := n.Float64()
		if err != nil {
			t.Fatalf("Verify accepted claims %s with date %q: %v", payload, *n, err)
		}
		return f
	}
	switch {
	case c.Exp == nil:
		t.Fatalf("Verify accepted claims %s without exp", payload)
	case date(c.Exp) < now-leeway:
		t.Fatalf("Verify accepted claims %s, expired", payload)
	case c.Nbf != nil && date(c.Nbf) > now+leeway:
		t.Fatalf("Verify accepted claims %s, not valid yet", payload)
	case c.Iat != nil && date(c.Iat) > now+leeway:
		t.Fatalf("Verify accepted claims %s, issued in the future", payload)
	case p.Subject != c.Sub || string(p.Role) != c.Role:
		t.Fatalf("Verify of claims %s returned %+v", payload, p)
	case p.Validate() != nil:
		t.Fatalf("Verify of claims %s returned an invalid holder %+v: %v", payload, p, p.Validate())
	}
}

// Ids the fuzz owners know: customer c-1 owns order fuzzOrder1 and its
// shipment fuzzShip1, c-2 owns fuzzOrder2 and fuzzShip2, looking up
// fuzzOrderDown fails.
const (
	fuzzOrder1    = "11111111-1111-4111-8111-111111111111"
	fuzzOrder2    = "22222222-2222-4222-8222-222222222222"
	fuzzOrderDown = "44444444-4444-4444-8444-444444444444"
	fuzzShip1     = "55555555-5555-4555-8555-555555555555"
	fuzzShip2     = "66666666-6666-4666-8666-666666666666"
)

var errFuzzDown = fmt.Errorf("orders service: %w", domain.ErrUnavailable)

// fuzzOwners answers from fixed tables, lower-case ids only, as the read
// models store them.
type fuzzOwners struct{}

var (
	fuzzOrderOwners    = map[string]string{fuzzOrder1: "c-1", fuzzOrder2: "c-2"}
	fuzzShipmentOwners = map[string]string{fuzzShip1: "c-1", fuzzShip2: "c-2"}
)

func (fuzzOwners) OrderCustomer(_ context.Context, id string) (string, error) {
	if id == fuzzOrderDown {
		return "", errFuzzDown
	}
	if c, ok := fuzzOrderOwners[id]; ok {
		return c, nil
	}
	return "", fmt.Errorf("order %s: %w", id, domain.ErrNotFound)
}

func (fuzzOwners) ShipmentCustomer(_ context.Context, id string) (string, error) {
	if c, ok := fuzzShipmentOwners[id]; ok {
		return c, nil
	}
	return "", fmt.Errorf("shipment %s: %w", id, domain.ErrNotFound)
}

// FuzzAuthorize: any request target, method, body and role never panic
// Authorize. An admin may do everything, a role it does not know nothing.
// A customer (c-1) is refused with ErrForbidden, ErrNotFound, a *Problem
// or the owners' failure, and is let through only where the test's own
// reading of API.md's rules allows: the exact paths of its own orders and
// shipments, the inventory, its order list narrowed to itself, and
// placing an order whose body does not name another customer. The
// request let through goes to the path the rules were checked on.
func FuzzAuthorize(f *testing.F) {
	for _, s := range []struct{ role, method, target, body string }{
		{"customer", "GET", "/api/orders/" + fuzzOrder1, ""},
		{"customer", "HEAD", "/api/orders/" + fuzzOrder1, ""},
		{"customer", "GET", "/api/orders/" + fuzzOrder2, ""},
		{"customer", "GET", "/api/orders/" + strings.ToUpper(fuzzOrder1), ""},
		{"customer", "GET", "/api/orders/" + fuzzOrderDown, ""},
		{"customer", "POST", "/api/orders/" + fuzzOrder1 + "/cancel", ""},
		{"customer", "POST", "/api/orders/" + fuzzOrder2 + "/cancel", ""},
		{"customer", "POST", "/api/orders", `{"customer_id":"c-1","items":[]}`},
		{"customer", "POST", "/api/orders", `{"customer_id":"c-2"}`},
		{"customer", "POST", "/api/orders", `{"customer_id":"c-1","customer_id":"c-2"}`},
		{"customer", "POST", "/api/orders", `{"customer\u005fid":"c-2"}`},
		{"customer", "POST", "/api/orders", `{"Customer_ID":"c-2"}`},
		{"customer", "POST", "/api/orders", `not json`},
		{"customer", "GET", "/api/orders?customer_id=c-2", ""},
		{"customer", "GET", "/api/orders?customer_id=c-1&status=pending", ""},
		{"customer", "GET", "/api/orders?customer_id=c-1;customer_id=c-2", ""},
		{"customer", "GET", "/api/inventory", ""},
		{"customer", "GET", "/api/inventory/SKU-1", ""},
		{"customer", "GET", "/api/inventory/", ""},
		{"customer", "POST", "/api/inventory/SKU-1/restock", `{"quantity":1}`},
		{"customer", "GET", "/api/shipments?order_id=" + fuzzOrder1, ""},
		{"customer", "GET", "/api/shipments?order_id=" + fuzzOrder2, ""},
		{"customer", "GET", "/api/shipments?order_id=" + fuzzOrder1 + "&order_id=" + fuzzOrder2, ""},
		{"customer", "GET", "/api/shipments/" + fuzzShip1, ""},
		{"customer", "GET", "/api/shipments/" + fuzzShip2, ""},
		{"customer", "POST", "/api/shipments/" + fuzzShip1 + "/dispatch", ""},
		{"customer", "POST", "/api/sagas/" + fuzzOrder1 + "/retry", ""},
		{"customer", "GET", "/admin/projections", ""},
		{"customer", "GET", "/api/orders/../inventory", ""},
		{"customer", "GET", "/api/orders/" + fuzzOrder1 + "/", ""},
		{"customer", "GET", "//api/orders/" + fuzzOrder1, ""},
		{"customer", "GET", "/api/orders%2F" + fuzzOrder1, ""},
		{"customer", "GET", "/api/%6Frders/" + fuzzOrder1, ""},
		{"customer", "GET", "/api/orders/%2E%2E/" + fuzzOrder2, ""},
		{"customer", "DELETE", "/api/orders/" + fuzzOrder1, ""},
		{"customer", "get", "/api/inventory", ""},
		{"admin", "POST", "/api/inventory/SKU-1/restock", `{"quantity":1}`},
		{"operator", "GET", "/api/inventory", ""},
		{"", "GET", "/api/inventory", ""},
	} {
		f.Add(s.role, s.method, s.target, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, role, method, target string, body []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !validMethod(method) {
			return // net/http answers 400 before any handler runs
		}
		r := &http.Request{
			Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}}, Host: "gateway",
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		}
		r = r.WithContext(context.Background())
		p := auth.Principal{Subject: "c-1", Role: auth.Role(role)}
		out, err := auth.Authorize(context.Background(), p, r, fuzzOwners{})
		switch {
		case auth.Role(role) == auth.RoleAdmin:
			if err != nil || out == nil {
				t.Fatalf("admin refused %s %s: %v", method, target, err)
			}
			return
		case auth.Role(role) != auth.RoleCustomer:
			if err == nil || !errors.Is(err, auth.ErrForbidden) {
				t.Fatalf("role %q: %s %s gave %v, want ErrForbidden", role, method, target, err)
			}
			return
		}
		if err != nil {
			var prob *httpx.Problem
			if !errors.Is(err, auth.ErrForbidden) && !errors.Is(err, domain.ErrNotFound) &&
				!errors.As(err, &prob) && !errors.Is(err, errFuzzDown) {
				t.Fatalf("customer %s %s: unexpected error %v", method, target, err)
			}
			return
		}
		if out == nil {
			t.Fatalf("customer %s %s: allowed, with no request to forward", method, target)
		}
		if out.Method != r.Method || out.URL.EscapedPath() != u.EscapedPath() || out.URL.Path != u.Path {
			t.Fatalf("customer %s %s: forwards %s %s", method, target, out.Method, out.URL)
		}
		if why := customerMayNot(out, body); why != "" {
			t.Fatalf("customer c-1 allowed %s %s: %s", method, target, why)
		}
	})
}

// validMethod is what net/http's server accepts as a method: an HTTP
// token.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// customerMayNot says why customer c-1 may not make r (as forwarded;
// body is what it sent), or "" when API.md lets it. It reads the rules
// anew, not from the rules table: paths are compared segment by segment
// on the escaped path, which must have no empty, dot or escaped-slash
// segments.
func customerMayNot(r *http.Request, body []byte) string {
	escaped := r.URL.EscapedPath()
	if !strings.HasPrefix(escaped, "/") {
		return "the path is not absolute"
	}
	var segs []string
	for _, part := range strings.Split(escaped[1:], "/") {
		seg, err := url.PathUnescape(part)
		if err != nil || seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "/") {
			return fmt.Sprintf("the path %q is not canonical", escaped)
		}
		segs = append(segs, seg)
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	owned := func(table map[string]string, id string) bool { return table[id] == "c-1" }
	query, err := url.ParseQuery(r.URL.RawQuery)
	switch {
	case len(segs) < 2 || segs[0] != "api":
		return "no rule covers paths outside /api"
	case segs[1] == "inventory" && read:
		return ""
	case segs[1] == "orders" && len(segs) == 2 && read:
		if err != nil || !slices.Equal(query["customer_id"], []string{"c-1"}) {
			return fmt.Sprintf("the list is not narrowed to c-1: %q", r.URL.RawQuery)
		}
		return ""
	case segs[1] == "orders" && len(segs) == 2 && r.Method == http.MethodPost:
		var fields map[string]json.RawMessage
		var customer string
		if json.Unmarshal(body, &fields) == nil && json.Unmarshal(fields["customer_id"], &customer) == nil && customer != "c-1" {
			return "the order is placed for customer " + customer
		}
		return ""
	case segs[1] == "orders" && len(segs) == 3 && read && owned(fuzzOrderOwners, segs[2]):
		return ""
	case segs[1] == "orders" && len(segs) == 4 && segs[3] == "cancel" && r.Method == http.MethodPost && owned(fuzzOrderOwners, segs[2]):
		return ""
	case segs[1] == "shipments" && len(segs) == 2 && read:
		if err != nil || len(query["order_id"]) != 1 || !owned(fuzzOrderOwners, query["order_id"][0]) {
			return fmt.Sprintf("the shipment list is not of one of c-1's orders: %q", r.URL.RawQuery)
		}
		return ""
	case segs[1] == "shipments" && len(segs) == 3 && read && owned(fuzzShipmentOwners, segs[2]):
		return ""
	}
	return "no rule allows it"
}

// TestCustomerMayNot checks FuzzAuthorize's oracle itself, so that a
// lenient oracle cannot hide a lenient Authorize.
func TestCustomerMayNot(t *testing.T) {
	tests := []struct {
		method, target, body string
		allowed              bool
	}{
		{"GET", "/api/orders/" + fuzzOrder1, "", true},
		{"HEAD", "/api/orders/" + fuzzOrder1, "", true},
		{"GET", "/api/orders/" + fuzzOrder2, "", false},
		{"POST", "/api/orders/" + fuzzOrder1 + "/cancel", "", true},
		{"POST", "/api/orders/" + fuzzOrder2 + "/cancel", "", false},
		{"GET", "/api/orders?customer_id=c-1", "", true},
		{"GET", "/api/orders", "", false},
		{"GET", "/api/orders?customer_id=c-1&customer_id=c-2", "", false},
		{"POST", "/api/orders", `{"customer_id":"c-1"}`, true},
		{"POST", "/api/orders", `{"customer_id":"c-2"}`, false},
		{"POST", "/api/orders", `{"items":[]}`, true},
		{"GET", "/api/inventory/SKU-1", "", true},
		{"POST", "/api/inventory/SKU-1/restock", "", false},
		{"GET", "/api/shipments?order_id=" + fuzzOrder1, "", true},
		{"GET", "/api/shipments?order_id=" + fuzzOrder2, "", false},
		{"GET", "/api/shipments/" + fuzzShip1, "", true},
		{"GET", "/api/shipments/" + fuzzShip2, "", false},
		{"GET", "/api/inventory%2F..%2Forders", "", false},
		{"GET", "/api/inventory/../orders", "", false},
		{"GET", "//api/inventory", "", false},
		{"GET", "/admin/projections", "", false},
		{"POST", "/api/sagas/" + fuzzOrder1 + "/retry", "", false},
	}
	for _, tt := range tests {
		u, err := url.ParseRequestURI(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		why := customerMayNot(&http.Request{Method: tt.method, URL: u}, []byte(tt.body))
		if (why == "") != tt.allowed {
			t.Errorf("%s %s: oracle says %q, want allowed %t", tt.method, tt.target, why, tt.allowed)
		}
	}
}
