package commands_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
)

func placeCmd() commands.PlaceOrder {
	return commands.PlaceOrder{OrderID: uuid.NewString(), SagaID: uuid.NewString(), CustomerID: "c-42", Items: items(), Address: address("US")}
}

// placed returns a store holding one placed order, and its handlers.
func placed(t *testing.T) (*commands.Orders, *commandstest.Store, string) {
	t.Helper()
	s := newStore()
	h := commands.NewOrders(s, commands.Config{})
	c := placeCmd()
	_, err := h.Place(context.Background(), meta(), c)
	noError(t, err)
	return h, s, c.OrderID
}

func TestPlace(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewOrders(s, commands.Config{})
	c := placeCmd()
	m := meta()
	res, err := h.Place(ctx, m, c)
	noError(t, err)
	if want := (commands.Result{Stream: "order-" + c.OrderID, Version: 1}); res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	payloads, envs := stream(t, s, res.Stream)
	want := order.OrderPlaced{OrderID: c.OrderID, SagaID: c.SagaID, CustomerID: "c-42", Items: items(),
		Currency: order.DefaultCurrency, ShippingAddress: address("US"), TotalCents: 3098, PlacedAt: now}
	if len(payloads) != 1 || !equalPlaced(payloads[0], want) {
		t.Fatalf("stream holds %#v, want %#v", payloads, want)
	}
	e := envs[0]
	if e.Type != order.TypeOrderPlaced || e.SchemaVersion != order.PlacedSchemaVersion || !domain.ValidUUID(e.ID) {
		t.Errorf("envelope = type %q schema %d id %q", e.Type, e.SchemaVersion, e.ID)
	}
	wantMD := domain.Metadata{CorrelationID: m.RequestID, CausationID: m.CommandID, RequestID: m.RequestID}
	if e.Metadata != wantMD {
		t.Errorf("metadata = %+v, want %+v", e.Metadata, wantMD)
	}

	o, version, err := h.Load(ctx, c.OrderID)
	noError(t, err)
	if version != 1 || o.Status != order.StatusPending || o.TotalCents != 3098 || o.CustomerID != "c-42" {
		t.Errorf("Load = %+v version %d", o, version)
	}
}

func equalPlaced(got any, want order.OrderPlaced) bool {
	p, ok := got.(order.OrderPlaced)
	return ok && p.OrderID == want.OrderID && p.SagaID == want.SagaID && p.CustomerID == want.CustomerID &&
		len(p.Items) == len(want.Items) && p.Items[0] == want.Items[0] && p.Items[1] == want.Items[1] &&
		p.Currency == want.Currency && p.ShippingAddress == want.ShippingAddress && p.TotalCents == want.TotalCents && p.PlacedAt.Equal(want.PlacedAt)
}

func TestPlaceValidation(t *testing.T) {
	s := newStore()
	h := commands.NewOrders(s, commands.Config{})
	tests := []struct {
		name   string
		meta   func(*commands.Meta)
		cmd    func(*commands.PlaceOrder)
		fields []string
	}{
		{"command id", func(m *commands.Meta) { m.CommandID = "cmd-1" }, func(*commands.PlaceOrder) {}, []string{"command_id"}},
		{"every field", func(m *commands.Meta) { m.CommandID = "" }, func(c *commands.PlaceOrder) {
			c.CustomerID = "has space"
			c.Items = []order.Item{{SKU: "A", Quantity: 0}, {SKU: "A", Quantity: 1, UnitPriceCents: -5}}
			c.Address.Country = "XX"
			c.Address.Line1 = ""
		}, []string{"command_id", "customer_id", "items[0].quantity", "items[1].sku", "items[1].unit_price_cents",
			"shipping_address.line1", "shipping_address.country"}},
		{"ids", func(*commands.Meta) {}, func(c *commands.PlaceOrder) { c.OrderID, c.SagaID = "../x", "" }, []string{"order_id", "saga_id"}},
		{"no items", func(*commands.Meta) {}, func(c *commands.PlaceOrder) { c.Items = nil }, []string{"items"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, c := meta(), placeCmd()
			tt.meta(&m)
			tt.cmd(&c)
			_, err := h.Place(context.Background(), m, c)
			wantFields(t, err, tt.fields...)
		})
	}
	if n := len(s.All()); n != 0 {
		t.Errorf("invalid commands stored %d events", n)
	}
}

