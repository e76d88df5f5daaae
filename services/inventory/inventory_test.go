package inventory_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type restocked struct {
	SKU     string `json:"sku"`
	Version int64  `json:"version"`
}

func TestRestock(t *testing.T) {
	env := servetest.Start(t, "inventory")
	for i, qty := range []string{"50", "1000000"} {
		rid := "req-restock-" + qty
		res := env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity": `+qty+`}`, httpx.RequestIDHeader, rid)
		if res.Status != http.StatusAccepted {
			t.Fatalf("restock %s: %d %s", qty, res.Status, res.Body)
		}
		var r restocked
		res.JSON(t, &r)
		if r.SKU != "SKU-1" || r.Version != int64(i+1) {
			t.Fatalf("answer %+v, want SKU-1 version %d", r, i+1)
		}
		if loc := res.Header.Get("Location"); loc != "/api/inventory/SKU-1" {
			t.Fatalf("Location %q", loc)
		}
		if got := res.Header.Get(httpx.RequestIDHeader); got != rid {
			t.Fatalf("X-Request-Id %q", got)
		}
		evs := env.Events(t, inventory.Stream("SKU-1"))
		if len(evs) != i+1 {
			t.Fatalf("%d events, want %d", len(evs), i+1)
		}
		last := evs[i]
		var data struct {
			SKU      string `json:"sku"`
			Quantity int    `json:"quantity"`
		}
		if err := json.Unmarshal(last.Data, &data); err != nil {
			t.Fatal(err)
		}
		if last.Type != "StockRestocked" || data.SKU != "SKU-1" || qty != jsonInt(data.Quantity) ||
			last.Metadata.CorrelationID != rid || last.Metadata.RequestID != rid {
			t.Fatalf("event %s %s %+v", last.Type, last.Data, last.Metadata)
		}
	}
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestRestockBadRequests(t *testing.T) {
	env := servetest.Start(t, "inventory")
	tests := []struct {
		name, path, body, contentType string
		status                        int
		slug                          string
		fields                        []string
	}{
		{"zero", "/api/inventory/SKU-1/restock", `{"quantity":0}`, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"negative", "/api/inventory/SKU-1/restock", `{"quantity":-5}`, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"too many", "/api/inventory/SKU-1/restock", `{"quantity":1000001}`, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"missing", "/api/inventory/SKU-1/restock", `{}`, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"empty body", "/api/inventory/SKU-1/restock", ``, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"string", "/api/inventory/SKU-1/restock", `{"quantity":"5"}`, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"fraction", "/api/inventory/SKU-1/restock", `{"quantity":2.5}`, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"huge", "/api/inventory/SKU-1/restock", `{"quantity":1e40}`, "", 400, httpx.SlugValidation, []string{"quantity"}},
		{"unknown field", "/api/inventory/SKU-1/restock", `{"quantity":5,"warehouse":"w1"}`, "", 400, httpx.SlugValidation, []string{"warehouse"}},
		{"malformed", "/api/inventory/SKU-1/restock", `{"quantity":5`, "", 400, httpx.SlugMalformedJSON, nil},
		{"trailing", "/api/inventory/SKU-1/restock", `{"quantity":5} 7`, "", 400, httpx.SlugMalformedJSON, nil},
		{"bad sku", "/api/inventory/bad%20sku/restock", `{"quantity":5}`, "", 400, httpx.SlugValidation, []string{"sku"}},
		{"sku too long", "/api/inventory/" + strings.Repeat("s", 65) + "/restock", `{"quantity":5}`, "", 400, httpx.SlugValidation, []string{"sku"}},
		{"bad sku and quantity", "/api/inventory/bad!/restock", `{"quantity":0}`, "", 400, httpx.SlugValidation, []string{"sku", "quantity"}},
		{"too large", "/api/inventory/SKU-1/restock", `{"quantity":5,"pad":"` + strings.Repeat("p", httpx.MaxBodyBytes) + `"}`, "", 413, httpx.SlugPayloadTooLarge, nil},
		{"form body", "/api/inventory/SKU-1/restock", `quantity=5`, "application/x-www-form-urlencoded", 400, httpx.SlugMalformedJSON, nil},
		{"xml body", "/api/inventory/SKU-1/restock", `<quantity>5</quantity>`, "application/xml", 415, httpx.SlugUnsupportedMediaType, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.contentType != "" {
				header = []string{"Content-Type", tt.contentType}
			}
			env.AppendsNothing(t, func() {
				env.Post(t, tt.path, tt.body, header...).WantProblem(t, tt.status, tt.slug, tt.fields...)
			})
		})
	}
}

func TestRestockIdempotency(t *testing.T) {
	env := servetest.Start(t, "inventory")
	first := env.Post(t, "/api/inventory/SKU-9/restock", `{"quantity":5}`, "Idempotency-Key", "restock-1")
	if first.Status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	again := env.Post(t, "/api/inventory/SKU-9/restock", `{"quantity":5}`, "Idempotency-Key", "restock-1")
	if again.Status != first.Status || string(again.Body) != string(first.Body) ||
		again.Header.Get("Location") != first.Header.Get("Location") {
		t.Fatalf("replay differs: %d %s vs %d %s", again.Status, again.Body, first.Status, first.Body)
	}
	env.Post(t, "/api/inventory/SKU-9/restock", `{"quantity":6}`, "Idempotency-Key", "restock-1").
		WantProblem(t, http.StatusConflict, httpx.SlugIdempotencyKeyReused)
	if n := len(env.Events(t, inventory.Stream("SKU-9"))); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}

	// The same key on another sku is another command.
	other := env.Post(t, "/api/inventory/SKU-10/restock", `{"quantity":5}`, "Idempotency-Key", "restock-1")
	if other.Status != http.StatusAccepted {
		t.Fatalf("other sku: %d %s", other.Status, other.Body)
	}
	if n := len(env.Events(t, inventory.Stream("SKU-10"))); n != 1 {
		t.Fatalf("%d events on SKU-10, want 1", n)
	}
}

// TestRestockAsCurlSendsIt: `curl -d '{"quantity":5}'` declares the body as
// a form; a JSON body typed at a shell must still be accepted.
func TestRestockAsCurlSendsIt(t *testing.T) {
	env := servetest.Start(t, "inventory")
	res := env.Post(t, "/api/inventory/SKU-9/restock", `{"quantity":5}`, "Content-Type", "application/x-www-form-urlencoded")
	if res.Status != http.StatusAccepted {
		t.Fatalf("restock as curl -d sends it: %d %s", res.Status, res.Body)
	}
	if evs := env.Events(t, inventory.Stream("SKU-9")); len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
}
