package sim

import (
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/sagas"
)

// skuPlan is one sku and the stock it starts with.
type skuPlan struct {
	sku   string
	stock int
}

// orderPlan is one order of the workload and what became of the
// client's requests.
type orderPlan struct {
	orderID, sagaID string
	items           []order.Item
	country         string
	// cancel and dispatch say what the customer and the warehouse do.
	cancel, dispatch bool
	// placed is set once the orders service accepted the order.
	placed bool
	// dispatched is set once the warehouse's dispatch was accepted.
	dispatched bool
}

// The workload's clients retry a request the service did not answer.
const clientRetry = 300 * time.Millisecond

// workload restocks a few skus and schedules the orders: placed over the
// first seconds, some to AQ (not served), some for more than the stock,
// some cancelled by the customer mid-flight, some dispatched by the
// warehouse once confirmed.
func (w *world) workload() error {
	nSKU := 2 + w.rng.IntN(2)
	for i := range nSKU {
		sp := skuPlan{sku: fmt.Sprintf("sku-%c", 'a'+i), stock: 2 + w.rng.IntN(5)}
		w.skus = append(w.skus, sp)
		m := commands.Meta{CommandID: w.newID(), Now: w.now}
		if _, err := w.parts[pInventory].inventory.Restock(w.ctx, m, sp.sku, sp.stock); err != nil {
			return fmt.Errorf("sim: restock %s: %w", sp.sku, err)
		}
	}
	nOrders := 4 + w.rng.IntN(4)
	w.res.Orders = nOrders
	for range nOrders {
		o := &orderPlan{orderID: w.newID(), country: "US"}
		o.sagaID = sagas.SagaID(o.orderID)
		switch r := w.rng.Float64(); {
		case r < 0.15:
			o.country = "AQ"
		case r < 0.5:
			o.country = "DE"
		}
		for j := range 1 + w.rng.IntN(2) {
			sku := w.skus[(w.rng.IntN(nSKU)+j)%nSKU].sku
			if j > 0 && sku == o.items[0].SKU {
				continue
			}
			o.items = append(o.items, order.Item{SKU: sku, Quantity: 1 + w.rng.IntN(3), UnitPriceCents: 100})
		}
		switch r := w.rng.Float64(); {
		case r < 0.25:
			o.cancel = true
		case r < 0.6:
			o.dispatch = true
		}
		w.orders = append(w.orders, o)
		placeAt := w.between(0, 8*time.Second)
		w.place(placeAt, o, w.newID())
		if o.cancel {
			w.cancel(placeAt+w.between(0, 6*time.Second), o, w.newID())
		}
		if o.dispatch {
			w.dispatch(placeAt+w.between(time.Second, 10*time.Second), o, w.newID(), 20)
		}
	}
	return nil
}

// place asks the orders service to place o, again with the same command
// id until it answers (the Idempotency-Key of a client).
func (w *world) place(d time.Duration, o *orderPlan, cmdID string) {
	w.at(d, "place order "+short(o.orderID), func() {
		p := w.parts[pOrders]
		if !p.up {
			w.place(clientRetry, o, cmdID)
			return
		}
		m := commands.Meta{CommandID: cmdID, CorrelationID: o.sagaID, Now: w.now}
		w.armMidCommand(p)
		_, err := p.orders.Place(w.ctx, m, commands.PlaceOrder{
			OrderID: o.orderID, SagaID: o.sagaID, CustomerID: "customer-1", Items: o.items,
			Address: order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: o.country},
		})
		p.store.failAt = -1
		switch {
		case errors.Is(err, errCrashed):
			w.crash(pOrders, "placing an order")
			w.place(clientRetry, o, cmdID)
		case err != nil:
			w.violate("place order %s: %v", o.orderID, err)
		default:
			o.placed = true
			w.relaySoon(pOrders)
		}
	})
}

// cancel is the customer's cancel; a refusal (the order is no longer
// pending or confirmed) is a final answer.
func (w *world) cancel(d time.Duration, o *orderPlan, cmdID string) {
	w.at(d, "cancel order "+short(o.orderID), func() {
		p := w.parts[pOrders]
		if !p.up {
			w.cancel(clientRetry, o, cmdID)
			return
		}
		m := commands.Meta{CommandID: cmdID, CorrelationID: o.sagaID, Now: w.now}
		w.armMidCommand(p)
		_, err := p.orders.Cancel(w.ctx, m, o.orderID, order.ReasonCancelledByCustomer)
		p.store.failAt = -1
		var r *domain.Refusal
		switch {
		case errors.Is(err, errCrashed):
			w.crash(pOrders, "cancelling an order")
			w.cancel(clientRetry, o, cmdID)
		case errors.Is(err, domain.ErrNotFound) && !o.placed:
			w.cancel(clientRetry, o, cmdID) // not placed yet
		case errors.As(err, &r):
		case err != nil:
			w.violate("cancel order %s: %v", o.orderID, err)
		default:
			w.relaySoon(pOrders)
		}
	})
}

// dispatch is the warehouse: once the order is confirmed and its shipment
// scheduled it dispatches the shipment (with the saga id as correlation
// id, as the shipping route does); it looks again a while later until
// then, tries times in all.
func (w *world) dispatch(d time.Duration, o *orderPlan, cmdID string, tries int) {
	if tries == 0 {
		return
	}
	w.at(d, "dispatch order "+short(o.orderID), func() {
		po, ps := w.parts[pOrders], w.parts[pShipping]
		if !po.up || !ps.up {
			w.dispatch(clientRetry, o, cmdID, tries-1)
			return
		}
		od, _, err := po.orders.Load(w.ctx, o.orderID)
		if err != nil || od.Status != order.StatusConfirmed {
			w.dispatch(2*time.Second, o, cmdID, tries-1)
			return
		}
		shipmentID := sagas.ShipmentID(o.sagaID)
		sh, _, err := ps.shipping.Load(w.ctx, shipmentID)
		if err != nil || sh.Status != shipping.StatusScheduled {
			w.dispatch(2*time.Second, o, cmdID, tries-1)
			return
		}
		m := commands.Meta{CommandID: cmdID, CorrelationID: o.sagaID, Now: w.now}
		w.armMidCommand(ps)
		_, err = ps.shipping.Dispatch(w.ctx, m, shipmentID)
		ps.store.failAt = -1
		switch {
		case errors.Is(err, errCrashed):
			w.crash(pShipping, "dispatching a shipment")
			w.dispatch(clientRetry, o, cmdID, tries-1)
		case err != nil:
			w.violate("dispatch shipment of order %s: %v", o.orderID, err)
		default:
			o.dispatched = true
			w.relaySoon(pShipping)
		}
	})
}