func TestPlaceRepeatedCommandIsANoOp(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewOrders(s, commands.Config{})
	c, m := placeCmd(), meta()
	first, err := h.Place(ctx, m, c)
	noError(t, err)
	again, err := h.Place(ctx, m, c)
	noError(t, err)
	if !again.Duplicate || again.Version != first.Version || again.Stream != first.Stream {
		t.Errorf("repeat = %+v, want the first result %+v marked duplicate", again, first)
	}
	if n := len(s.All()); n != 1 {
		t.Errorf("%d events stored, want 1", n)
	}
	// A new command for the same order id is not a repeat.
	_, err = h.Place(ctx, meta(), c)
	wantErr(t, err, domain.ErrIllegalState)
}

func TestEventIDsDeriveFromTheCommand(t *testing.T) {
	ctx := context.Background()
	c, m := placeCmd(), meta()
	var ids []string
	for range 2 {
		s := newStore()
		_, err := commands.NewOrders(s, commands.Config{}).Place(ctx, m, c)
		noError(t, err)
		ids = append(ids, s.All()[0].ID)
	}
	if ids[0] != ids[1] {
		t.Errorf("the same command produced event ids %s and %s", ids[0], ids[1])
	}
	s := newStore()
	_, err := commands.NewOrders(s, commands.Config{}).Place(ctx, meta(), c)
	noError(t, err)
	if s.All()[0].ID == ids[0] {
		t.Error("another command produced the same event id")
	}
}

func TestMetadata(t *testing.T) {
	tests := []struct {
		name string
		meta commands.Meta
		want func(commands.Meta) domain.Metadata
	}{
		{"everything given", commands.Meta{CorrelationID: "corr", RequestID: "req", TraceParent: "00-abc-def-01", TraceState: "k=v"},
			func(m commands.Meta) domain.Metadata {
				return domain.Metadata{CorrelationID: "corr", CausationID: m.CommandID, RequestID: "req", TraceParent: "00-abc-def-01", TraceState: "k=v"}
			}},
		{"correlation from the request id", commands.Meta{RequestID: "req"},
			func(m commands.Meta) domain.Metadata {
				return domain.Metadata{CorrelationID: "req", CausationID: m.CommandID, RequestID: "req"}
			}},
		{"correlation from the command id", commands.Meta{},
			func(m commands.Meta) domain.Metadata {
				return domain.Metadata{CorrelationID: m.CommandID, CausationID: m.CommandID}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			m := tt.meta
			m.CommandID = uuid.NewString()
			_, err := commands.NewOrders(s, commands.Config{}).Place(context.Background(), m, placeCmd())
			noError(t, err)
			if got, want := s.All()[0].Metadata, tt.want(m); got != want {
				t.Errorf("metadata = %+v, want %+v", got, want)
			}
		})
	}
}

func TestOrderTransitions(t *testing.T) {
	ctx := context.Background()
	shipmentID := uuid.NewString()
	type step func(h *commands.Orders, m commands.Meta, id string) (commands.Result, error)
	confirm := func(h *commands.Orders, m commands.Meta, id string) (commands.Result, error) {
		return h.Confirm(ctx, m, id, shipmentID)
	}
	reject := func(h *commands.Orders, m commands.Meta, id string) (commands.Result, error) {
		return h.Reject(ctx, m, id, order.ReasonInsufficientStock)
	}
	cancel := func(h *commands.Orders, m commands.Meta, id string) (commands.Result, error) {
		return h.Cancel(ctx, m, id, order.ReasonCancelledByCustomer)
	}
	ship := func(h *commands.Orders, m commands.Meta, id string) (commands.Result, error) {
		return h.MarkShipped(ctx, m, id)
	}
	tests := []struct {
		name       string
		before     []step
		do         step
		wantStatus order.Status
		wantErr    error
	}{
		{"confirm", nil, confirm, order.StatusConfirmed, nil},
		{"reject", nil, reject, order.StatusRejected, nil},
		{"cancel pending", nil, cancel, order.StatusCancelled, nil},
		{"cancel confirmed", []step{confirm}, cancel, order.StatusCancelled, nil},
		{"mark shipped", []step{confirm}, ship, order.StatusShipped, nil},
		{"cancel shipped", []step{confirm, ship}, cancel, order.StatusShipped, domain.ErrIllegalState},
		{"cancel rejected", []step{reject}, cancel, order.StatusRejected, domain.ErrIllegalState},
		{"cancel cancelled", []step{cancel}, cancel, order.StatusCancelled, domain.ErrIllegalState},
		{"confirm cancelled", []step{cancel}, confirm, order.StatusCancelled, domain.ErrIllegalState},
		{"ship pending", nil, ship, order.StatusPending, domain.ErrIllegalState},
		{"reject confirmed (a late confirm after the saga gave up)", []step{confirm}, reject, order.StatusRejected, nil},
		{"reject shipped", []step{confirm, ship}, reject, order.StatusShipped, domain.ErrIllegalState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, s, id := placed(t)
			for _, b := range tt.before {
				_, err := b(h, meta(), id)
				noError(t, err)
			}
			before := len(s.All())
			res, err := tt.do(h, meta(), id)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr)
				if after := len(s.All()); after != before {
					t.Errorf("a refused command stored %d events", after-before)
				}
			} else {
				noError(t, err)
				if res.Version != int64(len(tt.before)+2) || res.Duplicate {
					t.Errorf("result = %+v, want version %d", res, len(tt.before)+2)
				}
			}
			o, _, err := h.Load(ctx, id)
			noError(t, err)
			if o.Status != tt.wantStatus {
				t.Errorf("status = %s, want %s", o.Status, tt.wantStatus)
			}
		})
	}
}

