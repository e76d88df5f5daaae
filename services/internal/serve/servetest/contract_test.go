package servetest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"gopkg.in/yaml.v3"
)

func load(t *testing.T) *Contract {
	t.Helper()
	c, err := LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// specBytes reads services/api/openapi.yaml.
func specBytes(t *testing.T) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "api", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDocumentIsValid: libopenapi builds the document's model without an
// error, and the document is valid against the OpenAPI 3.1 schema.
func TestDocumentIsValid(t *testing.T) {
	c := load(t)
	if errs := c.ValidateDocument(); len(errs) > 0 {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3.1 document:\n%s", strings.Join(errs, "\n"))
	}
	if v := c.Model().Version; !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi version %q, want 3.1.x", v)
	}
}

// TestNewContractRefusesBrokenDocuments: what the document test relies on
// does fail on a broken document.
func TestNewContractRefusesBrokenDocuments(t *testing.T) {
	spec := string(specBytes(t))
	tests := []struct {
		name, old, new string
	}{
		{"unresolved ref", "'#/components/schemas/PlaceOrderAccepted'", "'#/components/schemas/NoSuchSchema'"},
		{"OpenAPI 3.0", "openapi: 3.1.0", "openapi: 3.0.3"},
		{"not YAML", "openapi: 3.1.0", "openapi: [3.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(spec, tt.old) {
				t.Fatalf("the document has no %s", tt.old)
			}
			if _, err := NewContract([]byte(strings.Replace(spec, tt.old, tt.new, 1))); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	t.Run("invalid against the OpenAPI schema", func(t *testing.T) {
		c, err := NewContract([]byte(strings.Replace(spec, "      operationId: placeOrder\n", "      operationId: placeOrder\n      deprecated: sometimes\n", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if errs := c.ValidateDocument(); len(errs) == 0 {
			t.Fatal("ValidateDocument found no error")
		}
	})
}

// TestContractCoversAPI pins the operations of the HTTP contract (API.md):
// dropping or renaming one in openapi.yaml fails here.
func TestContractCoversAPI(t *testing.T) {
	c := load(t)
	want := []string{
		"POST /api/orders",
		"GET /api/orders",
		"GET /api/orders/{order_id}",
		"POST /api/orders/{order_id}/cancel",
		"POST /api/inventory/{sku}/restock",
		"GET /api/inventory/{sku}",
		"GET /api/inventory",
		"GET /api/shipments/{shipment_id}",
		"GET /api/shipments",
		"POST /api/shipments/{shipment_id}/dispatch",
		"GET /api/sagas/{saga_id}",
		"GET /api/sagas",
		"POST /api/sagas/{saga_id}/retry",
		"GET /healthz",
		"GET /readyz",
		"GET /metrics",
		"GET /openapi.yaml",
		"GET /admin/projections",
		"POST /admin/projections/{name}/replay",
		"GET /admin/events",
		"GET /admin/updates",
		"GET /admin/sagas/stats",
		"GET /admin/saga-definitions",
	}
	slices.Sort(want)
	if got := c.Operations(); !slices.Equal(got, want) {
		t.Errorf("openapi.yaml has operations\n%v\nwant\n%v", got, want)
	}
}

// operations calls f with every operation of the document.
func operations(c *Contract, f func(method, path string, item *v3.PathItem, op *v3.Operation)) {
	for path, item := range c.Model().Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			f(strings.ToUpper(method), path, item, op)
		}
	}
}

func TestContractOperationIDsUnique(t *testing.T) {
	c := load(t)
	seen := map[string]string{}
	operations(c, func(method, path string, _ *v3.PathItem, op *v3.Operation) {
		if op.OperationId == "" {
			t.Errorf("%s %s has no operationId", method, path)
			return
		}
		if other, dup := seen[op.OperationId]; dup {
			t.Errorf("operationId %s used by %s and %s %s", op.OperationId, other, method, path)
		}
		seen[op.OperationId] = method + " " + path
	})
}

// TestContractPathParameters checks an OpenAPI rule tools enforce: every
// {name} in a path template is declared as a required path parameter of
// each of its operations, and nothing else is.
func TestContractPathParameters(t *testing.T) {
	c := load(t)
	operations(c, func(method, path string, item *v3.PathItem, op *v3.Operation) {
		var want []string
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				want = append(want, seg[1:len(seg)-1])
			}
		}
		var got []string
		for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
			if p.In != "path" {
				continue
			}
			if p.Required == nil || !*p.Required {
				t.Errorf("%s %s: path parameter %s is not required", method, path, p.Name)
			}
			got = append(got, p.Name)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s %s: path parameters %v, want %v", method, path, got, want)
		}
	})
}

