package orders

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
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
	q := queries{db: db}
	r.Get("/api/orders", q.list)
	r.Get("/api/orders/{id}", q.get)
}

type queries struct {
	db projections.Querier
}

func (q queries) get(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	v, err := orderview.Get(r.Context(), q.db, id)
	if errors.Is(err, domain.ErrNotFound) {
		err = httpx.NotFoundProblem("order", id)
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
	f := orderview.Filter{CustomerID: params.Get("customer_id"), Status: params.Get("status")}
	// Every bad parameter is reported at once; the cursor is checked by
	// the query, once the others are fine.
	if err := httpx.JoinFieldErrors(limitErr, f.Validate()); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	items, next, err := orderview.List(r.Context(), q.db, f, limit, params.Get("after"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, r, http.StatusOK, httpx.NewPage(items, next))
}
