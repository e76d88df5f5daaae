// Package inventory serves the HTTP API of the inventory context:
// restocking a sku (a command) and reading stock from the stock read model
// (queries). Reservations are not an HTTP concern; the saga coordinator
// sends them as commands over NATS.
package inventory

import (
	"context"
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Commands is what the routes need from the inventory command handlers
// (*commands.Inventory).
type Commands interface {
	Restock(ctx context.Context, m commands.Meta, sku string, quantity int) (commands.Result, error)
}

// Routes registers the inventory command endpoints on r:
//
//	POST /api/inventory/{sku}/restock   add stock, creating the item on first use
func Routes(r chi.Router, cmds Commands) {
	h := handler{cmds: cmds}
	r.Post("/api/inventory/{sku}/restock", h.restock)
}

type handler struct {
	cmds Commands
}

type restockRequest struct {
	Quantity int `json:"quantity"`
}

type restockResponse struct {
	SKU     string `json:"sku"`
	Version int64  `json:"version"`
}

func (h handler) restock(w http.ResponseWriter, r *http.Request) {
	sku := chi.URLParam(r, "sku")
	var req restockRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	// The command handler validates sku and quantity together, before it
	// touches the store, and reports both fields when both are wrong.
	res, err := h.cmds.Restock(r.Context(), httpx.CommandMeta(r), sku, req.Quantity)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/inventory/"+url.PathEscape(sku))
	httpx.WriteJSON(w, r, http.StatusAccepted, restockResponse{SKU: sku, Version: res.Version})
}