func TestContractExampleMatchesSchema(t *testing.T) {
	c := load(t)
	proxy, ok := c.Model().Components.Schemas.Get("PlaceOrderRequest")
	if !ok {
		t.Fatal("no PlaceOrderRequest schema")
	}
	s := proxy.Schema()
	if s.Example == nil {
		t.Fatal("PlaceOrderRequest has no example")
	}
	var example any
	if err := s.Example.Decode(&example); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(example)
	if err != nil {
		t.Fatal(err)
	}
	if ok, errs := c.schemas.ValidateSchemaBytes(s, b); !ok {
		t.Fatalf("example %s does not match its schema: %v", b, describe("example", errs))
	}
	// And the schema check can fail.
	bad := strings.Replace(string(b), `"US"`, `"usa"`, 1)
	if ok, _ := c.schemas.ValidateSchemaBytes(s, []byte(bad)); ok {
		t.Fatalf("%s passed", bad)
	}
}

// gatewayOperation reports whether the gateway authenticates an
// operation: everything under /api and /admin.
func gatewayOperation(path string) bool {
	return strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/admin/")
}

// TestGatewayAnswersDocumented: every operation behind the gateway needs
// the bearer token and documents the gateway's own answers; the operations
// endpoints and the document itself need no token.
func TestGatewayAnswersDocumented(t *testing.T) {
	c := load(t)
	scheme, ok := c.Model().Components.SecuritySchemes.Get("bearerAuth")
	if !ok || scheme.Type != "http" || scheme.Scheme != "bearer" || scheme.BearerFormat != "JWT" {
		t.Fatalf("bearerAuth is %+v, want an http bearer JWT scheme", scheme)
	}
	for _, role := range []string{"`customer`", "`admin`"} {
		if !strings.Contains(scheme.Description, role) {
			t.Errorf("bearerAuth does not describe the role %s", role)
		}
	}
	if !slices.ContainsFunc(c.Model().Servers, func(s *v3.Server) bool {
		return strings.Contains(strings.ToLower(s.Description), "gateway")
	}) {
		t.Error("no server is the gateway")
	}
	global := c.Model().Security
	operations(c, func(method, path string, _ *v3.PathItem, op *v3.Operation) {
		security := op.Security
		if security == nil {
			security = global
		}
		needsToken := slices.ContainsFunc(security, func(r *base.SecurityRequirement) bool {
			if r.Requirements == nil {
				return false
			}
			_, ok := r.Requirements.Get("bearerAuth")
			return ok
		})
		codes := map[string]bool{}
		for code := range op.Responses.Codes.KeysFromOldest() {
			codes[code] = true
		}
		if !gatewayOperation(path) {
			if needsToken {
				t.Errorf("%s %s needs a token", method, path)
			}
			for _, code := range []string{"401", "403", "429", "504"} {
				if codes[code] {
					t.Errorf("%s %s documents the gateway's %s", method, path, code)
				}
			}
			return
		}
		if !needsToken {
			t.Errorf("%s %s does not need the bearer token", method, path)
		}
		want := []string{"401", "413", "429", "503", "504"}
		// Every role may read the inventory.
		if !(method == "GET" && strings.HasPrefix(path, "/api/inventory")) {
			want = append(want, "403")
		}
		for _, code := range want {
			if !codes[code] {
				t.Errorf("%s %s does not document %s", method, path, code)
			}
		}
	})
}

