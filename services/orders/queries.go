package orders

import (
	"net/url"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// QueryRoutes registers the orders query endpoints on r, reading the
// orders read model through db:
//
//	GET /api/orders        list, filtered by customer_id and status
//	GET /api/orders/{id}   one order
func QueryRoutes(r chi.Router, db projections.Querier) {
	r.Get("/api/orders", httpx.ListHandler(db, orderFilter, orderview.List))
	r.Get("/api/orders/{id}", httpx.GetHandler(db, "id", "order", orderview.Get))
}

func orderFilter(params url.Values) (orderview.Filter, error) {
	f := orderview.Filter{CustomerID: params.Get("customer_id"), Status: params.Get("status")}
	return f, f.Validate()
}
