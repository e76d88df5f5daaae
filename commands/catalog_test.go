package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
)

// examples holds one value of every traveling command.
func examples() map[commands.Kind]any {
	orderID, shipmentID := uuid.NewString(), uuid.NewString()
	return map[commands.Kind]any{
		commands.KindReserveStock: commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}}},
		commands.KindReleaseStock: commands.ReleaseStock{OrderID: orderID, SKUs: []string{"A", "B"}},
		commands.KindConsumeStock: commands.ConsumeStock{OrderID: orderID, SKUs: []string{"A"}},
		commands.KindScheduleShipment: commands.ScheduleShipment{ShipmentID: shipmentID, OrderID: orderID,
			Items: []order.Item{{SKU: "A", Quantity: 2}}, Address: address("US")},
		commands.KindCancelShipment:   commands.CancelShipment{ShipmentID: shipmentID, Reason: order.ReasonStepTimeout},
		commands.KindConfirmOrder:     commands.ConfirmOrder{OrderID: orderID, ShipmentID: shipmentID},
		commands.KindRejectOrder:      commands.RejectOrder{OrderID: orderID, Reason: order.ReasonInsufficientStock},
		commands.KindCancelOrder:      commands.CancelOrder{OrderID: orderID, Reason: order.ReasonCancelledByCustomer},
		commands.KindMarkOrderShipped: commands.MarkOrderShipped{OrderID: orderID},
	}
}

func TestCatalogRoundTripsEveryCommand(t *testing.T) {
	ex := examples()
	kinds := commands.Commands().Kinds()
	if len(kinds) != len(ex) {
		t.Fatalf("catalog holds %v, want the %d traveling commands", kinds, len(ex))
	}
	for _, k := range kinds {
		t.Run(k.String(), func(t *testing.T) {
			cmd, ok := ex[k]
			if !ok {
				t.Fatalf("no example for %s", k)
			}
			w, err := commands.Encode(cmd)
			noError(t, err)
			if w.Kind() != k {
				t.Errorf("encoded as %s", w.Kind())
			}
			// Through JSON, as it travels.
			body, err := json.Marshal(w)
			noError(t, err)
			var back commands.Wire
			noError(t, json.Unmarshal(body, &back))
			got, err := commands.Decode(back)
			noError(t, err)
			if !reflect.DeepEqual(got, cmd) {
				t.Errorf("decoded %#v, want %#v", got, cmd)
			}
			// A pointer is the same command.
			ptr := reflect.New(reflect.TypeOf(cmd))
			ptr.Elem().Set(reflect.ValueOf(cmd))
			if pk, ok := commands.Commands().KindOf(ptr.Interface()); !ok || pk != k {
				t.Errorf("pointer kind %v %v", pk, ok)
			}
		})
	}
}

// TestWireShape pins the JSON contract a saga writes in its CommandIssued
// event and the service reads.
func TestWireShape(t *testing.T) {
	w, err := commands.Encode(commands.ReserveStock{OrderID: "o-1", Lines: []inventory.Line{{SKU: "A", Quantity: 2}}})
	noError(t, err)
	w.CommandID = "c-1"
	got, err := json.Marshal(w)
	noError(t, err)
	const want = `{"context":"inventory","name":"reserve_stock","version":1,"command_id":"c-1","payload":{"order_id":"o-1","lines":[{"sku":"A","quantity":2}]}}`
	if string(got) != want {
		t.Errorf("wire\n got %s\nwant %s", got, want)
	}
	// What a saga's own small struct with the same field names writes
	// decodes, and fields the engine adds beside the command are ignored.
	var in commands.Wire
	noError(t, json.Unmarshal([]byte(`{"context":"shipping","name":"schedule_shipment","version":1,"command_id":"c-2","step":"schedule_shipment","attempt":2,
		"payload":{"shipment_id":"s","order_id":"o","items":[{"sku":"A","quantity":1}],"address":{"name":"Ada","line1":"1 Main St","line2":"","city":"X","postal_code":"1","country":"AQ"}}}`), &in))
	cmd, err := commands.Decode(in)
	noError(t, err)
	want2 := commands.ScheduleShipment{ShipmentID: "s", OrderID: "o", Items: []order.Item{{SKU: "A", Quantity: 1}},
		Address: order.Address{Name: "Ada", Line1: "1 Main St", City: "X", PostalCode: "1", Country: "AQ"}}
	if !reflect.DeepEqual(cmd, want2) {
		t.Errorf("decoded %#v", cmd)
	}
}

