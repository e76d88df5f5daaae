package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/services/api"
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/idempotency"
	"github.com/orderflow/orderflow/services/internal/serve"
)

// orderBody is a valid order of quantity SKU units for customer.
func orderBody(customer, sku string, quantity int) string {
	return fmt.Sprintf(`{"customer_id": %q, "items": [{"sku": %q, "quantity": %d, "unit_price_cents": 1299}],
		"shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}}`,
		customer, sku, quantity)
}

type placed struct {
	OrderID string `json:"order_id"`
	SagaID  string `json:"saga_id"`
}

// place places an order through g with tok and returns it.
func place(t *testing.T, g *gw, tok, customer, sku string, quantity int, header ...string) placed {
	t.Helper()
	res := g.do(t, http.MethodPost, "/api/orders", orderBody(customer, sku, quantity), tok, header...)
	if res.Status != http.StatusAccepted {
		t.Fatalf("place an order for %s: %d %s", customer, res.Status, res.Body)
	}
	var p placed
	res.json(t, &p)
	return p
}

// eventually repeats GET path through g with tok until done accepts the
// answer, and returns it.
func eventually(t *testing.T, g *gw, path, tok, what string, done func(response) bool, header ...string) response {
	t.Helper()
	var last response
	coordinatortest.Eventually(t, within, what, func() (bool, string) {
		last = g.do(t, http.MethodGet, path, "", tok, header...)
		return done(last), fmt.Sprintf("%d %s", last.Status, last.Body)
	})
	return last
}

func status(code int) func(response) bool {
	return func(r response) bool { return r.Status == code }
}

