package inventory

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/stockview"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// QueryRoutes registers the inventory query endpoints on r, reading the
// stock read model through db:
//
//	GET /api/inventory         list, by sku
//	GET /api/inventory/{sku}   one sku
func QueryRoutes(r chi.Router, db projections.Querier) {
	q := queries{db: db}
	r.Get("/api/inventory", q.list)
	r.Get("/api/inventory/{sku}", q.get)
}

type queries struct {
	db projections.Querier
}

func (q queries) get(w http.ResponseWriter, r *http.Request) {
	sku := chi.URLParam(r, "sku")
	v, err := stockview.Get(r.Context(), q.db, sku)
	if errors.Is(err, domain.ErrNotFound) {
		err = httpx.NotFoundProblem("stock item", sku)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, r, http.StatusOK, v)
}

func (q queries) list(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	limit, err := projections.ParseLimit(params.Get("limit"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	items, next, err := stockview.List(r.Context(), q.db, limit, params.Get("after"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, r, http.StatusOK, httpx.NewPage(items, next))
}