func TestOrderCommandsOnUnknownOrder(t *testing.T) {
	ctx := context.Background()
	h := commands.NewOrders(newStore(), commands.Config{})
	id := uuid.NewString()
	for name, do := range map[string]func() (commands.Result, error){
		"confirm":      func() (commands.Result, error) { return h.Confirm(ctx, meta(), id, uuid.NewString()) },
		"reject":       func() (commands.Result, error) { return h.Reject(ctx, meta(), id, order.ReasonStepTimeout) },
		"cancel":       func() (commands.Result, error) { return h.Cancel(ctx, meta(), id, order.ReasonCancelledByCustomer) },
		"mark shipped": func() (commands.Result, error) { return h.MarkShipped(ctx, meta(), id) },
		"load":         func() (commands.Result, error) { _, _, err := h.Load(ctx, id); return commands.Result{}, err },
		"load bad id":  func() (commands.Result, error) { _, _, err := h.Load(ctx, "nope"); return commands.Result{}, err },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := do()
			wantErr(t, err, domain.ErrNotFound)
		})
	}
}

func TestOrderCommandValidation(t *testing.T) {
	ctx := context.Background()
	h, _, id := placed(t)
	tests := []struct {
		name   string
		do     func() (commands.Result, error)
		fields []string
	}{
		{"cancel: bad order id and reason", func() (commands.Result, error) { return h.Cancel(ctx, meta(), "x", "because") }, []string{"order_id", "reason"}},
		{"reject: unknown reason", func() (commands.Result, error) { return h.Reject(ctx, meta(), id, "bored") }, []string{"reason"}},
		{"confirm: bad shipment id and command id", func() (commands.Result, error) {
			m := meta()
			m.CommandID = "not-a-uuid"
			return h.Confirm(ctx, m, id, "s-1")
		}, []string{"command_id", "shipment_id"}},
		{"mark shipped: bad order id", func() (commands.Result, error) { return h.MarkShipped(ctx, meta(), "") }, []string{"order_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.do()
			wantFields(t, err, tt.fields...)
		})
	}
	if _, v, _ := h.Load(ctx, id); v != 1 {
		t.Errorf("invalid commands changed the order: version %d", v)
	}
}

func TestRepeatedCancelIsADuplicateNotAConflict(t *testing.T) {
	ctx := context.Background()
	h, _, id := placed(t)
	m := meta()
	first, err := h.Cancel(ctx, m, id, order.ReasonCancelledByCustomer)
	noError(t, err)
	again, err := h.Cancel(ctx, m, id, order.ReasonCancelledByCustomer)
	noError(t, err)
	if !again.Duplicate || again.Version != first.Version {
		t.Errorf("repeat = %+v, want duplicate of %+v", again, first)
	}
	_, err = h.Cancel(ctx, meta(), id, order.ReasonCancelledByCustomer)
	wantErr(t, err, domain.ErrIllegalState)
	if !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("error %q does not say the order is cancelled", err)
	}
}