// TestGateway drives the real services through a real gateway: tokens,
// roles and ownership, the subject scope of idempotency keys, the
// operations API, limits, ETags and the request id.
func TestGateway(t *testing.T) {
	s := newStack(t)
	// The waits below poll faster than the default limit allows; the
	// limits have a gateway of their own below.
	g := startGateway(t, s, func(c *gateway.Config) { c.RateLimit = rate.Inf })
	admin := token(t, "admin", auth.RoleAdmin)
	c42 := token(t, "c-42", auth.RoleCustomer)
	c7 := token(t, "c-7", auth.RoleCustomer)

	if res := g.do(t, http.MethodPost, "/api/inventory/SKU-GW/restock", `{"quantity": 100}`, admin); res.Status != http.StatusAccepted {
		t.Fatalf("restock as admin: %d %s", res.Status, res.Body)
	}
	eventually(t, g, "/api/inventory/SKU-GW", c42, "stock visible to a customer", status(http.StatusOK))

	t.Run("unauthenticated", func(t *testing.T) {
		now := time.Now()
		tests := []struct {
			name   string
			header []string
		}{
			{"no token", nil},
			{"not bearer", []string{"Authorization", "Basic YWRtaW46YWRtaW4="}},
			{"garbage", []string{"Authorization", "Bearer not-a-jwt"}},
			{"other secret", []string{"Authorization", "Bearer " + rawToken(t, []byte("another secret, also 32 bytes long!"),
				jwt.MapClaims{"sub": "admin", "role": "admin", "exp": now.Add(time.Hour).Unix()})}},
			{"expired", []string{"Authorization", "Bearer " + rawToken(t, testSecret,
				jwt.MapClaims{"sub": "admin", "role": "admin", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})}},
			{"unknown role", []string{"Authorization", "Bearer " + rawToken(t, testSecret,
				jwt.MapClaims{"sub": "root", "role": "superuser", "exp": now.Add(time.Hour).Unix()})}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, path := range []string{"/api/inventory/SKU-GW", "/admin/projections"} {
					res := g.do(t, http.MethodGet, path, "", "", tt.header...)
					res.problem(t, http.StatusUnauthorized, "unauthorized")
					if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("GET %s: WWW-Authenticate %q, want a Bearer challenge", path, res.Header.Get("WWW-Authenticate"))
					}
				}
			})
		}
	})

	// Orders of two customers, placed through the gateway.
	mine := place(t, g, c42, "c-42", "SKU-GW", 1)
	theirs := place(t, g, c7, "c-7", "SKU-GW", 1)

	t.Run("ownership", func(t *testing.T) {
		// Until the read model has the order its owner is unknown (404).
		eventually(t, g, "/api/orders/"+mine.OrderID, c42, "own order readable", status(http.StatusOK))
		res := eventually(t, g, "/api/orders/"+theirs.OrderID, c42, "another's order refused",
			func(r response) bool { return r.Status != http.StatusNotFound })
		res.problem(t, http.StatusForbidden, "forbidden")
		if res := g.do(t, http.MethodPost, "/api/orders/"+theirs.OrderID+"/cancel", `{}`, c42); res.Status != http.StatusForbidden {
			t.Errorf("cancel another's order: %d %s, want 403", res.Status, res.Body)
		}
		if res := g.do(t, http.MethodPost, "/api/orders", orderBody("c-7", "SKU-GW", 1), c42); res.Status != http.StatusForbidden {
			t.Errorf("place an order for another: %d %s, want 403", res.Status, res.Body)
		}
		if res := g.do(t, http.MethodGet, "/api/orders/"+theirs.OrderID, "", admin); res.Status != http.StatusOK {
			t.Errorf("admin reads any order: %d %s, want 200", res.Status, res.Body)
		}
	})

	t.Run("a customer's list shows only its orders", func(t *testing.T) {
		type list struct {
			Items []struct {
				OrderID    string `json:"order_id"`
				CustomerID string `json:"customer_id"`
			} `json:"items"`
		}
		ids := func(l list) (ids, customers []string) {
			for _, it := range l.Items {
				ids = append(ids, it.OrderID)
				customers = append(customers, it.CustomerID)
			}
			return ids, customers
		}
		// The admin sees both once projected: the customer's answer
		// below is then complete too.
		eventually(t, g, "/api/orders?limit=500", admin, "both orders listed", func(r response) bool {
			var l list
			r.json(t, &l)
			got, _ := ids(l)
			return r.Status == http.StatusOK && slices.Contains(got, mine.OrderID) && slices.Contains(got, theirs.OrderID)
		})
		res := g.do(t, http.MethodGet, "/api/orders?limit=500", "", c42)
		if res.Status != http.StatusOK {
			t.Fatalf("list as c-42: %d %s", res.Status, res.Body)
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("list Cache-Control %q, want no-store passed through", cc)
		}
		var l list
		res.json(t, &l)
		got, customers := ids(l)
		if !slices.Contains(got, mine.OrderID) || slices.Contains(got, theirs.OrderID) {
			t.Errorf("c-42's list holds %v, want %s and not %s", got, mine.OrderID, theirs.OrderID)
		}
		for _, c := range customers {
			if c != "c-42" {
				t.Errorf("c-42's list holds an order of %s", c)
			}
		}
		if res := g.do(t, http.MethodGet, "/api/orders?customer_id=c-7", "", c42); res.Status != http.StatusForbidden {
			t.Errorf("list another's orders: %d %s, want 403", res.Status, res.Body)
		}
	})

	t.Run("idempotency keys are scoped by subject", func(t *testing.T) {
		key := []string{"Idempotency-Key", "gw-key-1"}
		first := place(t, g, c42, "c-42", "SKU-GW", 1, key...)
		// The same key and body from another subject is another command.
		other := place(t, g, admin, "c-42", "SKU-GW", 1, key...)
		if other.OrderID == first.OrderID {
			t.Errorf("the admin's request with c-42's key got c-42's order %s", first.OrderID)
		}
		// A client cannot borrow another subject's scope with the header.
		res := g.do(t, http.MethodPost, "/api/orders", orderBody("c-42", "SKU-GW", 1), c42,
			"Idempotency-Key", "gw-key-1", idempotency.SubjectHeader, "admin")
		var again placed
		res.json(t, &again)
		if res.Status != http.StatusAccepted || again.OrderID != first.OrderID || res.Header.Get(idempotency.ReplayedHeader) != "true" {
			t.Errorf("c-42 repeating its key (with a forged subject header): %d %s replayed=%q, want its first order %s replayed",
				res.Status, res.Body, res.Header.Get(idempotency.ReplayedHeader), first.OrderID)
		}
	})

	t.Run("shipments and the walk-through", func(t *testing.T) {
		eventually(t, g, "/api/sagas/"+mine.SagaID, admin, "saga completed", func(r response) bool {
			// Until the read model has it, the saga is a 404 problem.
			if r.Status != http.StatusOK {
				return false
			}
			var v struct{ Status string }
			r.json(t, &v)
			return v.Status == "completed"
		})
		if res := g.do(t, http.MethodGet, "/api/sagas/"+mine.SagaID, "", c42); res.Status != http.StatusForbidden {
			t.Errorf("a customer reads a saga: %d %s, want 403", res.Status, res.Body)
		}
		var shipments struct {
			Items []struct {
				ShipmentID string `json:"shipment_id"`
				Status     string `json:"status"`
			} `json:"items"`
		}
		eventually(t, g, "/api/shipments?order_id="+mine.OrderID, c42, "shipment listed", func(r response) bool {
			shipments.Items = nil
			r.json(t, &shipments)
			return r.Status == http.StatusOK && len(shipments.Items) == 1
		})
		id := shipments.Items[0].ShipmentID
		if res := g.do(t, http.MethodGet, "/api/shipments/"+id, "", c42); res.Status != http.StatusOK {
			t.Errorf("own shipment: %d %s, want 200", res.Status, res.Body)
		}
		g.do(t, http.MethodGet, "/api/shipments/"+id, "", c7).problem(t, http.StatusForbidden, "forbidden")
		if res := g.do(t, http.MethodGet, "/api/shipments?order_id="+mine.OrderID, "", c7); res.Status != http.StatusForbidden {
			t.Errorf("another's shipments listed: %d %s, want 403", res.Status, res.Body)
		}
		if res := g.do(t, http.MethodPost, "/api/shipments/"+id+"/dispatch", `{}`, c42); res.Status != http.StatusForbidden {
			t.Errorf("a customer dispatches: %d %s, want 403", res.Status, res.Body)
		}
		if res := g.do(t, http.MethodPost, "/api/shipments/"+id+"/dispatch", `{}`, admin); res.Status != http.StatusAccepted {
			t.Fatalf("dispatch as admin: %d %s, want 202", res.Status, res.Body)
		}
		eventually(t, g, "/api/orders/"+mine.OrderID, c42, "order shipped", func(r response) bool {
			if r.Status != http.StatusOK {
				return false
			}
			var v struct{ Status string }
			r.json(t, &v)
			return v.Status == "shipped"
		})
	})

	t.Run("ETag passes through", func(t *testing.T) {
		path := "/api/sagas/" + theirs.SagaID
		first := eventually(t, g, path, admin, "saga completed", func(r response) bool {
			// Until the read model has it, the saga is a 404 problem.
			if r.Status != http.StatusOK {
				return false
			}
			var v struct{ Status string }
			r.json(t, &v)
			return v.Status == "completed"
		})
		etag := first.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", path)
		}
		res := g.do(t, http.MethodGet, path, "", admin, "If-None-Match", etag)
		if res.Status != http.StatusNotModified || len(res.Body) != 0 || res.Header.Get("ETag") != etag {
			t.Fatalf("repeated GET with If-None-Match %s: %d ETag %q body %q, want 304 with the ETag and no body",
				etag, res.Status, res.Header.Get("ETag"), res.Body)
		}
		// A change: the customer cancels, the saga compensates.
		if res := g.do(t, http.MethodPost, "/api/orders/"+theirs.OrderID+"/cancel", `{}`, c7); res.Status != http.StatusAccepted {
			t.Fatalf("cancel: %d %s", res.Status, res.Body)
		}
		changed := eventually(t, g, path, admin, "saga changed", status(http.StatusOK), "If-None-Match", etag)
		if got := changed.Header.Get("ETag"); got == "" || got == etag {
			t.Errorf("changed saga's ETag %q, want a new one (was %s)", got, etag)
		}
	})

	t.Run("admin", func(t *testing.T) {
		g.do(t, http.MethodGet, "/admin/projections", "", c42).problem(t, http.StatusForbidden, "forbidden")
		var inventoryModel string
		var want []string
		for _, rm := range serve.ReadModels() {
			want = append(want, rm.Name)
			if rm.Service == gateway.Inventory {
				inventoryModel = rm.Name
			}
		}
		g.do(t, http.MethodPost, "/admin/projections/"+inventoryModel+"/replay", `{}`, c42).problem(t, http.StatusForbidden, "forbidden")

		res := g.do(t, http.MethodGet, "/admin/projections", "", admin)
		if res.Status != http.StatusOK {
			t.Fatalf("GET /admin/projections as admin: %d %s", res.Status, res.Body)
		}
		var l struct{ Items []struct{ Name string } }
		res.json(t, &l)
		var got []string
		for _, it := range l.Items {
			got = append(got, it.Name)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("projections %v, want every service's %v", got, want)
		}

		res = g.do(t, http.MethodPost, "/admin/projections/"+inventoryModel+"/replay", `{}`, admin)
		if res.Status != http.StatusAccepted {
			t.Fatalf("replay %s: %d %s, want 202", inventoryModel, res.Status, res.Body)
		}
		var accepted struct{ Name string }
		res.json(t, &accepted)
		if accepted.Name != inventoryModel {
			t.Errorf("replay answered for %q, want %q", accepted.Name, inventoryModel)
		}
		g.do(t, http.MethodPost, "/admin/projections/no-such-projection/replay", `{}`, admin).problem(t, http.StatusNotFound, "not-found")
	})

	t.Run("request id", func(t *testing.T) {
		res := g.do(t, http.MethodGet, "/api/inventory/SKU-GW", "", c42, "X-Request-Id", "gw-test-request-1")
		if got := res.Header.Get("X-Request-Id"); got != "gw-test-request-1" {
			t.Errorf("X-Request-Id %q, want the client's", got)
		}
		res = g.do(t, http.MethodGet, "/api/inventory/SKU-GW", "", c42)
		if got := res.Header.Get("X-Request-Id"); len(got) < 16 {
			t.Errorf("X-Request-Id %q, want a generated one", got)
		}
	})

	t.Run("body limit", func(t *testing.T) {
		reached := func() float64 {
			return s.direct(t, gateway.Orders).metric(t, "orderflow_http_requests_total", "method", "POST", "route", "/api/orders")
		}
		before := reached()
		big := `{"customer_id": "c-42", "pad": "` + strings.Repeat("x", 1<<20) + `"}`
		g.do(t, http.MethodPost, "/api/orders", big, c42).problem(t, http.StatusRequestEntityTooLarge, "payload-too-large")
		// Streamed without a length: counted as it comes.
		streamed := io.MultiReader(strings.NewReader(`{"pad": "`), strings.NewReader(strings.Repeat("y", 2<<20)), strings.NewReader(`"}`))
		res := g.send(t, http.MethodPost, "/api/orders", struct{ io.Reader }{streamed}, c42)
		res.problem(t, http.StatusRequestEntityTooLarge, "payload-too-large")
		if after := reached(); after != before {
			t.Errorf("the orders service got %v POST /api/orders during the test, want none", after-before)
		}
	})

	t.Run("rate limits", func(t *testing.T) {
		// A rate so slow that no token comes back during the test.
		lg := startGateway(t, s, func(c *gateway.Config) {
			c.RateLimit, c.RateBurst = rate.Every(time.Hour), 3
			c.AddressRateLimit, c.AddressRateBurst = rate.Every(time.Hour), 2
		})
		for i := range 3 {
			if res := lg.do(t, http.MethodGet, "/api/inventory/SKU-GW", "", c42); res.Status != http.StatusOK {
				t.Fatalf("request %d within the burst: %d %s", i+1, res.Status, res.Body)
			}
		}
		res := lg.do(t, http.MethodGet, "/api/inventory/SKU-GW", "", c42)
		res.problem(t, http.StatusTooManyRequests, "rate-limited")
		if n := res.retryAfter(t); n < 60 {
			t.Errorf("Retry-After %d, want about an hour's worth", n)
		}
		// Another subject has a budget of its own.
		if res := lg.do(t, http.MethodGet, "/api/inventory/SKU-GW", "", c7); res.Status != http.StatusOK {
			t.Errorf("another subject: %d %s, want 200", res.Status, res.Body)
		}
		if got := lg.metric(t, "orderflow_gateway_rate_limited_total", "limit", "subject"); got != 1 {
			t.Errorf("subject rejections counted %v, want 1", got)
		}

		// Requests that fail to authenticate spend the address's budget.
		for range 2 {
			lg.do(t, http.MethodGet, "/api/inventory/SKU-GW", "", "").problem(t, http.StatusUnauthorized, "unauthorized")
		}
		res = lg.do(t, http.MethodGet, "/api/inventory/SKU-GW", "", "")
		res.problem(t, http.StatusTooManyRequests, "rate-limited")
		res.retryAfter(t)
		if got := lg.metric(t, "orderflow_gateway_rate_limited_total", "limit", "address"); got != 1 {
			t.Errorf("address rejections counted %v, want 1", got)
		}
	})

	t.Run("operations", func(t *testing.T) {
		if res := g.do(t, http.MethodGet, "/healthz", "", ""); res.Status != http.StatusOK {
			t.Errorf("healthz: %d", res.Status)
		}
		if res := g.do(t, http.MethodGet, "/readyz", "", ""); res.Status != http.StatusOK {
			t.Errorf("readyz with every service up: %d %s", res.Status, res.Body)
		}
		res := g.do(t, http.MethodGet, "/openapi.yaml", "", "")
		if res.Status != http.StatusOK || res.Header.Get("Content-Type") != "application/yaml" || string(res.Body) != string(api.OpenAPI()) {
			t.Errorf("GET /openapi.yaml: %d %q, %d bytes, want 200 application/yaml with the embedded document", res.Status, res.Header.Get("Content-Type"), len(res.Body))
		}
		etag := res.Header.Get("ETag")
		if res := g.do(t, http.MethodGet, "/openapi.yaml", "", "", "If-None-Match", etag); etag == "" || res.Status != http.StatusNotModified {
			t.Errorf("GET /openapi.yaml with If-None-Match %q: %d, want 304", etag, res.Status)
		}
	})
}

