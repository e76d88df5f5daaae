// Package shipping serves the HTTP API of the shipping context: dispatching
// a scheduled shipment (a command) and reading shipments from the shipments
// read model (queries). Scheduling, refusing and cancelling shipments are
// saga commands that arrive over NATS, not HTTP.
package shipping

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Commands is what the routes need from the shipping command handlers
// (*commands.Shipping).
type Commands interface {
	Dispatch(ctx context.Context, m commands.Meta, shipmentID string) (commands.Result, error)
	Load(ctx context.Context, shipmentID string) (*shipping.Shipment, int64, error)
}

// Routes registers the shipping command endpoints on r:
//
//	POST /api/shipments/{id}/dispatch   dispatch a scheduled shipment
func Routes(r chi.Router, cmds Commands) {
	h := handler{cmds: cmds}
	r.Post("/api/shipments/{id}/dispatch", h.dispatch)
}

type handler struct {
	cmds Commands
}

type dispatchResponse struct {
	ShipmentID string `json:"shipment_id"`
	Status     string `json:"status"`
	Version    int64  `json:"version"`
}

func (h handler) dispatch(w http.ResponseWriter, r *http.Request) {
	id, ok := httpx.PathUUID(r, "id")
	if !ok {
		httpx.WriteError(w, r, httpx.NotFoundProblem("shipment", chi.URLParam(r, "id")))
		return
	}
	var req struct{}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	// The dispatch resumes the saga of the shipment's order: it carries
	// the saga's id, derived from the order id, as its correlation id.
	sh, _, err := h.cmds.Load(r.Context(), id)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			err = httpx.NotFoundProblem("shipment", id)
		}
		httpx.WriteError(w, r, err)
		return
	}
	m := httpx.CommandMeta(r)
	if sh.OrderID != "" {
		m.CorrelationID = sagas.SagaID(sh.OrderID)
	}
	res, err := h.cmds.Dispatch(r.Context(), m, id)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			// The decision cannot name the shipment it never saw.
			err = httpx.NotFoundProblem("shipment", id)
		}
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/shipments/"+id)
	httpx.WriteJSON(w, r, http.StatusAccepted, dispatchResponse{
		ShipmentID: id,
		Status:     string(shipping.StatusDispatched),
		Version:    res.Version,
	})
}
