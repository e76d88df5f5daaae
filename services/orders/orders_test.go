package orders_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const validOrder = `{"customer_id": "c-42",
 "items": [{"sku": "SKU-1", "quantity": 2, "unit_price_cents": 1299}, {"sku": "SKU-2", "quantity": 1, "unit_price_cents": 0}],
 "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}}`

type placed struct {
	OrderID string `json:"order_id"`
	SagaID  string `json:"saga_id"`
	Status  string `json:"status"`
}

func place(t *testing.T, env *servetest.Env, header ...string) placed {
	t.Helper()
	res := env.Post(t, "/api/orders", validOrder, header...)
	if res.Status != http.StatusAccepted {
		t.Fatalf("place: %d %s", res.Status, res.Body)
	}
	var p placed
	res.JSON(t, &p)
	return p
}

func TestPlaceOrder(t *testing.T) {
	env := servetest.Start(t, "orders")
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	res := env.Post(t, "/api/orders", validOrder, httpx.RequestIDHeader, "req-place-1", "Traceparent", traceparent)
	if res.Status != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	var p placed
	res.JSON(t, &p)
	if _, err := uuid.Parse(p.OrderID); err != nil {
		t.Fatalf("order_id %q: %v", p.OrderID, err)
	}
	// One order, one saga: the id the coordinator derives from the order.
	if p.SagaID != sagas.SagaID(p.OrderID) || p.SagaID == p.OrderID {
		t.Fatalf("saga_id %q, want %q, derived from order %q", p.SagaID, sagas.SagaID(p.OrderID), p.OrderID)
	}
	if p.Status != "pending" {
		t.Fatalf("status %q", p.Status)
	}
	if loc := res.Header.Get("Location"); loc != "/api/orders/"+p.OrderID {
		t.Fatalf("Location %q", loc)
	}
	if got := res.Header.Get(httpx.RequestIDHeader); got != "req-place-1" {
		t.Fatalf("X-Request-Id %q", got)
	}

	evs := env.Events(t, order.Stream(p.OrderID))
	if len(evs) != 1 || evs[0].Type != "OrderPlaced" {
		t.Fatalf("events %+v, want one OrderPlaced", evs)
	}
	md := evs[0].Metadata
	if md.CorrelationID != "req-place-1" || md.RequestID != "req-place-1" || md.TraceParent != traceparent {
		t.Fatalf("metadata %+v", md)
	}
	var data struct {
		OrderID    string       `json:"order_id"`
		SagaID     string       `json:"saga_id"`
		CustomerID string       `json:"customer_id"`
		Items      []order.Item `json:"items"`
		TotalCents int64        `json:"total_cents"`
	}
	if err := json.Unmarshal(evs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.OrderID != p.OrderID || data.SagaID != p.SagaID || data.CustomerID != "c-42" || len(data.Items) != 2 || data.TotalCents != 2598 {
		t.Fatalf("OrderPlaced data %s", evs[0].Data)
	}

	// Without an Idempotency-Key every request is a new order.
	if q := place(t, env); q.OrderID == p.OrderID {
		t.Fatal("second order got the same id")
	}
}

func TestPlaceOrderGeneratesRequestID(t *testing.T) {
	env := servetest.Start(t, "orders")
	res := env.Post(t, "/api/orders", validOrder)
	var p placed
	res.JSON(t, &p)
	rid := res.Header.Get(httpx.RequestIDHeader)
	if _, err := uuid.Parse(rid); err != nil {
		t.Fatalf("generated X-Request-Id %q: %v", rid, err)
	}
	if evs := env.Events(t, order.Stream(p.OrderID)); len(evs) != 1 || evs[0].Metadata.CorrelationID != rid {
		t.Fatalf("events %+v, want correlation id %s", evs, rid)
	}
}

func TestPlaceOrderBadRequests(t *testing.T) {
	env := servetest.Start(t, "orders")
	big := `{"customer_id":"` + strings.Repeat("x", httpx.MaxBodyBytes) + `"}`
	withItem := func(item string) string {
		return `{"customer_id":"c-1","items":[` + item + `],"shipping_address":{"name":"A","line1":"1 St","city":"X","postal_code":"1","country":"US"}}`
	}
	withCountry := func(country string) string {
		return `{"customer_id":"c-1","items":[{"sku":"S","quantity":1,"unit_price_cents":1}],"shipping_address":{"name":"A","line1":"1 St","city":"X","postal_code":"1","country":"` + country + `"}}`
	}
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		slug        string
		fields      []string
	}{
		{"malformed json", `{"customer_id": "c-1",`, "", 400, httpx.SlugMalformedJSON, nil},
		{"trailing data", validOrder + `{}`, "", 400, httpx.SlugMalformedJSON, nil},
		{"not an object", `[]`, "", 400, httpx.SlugMalformedJSON, nil},
		{"unknown field", strings.Replace(validOrder, `"customer_id"`, `"coupon": "x", "customer_id"`, 1), "", 400, httpx.SlugValidation, []string{"coupon"}},
		{"unknown nested field", withItem(`{"sku":"S","quantity":1,"unit_price_cents":1,"gift":true}`), "", 400, httpx.SlugValidation, []string{"items[0].gift"}},
		{"wrong type", withItem(`{"sku":"S","quantity":"2","unit_price_cents":1}`), "", 400, httpx.SlugValidation, []string{"items[0].quantity"}},
		{"fractional price", withItem(`{"sku":"S","quantity":1,"unit_price_cents":1.5}`), "", 400, httpx.SlugValidation, []string{"items[0].unit_price_cents"}},
		{"zero quantity", withItem(`{"sku":"S","quantity":0,"unit_price_cents":1}`), "", 400, httpx.SlugValidation, []string{"items[0].quantity"}},
		{"quantity over 1000", withItem(`{"sku":"S","quantity":1001,"unit_price_cents":1}`), "", 400, httpx.SlugValidation, []string{"items[0].quantity"}},
		{"negative price", withItem(`{"sku":"S","quantity":1,"unit_price_cents":-1}`), "", 400, httpx.SlugValidation, []string{"items[0].unit_price_cents"}},
		{"bad sku", withItem(`{"sku":"no spaces","quantity":1,"unit_price_cents":1}`), "", 400, httpx.SlugValidation, []string{"items[0].sku"}},
		{"duplicate sku", withItem(`{"sku":"S","quantity":1,"unit_price_cents":1},{"sku":"S","quantity":2,"unit_price_cents":1}`), "", 400, httpx.SlugValidation, []string{"items[1].sku"}},
		{"bad country", withCountry("XX"), "", 400, httpx.SlugValidation, []string{"shipping_address.country"}},
		{"lower case country", withCountry("us"), "", 400, httpx.SlugValidation, []string{"shipping_address.country"}},
		{"empty object", `{}`, "", 400, httpx.SlugValidation, nil},
		{"empty body", ``, "", 400, httpx.SlugValidation, nil},
		{"too large", big, "", 413, httpx.SlugPayloadTooLarge, nil},
		{"xml", validOrder, "application/xml", 415, httpx.SlugUnsupportedMediaType, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.contentType != "" {
				header = []string{"Content-Type", tt.contentType}
			}
			env.AppendsNothing(t, func() {
				res := env.Post(t, "/api/orders", tt.body, header...)
				res.WantProblem(t, tt.status, tt.slug, tt.fields...)
				if res.Header.Get(httpx.RequestIDHeader) == "" {
					t.Fatal("problem without X-Request-Id")
				}
			})
		})
	}
}