func TestDecodeRefusesWhatItDoesNotKnow(t *testing.T) {
	wire := func(name string, version int, payload string) commands.Wire {
		return commands.Wire{Context: "orders", Name: name, Version: version, Payload: json.RawMessage(payload)}
	}
	tests := []struct {
		name string
		w    commands.Wire
		want error
	}{
		{"unknown name", wire("launch_order", 1, `{}`), commands.ErrUnknownCommand},
		{"unknown version", wire("confirm_order", 2, `{}`), commands.ErrUnknownCommand},
		{"no version", wire("confirm_order", 0, `{}`), commands.ErrUnknownCommand},
		{"another context's name", commands.Wire{Context: "orders", Name: "reserve_stock", Version: 1, Payload: json.RawMessage(`{}`)}, commands.ErrUnknownCommand},
		{"unknown field", wire("confirm_order", 1, `{"order_id":"o","shipmentid":"s"}`), commands.ErrUndecodable},
		{"wrong type", wire("confirm_order", 1, `{"order_id":7}`), commands.ErrUndecodable},
		{"no payload", wire("confirm_order", 1, ``), commands.ErrUndecodable},
		{"null payload", wire("confirm_order", 1, `null`), commands.ErrUndecodable},
		{"trailing data", wire("confirm_order", 1, `{"order_id":"o"} {}`), commands.ErrUndecodable},
		{"not an object", wire("confirm_order", 1, `[1]`), commands.ErrUndecodable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := commands.Decode(tt.w)
			if !errors.Is(err, tt.want) || cmd != nil {
				t.Errorf("Decode = %v, %v; want %v", cmd, err, tt.want)
			}
		})
	}
	if _, err := commands.Encode(struct{ X int }{1}); !errors.Is(err, commands.ErrUnknownCommand) {
		t.Errorf("Encode of a stranger: %v", err)
	}
}

func TestRegisterRefusesClashes(t *testing.T) {
	type one struct{ A int }
	type two struct{ B int }
	k := commands.Kind{Context: "x", Name: "do", Version: 1}
	c := commands.NewCatalog()
	noError(t, c.Register(k, one{}))
	tests := []struct {
		name    string
		kind    commands.Kind
		example any
	}{
		{"kind taken", k, two{}},
		{"type taken", commands.Kind{Context: "x", Name: "do", Version: 2}, &one{}},
		{"version 0", commands.Kind{Context: "x", Name: "other", Version: 0}, two{}},
		{"no name", commands.Kind{Context: "x", Version: 1}, two{}},
		{"not a struct", commands.Kind{Context: "x", Name: "n", Version: 1}, 3},
		{"nil", commands.Kind{Context: "x", Name: "n", Version: 1}, nil},
	}
	for _, tt := range tests {
		if err := c.Register(tt.kind, tt.example); err == nil {
			t.Errorf("%s: registered", tt.name)
		}
	}
	if got := c.Kinds(); len(got) != 1 || got[0] != k {
		t.Errorf("kinds %v after refused registrations", got)
	}
}

func TestBusesRouteTheirContext(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	buses := []*commands.Bus{
		commands.NewInventoryBus(commands.NewInventory(s, commands.Config{})),
		commands.NewShippingBus(commands.NewShipping(s, commands.Config{})),
		commands.NewOrdersBus(commands.NewOrders(s, commands.Config{})),
	}
	routed := 0
	for _, b := range buses {
		for _, k := range b.Kinds() {
			if k.Context != b.Context() {
				t.Errorf("%s bus routes %s", b.Context(), k)
			}
			routed++
		}
		// A command of another context is not this bus's.
		other := commands.ConfirmOrder{OrderID: uuid.NewString(), ShipmentID: uuid.NewString()}
		if b.Context() == commands.ContextOrders {
			other2 := commands.ReleaseStock{OrderID: uuid.NewString(), SKUs: []string{"A"}}
			if _, err := b.Run(ctx, meta(), other2); !errors.Is(err, commands.ErrUnknownCommand) {
				t.Errorf("orders bus ran release_stock: %v", err)
			}
			continue
		}
		if _, err := b.Run(ctx, meta(), other); !errors.Is(err, commands.ErrUnknownCommand) {
			t.Errorf("%s bus ran confirm_order: %v", b.Context(), err)
		}
		w, err := commands.Encode(other)
		noError(t, err)
		if _, err := b.RunWire(ctx, meta(), w); !errors.Is(err, commands.ErrUnknownCommand) {
			t.Errorf("%s bus ran a wire of confirm_order: %v", b.Context(), err)
		}
	}
	if routed != len(commands.Commands().Kinds()) {
		t.Errorf("%d commands routed, the catalog has %d", routed, len(commands.Commands().Kinds()))
	}
}

func TestRunWire(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	b := commands.NewOrdersBus(commands.NewOrders(s, commands.Config{}))
	orderID := uuid.NewString()
	w, err := commands.Encode(commands.ConfirmOrder{OrderID: orderID, ShipmentID: uuid.NewString()})
	noError(t, err)
	w.CommandID = uuid.NewString()

	// The wire's command id is used when the meta has none.
	o, err := b.RunWire(ctx, commands.Meta{CorrelationID: "saga-1"}, w)
	noError(t, err)
	if o.Reply != order.TypeOrderCommandRejected || !o.Rejected {
		t.Errorf("confirm of an order never placed: %+v", o)
	}
	_, envs := stream(t, s, order.Stream(orderID))
	if len(envs) != 1 || envs[0].Metadata.CausationID != w.CommandID || envs[0].Metadata.CorrelationID != "saga-1" {
		t.Fatalf("events %+v, want one caused by %s", envs, w.CommandID)
	}

	// Values a handler refuses are invalid input, not answers.
	bad, err := commands.Encode(commands.ConfirmOrder{OrderID: "o-1", ShipmentID: "s-1"})
	noError(t, err)
	_, err = b.RunWire(ctx, meta(), bad)
	wantFields(t, err, "order_id", "shipment_id")
	wantErr(t, err, domain.ErrInvalid)

	garbled := w
	garbled.Payload = json.RawMessage(`{"order_id": 1}`)
	if _, err := b.RunWire(ctx, meta(), garbled); !errors.Is(err, commands.ErrUndecodable) {
		t.Errorf("garbled payload: %v", err)
	}
}
