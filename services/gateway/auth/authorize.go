package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Owners finds who owns a resource a customer asks about; the gateway
// implements it with the query endpoints of the owning services.
type Owners interface {
	// OrderCustomer returns the customer_id of the order; an error
	// wrapping domain.ErrNotFound when there is no such order.
	OrderCustomer(ctx context.Context, orderID string) (string, error)
	// ShipmentCustomer returns the customer_id of the order the shipment
	// is for; an error wrapping domain.ErrNotFound when there is no such
	// shipment.
	ShipmentCustomer(ctx context.Context, shipmentID string) (string, error)
}

// customerRules are what a customer may do, in API.md's words ("may
// create and read and cancel only its own orders, read inventory, read
// its shipments"). A request no rule matches is forbidden: restock,
// dispatch, /api/sagas/..., /admin/... and any route added later, until
// a rule here allows it. An admin may do everything (Authorize).
var customerRules = []rule{
	{http.MethodPost, "/api/orders", placeOwnOrder},             // create only its own orders
	{http.MethodGet, "/api/orders", listOwnOrders},              // its list shows only its own
	{http.MethodGet, "/api/orders/{id}", ownOrder},              // read only its own
	{http.MethodPost, "/api/orders/{id}/cancel", ownOrder},      // cancel only its own
	{http.MethodGet, "/api/inventory", allowed},                 // read inventory
	{http.MethodGet, "/api/inventory/**", allowed},              // (every stock item)
	{http.MethodGet, "/api/shipments", listShipmentsOfOwnOrder}, // its shipments: of one of its orders
	{http.MethodGet, "/api/shipments/{id}", ownShipment},        // read only its own
}

// rule allows a customer a method on the paths matching pattern, if its
// check passes. In pattern, "{name}" matches one path segment and "**"
// (last) one or more.
type rule struct {
	method  string
	pattern string
	check   check
}

// check decides a customer's request that matched a rule; it returns the
// request to forward or the refusal.
type check func(ctx context.Context, req request) (*http.Request, error)

// request is what a check decides on.
type request struct {
	*http.Request
	customer string            // the customer's id, its subject
	params   map[string]string // the pattern's {name} segments, unescaped
	owners   Owners
}

// Authorize decides whether p may make r (its method and path, under /api
// or /admin, and for some requests its query or body) and returns the
// request to forward: r itself, or a copy narrowed to p's own data (a
// customer's order list gets customer_id=<its subject>) or carrying the
// body that had to be read. A refusal wraps ErrForbidden (403) in a
// *domain.Refusal saying why; an order or shipment that does not exist
// wraps domain.ErrNotFound (404); a body over 1 MiB or a query that cannot
// be parsed is a *httpx.Problem (413, 400); an Owners failure is returned
// wrapped. WriteError answers all of them.
func Authorize(ctx context.Context, p Principal, r *http.Request, owners Owners) (*http.Request, error) {
	switch p.Role {
	case RoleAdmin:
		return r, nil
	case RoleCustomer:
	default:
		return nil, forbidden("role %q may not make any request", p.Role)
	}
	segments, ok := pathSegments(r.URL)
	if !ok {
		return nil, forbidden("the path %s is not in canonical form", truncate(r.URL.EscapedPath()))
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet // the same data without the body
	}
	for _, rl := range customerRules {
		if rl.method != method {
			continue
		}
		params, ok := match(rl.pattern, segments)
		if !ok {
			continue
		}
		return rl.check(ctx, request{Request: r, customer: p.Subject, params: params, owners: owners})
	}
	return nil, forbidden("a customer may not %s %s", r.Method, truncate(r.URL.Path))
}

// allowed lets the request through unchanged.
func allowed(_ context.Context, req request) (*http.Request, error) { return req.Request, nil }

// ownOrder allows a request on an order of the customer's.
func ownOrder(ctx context.Context, req request) (*http.Request, error) {
	id := req.params["id"]
	if !domain.ValidUUID(id) {
		// The orders service answers the same for an id that is not one.
		return nil, domain.Refuse(domain.ErrNotFound, "no order with id %q", truncate(id))
	}
	owner, err := req.owners.OrderCustomer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("auth: owner of order %s: %w", id, err)
	}
	if owner != req.customer {
		return nil, forbidden("order %s is not one of your orders", id)
	}
	return req.Request, nil
}

// ownShipment allows a request on a shipment of one of the customer's
// orders.
func ownShipment(ctx context.Context, req request) (*http.Request, error) {
	id := req.params["id"]
	if !domain.ValidUUID(id) {
		return nil, domain.Refuse(domain.ErrNotFound, "no shipment with id %q", truncate(id))
	}
	owner, err := req.owners.ShipmentCustomer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("auth: owner of shipment %s: %w", id, err)
	}
	if owner != req.customer {
		return nil, forbidden("shipment %s is not for one of your orders", id)
	}
	return req.Request, nil
}

