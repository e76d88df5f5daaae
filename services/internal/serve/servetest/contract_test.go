package servetest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func load(t *testing.T) *Contract {
	t.Helper()
	c, err := LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	return c
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
		"GET /admin/projections",
		"POST /admin/projections/{name}/replay",
	}
	got := c.Operations()
	for _, op := range want {
		if !slices.Contains(got, op) {
			t.Errorf("openapi.yaml lacks %s", op)
		}
	}
	if len(got) != len(want) {
		t.Errorf("openapi.yaml has %d operations, want %d: %v", len(got), len(want), got)
	}
	if broken := c.BrokenRefs(); len(broken) > 0 {
		t.Errorf("unresolved $refs: %v", broken)
	}
	if v, _ := c.doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi version %q, want 3.1.x", v)
	}
}

func TestContractOperationIDsUnique(t *testing.T) {
	c := load(t)
	seen := map[string]string{}
	for path, item := range asMap(c.doc["paths"]) {
		for method, op := range asMap(item) {
			id, _ := asMap(op)["operationId"].(string)
			if method == "parameters" {
				continue
			}
			if id == "" {
				t.Errorf("%s %s has no operationId", method, path)
				continue
			}
			if other, dup := seen[id]; dup {
				t.Errorf("operationId %s used by %s and %s %s", id, other, method, path)
			}
			seen[id] = method + " " + path
		}
	}
}

func TestContractExampleMatchesSchema(t *testing.T) {
	c := load(t)
	s, ok := c.Schema("PlaceOrderRequest")
	if !ok {
		t.Fatal("no PlaceOrderRequest schema")
	}
	var errs []string
	c.validate(s, jsonValue(t, asMap(s)["example"]), "$", func(p, m string) { errs = append(errs, p+" "+m) })
	if len(errs) > 0 {
		t.Fatalf("example does not match its schema: %v", errs)
	}
}

