package shipping

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/shipmentview"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// QueryRoutes registers the shipping query endpoints on r, reading the
// shipments read model through db:
//
//	GET /api/shipments        list, filtered by order_id
//	GET /api/shipments/{id}   one shipment
func QueryRoutes(r chi.Router, db projections.Querier) {
	q := queries{db: db}
	r.Get("/api/shipments", q.list)
	r.Get("/api/shipments/{id}", q.get)
}

type queries struct {
	db projections.Querier
}

func (q queries) get(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	v, err := shipmentview.Get(r.Context(), q.db, id)
	if errors.Is(err, domain.ErrNotFound) {
		err = httpx.NotFoundProblem("shipment", id)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, r, http.StatusOK, v)
}

func (q queries) list(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	limit, limitErr := projections.ParseLimit(params.Get("limit"))
	f := shipmentview.Filter{OrderID: params.Get("order_id")}
	if err := httpx.JoinFieldErrors(limitErr, f.Validate()); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	items, next, err := shipmentview.List(r.Context(), q.db, f, limit, params.Get("after"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, r, http.StatusOK, httpx.NewPage(items, next))
}
