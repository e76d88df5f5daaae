package stacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/sagas"
)

// contractFunc is a Contract made of a function.
type contractFunc func(method, path string, status int) []string

func (f contractFunc) CheckResponse(method, path string, status int, _ map[string][]string, _ []byte) []string {
	return f(method, path, status)
}

// serve starts h as the process "orders" and returns a client of it.
func serve(t *testing.T, h http.Handler, contract Contract) *Client {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return New(Config{
		Base: func(name string) (string, bool) {
			return hs.URL, name == "orders"
		},
		Within:   5 * time.Second,
		Contract: contract,
	})
}

func TestPlaceOrder(t *testing.T) {
	const orderID = "0b4c3f3e-7f55-4a39-9a0c-3d2f1a9e6b11"
	sagaID := sagas.SagaID(orderID)
	tests := []struct {
		name     string
		status   int
		body     string
		contract Contract
		wantErr  string // "" for success
	}{
		{"accepted", http.StatusAccepted, fmt.Sprintf(`{"order_id": %q, "saga_id": %q, "status": "pending"}`, orderID, sagaID), nil, ""},
		{"refused", http.StatusConflict, `{}`, nil, "409"},
		{"saga id not derived from the order id", http.StatusAccepted, fmt.Sprintf(`{"order_id": %q, "saga_id": %q, "status": "pending"}`, orderID, orderID), nil, "POST /api/orders"},
		{"not pending", http.StatusAccepted, fmt.Sprintf(`{"order_id": %q, "saga_id": %q, "status": "confirmed"}`, orderID, sagaID), nil, "POST /api/orders"},
		{"not JSON", http.StatusAccepted, `order placed`, nil, "POST /api/orders"},
		{"breaks the contract", http.StatusAccepted, fmt.Sprintf(`{"order_id": %q, "saga_id": %q, "status": "pending"}`, orderID, sagaID),
			contractFunc(func(method, path string, status int) []string {
				return []string{fmt.Sprintf("%s %s %d: no", method, path, status)}
			}), "contract: POST /api/orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got struct {
				CustomerID string `json:"customer_id"`
				Items      []struct {
					SKU      string `json:"sku"`
					Quantity int    `json:"quantity"`
				} `json:"items"`
				ShippingAddress struct {
					Country string `json:"country"`
				} `json:"shipping_address"`
			}
			c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/api/orders" || r.Header.Get("Content-Type") != "application/json" {
					http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
					return
				}
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					http.Error(w, err.Error(), http.StatusTeapot)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}), tt.contract)
			lines := []Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}
			p, err := c.PlaceOrder("c-7", "AQ", lines...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.OrderID != orderID || p.SagaID != sagaID || p.Country != "AQ" || !slices.Equal(p.Lines, lines) {
				t.Errorf("placed %+v", p)
			}
			if got.CustomerID != "c-7" || got.ShippingAddress.Country != "AQ" || len(got.Items) != 2 ||
				got.Items[0].SKU != "A" || got.Items[0].Quantity != 2 || got.Items[1].SKU != "B" || got.Items[1].Quantity != 1 {
				t.Errorf("the server got %+v", got)
			}
		})
	}
}

func TestPlaceOrderNotRunning(t *testing.T) {
	c := New(Config{Base: func(string) (string, bool) { return "", false }, Within: time.Second})
	if _, err := c.PlaceOrder("c-7", "US", Line{SKU: "A", Quantity: 1}); err == nil || !strings.Contains(err.Error(), "orders does not run") {
		t.Fatalf("error %v, want orders does not run", err)
	}
}

// TestList pages through a list of 7 items served 3 at a time, whether
// the path has a query or not.
func TestList(t *testing.T) {
	var requests atomic.Int32
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		q := r.URL.Query()
		if q.Get("limit") != "500" || (r.URL.Path == "/api/q" && q.Get("status") != "failed") {
			http.Error(w, "bad query "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		from := 0
		if a := q.Get("after"); a != "" {
			from, _ = strconv.Atoi(strings.TrimPrefix(a, "cursor "))
		}
		page := struct {
			Items []int  `json:"items"`
			Next  string `json:"next,omitempty"`
		}{}
		for i := from; i < 7 && i < from+3; i++ {
			page.Items = append(page.Items, i)
		}
		if from+3 < 7 {
			page.Next = fmt.Sprintf("cursor %d", from+3)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}), nil)
	for _, path := range []string{"/api/list", "/api/q?status=failed"} {
		requests.Store(0)
		got := List[int](t, c, "orders", path)
		if !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6}) || requests.Load() != 3 {
			t.Errorf("%s: %v in %d requests, want 0..6 in 3", path, got, requests.Load())
		}
	}
}

func TestMetric(t *testing.T) {
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP x_total x\nx_total_other 9\nx_total 42.5\ny{a=\"b\"} 1\n")
	}), nil)
	if got := c.Metric(t, "orders", "x_total"); got != 42.5 {
		t.Errorf("x_total %v, want 42.5", got)
	}
}

func TestSagaHistory(t *testing.T) {
	v := Saga{
		Steps: []Step{{Name: "a", Status: "succeeded"}, {Name: "b", Status: "failed"}},
		History: []Entry{
			{Event: "X", Detail: map[string]any{"attempt": float64(1), "from": "inventory"}},
			{Event: "X", Detail: map[string]any{"attempt": float64(2), "compensation": true}},
		},
	}
	if got := v.StepStatuses(); got != "a:succeeded b:failed" {
		t.Errorf("StepStatuses %q", got)
	}
	if got := v.Events(); !slices.Equal(got, []string{"X", "X"}) {
		t.Errorf("Events %v", got)
	}
	for _, tt := range []struct {
		event  string
		detail []any
		want   bool
	}{
		{"X", nil, true},
		{"Y", nil, false},
		{"X", []any{"attempt", 2, "compensation", true}, true},
		{"X", []any{"attempt", 1, "compensation", true}, false},
		{"X", []any{"from", "inventory"}, true},
		{"X", []any{"from", "shipping"}, false},
	} {
		if got := v.Has(tt.event, tt.detail...); got != tt.want {
			t.Errorf("Has(%s, %v) = %v, want %v", tt.event, tt.detail, got, tt.want)
		}
	}
}