// TestCachingDocumented: every single-resource GET documents its ETag,
// Cache-Control, If-None-Match and 304; every list its Cache-Control.
func TestCachingDocumented(t *testing.T) {
	c := load(t)
	var single, lists []string
	operations(c, func(method, path string, item *v3.PathItem, op *v3.Operation) {
		if method != "GET" || !strings.HasPrefix(path, "/api/") {
			return
		}
		ok := op.Responses.FindResponseByCode(200)
		if strings.HasSuffix(path, "}") {
			single = append(single, path)
			if !slices.ContainsFunc(op.Parameters, func(p *v3.Parameter) bool { return p.In == "header" && p.Name == "If-None-Match" }) {
				t.Errorf("GET %s: no If-None-Match parameter", path)
			}
			notModified := op.Responses.FindResponseByCode(304)
			if notModified == nil {
				t.Errorf("GET %s: no 304", path)
				return
			}
			for _, r := range []*v3.Response{ok, notModified} {
				for _, h := range []string{"ETag", "Cache-Control", "X-Request-Id"} {
					if hd := r.Headers.GetOrZero(h); hd == nil || !hd.Required {
						t.Errorf("GET %s: %q does not require %s", path, r.Description, h)
					}
				}
			}
			return
		}
		lists = append(lists, path)
		if hd := ok.Headers.GetOrZero("Cache-Control"); hd == nil || !hd.Required {
			t.Errorf("GET %s: the list does not require Cache-Control", path)
		}
	})
	slices.Sort(single)
	slices.Sort(lists)
	if want := []string{"/api/inventory/{sku}", "/api/orders/{order_id}", "/api/sagas/{saga_id}", "/api/shipments/{shipment_id}"}; !slices.Equal(single, want) {
		t.Errorf("single-resource GETs %v, want %v", single, want)
	}
	if want := []string{"/api/inventory", "/api/orders", "/api/sagas", "/api/shipments"}; !slices.Equal(lists, want) {
		t.Errorf("lists %v, want %v", lists, want)
	}
}

const (
	orderID = "1b4e28ba-2d11-4a0e-9d4b-6d1b2e3c4f50"
	sagaID  = "2b4e28ba-2d11-4a0e-9d4b-6d1b2e3c4f50"
)

// header builds a response header with an X-Request-Id and kv's pairs.
func header(kv ...string) map[string][]string {
	m := map[string][]string{"X-Request-Id": {"r-1"}}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []string{kv[i+1]}
	}
	return m
}

func problemOf(slug string, status int) string {
	return fmt.Sprintf(`{"type":"https://orderflow.dev/problems/%s","title":"x","status":%d}`, slug, status)
}

