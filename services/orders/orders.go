// Package orders serves the HTTP API of the orders context: placing an
// order and cancelling it (commands), and reading orders from the orders
// read model (queries). Requests are decoded strictly, turned into commands
// and handed to the order command handlers; every error becomes a problem
// response through httpx.
package orders

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Commands is what the routes need from the order command handlers
// (*commands.Orders).
type Commands interface {
	Place(ctx context.Context, m commands.Meta, c commands.PlaceOrder) (commands.Result, error)
	Cancel(ctx context.Context, m commands.Meta, orderID, reason string) (commands.Result, error)
}

// Routes registers the orders command endpoints on r:
//
//	POST /api/orders               place an order
//	POST /api/orders/{id}/cancel   cancel it
func Routes(r chi.Router, cmds Commands) {
	h := handler{cmds: cmds}
	r.Post("/api/orders", h.place)
	r.Post("/api/orders/{id}/cancel", h.cancel)
}

type handler struct {
	cmds Commands
}

// The request bodies are declared here rather than reusing the domain
// types, so that the wire format only changes when this file does.
type itemRequest struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type addressRequest struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

type placeRequest struct {
	CustomerID string        `json:"customer_id"`
	Items      []itemRequest `json:"items"`
	// Currency is optional (an addition to the API's request): the
	// order's prices are in USD when it is left out.
	Currency        string         `json:"currency"`
	ShippingAddress addressRequest `json:"shipping_address"`
}

type placeResponse struct {
	OrderID string `json:"order_id"`
	SagaID  string `json:"saga_id"`
	Status  string `json:"status"`
}

type cancelResponse struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

func (h handler) place(w http.ResponseWriter, r *http.Request) {
	var req placeRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	m := httpx.CommandMeta(r)
	// The order id derives from the command id, so a retried command (same
	// Idempotency-Key, hence same command id) names the same order and the
	// command handler recognises it as already applied. The saga id
	// derives from the order id, as the coordinator derives it: one order,
	// one saga.
	orderID := childID(m.CommandID, "order")
	cmd := commands.PlaceOrder{
		OrderID:    orderID,
		SagaID:     sagas.SagaID(orderID),
		CustomerID: req.CustomerID,
		Items:      make([]order.Item, len(req.Items)),
		Currency:   req.Currency,
		Address: order.Address{
			Name:       req.ShippingAddress.Name,
			Line1:      req.ShippingAddress.Line1,
			Line2:      req.ShippingAddress.Line2,
			City:       req.ShippingAddress.City,
			PostalCode: req.ShippingAddress.PostalCode,
			Country:    req.ShippingAddress.Country,
		},
	}
	for i, it := range req.Items {
		cmd.Items[i] = order.Item{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents}
	}
	if _, err := h.cmds.Place(r.Context(), m, cmd); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/orders/"+cmd.OrderID)
	httpx.WriteJSON(w, r, http.StatusAccepted, placeResponse{
		OrderID: cmd.OrderID,
		SagaID:  cmd.SagaID,
		Status:  string(order.StatusPending),
	})
}

func (h handler) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := httpx.PathUUID(r, "id")
	if !ok {
		httpx.WriteError(w, r, httpx.NotFoundProblem("order", chi.URLParam(r, "id")))
		return
	}
	var req struct{}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	// The cancel calls the order's saga off: it carries the saga's id as
	// its correlation id, which is how the coordinator finds the saga.
	m := httpx.CommandMeta(r)
	m.CorrelationID = sagas.SagaID(id)
	if _, err := h.cmds.Cancel(r.Context(), m, id, order.ReasonCancelledByCustomer); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			// The decision cannot name the order it never saw.
			err = httpx.NotFoundProblem("order", id)
		}
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/orders/"+id)
	httpx.WriteJSON(w, r, http.StatusAccepted, cancelResponse{OrderID: id, Status: string(order.StatusCancelled)})
}

// childID derives the id of an entity a command creates from the command
// id: a UUID v5 in the command id's namespace.
func childID(commandID, kind string) string {
	ns, err := uuid.Parse(commandID)
	if err != nil {
		// CommandMeta always yields a UUID; a malformed one is refused by
		// the command handler, so any id will do here.
		return uuid.NewString()
	}
	return uuid.NewSHA1(ns, []byte(kind)).String()
}
