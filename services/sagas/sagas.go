// Package sagas serves the HTTP API of the saga coordinator: a saga with
// its steps and full history (read from its stream), the list of sagas
// (from the saga read model, projections/sagaview), and an operator's
// retry of a saga parked as failed. The coordinator itself, which drives
// the sagas, is services/internal/coordinator; this package wires it into
// the sagas service (module.go).
package sagas

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Coordinator is what the routes need of the coordinator
// (*coordinator.Coordinator).
type Coordinator interface {
	Load(ctx context.Context, sagaID string) (*engine.State, int64, error)
	Retry(ctx context.Context, m coordinator.Meta, sagaID string) (engine.Status, error)
}

// Routes registers the sagas endpoints on r:
//
//	GET  /api/sagas              list, filtered by status, order_id, type and start time (read model; not to be stored by caches)
//	GET  /api/sagas/{id}         one saga with its history (its stream), with an ETag from its version
//	POST /api/sagas/{id}/retry   resume a failed saga
func Routes(r chi.Router, coord Coordinator, db projections.Querier) {
	h := handler{coord: coord}
	r.Get("/api/sagas", httpx.NoStore(httpx.ListHandler(db, sagaFilter, listSagas)))
	r.Get("/api/sagas/{id}", h.get)
	r.Post("/api/sagas/{id}/retry", h.retry)
}

type handler struct {
	coord Coordinator
}

// get answers a saga as its stream has it, not as the read model last
// saw it: an operator looking at a saga sees every event recorded. The
// ETag is the stream's version (If-None-Match is answered 304).
func (h handler) get(w http.ResponseWriter, r *http.Request) {
	id, ok := httpx.PathUUID(r, "id")
	if !ok {
		httpx.WriteError(w, r, httpx.NotFoundProblem("saga", chi.URLParam(r, "id")))
		return
	}
	st, version, err := h.coord.Load(r.Context(), id)
	if errors.Is(err, domain.ErrNotFound) {
		err = httpx.NotFoundProblem("saga", id)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	// The correlation id of a saga's events and of what they cause is
	// the saga's id (the coordinator's rule); the console asks
	// GET /admin/events with it.
	httpx.WriteVersioned(w, r, version, struct {
		engine.View
		CorrelationID string `json:"correlation_id"`
	}{st.View(), st.ID()})
}

type retryResponse struct {
	SagaID string        `json:"saga_id"`
	Status engine.Status `json:"status"`
}

// retry resumes a failed saga: its parked action is sent again with a
// fresh attempt budget. Any other status is 409 illegal-state.
func (h handler) retry(w http.ResponseWriter, r *http.Request) {
	id, ok := httpx.PathUUID(r, "id")
	if !ok {
		httpx.WriteError(w, r, httpx.NotFoundProblem("saga", chi.URLParam(r, "id")))
		return
	}
	var req struct{}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	m := httpx.CommandMeta(r)
	status, err := h.coord.Retry(r.Context(), coordinator.Meta{
		CommandID: m.CommandID, RequestID: m.RequestID, TraceParent: m.TraceParent, TraceState: m.TraceState,
	}, id)
	if errors.Is(err, domain.ErrNotFound) {
		err = httpx.NotFoundProblem("saga", id)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/sagas/"+id)
	httpx.WriteJSON(w, r, http.StatusAccepted, retryResponse{SagaID: id, Status: status})
}