func TestCheckResponse(t *testing.T) {
	c := load(t)
	problem := `{"type":"https://orderflow.dev/problems/validation","title":"Bad Request","status":400,"errors":[{"field":"items[0].quantity","message":"must be > 0"}]}`
	order := `{"order_id":"` + orderID + `","customer_id":"c","status":"shipped","items":[{"sku":"A","quantity":1,"unit_price_cents":5}],"total_cents":5,` +
		`"shipping_address":{"name":"a","line1":"b","city":"c","postal_code":"d","country":"US"},"saga_id":"` + sagaID +
		`","shipment_id":"` + orderID + `","reason":"","created_at":"2024-01-02T03:04:05Z","updated_at":"2024-01-02T03:04:05.123Z","version":4}`
	saga := `{"saga_id":"` + sagaID + `","type":"order_fulfillment","definition_version":1,"order_id":"` + orderID +
		`","status":"running","current_step":"reserve_inventory","steps":[{"name":"reserve_inventory","status":"running","attempts":1,"started_at":"2024-01-02T03:04:05Z","ended_at":"","error":""}],"started_at":"2024-01-02T03:04:05Z","ended_at":""`
	json := "application/json"
	pj := "application/problem+json"
	revalidate := []string{"Content-Type", json, "ETag", `"4"`, "Cache-Control", "no-cache"}
	tests := []struct {
		name         string
		method, path string
		status       int
		header       map[string][]string
		body         string
		wantErr      string // "" when the response conforms
	}{
		{"accepted", "POST", "/api/orders", 202, header("Content-Type", json, "Location", "/api/orders/"+orderID),
			`{"order_id":"` + orderID + `","saga_id":"` + sagaID + `","status":"pending"}`, ""},
		{"wrong const", "POST", "/api/orders", 202, header("Content-Type", json, "Location", "/x"),
			`{"order_id":"` + orderID + `","saga_id":"` + sagaID + `","status":"confirmed"}`, "$.status value must be 'pending'"},
		{"not a uuid", "POST", "/api/orders", 202, header("Content-Type", json, "Location", "/x"),
			`{"order_id":"42","saga_id":"` + sagaID + `","status":"pending"}`, "'42' is not valid uuid"},
		{"missing property", "POST", "/api/orders", 202, header("Content-Type", json, "Location", "/x"),
			`{"order_id":"` + orderID + `","status":"pending"}`, "missing property 'saga_id'"},
		{"not JSON", "POST", "/api/orders", 202, header("Content-Type", json, "Location", "/x"), `{"order_id":`, "cannot be decoded"},
		{"missing Location", "POST", "/api/orders", 202, header("Content-Type", json),
			`{"order_id":"` + orderID + `","saga_id":"` + sagaID + `","status":"pending"}`, "Required header 'Location'"},
		{"missing request id", "POST", "/api/orders", 400, map[string][]string{"Content-Type": {pj}}, problem, "Required header 'X-Request-Id'"},
		{"problem", "POST", "/api/orders", 400, header("Content-Type", pj), problem, ""},
		{"problem as json", "POST", "/api/orders", 400, header("Content-Type", json), problem, "content type 'application/json' does not exist"},
		{"undocumented status", "POST", "/api/orders", 418, header("Content-Type", pj), problem, "response code '418' does not exist"},
		{"bad problem type", "POST", "/api/orders", 400, header("Content-Type", pj),
			`{"type":"about:blank","title":"x","status":400}`, "does not match pattern"},
		{"extra field error property", "POST", "/api/orders", 400, header("Content-Type", pj),
			`{"type":"https://orderflow.dev/problems/validation","title":"x","status":400,"errors":[{"field":"a","message":"b","code":1}]}`, "additional properties 'code' not allowed"},
		{"integer", "POST", "/api/inventory/SKU-1/restock", 202, header("Content-Type", json, "Location", "/api/inventory/SKU-1"),
			`{"sku":"SKU-1","version":1.5}`, "got number, want integer"},
		{"integral number is an integer", "POST", "/api/inventory/SKU-1/restock", 202, header("Content-Type", json, "Location", "/api/inventory/SKU-1"),
			`{"sku":"SKU-1","version":2.0}`, ""},
		{"bad sku", "POST", "/api/inventory/SKU-1/restock", 202, header("Content-Type", json, "Location", "/api/inventory/SKU-1"),
			`{"sku":"no spaces","version":1}`, "does not match pattern"},
		{"only dots is no sku", "POST", "/api/inventory/SKU-1/restock", 202, header("Content-Type", json, "Location", "/api/inventory/SKU-1"),
			`{"sku":"..","version":1}`, "does not match pattern"},
		{"order", "GET", "/api/orders/" + orderID, 200, header(revalidate...), order, ""},
		{"enum", "GET", "/api/orders/" + orderID, 200, header(revalidate...), strings.Replace(order, `"shipped"`, `"lost"`, 1), "$.status value must be one of"},
		{"bad timestamp", "GET", "/api/orders/" + orderID, 200, header(revalidate...),
			strings.Replace(order, `"2024-01-02T03:04:05Z"`, `"yesterday"`, 1), "'yesterday' is not valid date-time"},
		{"order without ETag", "GET", "/api/orders/" + orderID, 200, header("Content-Type", json, "Cache-Control", "no-cache"), order, "Required header 'ETag'"},
		{"weak ETag", "GET", "/api/orders/" + orderID, 200, header("Content-Type", json, "ETag", `W/"4"`, "Cache-Control", "no-cache"), order, "does not match pattern"},
		{"order without Cache-Control", "GET", "/api/orders/" + orderID, 200, header("Content-Type", json, "ETag", `"4"`), order, "Required header 'Cache-Control'"},
		{"order stored for good", "GET", "/api/orders/" + orderID, 200, header("Content-Type", json, "ETag", `"4"`, "Cache-Control", "max-age=60"), order, "value must be 'no-cache'"},
		{"not modified", "GET", "/api/orders/" + orderID, 304, header("ETag", `"4"`, "Cache-Control", "no-cache"), "", ""},
		{"not modified without ETag", "GET", "/api/orders/" + orderID, 304, header("Cache-Control", "no-cache"), "", "Required header 'ETag'"},
		{"not modified with a body", "GET", "/api/orders/" + orderID, 304, header("ETag", `"4"`, "Cache-Control", "no-cache"), order, "documented without a body"},
		{"list", "GET", "/api/orders?limit=1", 200, header("Content-Type", json, "Cache-Control", "no-store"), `{"items":[` + order + `],"next":""}`, ""},
		{"list without Cache-Control", "GET", "/api/orders", 200, header("Content-Type", json), `{"items":[],"next":""}`, "Required header 'Cache-Control'"},
		{"list cached", "GET", "/api/orders", 200, header("Content-Type", json, "Cache-Control", "no-cache"), `{"items":[],"next":""}`, "value must be 'no-store'"},
		{"list not modified", "GET", "/api/orders", 304, header("ETag", `"1"`), "", "response code '304' does not exist"},
		{"saga allOf", "GET", "/api/sagas/" + sagaID, 200, header(revalidate...), saga + `}`, "missing property 'history'"},
		{"saga", "GET", "/api/sagas/" + sagaID, 200, header(revalidate...), saga + `,"history":[]}`, ""},
		{"optional timestamp", "GET", "/api/sagas/" + sagaID, 200, header(revalidate...),
			strings.Replace(saga, `"ended_at":"","error"`, `"ended_at":"soon","error"`, 1) + `,"history":[]}`, "'soon' is not valid date-time"},
		{"metrics", "GET", "/metrics", 200, header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), "a_total 1\n", ""},
		{"the document", "GET", "/openapi.yaml", 200, header("Content-Type", "application/yaml", "ETag", `"00ff3a"`, "Cache-Control", "no-cache"), "openapi: 3.1.0\n", ""},
		{"the document without ETag", "GET", "/openapi.yaml", 200, header("Content-Type", "application/yaml", "Cache-Control", "no-cache"), "openapi: 3.1.0\n", "Required header 'ETag'"},
		{"the document not modified", "GET", "/openapi.yaml", 304, header("ETag", `"00ff3a"`, "Cache-Control", "no-cache"), "", ""},
		{"method not allowed", "PUT", "/api/orders/" + orderID + "/cancel", 405, header("Content-Type", pj, "Allow", "POST"), problemOf("method-not-allowed", 405), ""},
		{"method not allowed without Allow", "PUT", "/api/orders/" + orderID + "/cancel", 405, header("Content-Type", pj), problemOf("method-not-allowed", 405), "want the documented methods"},
		{"method not allowed, Allow incomplete", "DELETE", "/api/orders", 405, header("Content-Type", pj, "Allow", "GET"), problemOf("method-not-allowed", 405), "want the documented methods [GET POST]"},
		{"method not allowed on no path", "PUT", "/nowhere", 405, header("Content-Type", pj, "Allow", "GET"), problemOf("method-not-allowed", 405), "no such path"},
		{"undocumented route", "GET", "/nope", 404, header("Content-Type", pj), problemOf("not-found", 404), ""},
		{"undocumented route without problem", "GET", "/nope", 404, header("Content-Type", "text/plain"), "404 page not found", "not a problem"},
		{"undocumented route, bad problem", "GET", "/nope", 404, header("Content-Type", pj), `{"title":"x","status":404}`, "missing property 'type'"},
		{"unavailable", "POST", "/api/orders", 503, header("Content-Type", pj, "Retry-After", "1"), problemOf("unavailable", 503), ""},
		{"unavailable without Retry-After", "GET", "/api/orders/" + orderID, 503, header("Content-Type", pj), problemOf("unavailable", 503), "Required header 'Retry-After'"},
		{"unauthorized", "GET", "/api/orders", 401, header("Content-Type", pj, "WWW-Authenticate", `Bearer error="invalid_token"`), problemOf("unauthorized", 401), ""},
		{"unauthorized without a challenge", "GET", "/api/orders", 401, header("Content-Type", pj), problemOf("unauthorized", 401), "Required header 'WWW-Authenticate'"},
		{"unauthorized, another scheme", "GET", "/api/orders", 401, header("Content-Type", pj, "WWW-Authenticate", "Basic"), problemOf("unauthorized", 401), "does not match pattern"},
		{"forbidden", "GET", "/admin/projections", 403, header("Content-Type", pj), problemOf("forbidden", 403), ""},
		{"reading stock is never forbidden", "GET", "/api/inventory/SKU-1", 403, header("Content-Type", pj), problemOf("forbidden", 403), "response code '403' does not exist"},
		{"rate limited", "GET", "/api/inventory", 429, header("Content-Type", pj, "Retry-After", "1"), problemOf("rate-limited", 429), ""},
		{"rate limited without Retry-After", "GET", "/api/inventory", 429, header("Content-Type", pj), problemOf("rate-limited", 429), "Required header 'Retry-After'"},
		{"too large at the gateway", "GET", "/api/sagas", 413, header("Content-Type", pj), problemOf("payload-too-large", 413), ""},
		{"gateway timeout", "POST", "/api/shipments/" + orderID + "/dispatch", 504, header("Content-Type", pj), problemOf("gateway-timeout", 504), ""},
		{"health is not behind the gateway's limits", "GET", "/healthz", 429, header("Content-Type", pj, "Retry-After", "1"), problemOf("rate-limited", 429), "response code '429' does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := c.CheckResponse(tt.method, tt.path, tt.status, tt.header, []byte(tt.body))
			if tt.wantErr == "" {
				if len(errs) > 0 {
					t.Fatalf("conforming response refused: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.wantErr) }) {
				t.Fatalf("errors %v, want one containing %q", errs, tt.wantErr)
			}
		})
	}
}