// jsonValue converts a YAML-decoded value to the shapes the validator
// gets from JSON (numbers as json.Number).
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckResponse(t *testing.T) {
	c := load(t)
	h := func(kv ...string) map[string][]string {
		m := map[string][]string{"X-Request-Id": {"r-1"}}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = []string{kv[i+1]}
		}
		return m
	}
	const orderID = "1b4e28ba-2d11-4a0e-9d4b-6d1b2e3c4f50"
	const sagaID = "2b4e28ba-2d11-4a0e-9d4b-6d1b2e3c4f50"
	problem := `{"type":"https://orderflow.dev/problems/validation","title":"Bad Request","status":400,"errors":[{"field":"items[0].quantity","message":"must be > 0"}]}`
	tests := []struct {
		name         string
		method, path string
		status       int
		header       map[string][]string
		body         string
		wantErr      string // "" when the response conforms
	}{
		{"accepted", "POST", "/api/orders", 202, h("Content-Type", "application/json", "Location", "/api/orders/"+orderID),
			`{"order_id":"` + orderID + `","saga_id":"` + sagaID + `","status":"pending"}`, ""},
		{"wrong const", "POST", "/api/orders", 202, h("Content-Type", "application/json", "Location", "/x"),
			`{"order_id":"` + orderID + `","saga_id":"` + sagaID + `","status":"confirmed"}`, "want pending"},
		{"not a uuid", "POST", "/api/orders", 202, h("Content-Type", "application/json", "Location", "/x"),
			`{"order_id":"42","saga_id":"` + sagaID + `","status":"pending"}`, "is not a uuid"},
		{"missing property", "POST", "/api/orders", 202, h("Content-Type", "application/json", "Location", "/x"),
			`{"order_id":"` + orderID + `","status":"pending"}`, `lacks required property "saga_id"`},
		{"missing Location", "POST", "/api/orders", 202, h("Content-Type", "application/json"),
			`{"order_id":"` + orderID + `","saga_id":"` + sagaID + `","status":"pending"}`, "required header Location"},
		{"missing request id", "POST", "/api/orders", 400, map[string][]string{"Content-Type": {"application/problem+json"}}, problem, "required header X-Request-Id"},
		{"problem", "POST", "/api/orders", 400, h("Content-Type", "application/problem+json"), problem, ""},
		{"problem as json", "POST", "/api/orders", 400, h("Content-Type", "application/json"), problem, "content type"},
		{"undocumented status", "POST", "/api/orders", 418, h("Content-Type", "application/problem+json"), problem, "status not documented"},
		{"bad problem type", "POST", "/api/orders", 400, h("Content-Type", "application/problem+json"),
			`{"type":"about:blank","title":"x","status":400}`, "does not match"},
		{"extra field error property", "POST", "/api/orders", 400, h("Content-Type", "application/problem+json"),
			`{"type":"https://orderflow.dev/problems/validation","title":"x","status":400,"errors":[{"field":"a","message":"b","code":1}]}`, `undocumented property "code"`},
		{"integer", "POST", "/api/inventory/SKU-1/restock", 202, h("Content-Type", "application/json", "Location", "/api/inventory/SKU-1"),
			`{"sku":"SKU-1","version":1.5}`, "want type [integer]"},
		{"bad sku", "POST", "/api/inventory/SKU-1/restock", 202, h("Content-Type", "application/json", "Location", "/api/inventory/SKU-1"),
			`{"sku":"no spaces","version":1}`, "does not match"},
		{"enum", "GET", "/api/orders/" + orderID, 200, h("Content-Type", "application/json"),
			`{"order_id":"` + orderID + `","customer_id":"c","status":"lost","items":[],"total_cents":0,` +
				`"shipping_address":{"name":"a","line1":"b","city":"c","postal_code":"d","country":"US"},"saga_id":"` + sagaID +
				`","shipment_id":"","reason":"","created_at":"2024-01-02T03:04:05Z","updated_at":"2024-01-02T03:04:05Z","version":1}`, "not one of"},
		{"order ok", "GET", "/api/orders/" + orderID, 200, h("Content-Type", "application/json"),
			`{"order_id":"` + orderID + `","customer_id":"c","status":"shipped","items":[{"sku":"A","quantity":1,"unit_price_cents":5}],"total_cents":5,` +
				`"shipping_address":{"name":"a","line1":"b","city":"c","postal_code":"d","country":"US"},"saga_id":"` + sagaID +
				`","shipment_id":"` + orderID + `","reason":"","created_at":"2024-01-02T03:04:05Z","updated_at":"2024-01-02T03:04:05.123Z","version":4}`, ""},
		{"bad timestamp", "GET", "/api/inventory/SKU-1", 200, h("Content-Type", "application/json"),
			`{"sku":"SKU-1","on_hand":1,"reserved":0,"available":1,"version":1,"updated_at":"yesterday"}`, "not a date-time"},
		{"saga allOf", "GET", "/api/sagas/" + sagaID, 200, h("Content-Type", "application/json"),
			`{"saga_id":"` + sagaID + `","type":"order_fulfillment","definition_version":1,"order_id":"` + orderID +
				`","status":"running","current_step":"reserve_inventory","steps":[{"name":"reserve_inventory","status":"running","attempts":1,"started_at":"2024-01-02T03:04:05Z","ended_at":"","error":""}],"started_at":"2024-01-02T03:04:05Z","ended_at":""}`,
			`lacks required property "history"`},
		{"optional timestamp", "GET", "/api/sagas/" + sagaID, 200, h("Content-Type", "application/json"),
			`{"saga_id":"` + sagaID + `","type":"order_fulfillment","definition_version":1,"order_id":"` + orderID +
				`","status":"running","current_step":"x","steps":[],"started_at":"2024-01-02T03:04:05Z","ended_at":"soon","history":[]}`,
			"matches none of anyOf"},
		{"metrics", "GET", "/metrics", 200, h("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), "a_total 1\n", ""},
		{"method not allowed", "PUT", "/api/orders/" + orderID + "/cancel", 405, h("Content-Type", "application/problem+json", "Allow", "POST"),
			`{"type":"https://orderflow.dev/problems/method-not-allowed","title":"Method Not Allowed","status":405}`, ""},
		{"method not allowed without Allow", "PUT", "/api/orders/" + orderID + "/cancel", 405, h("Content-Type", "application/problem+json"),
			`{"type":"https://orderflow.dev/problems/method-not-allowed","title":"Method Not Allowed","status":405}`, "want the documented methods"},
		{"method not allowed, Allow incomplete", "DELETE", "/api/orders", 405, h("Content-Type", "application/problem+json", "Allow", "GET"),
			`{"type":"https://orderflow.dev/problems/method-not-allowed","title":"Method Not Allowed","status":405}`, "want the documented methods [GET POST]"},
		{"method not allowed on no path", "PUT", "/nowhere", 405, h("Content-Type", "application/problem+json", "Allow", "GET"),
			`{"type":"https://orderflow.dev/problems/method-not-allowed","title":"Method Not Allowed","status":405}`, "no such path"},
		{"unavailable without Retry-After", "GET", "/api/orders/" + orderID, 503, h("Content-Type", "application/problem+json"),
			`{"type":"https://orderflow.dev/problems/unavailable","title":"Service Unavailable","status":503}`, "required header Retry-After"},
		{"unavailable", "POST", "/api/orders", 503, h("Content-Type", "application/problem+json", "Retry-After", "1"),
			`{"type":"https://orderflow.dev/problems/unavailable","title":"Service Unavailable","status":503}`, ""},
		{"integral number is an integer", "POST", "/api/inventory/SKU-1/restock", 202, h("Content-Type", "application/json", "Location", "/api/inventory/SKU-1"),
			`{"sku":"SKU-1","version":2.0}`, ""},
		{"only dots is no sku", "POST", "/api/inventory/SKU-1/restock", 202, h("Content-Type", "application/json", "Location", "/api/inventory/SKU-1"),
			`{"sku":"..","version":1}`, "does not match"},
		{"undocumented route without problem", "GET", "/nope", 404, h("Content-Type", "text/plain"), "404 page not found", "not a problem"},
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

// TestContractPathParameters checks an OpenAPI rule tools enforce: every
// {name} in a path template is declared as a required path parameter of
// each of its operations, and nothing else is.
func TestContractPathParameters(t *testing.T) {
	c := load(t)
	for path, item := range asMap(c.doc["paths"]) {
		want := map[string]bool{}
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				want[seg[1:len(seg)-1]] = true
			}
		}
		for method, op := range asMap(item) {
			if method == "parameters" {
				continue
			}
			got := map[string]bool{}
			params := append(slices.Clone(asSlice(asMap(item)["parameters"])), asSlice(asMap(op)["parameters"])...)
			for _, p := range params {
				pm := c.deref(p)
				if pm["in"] != "path" {
					continue
				}
				if req, _ := pm["required"].(bool); !req {
					t.Errorf("%s %s: path parameter %v is not required", method, path, pm["name"])
				}
				got[pm["name"].(string)] = true
			}
			if len(got) != len(want) {
				t.Errorf("%s %s: path parameters %v, want %v", method, path, got, want)
				continue
			}
			for n := range want {
				if !got[n] {
					t.Errorf("%s %s: path parameter %s not declared", method, path, n)
				}
			}
		}
	}
}

// TestCheckRequest: the request side of the document, as a validating
// proxy enforces it.
func TestCheckRequest(t *testing.T) {
	c := load(t)
	const orderID = "1b4e28ba-2d11-4a0e-9d4b-6d1b2e3c4f50"
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
		{"undocumented", "PUT", "/api/orders", jsonCT, order, "not documented"},
		{"missing body", "POST", "/api/orders", nil, "", "body is required"},
		{"optional body", "POST", "/api/orders/" + orderID + "/cancel", nil, "", ""},
		{"text/plain", "POST", "/api/inventory/SKU-1/restock", map[string][]string{"Content-Type": {"text/plain"}}, `{"quantity":1}`, ""},
		{"curl -d", "POST", "/api/inventory/SKU-1/restock", map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, `{"quantity":1}`, ""},
		{"xml", "POST", "/api/inventory/SKU-1/restock", map[string][]string{"Content-Type": {"application/xml"}}, `<q/>`, "not documented"},
		{"integral quantity", "POST", "/api/inventory/SKU-1/restock", jsonCT, `{"quantity":1.0}`, ""},
		{"fractional quantity", "POST", "/api/inventory/SKU-1/restock", jsonCT, `{"quantity":1.5}`, "want type [integer]"},
		{"dot sku", "POST", "/api/inventory/./restock", jsonCT, `{"quantity":1}`, "path sku"},
		{"dots sku", "POST", "/api/inventory/../restock", jsonCT, `{"quantity":1}`, "path sku"},
		{"dotted sku", "POST", "/api/inventory/a..b/restock", jsonCT, `{"quantity":1}`, ""},
		{"sku lookup", "GET", "/api/inventory/..", nil, "", ""},
		{"order id not a uuid", "GET", "/api/orders/not-a-uuid", nil, "", ""},
		{"customer only dots", "POST", "/api/orders", jsonCT, strings.Replace(order, `"c-42"`, `".."`, 1), "customer_id"},
		{"blank name", "POST", "/api/orders", jsonCT, strings.Replace(order, `"Ada L."`, `"   "`, 1), "shipping_address.name"},
		{"control character", "POST", "/api/orders", jsonCT, strings.Replace(order, `"Ada L."`, `"Ada\u0007"`, 1), "shipping_address.name"},
		{"unicode text", "POST", "/api/orders", jsonCT, strings.Replace(order, `"Ada L."`, `"Zoë Ünal "`, 1), ""},
		{"long request id", "GET", "/api/orders/" + orderID, map[string][]string{"X-Request-Id": {strings.Repeat("r", 300)}}, "", ""},
		{"long idempotency key", "POST", "/api/orders/" + orderID + "/cancel", map[string][]string{"Idempotency-Key": {strings.Repeat("k", 201)}}, "", "Idempotency-Key"},
		{"limit", "GET", "/api/orders?limit=0", nil, "", "query limit"},
		{"shipment filter", "GET", "/api/shipments?order_id=x", nil, "", "query order_id"},
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
