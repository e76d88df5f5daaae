package commands

import (
	"context"
	"fmt"
	"reflect"
	"slices"
)

// Bus runs the traveling commands of one context on that context's
// handlers, the ones the HTTP routes use too: a consumer of
// commands.<context>.> hands it what arrives, as data (RunWire) or
// decoded (Run). Every command of the context in the catalog has a route;
// the hook configured on the handlers sees each run. A Bus is safe for
// concurrent use.
type Bus struct {
	context string
	routes  map[reflect.Type]func(context.Context, Meta, any) (Outcome, error)
}

// NewInventoryBus returns the bus of the inventory context: reserve_stock,
// release_stock and consume_stock.
func NewInventoryBus(h *Inventory) *Bus {
	b := newBus(ContextInventory)
	route(b, h.ReserveStock)
	route(b, h.ReleaseStock)
	route(b, h.ConsumeStock)
	return b.check()
}

// NewShippingBus returns the bus of the shipping context:
// schedule_shipment and cancel_shipment.
func NewShippingBus(h *Shipping) *Bus {
	b := newBus(ContextShipping)
	route(b, h.ScheduleShipment)
	route(b, h.CancelShipment)
	return b.check()
}

// NewOrdersBus returns the bus of the orders context: confirm_order,
// reject_order, cancel_order and mark_order_shipped.
func NewOrdersBus(h *Orders) *Bus {
	b := newBus(ContextOrders)
	route(b, h.ConfirmOrder)
	route(b, h.RejectOrder)
	route(b, h.CancelOrder)
	route(b, h.MarkOrderShipped)
	return b.check()
}

func newBus(name string) *Bus {
	return &Bus{context: name, routes: make(map[reflect.Type]func(context.Context, Meta, any) (Outcome, error))}
}

// route sends the commands of type C to run. C must be in the catalog,
// under the bus's context.
func route[C any](b *Bus, run func(context.Context, Meta, C) (Outcome, error)) {
	var zero C
	k, ok := catalog.KindOf(zero)
	if !ok || k.Context != b.context {
		// Routes are fixed at compile time; every test hits this.
		panic(fmt.Sprintf("commands: %T is not a command of the %s context", zero, b.context))
	}
	b.routes[reflect.TypeFor[C]()] = func(ctx context.Context, m Meta, cmd any) (Outcome, error) {
		return run(ctx, m, cmd.(C))
	}
}

// check panics unless every catalog command of the bus's context has a
// route, so that a command added to the catalog cannot be forgotten here.
func (b *Bus) check() *Bus {
	for _, k := range b.Kinds() {
		if _, ok := b.routes[catalog.byKind[k]]; !ok {
			panic(fmt.Sprintf("commands: no route for %s", k))
		}
	}
	return b
}

// Context is the context whose commands the bus runs.
func (b *Bus) Context() string { return b.context }

// Kinds returns the kinds of the commands the bus runs, sorted.
func (b *Bus) Kinds() []Kind {
	return slices.DeleteFunc(catalog.Kinds(), func(k Kind) bool { return k.Context != b.context })
}

// Run runs cmd, a command of the catalog (a value, not a pointer), as m.
// A command of another context, or a value that is not a command, fails
// with an error wrapping ErrUnknownCommand.
func (b *Bus) Run(ctx context.Context, m Meta, cmd any) (Outcome, error) {
	run, ok := b.routes[reflect.TypeOf(cmd)]
	if !ok {
		return Outcome{}, fmt.Errorf("%s bus: %T: %w", b.context, cmd, ErrUnknownCommand)
	}
	return run(ctx, m, cmd)
}

// RunWire decodes w and runs it as m. When m has no command id, w's is
// used. Errors wrapping ErrUnknownCommand or ErrUndecodable, and invalid
// input (domain.ErrInvalid), are permanent: running the same data again
// fails again. A run that failed otherwise (the store, ctx) may be
// repeated with the same command id.
func (b *Bus) RunWire(ctx context.Context, m Meta, w Wire) (Outcome, error) {
	if w.Context != b.context {
		return Outcome{}, fmt.Errorf("%s bus: command %s belongs to another context: %w", b.context, w.Kind(), ErrUnknownCommand)
	}
	cmd, err := catalog.Decode(w)
	if err != nil {
		return Outcome{}, err
	}
	if m.CommandID == "" {
		m.CommandID = w.CommandID
	}
	return b.Run(ctx, m, cmd)
}
