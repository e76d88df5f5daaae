package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Ids of the orders and shipments the tests' owners know.
const (
	orderC1    = "11111111-1111-4111-8111-111111111111" // customer c-1's
	orderC2    = "22222222-2222-4222-8222-222222222222" // customer c-2's
	orderNone  = "33333333-3333-4333-8333-333333333333" // no such order
	orderDown  = "44444444-4444-4444-8444-444444444444" // its lookup fails
	shipmentC1 = "55555555-5555-4555-8555-555555555555"
	shipmentC2 = "66666666-6666-4666-8666-666666666666"
	shipNone   = "77777777-7777-4777-8777-777777777777"
)

var errOrdersDown = fmt.Errorf("orders service: %w", domain.ErrUnavailable)

// owners answers from fixed tables, as the gateway's lookups against the
// read models would.
type owners struct {
	orders, shipments map[string]string
	lookups           int
}

func newOwners() *owners {
	return &owners{
		orders:    map[string]string{orderC1: "c-1", orderC2: "c-2"},
		shipments: map[string]string{shipmentC1: "c-1", shipmentC2: "c-2"},
	}
}

func (o *owners) OrderCustomer(_ context.Context, id string) (string, error) {
	o.lookups++
	if id == orderDown {
		return "", errOrdersDown
	}
	if c, ok := o.orders[id]; ok {
		return c, nil
	}
	return "", fmt.Errorf("order %s: %w", id, domain.ErrNotFound)
}

func (o *owners) ShipmentCustomer(_ context.Context, id string) (string, error) {
	o.lookups++
	if c, ok := o.shipments[id]; ok {
		return c, nil
	}
	return "", fmt.Errorf("shipment %s: %w", id, domain.ErrNotFound)
}

// Outcomes of Authorize.
const (
	allow     = "allow"     // forwarded unchanged
	rewrite   = "rewrite"   // forwarded with the query wantQuery
	forbid    = "forbidden" // ErrForbidden
	notFound  = "not found" // domain.ErrNotFound
	problem   = "problem"   // a *httpx.Problem of status wantStatus
	ownerDown = "owner down"
)

