package serve_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// orderBody is a valid place-order body; edit replaces its parts.
func orderBody(edit ...string) string {
	b := `{"customer_id":"c-42","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1299}],` +
		`"shipping_address":{"name":"Ada L.","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	for i := 0; i+1 < len(edit); i += 2 {
		if !strings.Contains(b, edit[i]) {
			panic("orderBody: no " + edit[i])
		}
		b = strings.Replace(b, edit[i], edit[i+1], 1)
	}
	return b
}

// leaks are texts no error detail may carry: stream names, Go error
// chains and sentinel texts.
var leaks = []string{"order-", "stock-", "shipment-", "illegal state transition", "insufficient stock", "version conflict", "not found:", "%!"}

func wantNoLeak(t *testing.T, detail string) {
	t.Helper()
	for _, l := range leaks {
		if strings.Contains(detail, l) {
			t.Fatalf("detail %q leaks %q", detail, l)
		}
	}
}

// TestBadInputIsRefusedNamingTheField: what encoding/json would let
// through (invalid UTF-8, lone surrogates, repeated keys) and skus or
// customer ids no URL can address are 400 validation problems naming the
// field, and nothing is appended.
func TestBadInputIsRefusedNamingTheField(t *testing.T) {
	envs := map[string]*servetest.Env{
		"orders":    servetest.Start(t, "orders"),
		"inventory": servetest.Start(t, "inventory"),
	}
	tests := []struct {
		name    string
		service string
		path    string
		body    string
		field   string
	}{
		{"invalid UTF-8 in an address field", "orders", "/api/orders",
			orderBody(`"Ada L."`, "\"Ada \xff L.\""), "shipping_address.name"},
		{"overlong UTF-8 in a top-level field", "orders", "/api/orders",
			orderBody(`"c-42"`, "\"c-\xc0\xaf\""), "customer_id"},
		{"lone high surrogate", "orders", "/api/orders",
			orderBody(`"1 Main St"`, `"1 Main St \ud800"`), "shipping_address.line1"},
		{"lone low surrogate", "orders", "/api/orders",
			orderBody(`"Springfield"`, `"\udc00Springfield"`), "shipping_address.city"},
		{"surrogate escape in an array element", "orders", "/api/orders",
			orderBody(`"SKU-1"`, `"SKU-\udbff"`), "items[0].sku"},
		{"repeated top-level key", "orders", "/api/orders",
			orderBody(`"customer_id":"c-42"`, `"customer_id":"c-42","customer_id":"c-43"`), "customer_id"},
		{"repeated nested key", "orders", "/api/orders",
			orderBody(`"name":"Ada L."`, `"name":"Ada L.","name":"Eve"`), "shipping_address.name"},
		{"repeated key in an item", "orders", "/api/orders",
			orderBody(`"quantity":2`, `"quantity":2,"quantity":3`), "items[0].quantity"},
		{"sku .", "orders", "/api/orders", orderBody(`"SKU-1"`, `"."`), "items[0].sku"},
		{"sku ..", "orders", "/api/orders", orderBody(`"SKU-1"`, `".."`), "items[0].sku"},
		{"customer_id ..", "orders", "/api/orders", orderBody(`"c-42"`, `".."`), "customer_id"},
		{"restock sku .", "inventory", "/api/inventory/./restock", `{"quantity":1}`, "sku"},
		{"restock sku ..", "inventory", "/api/inventory/../restock", `{"quantity":1}`, "sku"},
		{"restock sku ...", "inventory", "/api/inventory/.../restock", `{"quantity":1}`, "sku"},
		{"restock repeated key", "inventory", "/api/inventory/SKU-1/restock", `{"quantity":1,"quantity":1000}`, "quantity"},
		{"restock invalid UTF-8 in a key", "inventory", "/api/inventory/SKU-1/restock", "{\"quan\xfftity\":1}", "quan\ufffdtity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := envs[tt.service]
			env.AppendsNothing(t, func() {
				res := env.Post(t, tt.path, tt.body, "Idempotency-Key", uuid.NewString())
				p := res.WantProblem(t, http.StatusBadRequest, httpx.SlugValidation, tt.field)
				wantNoLeak(t, p.Detail)
			})
		})
	}
}

// TestMethodNotAllowedCarriesAllow: a method a route does not serve is
// 405 with Allow listing those it does serve (servetest checks each Allow
// against the documented methods of the path, too).
func TestMethodNotAllowedCarriesAllow(t *testing.T) {
	id := uuid.NewString()
	tests := []struct {
		service, method, path, allow string
	}{
		{"orders", http.MethodPut, "/api/orders", "GET, POST"},
		{"orders", http.MethodDelete, "/api/orders/" + id, "GET"},
		{"orders", http.MethodGet, "/api/orders/" + id + "/cancel", "POST"},
		{"orders", http.MethodPost, "/healthz", "GET"},
		{"inventory", http.MethodPost, "/api/inventory/SKU-1", "GET"},
		{"inventory", http.MethodGet, "/api/inventory/SKU-1/restock", "POST"},
		{"inventory", http.MethodPatch, "/api/inventory", "GET"},
		{"shipping", http.MethodPut, "/api/shipments/" + id + "/dispatch", "POST"},
		{"shipping", http.MethodDelete, "/admin/projections", "GET"},
	}
	envs := map[string]*servetest.Env{}
	for _, tt := range tests {
		if envs[tt.service] == nil {
			envs[tt.service] = servetest.Start(t, tt.service)
		}
	}
	for _, tt := range tests {
		t.Run(tt.service+" "+tt.method+" "+tt.path, func(t *testing.T) {
			res := envs[tt.service].Do(t, tt.method, tt.path, "")
			res.WantProblem(t, http.StatusMethodNotAllowed, httpx.SlugMethodNotAllowed)
			if got := res.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestErrorDetailsSpeakTheAPIsWords: refusals name the order or shipment
// and say what is possible, never a stream name or an error chain.
func TestErrorDetailsSpeakTheAPIsWords(t *testing.T) {
	t.Run("orders", func(t *testing.T) {
		env := servetest.Start(t, "orders")
		var placed struct {
			OrderID string `json:"order_id"`
			SagaID  string `json:"saga_id"`
			Status  string `json:"status"`
		}
		res := env.Post(t, "/api/orders", orderBody())
		res.JSON(t, &placed)
		if res := env.Post(t, "/api/orders/"+placed.OrderID+"/cancel", `{}`); res.Status != http.StatusAccepted {
			t.Fatalf("cancel: %d %s", res.Status, res.Body)
		}
		p := env.Post(t, "/api/orders/"+placed.OrderID+"/cancel", `{}`).WantProblem(t, http.StatusConflict, httpx.SlugIllegalState)
		wantNoLeak(t, p.Detail)
		if want := "order " + placed.OrderID + " is cancelled; only a pending or confirmed order can be cancelled"; p.Detail != want {
			t.Fatalf("detail %q, want %q", p.Detail, want)
		}
		unknown := uuid.NewString()
		p = env.Post(t, "/api/orders/"+unknown+"/cancel", `{}`).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
		wantNoLeak(t, p.Detail)
		if !strings.Contains(p.Detail, unknown) {
			t.Fatalf("404 detail %q does not name the order", p.Detail)
		}
	})
	t.Run("shipping", func(t *testing.T) {
		env := servetest.Start(t, "shipping")
		id := uuid.NewString()
		_, err := commands.NewShipping(env.Store, commands.Config{}).Schedule(t.Context(),
			commands.Meta{CommandID: uuid.NewString(), Now: time.Now()},
			commands.ScheduleShipment{ShipmentID: id, OrderID: uuid.NewString(),
				Items:   []order.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}},
				Address: order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}})
		if err != nil {
			t.Fatal(err)
		}
		if res := env.Post(t, "/api/shipments/"+id+"/dispatch", `{}`); res.Status != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", res.Status, res.Body)
		}
		p := env.Post(t, "/api/shipments/"+id+"/dispatch", `{}`).WantProblem(t, http.StatusConflict, httpx.SlugIllegalState)
		wantNoLeak(t, p.Detail)
		if want := "shipment " + id + " is dispatched; only a scheduled shipment can be dispatched"; p.Detail != want {
			t.Fatalf("detail %q, want %q", p.Detail, want)
		}
		unknown := uuid.NewString()
		p = env.Post(t, "/api/shipments/"+unknown+"/dispatch", `{}`).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
		wantNoLeak(t, p.Detail)
		if !strings.Contains(p.Detail, unknown) {
			t.Fatalf("404 detail %q does not name the shipment", p.Detail)
		}
	})
}

// TestSpecAndServerAgree sends requests on the points a validating proxy
// in front of the services checks, and requires that the OpenAPI
// document refuses exactly those the service refuses as the client's
// fault (400, 413, 415): no token is required (none is checked), path ids
// are looked up as any string, the content types curl sends are read as
// JSON, 1.0 is an integer, and skus and customer ids made only of dots are
// refused.
func TestSpecAndServerAgree(t *testing.T) {
	contract, err := servetest.LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	envs := map[string]*servetest.Env{
		"orders":    servetest.Start(t, "orders"),
		"inventory": servetest.Start(t, "inventory"),
	}
	orderID := uuid.NewString()
	tests := []struct {
		name            string
		service, method string
		path, body      string
		header          []string
		refused         bool // by both; else accepted by both
	}{
		{"place order", "orders", "POST", "/api/orders", orderBody(), nil, false},
		{"integral numbers written as decimals", "orders", "POST", "/api/orders",
			orderBody(`"quantity":2`, `"quantity":2.0`, `"unit_price_cents":1299`, `"unit_price_cents":1.299e3`), nil, false},
		{"fractional quantity", "orders", "POST", "/api/orders", orderBody(`"quantity":2`, `"quantity":2.5`), nil, true},
		{"customer only dots", "orders", "POST", "/api/orders", orderBody(`"c-42"`, `".."`), nil, true},
		{"customer with dots", "orders", "POST", "/api/orders", orderBody(`"c-42"`, `"c.42."`), nil, false},
		{"sku only dots", "orders", "POST", "/api/orders", orderBody(`"SKU-1"`, `"..."`), nil, true},
		{"blank name", "orders", "POST", "/api/orders", orderBody(`"Ada L."`, `"  "`), nil, true},
		{"control character in a name", "orders", "POST", "/api/orders", orderBody(`"Ada L."`, `"Ada\u0007"`), nil, true},
		{"unicode name", "orders", "POST", "/api/orders", orderBody(`"Ada L."`, `"Zoë\u00a0Ünal"`), nil, false},
		{"unknown field", "orders", "POST", "/api/orders", orderBody(`"customer_id"`, `"colour":"red","customer_id"`), nil, true},
		{"no body", "orders", "POST", "/api/orders", "", nil, true},
		{"curl -d", "orders", "POST", "/api/orders", orderBody(), []string{"Content-Type", "application/x-www-form-urlencoded"}, false},
		{"text/plain", "orders", "POST", "/api/orders", orderBody(), []string{"Content-Type", "text/plain; charset=utf-8"}, false},
		{"another JSON type", "orders", "POST", "/api/orders", orderBody(), []string{"Content-Type", "application/merge-patch+json"}, true},
		{"xml", "orders", "POST", "/api/orders", `<order/>`, []string{"Content-Type", "application/xml"}, true},
		{"order id not a uuid", "orders", "GET", "/api/orders/not-a-uuid", "", nil, false},
		{"cancel id not a uuid", "orders", "POST", "/api/orders/12345/cancel", "", nil, false},
		{"cancel unknown order", "orders", "POST", "/api/orders/" + orderID + "/cancel", `{}`, nil, false},
		{"long request id", "orders", "GET", "/api/orders/" + orderID, "", []string{httpx.RequestIDHeader, strings.Repeat("r", 300)}, false},
		{"bad idempotency key", "orders", "POST", "/api/orders", orderBody(), []string{"Idempotency-Key", strings.Repeat("k", 201)}, true},
		{"restock", "inventory", "POST", "/api/inventory/SKU-9/restock", `{"quantity":1}`, nil, false},
		{"restock 1.0", "inventory", "POST", "/api/inventory/SKU-9/restock", `{"quantity":1.0}`, nil, false},
		{"restock 1e1", "inventory", "POST", "/api/inventory/SKU-9/restock", `{"quantity":1e1}`, nil, false},
		{"restock 0.5", "inventory", "POST", "/api/inventory/SKU-9/restock", `{"quantity":0.5}`, nil, true},
		{"restock sku .", "inventory", "POST", "/api/inventory/./restock", `{"quantity":1}`, nil, true},
		{"restock sku ..", "inventory", "POST", "/api/inventory/../restock", `{"quantity":1}`, nil, true},
		{"restock sku with dots", "inventory", "POST", "/api/inventory/v1..2/restock", `{"quantity":1}`, nil, false},
		{"read sku ..", "inventory", "GET", "/api/inventory/..", "", nil, false},
		{"read sku with a space", "inventory", "GET", "/api/inventory/a%20b", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := map[string][]string{}
			if tt.body != "" {
				header["Content-Type"] = []string{"application/json"}
			}
			for i := 0; i+1 < len(tt.header); i += 2 {
				header[tt.header[i]] = []string{tt.header[i+1]}
			}
			proxy := contract.CheckRequest(tt.method, tt.path, header, []byte(tt.body))
			res := envs[tt.service].Do(t, tt.method, tt.path, tt.body, tt.header...)
			switch res.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
				if !tt.refused {
					t.Fatalf("the service refused it: %d %s", res.Status, res.Body)
				}
				if len(proxy) == 0 {
					t.Fatalf("the service refused it (%d %s) but the document accepts it", res.Status, res.Body)
				}
			default:
				if tt.refused {
					t.Fatalf("the service accepted it: %d %s", res.Status, res.Body)
				}
				if len(proxy) > 0 {
					t.Fatalf("the service answered %d but the document refuses it: %v", res.Status, proxy)
				}
			}
		})
	}

	// 1.0 and 1e1 were taken as the integers they are.
	var quantities []int
	for _, e := range envs["inventory"].Events(t, inventory.Stream("SKU-9")) {
		var d struct {
			Quantity int `json:"quantity"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		quantities = append(quantities, d.Quantity)
	}
	if got, want := quantities, []int{1, 1, 10}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("restocked quantities %v, want %v", got, want)
	}
}
