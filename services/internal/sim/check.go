package sim

import (
	"errors"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/sagas"
)

// check reads every store as it is after the run and records each broken
// invariant, naming the order.
func (w *world) check() {
	orders := commands.NewOrders(w.parts[pOrders].store.Store, commands.Config{})
	ships := commands.NewShipping(w.parts[pShipping].store.Store, commands.Config{})

	wantReserved := make(map[string]int)
	for _, o := range w.orders {
		if !o.placed {
			w.violate("order %s: never accepted by the orders service", o.orderID)
			continue
		}
		od, _, err := orders.Load(w.ctx, o.orderID)
		if err != nil {
			w.violate("order %s: accepted but not found: %v", o.orderID, err)
			continue
		}
		e, err := w.loadSaga(o.sagaID)
		if err != nil {
			w.violate("saga %s: %v", o.sagaID, err)
			continue
		}
		st := e.st
		if !st.Started() {
			w.violate("order %s (%s): its saga never started", o.orderID, od.Status)
			continue
		}
		if !st.Terminal() || st.Status() == sagas.StatusFailed {
			w.violate("order %s (%s): saga %s is %s", o.orderID, od.Status, o.sagaID, st.Status())
		}
		sh, _, err := ships.Load(w.ctx, sagas.ShipmentID(o.sagaID))
		if errors.Is(err, domain.ErrNotFound) {
			sh, err = &shipping.Shipment{}, nil
		}
		if err != nil {
			w.violate("order %s: shipment: %v", o.orderID, err)
			continue
		}
		outcome := string(od.Status)
		if od.Status == order.StatusRejected {
			outcome += "/" + od.Reason
		}
		w.res.Outcomes[outcome]++
		live := sh.Status == shipping.StatusScheduled || sh.Status == shipping.StatusDispatched
		switch od.Status {
		case order.StatusConfirmed:
			for _, it := range od.Items {
				wantReserved[it.SKU] += it.Quantity
			}
			if sh.Status != shipping.StatusScheduled {
				w.violate("order %s confirmed: shipment is %q, want scheduled", o.orderID, sh.Status)
			}
		case order.StatusShipped:
			if sh.Status != shipping.StatusDispatched {
				w.violate("order %s shipped: shipment is %q, want dispatched", o.orderID, sh.Status)
			}
		case order.StatusRejected, order.StatusCancelled:
			if live {
				w.violate("order %s %s: shipment is %s", o.orderID, od.Status, sh.Status)
			}
		default:
			w.violate("order %s is %s at the end", o.orderID, od.Status)
		}
		if sh.Status == shipping.StatusDispatched && od.Status != order.StatusShipped {
			w.violate("order %s: shipment dispatched but the order is %s", o.orderID, od.Status)
		}
		// The order agrees with its saga.
		switch st.Status() {
		case sagas.StatusCompleted:
			if od.Status != order.StatusConfirmed && od.Status != order.StatusShipped {
				w.violate("order %s is %s but its saga completed", o.orderID, od.Status)
			}
		case sagas.StatusCompensated:
			if od.Status != order.StatusRejected && od.Status != order.StatusCancelled {
				w.violate("order %s is %s but its saga compensated (%s)", o.orderID, od.Status, st.Reason())
			} else if od.Status == order.StatusRejected && od.Reason != st.Reason() {
				w.violate("order %s rejected for %q, its saga for %q", o.orderID, od.Reason, st.Reason())
			}
		}
		if o.country == "AQ" && (od.Status == order.StatusConfirmed || od.Status == order.StatusShipped) {
			w.violate("order %s to AQ is %s", o.orderID, od.Status)
		}
		if !o.cancel && od.Status == order.StatusCancelled {
			w.violate("order %s cancelled, but nobody cancelled it", o.orderID)
		}
	}

	// Stock: reserved is what confirmed orders hold; nothing oversold.
	for _, sp := range w.skus {
		s, err := w.stock(sp.sku)
		if err != nil {
			w.violate("stock %s: %v", sp.sku, err)
			continue
		}
		if s.Reserved != wantReserved[sp.sku] {
			w.violate("stock %s: reserved %d, confirmed-not-shipped orders hold %d", sp.sku, s.Reserved, wantReserved[sp.sku])
		}
		if s.Available() < 0 || s.OnHand < 0 || s.Reserved < 0 {
			w.violate("stock %s oversold: on hand %d, reserved %d", sp.sku, s.OnHand, s.Reserved)
		}
	}
}

// stock folds a sku's stream.
func (w *world) stock(sku string) (*inventory.Stock, error) {
	evs, err := w.parts[pInventory].store.ReadStream(w.ctx, inventory.Stream(sku), 1, 0)
	if err != nil {
		return nil, err
	}
	s := &inventory.Stock{}
	for _, e := range evs {
		v, err := w.dreg.Decode(e)
		if err != nil {
			return nil, err
		}
		s.Apply(v)
	}
	return s, nil
}