// TestGatewayBreaker stops the inventory service behind a gateway: its
// breaker opens (503 with Retry-After, without calling it), the other
// services keep answering, and once it is back a probe closes the
// breaker again.
func TestGatewayBreaker(t *testing.T) {
	s := newStack(t)
	const openFor = 2 * time.Second
	g := startGateway(t, s, func(c *gateway.Config) {
		c.BreakerFailures, c.BreakerOpen = 3, openFor
		c.RateLimit = rate.Inf // the waits poll fast
	})
	admin := token(t, "admin", auth.RoleAdmin)
	const path = "/api/inventory/SKU-BREAKER"
	if res := g.do(t, http.MethodPost, path+"/restock", `{"quantity": 5}`, admin); res.Status != http.StatusAccepted {
		t.Fatalf("restock: %d %s", res.Status, res.Body)
	}
	eventually(t, g, path, admin, "stock visible", status(http.StatusOK))
	state := func() float64 {
		return g.metric(t, "orderflow_gateway_circuit_breaker_state", "upstream", "inventory")
	}
	if got := state(); got != 0 {
		t.Fatalf("breaker state %v with the service up, want 0 (closed)", got)
	}

	s.stop(gateway.Inventory)
	var refused response
	coordinatortest.Eventually(t, within, "breaker open", func() (bool, string) {
		res := g.do(t, http.MethodGet, path, "", admin)
		if res.Status != http.StatusServiceUnavailable {
			return false, fmt.Sprintf("%d %s", res.Status, res.Body)
		}
		res.retryAfter(t)
		refused = res
		return state() == 2, fmt.Sprintf("state %v", state())
	})
	detail := refused.problem(t, http.StatusServiceUnavailable, "unavailable")
	if !strings.Contains(detail, "inventory") {
		t.Errorf("503 detail %q does not name the service", detail)
	}
	// While open, the breaker answers at once, saying so.
	res := g.do(t, http.MethodGet, path, "", admin)
	if res.Status != http.StatusServiceUnavailable {
		t.Fatalf("while open: %d %s", res.Status, res.Body)
	}
	if n := res.retryAfter(t); n > int(openFor/time.Second) {
		t.Errorf("Retry-After %d while open, want at most the %s the breaker stays open", n, openFor)
	}
	// A command refused by the open breaker was not sent.
	if res := g.do(t, http.MethodPost, path+"/restock", `{"quantity": 1}`, admin); res.Status == http.StatusServiceUnavailable {
		if d := res.problem(t, http.StatusServiceUnavailable, "unavailable"); !strings.Contains(d, "not sent") && !strings.Contains(d, "may or may not") {
			t.Errorf("503 to a command says %q, want whether it was applied", d)
		}
	} else {
		t.Errorf("restock while inventory is down: %d %s, want 503", res.Status, res.Body)
	}
	// The other services are not affected.
	if res := g.do(t, http.MethodGet, "/api/orders?limit=1", "", admin); res.Status != http.StatusOK {
		t.Errorf("orders while inventory is down: %d %s", res.Status, res.Body)
	}
	ready := g.do(t, http.MethodGet, "/readyz", "", "")
	if d := ready.problem(t, http.StatusServiceUnavailable, "not-ready"); !strings.Contains(d, "inventory") {
		t.Errorf("readyz detail %q, want inventory named", d)
	}

	s.start(gateway.Inventory)
	eventually(t, g, path, admin, "inventory back through the gateway", status(http.StatusOK))
	if got := state(); got != 0 {
		t.Errorf("breaker state %v after a successful probe, want 0 (closed)", got)
	}
	if res := g.do(t, http.MethodGet, "/readyz", "", ""); res.Status != http.StatusOK {
		t.Errorf("readyz after inventory is back: %d %s", res.Status, res.Body)
	}
	logs := g.logs.String()
	for _, want := range []string{"to=open", "to=half-open", "to=closed"} {
		if !strings.Contains(logs, "circuit breaker state changed") || !strings.Contains(logs, want) {
			t.Errorf("the gateway's log lacks the breaker's change %s", want)
		}
	}
}

// TestServiceTimesOutBeforeTheGateway: a service stuck on its database
// ends the request with its own 503 (which says whether a command may
// have been applied, and when to retry) before the gateway gives up on it
// with a 504 that can say neither.
func TestServiceTimesOutBeforeTheGateway(t *testing.T) {
	if serve.DefaultRequestTimeout >= gateway.DefaultUpstreamTimeout {
		t.Errorf("service request timeout %s, gateway upstream timeout %s: the service's must be shorter",
			serve.DefaultRequestTimeout, gateway.DefaultUpstreamTimeout)
	}
}
