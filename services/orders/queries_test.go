package orders_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

type orderItem struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

type orderView struct {
	OrderID         string      `json:"order_id"`
	CustomerID      string      `json:"customer_id"`
	Status          string      `json:"status"`
	Items           []orderItem `json:"items"`
	TotalCents      int64       `json:"total_cents"`
	Currency        string      `json:"currency"`
	ShippingAddress address     `json:"shipping_address"`
	SagaID          string      `json:"saga_id"`
	ShipmentID      string      `json:"shipment_id"`
	Reason          string      `json:"reason"`
	CreatedAt       time.Time   `json:"created_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
	Version         int64       `json:"version"`
}

// TestPlaceThenRead: a placed order is visible on the query side within a
// second, pending, with its items, total and address.
func TestPlaceThenRead(t *testing.T) {
	env := servetest.Start(t, "orders")
	start := time.Now()
	p := place(t, env)
	res := env.Eventually(t, 10*time.Second, "/api/orders/"+p.OrderID, func(r servetest.Response) bool {
		return r.Status == http.StatusOK
	})
	var got orderView
	res.JSON(t, &got)
	wantItems := []orderItem{{"SKU-1", 2, 1299}, {"SKU-2", 1, 0}}
	wantAddr := address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
	if got.OrderID != p.OrderID || got.SagaID != p.SagaID || got.CustomerID != "c-42" || got.Status != "pending" ||
		!slices.Equal(got.Items, wantItems) || got.TotalCents != 2*1299 || got.Currency != "USD" || got.ShippingAddress != wantAddr ||
		got.ShipmentID != "" || got.Reason != "" || got.Version != 1 {
		t.Fatalf("order %+v", got)
	}
	for _, ts := range []time.Time{got.CreatedAt, got.UpdatedAt} {
		if ts.Location() != time.UTC || ts.Before(start.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
			t.Fatalf("timestamp %v is not a recent UTC time: %s", ts, res.Body)
		}
	}

	// A cancellation shows up too, with its reason.
	if res := env.Post(t, "/api/orders/"+p.OrderID+"/cancel", `{}`); res.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	env.Eventually(t, 10*time.Second, "/api/orders/"+p.OrderID, func(r servetest.Response) bool {
		var o orderView
		r.JSON(t, &o)
		return o.Status == "cancelled" && o.Reason == "cancelled_by_customer" && o.Version == 2
	})
}

func TestReadUnknownOrder(t *testing.T) {
	env := servetest.Start(t, "orders")
	place(t, env)
	for _, id := range []string{uuid.NewString(), "not-a-uuid", "123"} {
		t.Run(id, func(t *testing.T) {
			env.Get(t, "/api/orders/"+id).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
		})
	}
}

func orderBody(customer string) string {
	return fmt.Sprintf(`{"customer_id": %q, "items": [{"sku": "SKU-1", "quantity": 1, "unit_price_cents": 100}],
		"shipping_address": {"name": "N", "line1": "L", "city": "C", "postal_code": "1", "country": "US"}}`, customer)
}

func ids(views []orderView) []string {
	out := make([]string, len(views))
	for i, v := range views {
		out[i] = v.OrderID
	}
	return out
}

// TestListOrders filters by customer and status and pages through the
// results, newest first.
func TestListOrders(t *testing.T) {
	env := servetest.Start(t, "orders")
	var c1, c2 []string // order ids, oldest first
	for i := range 7 {
		customer := "c-1"
		if i%3 == 2 {
			customer = "c-2"
		}
		res := env.Post(t, "/api/orders", orderBody(customer))
		if res.Status != http.StatusAccepted {
			t.Fatalf("place: %d %s", res.Status, res.Body)
		}
		var p placed
		res.JSON(t, &p)
		if customer == "c-1" {
			c1 = append(c1, p.OrderID)
		} else {
			c2 = append(c2, p.OrderID)
		}
	}
	if res := env.Post(t, "/api/orders/"+c1[0]+"/cancel", `{}`); res.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	env.Eventually(t, 10*time.Second, "/api/orders?status=cancelled", func(r servetest.Response) bool {
		var p httpx.Page[orderView]
		r.JSON(t, &p)
		return len(p.Items) == 1
	})

	reversed := func(s []string) []string { s = slices.Clone(s); slices.Reverse(s); return s }
	tests := []struct {
		name, path string
		want       []string
		sizes      []int
	}{
		{"c-1 by twos", "/api/orders?customer_id=c-1&limit=2", reversed(c1), []int{2, 2, 1}},
		{"c-2", "/api/orders?customer_id=c-2", reversed(c2), []int{2}},
		{"all by threes", "/api/orders?limit=3", nil, []int{3, 3, 1}},
		{"cancelled", "/api/orders?status=cancelled", []string{c1[0]}, []int{1}},
		{"pending c-1", "/api/orders?status=pending&customer_id=c-1&limit=1", reversed(c1[1:]), []int{1, 1, 1, 1}},
		{"nothing confirmed", "/api/orders?status=confirmed", []string{}, []int{0}},
		{"unknown customer", "/api/orders?customer_id=c-404", []string{}, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, sizes := servetest.Pages[orderView](t, env, tt.path)
			if !slices.Equal(sizes, tt.sizes) {
				t.Fatalf("page sizes %v, want %v", sizes, tt.sizes)
			}
			for i := 1; i < len(got); i++ {
				a, b := got[i-1], got[i]
				if a.CreatedAt.Before(b.CreatedAt) || (a.CreatedAt.Equal(b.CreatedAt) && a.OrderID < b.OrderID) {
					t.Fatalf("not newest first at %d: %v then %v", i, a.CreatedAt, b.CreatedAt)
				}
			}
			if tt.want == nil {
				all := append(slices.Clone(c1), c2...)
				gotIDs := ids(got)
				slices.Sort(all)
				slices.Sort(gotIDs)
				if !slices.Equal(gotIDs, all) {
					t.Fatalf("listed %v, want every order %v", gotIDs, all)
				}
				return
			}
			// Placed one after the other, the orders are listed in the
			// reverse order of placing.
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("listed %v, want %v", ids(got), tt.want)
			}
		})
	}
}

func TestListOrdersBadParameters(t *testing.T) {
	env := servetest.Start(t, "orders")
	env.WantBadQueries(t, "/api/orders", append(servetest.BadLimits(), []servetest.BadQuery{
		{Name: "unknown status", Query: "status=lost", Fields: []string{"status"}},
		{Name: "status in capitals", Query: "status=PENDING", Fields: []string{"status"}},
		{Name: "bad customer", Query: "customer_id=" + url.QueryEscape("c 42"), Fields: []string{"customer_id"}},
		{Name: "customer too long", Query: "customer_id=" + strings.Repeat("c", 65), Fields: []string{"customer_id"}},
		{Name: "all at once", Query: "limit=-1&status=lost&customer_id=%21", Fields: []string{"limit", "customer_id", "status"}},
		{Name: "after garbage", Query: "after=!!", Fields: []string{"after"}},
		{Name: "after of another list", Query: "after=eyJza3UiOiJTS1UtMSJ9", Fields: []string{"after"}},
	}...))
}