func TestPlaceOrderReportsEveryInvalidField(t *testing.T) {
	env := servetest.Start(t, "orders")
	res := env.Post(t, "/api/orders", `{"customer_id":"bad id","items":[{"sku":"S","quantity":0,"unit_price_cents":1}],
		"shipping_address":{"name":"A","line1":"1 St","city":"X","postal_code":"1","country":"ZZ"}}`)
	p := res.WantProblem(t, 400, httpx.SlugValidation)
	want := map[string]bool{"customer_id": true, "items[0].quantity": true, "shipping_address.country": true}
	for _, f := range p.Errors {
		delete(want, f.Field)
	}
	if len(want) > 0 {
		t.Fatalf("fields %v not reported: %s", want, res.Body)
	}
}

func TestPlaceOrderIdempotency(t *testing.T) {
	env := servetest.Start(t, "orders")
	first := env.Post(t, "/api/orders", validOrder, "Idempotency-Key", "order-key-1")
	if first.Status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}

	// A replay, a reused key and a retry whose stored answer was lost all
	// leave the store as the first request left it.
	env.AppendsNothing(t, func() {
		again := env.Post(t, "/api/orders", validOrder, "Idempotency-Key", "order-key-1")
		if again.Status != first.Status || string(again.Body) != string(first.Body) ||
			again.Header.Get("Location") != first.Header.Get("Location") {
			t.Fatalf("replay differs:\n%d %s\n%d %s", first.Status, first.Body, again.Status, again.Body)
		}

		different := env.Post(t, "/api/orders", strings.Replace(validOrder, `"quantity": 2`, `"quantity": 3`, 1), "Idempotency-Key", "order-key-1")
		different.WantProblem(t, http.StatusConflict, httpx.SlugIdempotencyKeyReused)

		// The same key names the same order even if the stored answer is
		// lost (a crash between append and storing): the retry is a no-op.
		if _, err := env.Pool.Exec(t.Context(), "DELETE FROM idempotency_keys"); err != nil {
			t.Fatal(err)
		}
		retry := env.Post(t, "/api/orders", validOrder, "Idempotency-Key", "order-key-1")
		if retry.Status != http.StatusAccepted || string(retry.Body) != string(first.Body) {
			t.Fatalf("retry after lost answer: %d %s, want %s", retry.Status, retry.Body, first.Body)
		}
	})

	bad := env.Post(t, "/api/orders", validOrder, "Idempotency-Key", strings.Repeat("k", 201))
	bad.WantProblem(t, http.StatusBadRequest, httpx.SlugValidation, "Idempotency-Key")
}