func TestAuthorize(t *testing.T) {
	customer := auth.Principal{Subject: "c-1", Role: auth.RoleCustomer}
	admin := auth.Principal{Subject: "ops", Role: auth.RoleAdmin}
	order := func(customerID string) string {
		return `{"customer_id":"` + customerID + `","items":[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}],` +
			`"shipping_address":{"name":"A","line1":"1 Main St","city":"X","postal_code":"1","country":"US"}}`
	}
	tests := []struct {
		name       string
		p          auth.Principal
		method     string
		target     string
		body       string
		want       string
		wantQuery  url.Values // for rewrite
		wantStatus int        // for problem
	}{
		// A customer places, reads and cancels only its own orders.
		{"place own order", customer, "POST", "/api/orders", order("c-1"), allow, nil, 0},
		{"place another's order", customer, "POST", "/api/orders", order("c-2"), forbid, nil, 0},
		{"place with an escaped key", customer, "POST", "/api/orders", `{"customer\u005fid":"c-2"}`, forbid, nil, 0},
		{"place with an escaped value", customer, "POST", "/api/orders", `{"customer_id":"c\u002d1"}`, allow, nil, 0},
		{"place without customer_id: the service says 400", customer, "POST", "/api/orders", `{"items":[]}`, allow, nil, 0},
		{"place with a differently cased key: the service says 400", customer, "POST", "/api/orders", `{"Customer_ID":"c-2"}`, allow, nil, 0},
		{"place with a body that is not JSON: the service says 400", customer, "POST", "/api/orders", `customer_id=c-2`, allow, nil, 0},
		{"place with a number for customer_id: the service says 400", customer, "POST", "/api/orders", `{"customer_id":2}`, allow, nil, 0},
		{"place with a body over 1 MiB", customer, "POST", "/api/orders",
			`{"customer_id":"c-1","pad":"` + strings.Repeat("x", httpx.MaxBodyBytes) + `"}`, problem, nil, http.StatusRequestEntityTooLarge},
		{"read own order", customer, "GET", "/api/orders/" + orderC1, "", allow, nil, 0},
		{"HEAD own order", customer, "HEAD", "/api/orders/" + orderC1, "", allow, nil, 0},
		{"read another's order", customer, "GET", "/api/orders/" + orderC2, "", forbid, nil, 0},
		{"read an order that does not exist", customer, "GET", "/api/orders/" + orderNone, "", notFound, nil, 0},
		{"read an order by an id that is not one", customer, "GET", "/api/orders/not-an-id", "", notFound, nil, 0},
		{"read an order whose owner cannot be looked up", customer, "GET", "/api/orders/" + orderDown, "", ownerDown, nil, 0},
		{"cancel own order", customer, "POST", "/api/orders/" + orderC1 + "/cancel", `{}`, allow, nil, 0},
		{"cancel another's order", customer, "POST", "/api/orders/" + orderC2 + "/cancel", `{}`, forbid, nil, 0},
		{"cancel an order that does not exist", customer, "POST", "/api/orders/" + orderNone + "/cancel", `{}`, notFound, nil, 0},
		{"delete an order", customer, "DELETE", "/api/orders/" + orderC1, "", forbid, nil, 0},
		// Its order list shows only its own.
		{"list orders", customer, "GET", "/api/orders", "", rewrite, url.Values{"customer_id": {"c-1"}}, 0},
		{"list orders with filters", customer, "GET", "/api/orders?status=pending&limit=5&after=abc", "", rewrite,
			url.Values{"customer_id": {"c-1"}, "status": {"pending"}, "limit": {"5"}, "after": {"abc"}}, 0},
		{"list own orders by customer_id", customer, "GET", "/api/orders?customer_id=c-1", "", rewrite, url.Values{"customer_id": {"c-1"}}, 0},
		{"list another's orders", customer, "GET", "/api/orders?customer_id=c-2", "", forbid, nil, 0},
		{"list own and another's orders", customer, "GET", "/api/orders?customer_id=c-1&customer_id=c-2", "", forbid, nil, 0},
		{"list orders with a broken query", customer, "GET", "/api/orders?customer_id=%zz", "", problem, nil, http.StatusBadRequest},
		// It reads inventory, and nothing more of it.
		{"list inventory", customer, "GET", "/api/inventory?limit=10", "", allow, nil, 0},
		{"read a stock item", customer, "GET", "/api/inventory/SKU-1", "", allow, nil, 0},
		{"restock", customer, "POST", "/api/inventory/SKU-1/restock", `{"quantity":5}`, forbid, nil, 0},
		// It reads its shipments.
		{"read own shipment", customer, "GET", "/api/shipments/" + shipmentC1, "", allow, nil, 0},
		{"read another's shipment", customer, "GET", "/api/shipments/" + shipmentC2, "", forbid, nil, 0},
		{"read a shipment that does not exist", customer, "GET", "/api/shipments/" + shipNone, "", notFound, nil, 0},
		{"list shipments of own order", customer, "GET", "/api/shipments?order_id=" + orderC1, "", allow, nil, 0},
		{"list shipments of another's order", customer, "GET", "/api/shipments?order_id=" + orderC2, "", forbid, nil, 0},
		{"list shipments of no order", customer, "GET", "/api/shipments?order_id=" + orderNone, "", forbid, nil, 0},
		{"list shipments of an order whose owner cannot be looked up", customer, "GET", "/api/shipments?order_id=" + orderDown, "", ownerDown, nil, 0},
		{"list all shipments", customer, "GET", "/api/shipments", "", forbid, nil, 0},
		{"list shipments of two orders", customer, "GET", "/api/shipments?order_id=" + orderC1 + "&order_id=" + orderC1, "", forbid, nil, 0},
		{"dispatch", customer, "POST", "/api/shipments/" + shipmentC1 + "/dispatch", `{}`, forbid, nil, 0},
		// Sagas and operations are for admins.
		{"read a saga", customer, "GET", "/api/sagas/" + orderC1, "", forbid, nil, 0},
		{"list sagas", customer, "GET", "/api/sagas", "", forbid, nil, 0},
		{"retry a saga", customer, "POST", "/api/sagas/" + orderC1 + "/retry", `{}`, forbid, nil, 0},
		{"list projections", customer, "GET", "/admin/projections", "", forbid, nil, 0},
		{"replay a projection", customer, "POST", "/admin/projections/orders/replay", `{}`, forbid, nil, 0},
		{"unknown path", customer, "GET", "/api/customers", "", forbid, nil, 0},
		// Paths that could be read two ways are refused.
		{"dot-dot segment", customer, "GET", "/api/inventory/../sagas", "", forbid, nil, 0},
		{"escaped dot-dot segment", customer, "GET", "/api/inventory/%2E%2E/sagas", "", forbid, nil, 0},
		{"escaped slash", customer, "GET", "/api/inventory/a%2Fb", "", forbid, nil, 0},
		{"double slash", customer, "GET", "/api//orders/" + orderC1, "", forbid, nil, 0},
		{"trailing slash", customer, "GET", "/api/orders/", "", forbid, nil, 0},
		// An admin may do everything, unchanged.
		{"admin lists every order", admin, "GET", "/api/orders?customer_id=c-2", "", allow, nil, 0},
		{"admin places for anyone", admin, "POST", "/api/orders", order("c-2"), allow, nil, 0},
		{"admin reads any order", admin, "GET", "/api/orders/" + orderC2, "", allow, nil, 0},
		{"admin restocks", admin, "POST", "/api/inventory/SKU-1/restock", `{"quantity":5}`, allow, nil, 0},
		{"admin dispatches", admin, "POST", "/api/shipments/" + shipmentC2 + "/dispatch", `{}`, allow, nil, 0},
		{"admin retries a saga", admin, "POST", "/api/sagas/" + orderC1 + "/retry", `{}`, allow, nil, 0},
		{"admin replays a projection", admin, "POST", "/admin/projections/orders/replay", `{}`, allow, nil, 0},
		// A principal without a known role may do nothing.
		{"unknown role", auth.Principal{Subject: "x", Role: "guest"}, "GET", "/api/inventory", "", forbid, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := httptest.NewRequest(tt.method, tt.target, body)
			originalURL := r.URL.String()
			fwd, err := auth.Authorize(t.Context(), tt.p, r, newOwners())
			switch tt.want {
			case allow, rewrite:
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if fwd.Method != tt.method || fwd.URL.Path != r.URL.Path {
					t.Fatalf("forwarded %s %s, want %s %s", fwd.Method, fwd.URL.Path, tt.method, r.URL.Path)
				}
				if tt.want == allow && fwd.URL.String() != originalURL {
					t.Fatalf("forwarded %s, want %s unchanged", fwd.URL, originalURL)
				}
				if tt.want == rewrite {
					if got := fwd.URL.Query(); got.Encode() != tt.wantQuery.Encode() {
						t.Fatalf("forwarded query %q, want %q", got.Encode(), tt.wantQuery.Encode())
					}
					if fwd.RequestURI != fwd.URL.RequestURI() {
						t.Fatalf("RequestURI %q does not follow the query %q", fwd.RequestURI, fwd.URL.RequestURI())
					}
				}
				got, err := io.ReadAll(fwd.Body)
				if err != nil || string(got) != tt.body {
					t.Fatalf("forwarded body %q (%v), want %q", got, err, tt.body)
				}
				if tt.body != "" && fwd.ContentLength != int64(len(tt.body)) {
					t.Fatalf("forwarded Content-Length %d, want %d", fwd.ContentLength, len(tt.body))
				}
			case forbid:
				var rf *domain.Refusal
				if !errors.Is(err, auth.ErrForbidden) || !errors.As(err, &rf) || rf.Detail == "" {
					t.Fatalf("got %v, want a refusal wrapping ErrForbidden", err)
				}
			case notFound:
				if !errors.Is(err, domain.ErrNotFound) || errors.Is(err, auth.ErrForbidden) {
					t.Fatalf("got %v, want ErrNotFound", err)
				}
			case problem:
				var p *httpx.Problem
				if !errors.As(err, &p) || p.Status != tt.wantStatus {
					t.Fatalf("got %v, want a %d problem", err, tt.wantStatus)
				}
			case ownerDown:
				if !errors.Is(err, errOrdersDown) || errors.Is(err, auth.ErrForbidden) {
					t.Fatalf("got %v, want the owner lookup's error", err)
				}
			default:
				t.Fatalf("bad test: want %q", tt.want)
			}
			if err != nil && fwd != nil {
				t.Fatalf("a refusal returned a request to forward too")
			}
		})
	}
}

// TestAuthorizeAdminNeedsNoLookups: an admin's requests are decided
// without asking the services who owns what.
func TestAuthorizeAdminNeedsNoLookups(t *testing.T) {
	o := newOwners()
	for _, target := range []string{"/api/orders/" + orderC2, "/api/shipments/" + shipmentC2, "/api/shipments?order_id=" + orderC2} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if fwd, err := auth.Authorize(t.Context(), auth.Principal{Subject: "ops", Role: auth.RoleAdmin}, r, o); err != nil || fwd != r {
			t.Fatalf("%s: %v, %v", target, fwd, err)
		}
	}
	if o.lookups != 0 {
		t.Fatalf("%d owner lookups for an admin", o.lookups)
	}
}
