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
//	GET /api/orders        list, filtered by customer_id and status (not to be stored by caches)
//	GET /api/orders/{id}   one order, with an ETag from its version; If-None-Match is answered 304
func QueryRoutes(r chi.Router, db projections.Querier) {
	r.Get("/api/orders", httpx.NoStore(httpx.ListHandler(db, orderFilter, orderview.List)))
	r.Get("/api/orders/{id}", httpx.VersionedGetHandler(db, "id", "order", orderview.Get, orderVersion))
}

func orderVersion(v orderview.View) int64 { return v.Version }

func orderFilter(params url.Values) (orderview.Filter, error) {
	f := orderview.Filter{CustomerID: params.Get("customer_id"), Status: params.Get("status")}
	return f, f.Validate()
}
