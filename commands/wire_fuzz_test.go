package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
)

// Ids of the state every fuzz run starts from: one placed order, and
// stock of two skus.
const (
	fuzzOrder    = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	fuzzShipment = "9b2f3c1d-5e6a-4b7c-8d9e-0f1a2b3c4d5e"
	fuzzCommand  = "3f1e2d3c-4b5a-4697-8877-665544332211"
)

// fuzzBuses returns the three contexts' buses on a new in-memory store
// holding fuzzOrder (pending, two units of SKU-1) and 5 units of SKU-1
// and 1 of SKU-2.
func fuzzBuses(t *testing.T) (*commandstest.Store, map[string]*commands.Bus) {
	t.Helper()
	ctx := context.Background()
	s := commandstest.NewStore()
	inv, orders := commands.NewInventory(s, commands.Config{}), commands.NewOrders(s, commands.Config{})
	m := func(id string) commands.Meta { return commands.Meta{CommandID: id, Now: now} }
	if _, err := inv.Restock(ctx, m("a1b2c3d4-0001-4000-8000-000000000001"), "SKU-1", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Restock(ctx, m("a1b2c3d4-0002-4000-8000-000000000002"), "SKU-2", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := orders.Place(ctx, m("a1b2c3d4-0003-4000-8000-000000000003"), commands.PlaceOrder{
		OrderID: fuzzOrder, SagaID: "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6", CustomerID: "c-1",
		Items: []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}}, Address: address("DE"),
	}); err != nil {
		t.Fatal(err)
	}
	return s, map[string]*commands.Bus{
		commands.ContextInventory: commands.NewInventoryBus(inv),
		commands.ContextShipping:  commands.NewShippingBus(commands.NewShipping(s, commands.Config{})),
		commands.ContextOrders:    commands.NewOrdersBus(orders),
	}
}

