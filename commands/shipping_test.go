package commands_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

func scheduleCmd(country string) commands.ScheduleShipment {
	return commands.ScheduleShipment{ShipmentID: uuid.NewString(), OrderID: uuid.NewString(), Items: items(), Address: address(country)}
}

func shipment(t testing.TB, s commands.EventStore, id string) *shipping.Shipment {
	t.Helper()
	return state[shipping.Shipment](t, s, shipping.Stream(id))
}

func TestSchedule(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		served  []string
		country string
		want    shipping.Status
	}{
		{"default destinations: served", nil, "NZ", shipping.StatusScheduled},
		{"default destinations: refused", nil, "BR", shipping.StatusRefused},
		{"configured destinations: served", []string{"BR"}, "BR", shipping.StatusScheduled},
		{"configured destinations: refused", []string{"BR"}, "US", shipping.StatusRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			h := commands.NewShipping(s, commands.Config{ServedCountries: tt.served})
			c, m := scheduleCmd(tt.country), meta()
			res, err := h.Schedule(ctx, m, c)
			noError(t, err)
			if want := (commands.Result{Stream: "shipment-" + c.ShipmentID, Version: 1}); res != want {
				t.Errorf("result = %+v, want %+v", res, want)
			}
			sh := shipment(t, s, c.ShipmentID)
			if sh.Status != tt.want || sh.OrderID != c.OrderID {
				t.Errorf("shipment = %+v, want status %s", sh, tt.want)
			}
			if tt.want == shipping.StatusRefused && sh.Reason != order.ReasonDestinationNotServed {
				t.Errorf("refusal reason = %q", sh.Reason)
			}
			again, err := h.Schedule(ctx, m, c)
			noError(t, err)
			if !again.Duplicate || again.Version != 1 {
				t.Errorf("repeat = %+v, want duplicate at version 1", again)
			}
		})
	}
}

func TestScheduleValidation(t *testing.T) {
	s := newStore()
	h := commands.NewShipping(s, commands.Config{})
	c := scheduleCmd("US")
	c.ShipmentID, c.Items = "ship-1", []order.Item{{SKU: "A", Quantity: 1001}}
	c.Address.Country = "ZZ"
	_, err := h.Schedule(context.Background(), meta(), c)
	wantFields(t, err, "shipment_id", "items[0].quantity", "address.country")
	if n := len(s.All()); n != 0 {
		t.Errorf("%d events stored", n)
	}
}

func TestShipmentTransitions(t *testing.T) {
	ctx := context.Background()
	const reason = order.ReasonStepTimeout
	type step func(h *commands.Shipping, id string) (commands.Result, error)
	dispatch := func(h *commands.Shipping, id string) (commands.Result, error) { return h.Dispatch(ctx, meta(), id) }
	cancel := func(h *commands.Shipping, id string) (commands.Result, error) {
		return h.Cancel(ctx, meta(), id, reason)
	}
	tests := []struct {
		name       string
		country    string
		before     []step
		do         step
		wantStatus shipping.Status
		wantErr    error
		wantNoOp   bool
	}{
		{"dispatch scheduled", "US", nil, dispatch, shipping.StatusDispatched, nil, false},
		{"cancel scheduled", "US", nil, cancel, shipping.StatusCancelled, nil, false},
		{"dispatch dispatched", "US", []step{dispatch}, dispatch, shipping.StatusDispatched, domain.ErrIllegalState, false},
		{"dispatch cancelled", "US", []step{cancel}, dispatch, shipping.StatusCancelled, domain.ErrIllegalState, false},
		{"dispatch refused", "BR", nil, dispatch, shipping.StatusRefused, domain.ErrIllegalState, false},
		{"cancel dispatched", "US", []step{dispatch}, cancel, shipping.StatusDispatched, domain.ErrIllegalState, false},
		{"cancel cancelled", "US", []step{cancel}, cancel, shipping.StatusCancelled, nil, true},
		{"cancel refused", "BR", nil, cancel, shipping.StatusRefused, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			h := commands.NewShipping(s, commands.Config{})
			c := scheduleCmd(tt.country)
			_, err := h.Schedule(ctx, meta(), c)
			noError(t, err)
			for _, b := range tt.before {
				_, err := b(h, c.ShipmentID)
				noError(t, err)
			}
			before := int64(len(s.All()))
			res, err := tt.do(h, c.ShipmentID)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr)
			} else {
				noError(t, err)
				want := before + 1
				if tt.wantNoOp {
					want = before
				}
				if res.Version != want {
					t.Errorf("version = %d, want %d", res.Version, want)
				}
			}
			if st := shipment(t, s, c.ShipmentID).Status; st != tt.wantStatus {
				t.Errorf("status = %s, want %s", st, tt.wantStatus)
			}
		})
	}
}

func TestShipmentUnknown(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewShipping(s, commands.Config{})
	id := uuid.NewString()
	_, err := h.Dispatch(ctx, meta(), id)
	wantErr(t, err, domain.ErrNotFound)
	res, err := h.Cancel(ctx, meta(), id, order.ReasonCancelledByCustomer)
	noError(t, err)
	if res != (commands.Result{Stream: "shipment-" + id}) {
		t.Errorf("cancel of an unknown shipment = %+v, want a no-op at version 0", res)
	}
	if n := len(s.All()); n != 0 {
		t.Errorf("%d events stored", n)
	}
}

func TestRefuse(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewShipping(s, commands.Config{})
	id, orderID := uuid.NewString(), uuid.NewString()
	res, err := h.Refuse(ctx, meta(), id, orderID, shipping.ReasonDestinationNotServed)
	noError(t, err)
	if res.Version != 1 || shipment(t, s, id).Status != shipping.StatusRefused {
		t.Errorf("refuse = %+v, shipment %+v", res, shipment(t, s, id))
	}
	res, err = h.Refuse(ctx, meta(), id, orderID, shipping.ReasonDestinationNotServed)
	noError(t, err)
	if res.Version != 1 {
		t.Errorf("second refusal = %+v, want a no-op", res)
	}
	_, err = h.Refuse(ctx, meta(), "s", "o", "late")
	wantFields(t, err, "shipment_id", "order_id", "reason")

	c := scheduleCmd("US")
	_, err = h.Schedule(ctx, meta(), c)
	noError(t, err)
	_, err = h.Refuse(ctx, meta(), c.ShipmentID, c.OrderID, shipping.ReasonDestinationNotServed)
	wantErr(t, err, domain.ErrIllegalState)
}

func TestShipmentCommandValidation(t *testing.T) {
	ctx := context.Background()
	h := commands.NewShipping(newStore(), commands.Config{})
	_, err := h.Cancel(ctx, meta(), "x", "")
	wantFields(t, err, "shipment_id", "reason")
	m := meta()
	m.CommandID = "again"
	_, err = h.Dispatch(ctx, m, uuid.NewString())
	wantFields(t, err, "command_id")
}
