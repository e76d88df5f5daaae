package inventory

import (
	"context"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/stockview"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// QueryRoutes registers the inventory query endpoints on r, reading the
// stock read model through db:
//
//	GET /api/inventory         list, by sku (not to be stored by caches)
//	GET /api/inventory/{sku}   one sku, with an ETag from its version; If-None-Match is answered 304
func QueryRoutes(r chi.Router, db projections.Querier) {
	r.Get("/api/inventory", httpx.NoStore(httpx.ListHandler(db, nil, listStock)))
	r.Get("/api/inventory/{sku}", httpx.VersionedGetHandler(db, "sku", "stock item", stockview.Get, stockVersion))
}

func stockVersion(v stockview.View) int64 { return v.Version }

// listStock is stockview.List for httpx.ListHandler: the stock list has no
// filter.
func listStock(ctx context.Context, db projections.Querier, _ struct{}, limit int, after string) ([]stockview.View, string, error) {
	return stockview.List(ctx, db, limit, after)
}