// FuzzRunWire: a command arriving as data, whatever it holds, never
// panics. The catalog refuses an unknown kind with ErrUnknownCommand and
// a payload that is not the command's JSON with ErrUndecodable, and what
// it decodes encodes back to the same command. Run on its context's bus
// over an in-memory store, a command fails only with a permanent error
// (unknown, undecodable, invalid) or a business refusal, never with
// anything a retry could cure; one that runs is answered by a reply
// event it caused; and running it again with the same command id appends
// nothing.
func FuzzRunWire(f *testing.F) {
	for _, s := range []struct {
		context, name string
		version       int
		commandID     string
		payload       string
	}{
		{"inventory", "reserve_stock", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","lines":[{"sku":"SKU-1","quantity":2}]}`},
		{"inventory", "reserve_stock", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","lines":[{"sku":"SKU-1","quantity":2},{"sku":"SKU-2","quantity":9}]}`},
		{"inventory", "reserve_stock", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","lines":[{"sku":"NOPE","quantity":1}]}`},
		{"inventory", "reserve_stock", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","lines":[{"sku":"SKU-1","quantity":-1}]}`},
		{"inventory", "reserve_stock", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","lines":[]}`},
		{"inventory", "release_stock", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","skus":["SKU-1"]}`},
		{"inventory", "consume_stock", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","skus":["SKU-1","SKU-1"]}`},
		{"shipping", "schedule_shipment", 1, fuzzCommand, `{"shipment_id":"` + fuzzShipment + `","order_id":"` + fuzzOrder + `","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1299}],"address":{"name":"Ada","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"DE"}}`},
		{"shipping", "schedule_shipment", 1, fuzzCommand, `{"shipment_id":"` + fuzzShipment + `","order_id":"` + fuzzOrder + `","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1299}],"address":{"name":"Ada","line1":"1 Main St","city":"Base","postal_code":"1","country":"AQ"}}`},
		{"shipping", "cancel_shipment", 1, fuzzCommand, `{"shipment_id":"` + fuzzShipment + `","reason":"cancelled_by_customer"}`},
		{"orders", "confirm_order", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","shipment_id":"` + fuzzShipment + `"}`},
		{"orders", "reject_order", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","reason":"insufficient_stock"}`},
		{"orders", "cancel_order", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","reason":"cancelled_by_customer"}`},
		{"orders", "mark_order_shipped", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `"}`},
		{"orders", "confirm_order", 1, "", `{"order_id":"o-1","shipment_id":"s-1"}`},
		{"orders", "confirm_order", 2, fuzzCommand, `{"order_id":"` + fuzzOrder + `"}`},
		{"orders", "confirm_order", 1, fuzzCommand, `{"order_id":1}`},
		{"orders", "confirm_order", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `","extra":true}`},
		{"orders", "confirm_order", 1, fuzzCommand, `{"order_id":"` + fuzzOrder + `"} {}`},
		{"orders", "confirm_order", 1, fuzzCommand, `null`},
		{"orders", "confirm_order", 1, fuzzCommand, ``},
		{"orders", "reserve_stock", 1, fuzzCommand, `{}`},
		{"payments", "charge", 1, fuzzCommand, `{}`},
	} {
		f.Add(s.context, s.name, s.version, s.commandID, []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, contextName, name string, version int, commandID string, payload []byte) {
		w := commands.Wire{Context: contextName, Name: name, Version: version, CommandID: commandID, Payload: payload}
		_, registered := registeredKind(w.Kind())
		cmd, err := commands.Decode(w)
		switch {
		case err != nil && !registered:
			if !errors.Is(err, commands.ErrUnknownCommand) {
				t.Fatalf("Decode(%s): %v does not wrap ErrUnknownCommand", w.Kind(), err)
			}
		case err != nil:
			if !errors.Is(err, commands.ErrUndecodable) {
				t.Fatalf("Decode(%s, %q): %v does not wrap ErrUndecodable", w.Kind(), payload, err)
			}
		case !registered:
			t.Fatalf("Decode(%s) decoded %T for a kind not in the catalog", w.Kind(), cmd)
		default:
			checkWireRoundTrip(t, w, cmd)
		}

		s, buses := fuzzBuses(t)
		bus, ok := buses[contextName]
		if !ok {
			bus = buses[commands.ContextOrders]
		}
		ctx := context.Background()
		m := commands.Meta{Now: now}
		before := len(s.All())
		o, err := bus.RunWire(ctx, m, w)
		if err != nil {
			if !permanentOrRefused(err) {
				t.Fatalf("RunWire(%s, %q): %v is neither permanent nor a refusal", w.Kind(), payload, err)
			}
			if cmd != nil && contextName == bus.Context() && !errors.Is(err, domain.ErrInvalid) && !refusal(err) {
				t.Fatalf("RunWire(%s, %q): a decoded command of the bus failed with %v", w.Kind(), payload, err)
			}
			return
		}
		if cmd == nil {
			t.Fatalf("RunWire(%s, %q) ran what Decode refuses", w.Kind(), payload)
		}
		if o.Reply == "" && !o.Duplicate {
			t.Fatalf("RunWire(%s, %q) was not answered: %+v", w.Kind(), payload, o)
		}
		// The reply is caused by the command itself (the saga matches it
		// by that); other events, such as the releases of a reservation
		// that could not be had in full, have causes derived from it.
		appended := s.All()[before:]
		replied := o.Reply == ""
		for _, e := range appended {
			if e.Type == o.Reply && e.Metadata.CausationID == commandID {
				replied = true
			}
		}
		if !replied {
			t.Fatalf("RunWire(%s) appended no %s caused by the command id %q: %+v", w.Kind(), o.Reply, commandID, appended)
		}
		again, err := bus.RunWire(ctx, m, w)
		if err != nil {
			t.Fatalf("RunWire(%s, %q) again: %v", w.Kind(), payload, err)
		}
		if n := len(s.All()) - before; n != len(appended) {
			t.Fatalf("RunWire(%s, %q) again appended %d more events (%+v then %+v)", w.Kind(), payload, n-len(appended), o, again)
		}
		if len(appended) > 0 && !again.Duplicate {
			t.Fatalf("RunWire(%s, %q) again is not a duplicate: %+v", w.Kind(), payload, again)
		}
	})
}

// registeredKind reports whether the catalog holds k.
func registeredKind(k commands.Kind) (commands.Kind, bool) {
	for _, c := range commands.Commands().Kinds() {
		if c == k {
			return c, true
		}
	}
	return commands.Kind{}, false
}

// checkWireRoundTrip: cmd, decoded from w, is of w's kind and encodes to
// a wire that decodes to cmd again.
func checkWireRoundTrip(t *testing.T, w commands.Wire, cmd any) {
	t.Helper()
	if k, ok := commands.Commands().KindOf(cmd); !ok || k != w.Kind() {
		t.Fatalf("Decode(%s) = %T, of kind %v (%t)", w.Kind(), cmd, k, ok)
	}
	w2, err := commands.Encode(cmd)
	if err != nil {
		t.Fatalf("Encode(Decode(%s, %q)): %v", w.Kind(), w.Payload, err)
	}
	if w2.Kind() != w.Kind() {
		t.Fatalf("%s decodes to %T, which encodes as %s", w.Kind(), cmd, w2.Kind())
	}
	cmd2, err := commands.Decode(w2)
	if err != nil {
		t.Fatalf("Decode(Encode(Decode(%q))) = %v (encoded %s)", w.Payload, err, w2.Payload)
	}
	if !reflect.DeepEqual(cmd, cmd2) {
		t.Fatalf("%q decodes to %#v, its re-encoding %s to %#v", w.Payload, cmd, json.RawMessage(w2.Payload), cmd2)
	}
}

// permanentOrRefused: the errors a command consumer parks (permanent:
// running the same data again fails again) or answers as a refusal.
func permanentOrRefused(err error) bool {
	return errors.Is(err, commands.ErrUnknownCommand) || errors.Is(err, commands.ErrUndecodable) ||
		errors.Is(err, domain.ErrInvalid) || refusal(err)
}

func refusal(err error) bool {
	return errors.Is(err, domain.ErrIllegalState) || errors.Is(err, domain.ErrNotFound) || errors.Is(err, domain.ErrInsufficientStock)
}