// TestCheckRequest: the request side of the document, as a validating
// proxy in front of a service's own port enforces it.
func TestCheckRequest(t *testing.T) {
	c := load(t)
	order := `{"customer_id":"c-42","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1299}],` +
		`"shipping_address":{"name":"Ada L.","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	jsonCT := map[string][]string{"Content-Type": {"application/json"}}
	tests := []struct {
		name           string
		method, target string
		header         map[string][]string
		body           string
		wantErr        string // "" when a proxy lets the request through
	}{
		{"order", "POST", "/api/orders", jsonCT, order, ""},
		{"no token needed", "GET", "/api/orders/" + orderID, nil, "", ""},
		{"undocumented method", "PUT", "/api/orders", jsonCT, order, "PUT method for that path does not exist"},
		{"undocumented path", "GET", "/api/customers", nil, "", "Path '/api/customers' not found"},
		{"missing body", "POST", "/api/orders", nil, "", "content type '' of the POST request"},
		{"optional body", "POST", "/api/orders/" + orderID + "/cancel", nil, "", ""},
		{"body on a GET", "GET", "/api/orders", jsonCT, `{}`, "is not declared"},
		{"text/plain", "POST", "/api/inventory/SKU-1/restock", map[string][]string{"Content-Type": {"text/plain"}}, `{"quantity":1}`, ""},
		{"curl -d", "POST", "/api/inventory/SKU-1/restock", map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, `{"quantity":1}`, ""},
		{"xml", "POST", "/api/inventory/SKU-1/restock", map[string][]string{"Content-Type": {"application/xml"}}, `<q/>`, "content type 'application/xml'"},
		{"integral quantity", "POST", "/api/inventory/SKU-1/restock", jsonCT, `{"quantity":1.0}`, ""},
		{"fractional quantity", "POST", "/api/inventory/SKU-1/restock", jsonCT, `{"quantity":1.5}`, "$.quantity got number, want integer"},
		{"unknown field", "POST", "/api/inventory/SKU-1/restock", jsonCT, `{"quantity":1,"colour":"red"}`, "additional properties 'colour' not allowed"},
		{"dot sku", "POST", "/api/inventory/./restock", jsonCT, `{"quantity":1}`, "Path parameter 'sku'"},
		{"dots sku", "POST", "/api/inventory/../restock", jsonCT, `{"quantity":1}`, "Path parameter 'sku'"},
		{"dotted sku", "POST", "/api/inventory/a..b/restock", jsonCT, `{"quantity":1}`, ""},
		{"sku lookup", "GET", "/api/inventory/..", nil, "", ""},
		{"order id not a uuid", "GET", "/api/orders/not-a-uuid", nil, "", ""},
		{"customer only dots", "POST", "/api/orders", jsonCT, strings.Replace(order, `"c-42"`, `".."`, 1), "$.customer_id '..' does not match"},
		{"blank name", "POST", "/api/orders", jsonCT, strings.Replace(order, `"Ada L."`, `"   "`, 1), "$.shipping_address.name"},
		{"control character", "POST", "/api/orders", jsonCT, strings.Replace(order, `"Ada L."`, `"Ada\u0007"`, 1), "$.shipping_address.name"},
		{"unicode text", "POST", "/api/orders", jsonCT, strings.Replace(order, `"Ada L."`, `"Zoë Ünal "`, 1), ""},
		{"long request id", "GET", "/api/orders/" + orderID, map[string][]string{"X-Request-Id": {strings.Repeat("r", 300)}}, "", ""},
		{"long idempotency key", "POST", "/api/orders/" + orderID + "/cancel", map[string][]string{"Idempotency-Key": {strings.Repeat("k", 201)}}, "", "Header parameter 'Idempotency-Key'"},
		{"conditional get", "GET", "/api/orders/" + orderID, map[string][]string{"If-None-Match": {`"1", W/"2"`}}, "", ""},
		{"limit", "GET", "/api/orders?limit=0", nil, "", "Query parameter 'limit'"},
		{"empty limit", "GET", "/api/orders?limit=", nil, "", ""},
		{"empty filters", "GET", "/api/orders?customer_id=&status=&after=", nil, "", ""},
		{"blank limit", "GET", "/api/orders?limit=%20", nil, "", "Query parameter 'limit'"},
		{"empty limit and a bad filter", "GET", "/api/sagas?limit=&status=lost", nil, "", "Query parameter 'status'"},
		{"status", "GET", "/api/orders?status=lost", nil, "", "Query parameter 'status'"},
		{"shipment filter", "GET", "/api/shipments?order_id=x", nil, "", "Query parameter 'order_id'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := c.CheckRequest(tt.method, tt.target, tt.header, []byte(tt.body))
			if tt.wantErr == "" {
				if len(errs) > 0 {
					t.Fatalf("conforming request refused: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.wantErr) }) {
				t.Fatalf("errors %v, want one containing %q", errs, tt.wantErr)
			}
		})
	}
}

// TestCheckGatewayRequest: at the gateway, /api and /admin need a bearer
// token; the operations endpoints and the document do not.
func TestCheckGatewayRequest(t *testing.T) {
	c := load(t)
	bearer := map[string][]string{"Authorization": {"Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"}}
	tests := []struct {
		name           string
		method, target string
		header         map[string][]string
		refused        bool
	}{
		{"order without a token", "GET", "/api/orders/" + orderID, nil, true},
		{"order with a token", "GET", "/api/orders/" + orderID, bearer, false},
		{"basic credentials", "GET", "/api/orders/" + orderID, map[string][]string{"Authorization": {"Basic YTpi"}}, true},
		{"admin without a token", "GET", "/admin/projections", nil, true},
		{"admin with a token", "GET", "/admin/projections", bearer, false},
		{"inventory without a token", "GET", "/api/inventory", nil, true},
		{"health", "GET", "/healthz", nil, false},
		{"readiness", "GET", "/readyz", nil, false},
		{"metrics", "GET", "/metrics", nil, false},
		{"the document", "GET", "/openapi.yaml", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := c.CheckGatewayRequest(tt.method, tt.target, tt.header, nil)
			if refused := len(errs) > 0; refused != tt.refused {
				t.Fatalf("refused %v, want %v: %v", refused, tt.refused, errs)
			}
			if tt.refused && !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "Authorization") }) {
				t.Fatalf("refused for another reason: %v", errs)
			}
			// A service's own port checks no token.
			if errs := c.CheckRequest(tt.method, tt.target, tt.header, nil); len(errs) > 0 {
				t.Fatalf("a service's port refuses it: %v", errs)
			}
		})
	}
}

// TestContractConcurrentUse: one Contract checks answers from many
// goroutines at once (the contention tests do), with the same findings as
// one at a time. Run with -race to see the library's state shared safely.
func TestContractConcurrentUse(t *testing.T) {
	c := load(t)
	good := header("Content-Type", "application/json", "Location", "/api/inventory/SKU-1")
	bad := `{"sku":"SKU-1","version":0}`
	var wg sync.WaitGroup
	errs := make([][]string, 16)
	for i := range errs {
		wg.Go(func() {
			body := `{"sku":"SKU-1","version":3}`
			if i%2 == 1 {
				body = bad
			}
			errs[i] = c.CheckResponse("POST", "/api/inventory/SKU-1/restock", 202, good, []byte(body))
		})
	}
	wg.Wait()
	for i, e := range errs {
		if (i%2 == 1) != (len(e) > 0) {
			t.Errorf("check %d: %v", i, e)
		}
	}
}

// TestDocumentHasNoDuplicateKeys: a key written twice in one mapping of
// the hand-edited document would silently replace the first; a strict
// YAML decoder refuses it.
func TestDocumentHasNoDuplicateKeys(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(specBytes(t), &doc); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := doc.Decode(&m); err != nil {
		t.Fatal(err)
	}
	dup := "openapi: 3.1.0\ninfo: {title: a, version: '1'}\npaths: {}\npaths: {}\n"
	if err := yaml.Unmarshal([]byte(dup), &m); err == nil {
		t.Fatal("the decoder let a duplicate key through")
	}
}
