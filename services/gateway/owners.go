package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// owners tells auth.Authorize whose an order or a shipment is, by asking
// the services that own them, as the client would (through the breakers,
// with the request's id).
type owners struct{ g *Gateway }

// OrderCustomer returns the customer_id of the order. An order that does
// not exist (yet, in the read model) is domain.ErrNotFound, with the
// orders service's own 404 problem.
func (o owners) OrderCustomer(ctx context.Context, orderID string) (string, error) {
	var v struct {
		CustomerID string `json:"customer_id"`
	}
	if err := o.g.getJSON(ctx, Orders, "/api/orders/"+url.PathEscape(orderID), &v); err != nil {
		return "", err
	}
	return v.CustomerID, nil
}

// ShipmentCustomer returns the customer_id of the order the shipment is
// for.
func (o owners) ShipmentCustomer(ctx context.Context, shipmentID string) (string, error) {
	var v struct {
		OrderID string `json:"order_id"`
	}
	if err := o.g.getJSON(ctx, Shipping, "/api/shipments/"+url.PathEscape(shipmentID), &v); err != nil {
		return "", err
	}
	return o.OrderCustomer(ctx, v.OrderID)
}

// notFound is an upstream's 404: domain.ErrNotFound for the callers that
// branch on it, and the upstream's problem for the client.
type notFound struct{ p *httpx.Problem }

func (e notFound) Error() string   { return e.p.Error() }
func (e notFound) Unwrap() []error { return []error{domain.ErrNotFound, e.p} }

// getJSON GETs path from service and decodes a 200 answer into v. A 404
// is a notFound; any other answer or failure is a *httpx.Problem for the
// client: the service's own problem (a 503 with its Retry-After, say), or
// the gateway's 503 when the service could not answer.
func (g *Gateway) getJSON(ctx context.Context, service, path string, v any) error {
	up := g.upstreams[service]
	h := http.Header{"Accept": {"application/json"}}
	if id := httpx.RequestIDFrom(ctx); id != "" {
		h.Set(httpx.RequestIDHeader, id)
	}
	res, err := up.do(ctx, call{method: http.MethodGet, target: path, header: h})
	if err != nil {
		return fmt.Errorf("GET %s from %s: %w: %w", path, service, up.problem(http.MethodGet, err), err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("GET %s from %s: %w: %w", path, service, up.problem(http.MethodGet, err), err)
	}
	switch {
	case res.StatusCode == http.StatusOK:
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("GET %s from %s: decode: %w", path, service, err)
		}
		return nil
	case res.StatusCode == http.StatusNotFound:
		return notFound{upstreamProblem(res, body)}
	default:
		return fmt.Errorf("GET %s from %s: %w", path, service, upstreamProblem(res, body))
	}
}

// upstreamProblem is the problem an upstream answered, as it answered it;
// an answer that is no problem document becomes a 503 (a service that
// answers so is not itself).
func upstreamProblem(res *http.Response, body []byte) *httpx.Problem {
	var p httpx.Problem
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if mt == "application/problem+json" && json.Unmarshal(body, &p) == nil && p.Status == res.StatusCode && p.Type != "" {
		if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && ra > 0 {
			p.RetryAfter = ra
		}
		return &p
	}
	u := httpx.NewProblem(http.StatusServiceUnavailable, httpx.SlugUnavailable, "a service answered unexpectedly; retry shortly")
	u.RetryAfter = 1
	return u
}