// listOwnOrders narrows the order list to the customer's own: its
// customer_id filter is forced to the customer's id, and a filter naming
// another customer is refused rather than silently replaced.
func listOwnOrders(_ context.Context, req request) (*http.Request, error) {
	q, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return nil, httpx.BadRequest(httpx.SlugBadRequest, "the query string cannot be parsed")
	}
	for _, c := range q["customer_id"] {
		if c != req.customer {
			return nil, forbidden("a customer may list only its own orders: customer_id must be %s", req.customer)
		}
	}
	q.Set("customer_id", req.customer)
	out := req.Clone(req.Context())
	out.URL.RawQuery = q.Encode()
	out.RequestURI = out.URL.RequestURI()
	return out, nil
}

// listShipmentsOfOwnOrder allows the shipment list filtered to one of the
// customer's orders. An order that does not exist is not one of its
// orders: the list answers 403, as lists have no 404.
func listShipmentsOfOwnOrder(ctx context.Context, req request) (*http.Request, error) {
	q, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return nil, httpx.BadRequest(httpx.SlugBadRequest, "the query string cannot be parsed")
	}
	ids := q["order_id"]
	if len(ids) != 1 || !domain.ValidUUID(ids[0]) {
		return nil, forbidden("a customer lists the shipments of one of its orders: give order_id once")
	}
	owner, err := req.owners.OrderCustomer(ctx, ids[0])
	switch {
	case errors.Is(err, domain.ErrNotFound):
		return nil, forbidden("order %s is not one of your orders", ids[0])
	case err != nil:
		return nil, fmt.Errorf("auth: owner of order %s: %w", ids[0], err)
	case owner != req.customer:
		return nil, forbidden("order %s is not one of your orders", ids[0])
	}
	return req.Request, nil
}

// placeOwnOrder allows placing an order only for the customer itself:
// the body's customer_id must be its id. The body is read (at most
// httpx.MaxBodyBytes) and put back for forwarding.
//
// A body from which no customer_id string can be read (not a JSON object,
// no customer_id, not a string) is forwarded: the orders service's strict
// decoder refuses every such body with 400 and places nothing, and the
// client learns what is wrong with it. The check reads keys exactly as
// that decoder does (case-sensitive, escapes resolved), and a body with a
// repeated key, which could read differently to two parsers, is refused
// by the service.
func placeOwnOrder(_ context.Context, req request) (*http.Request, error) {
	body, err := httpx.ReadBody(req.Request)
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	setBody(out, body)
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return out, nil
	}
	raw, ok := fields["customer_id"]
	if !ok {
		return out, nil
	}
	var customer string
	if json.Unmarshal(raw, &customer) != nil {
		return out, nil
	}
	if customer != req.customer {
		return nil, forbidden("a customer may place orders only for itself: customer_id must be %s", req.customer)
	}
	return out, nil
}

// setBody makes body r's body, readable again on a retry (GetBody).
func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	}
}

// pathSegments splits u's path into its segments, unescaped. ok is false
// for a path that is not canonical: an empty segment (a double or
// trailing slash), "." or "..", or a segment with an escaped slash, which
// an upstream or a proxy between could resolve differently from the
// rules. Escaped paths are split before unescaping, so "%2F" cannot
// forge a segment boundary.
func pathSegments(u *url.URL) ([]string, bool) {
	escaped := u.EscapedPath()
	if !strings.HasPrefix(escaped, "/") {
		return nil, false
	}
	parts := strings.Split(escaped[1:], "/")
	for i, part := range parts {
		seg, err := url.PathUnescape(part)
		if err != nil || seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "/") {
			return nil, false
		}
		parts[i] = seg
	}
	return parts, true
}

// match matches path segments against pattern, returning its {name}
// segments.
func match(pattern string, segments []string) (map[string]string, bool) {
	pat := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	params := map[string]string{}
	for i, p := range pat {
		if p == "**" {
			return params, len(segments) > i
		}
		if i >= len(segments) {
			return nil, false
		}
		switch {
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			params[p[1:len(p)-1]] = segments[i]
		case p != segments[i]:
			return nil, false
		}
	}
	return params, len(segments) == len(pat)
}

// forbidden is a refusal wrapping ErrForbidden, its detail formatted as by
// fmt.Sprintf.
func forbidden(format string, args ...any) error {
	return domain.Refuse(ErrForbidden, format, args...)
}

// truncate bounds client-chosen text quoted in a problem detail.
func truncate(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