func TestCancelOrder(t *testing.T) {
	env := servetest.Start(t, "orders")
	p := place(t, env)

	res := env.Post(t, "/api/orders/"+p.OrderID+"/cancel", `{}`, httpx.RequestIDHeader, "req-cancel-1")
	if res.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	var c struct {
		OrderID string `json:"order_id"`
		Status  string `json:"status"`
	}
	res.JSON(t, &c)
	if c.OrderID != p.OrderID || c.Status != "cancelled" || res.Header.Get("Location") != "/api/orders/"+p.OrderID {
		t.Fatalf("cancel answer %+v, Location %q", c, res.Header.Get("Location"))
	}
	evs := env.Events(t, order.Stream(p.OrderID))
	// The cancel calls the saga off: it is correlated with the saga.
	if len(evs) != 2 || evs[1].Type != "OrderCancelled" || evs[1].Metadata.CorrelationID != p.SagaID ||
		evs[1].Metadata.RequestID != "req-cancel-1" {
		t.Fatalf("events %+v, want OrderCancelled correlated with saga %s", evs, p.SagaID)
	}
	var data struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(evs[1].Data, &data); err != nil || data.Reason != order.ReasonCancelledByCustomer {
		t.Fatalf("OrderCancelled data %s (%v)", evs[1].Data, err)
	}

	env.AppendsNothing(t, func() {
		env.Post(t, "/api/orders/"+p.OrderID+"/cancel", `{}`).WantProblem(t, http.StatusConflict, httpx.SlugIllegalState)
	})
}

func TestCancelOrderRequests(t *testing.T) {
	env := servetest.Start(t, "orders")
	p := place(t, env)
	tests := []struct {
		name, path, body string
		status           int
		slug             string
	}{
		{"unknown order", "/api/orders/" + uuid.NewString() + "/cancel", `{}`, 404, httpx.SlugNotFound},
		{"not a uuid", "/api/orders/not-a-uuid/cancel", `{}`, 404, httpx.SlugNotFound},
		{"unknown field", "/api/orders/" + p.OrderID + "/cancel", `{"reason":"x"}`, 400, httpx.SlugValidation},
		{"malformed", "/api/orders/" + p.OrderID + "/cancel", `{`, 400, httpx.SlugMalformedJSON},
		{"wrong method", "/api/orders/" + p.OrderID + "/cancel", ``, 405, httpx.SlugMethodNotAllowed},
		{"no such route", "/api/orders/" + p.OrderID + "/explode", `{}`, 404, httpx.SlugNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodPost
			if tt.status == 405 {
				method = http.MethodPut
			}
			env.AppendsNothing(t, func() {
				env.Do(t, method, tt.path, tt.body).WantProblem(t, tt.status, tt.slug)
			})
		})
	}

	// An empty body counts as {} and an upper-case id names the same order.
	res := env.Post(t, "/api/orders/"+strings.ToUpper(p.OrderID)+"/cancel", "")
	if res.Status != http.StatusAccepted {
		t.Fatalf("cancel with empty body: %d %s", res.Status, res.Body)
	}
}

func TestCancelOrderIdempotentReplay(t *testing.T) {
	env := servetest.Start(t, "orders")
	p := place(t, env)
	path := "/api/orders/" + p.OrderID + "/cancel"
	first := env.Post(t, path, `{}`, "Idempotency-Key", "cancel-1")
	if first.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", first.Status, first.Body)
	}
	// The replay answers as the first time, not 409 for an already
	// cancelled order.
	again := env.Post(t, path, `{}`, "Idempotency-Key", "cancel-1")
	if again.Status != http.StatusAccepted || string(again.Body) != string(first.Body) {
		t.Fatalf("replay: %d %s", again.Status, again.Body)
	}
	if n := len(env.Events(t, order.Stream(p.OrderID))); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}
