package shipping

import (
	"net/url"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/shipmentview"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// QueryRoutes registers the shipping query endpoints on r, reading the
// shipments read model through db:
//
//	GET /api/shipments        list, filtered by order_id (not to be stored by caches)
//	GET /api/shipments/{id}   one shipment, with an ETag from its version; If-None-Match is answered 304
func QueryRoutes(r chi.Router, db projections.Querier) {
	r.Get("/api/shipments", httpx.NoStore(httpx.ListHandler(db, shipmentFilter, shipmentview.List)))
	r.Get("/api/shipments/{id}", httpx.VersionedGetHandler(db, "id", "shipment", shipmentview.Get, shipmentVersion))
}

func shipmentVersion(v shipmentview.View) int64 { return v.Version }

func shipmentFilter(params url.Values) (shipmentview.Filter, error) {
	f := shipmentview.Filter{OrderID: params.Get("order_id")}
	return f, f.Validate()
}
