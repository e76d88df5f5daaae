package commands

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"

	"github.com/orderflow/orderflow/domain/inventory"
)

// This file is the catalog of the commands that travel: a saga records
// one in its CommandIssued event, the relay publishes it on
// commands.<context>.<name>, and the receiving service decodes it here and
// runs it through its Bus. Each command is a struct registered once under
// its context, name and schema version, the way events are; the JSON
// field names are the wire contract (docs/adr/0014-commands-as-named-data.md).

// Errors of the catalog.
var (
	// ErrUnknownCommand: no command is registered under the wire's
	// context, name and version, or a value is not a registered command.
	// The sender and the receiver disagree about the contract; repeating
	// the command cannot help.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrUndecodable: the payload is not the JSON of the command it
	// names (a wrong field, a wrong type, trailing data). Like
	// ErrUnknownCommand it is permanent.
	ErrUndecodable = errors.New("undecodable command")
)

// Kind names a command: its context ("inventory"), its name
// ("reserve_stock") and the schema version of its payload.
type Kind struct {
	Context string
	Name    string
	Version int
}

func (k Kind) String() string { return k.Context + "." + k.Name + "/v" + strconv.Itoa(k.Version) }

// Contexts, as in the commands.<context>.<name> subjects.
const (
	ContextOrders    = "orders"
	ContextInventory = "inventory"
	ContextShipping  = "shipping"
)

// The kinds of the traveling commands.
var (
	KindReserveStock     = Kind{ContextInventory, "reserve_stock", 1}
	KindReleaseStock     = Kind{ContextInventory, "release_stock", 1}
	KindConsumeStock     = Kind{ContextInventory, "consume_stock", 1}
	KindScheduleShipment = Kind{ContextShipping, "schedule_shipment", 1}
	KindCancelShipment   = Kind{ContextShipping, "cancel_shipment", 1}
	KindConfirmOrder     = Kind{ContextOrders, "confirm_order", 1}
	KindRejectOrder      = Kind{ContextOrders, "reject_order", 1}
	KindCancelOrder      = Kind{ContextOrders, "cancel_order", 1}
	KindMarkOrderShipped = Kind{ContextOrders, "mark_order_shipped", 1}
)

// The kinds of the commands that only arrive over HTTP. They are not in
// the catalog (nothing sends them as data) but are named so that hooks see
// every command.
var (
	KindPlaceOrder       = Kind{ContextOrders, "place_order", 1}
	KindRestock          = Kind{ContextInventory, "restock", 1}
	KindDispatchShipment = Kind{ContextShipping, "dispatch_shipment", 1}
	KindRefuseShipment   = Kind{ContextShipping, "refuse_shipment", 1}
)

// ReserveStock holds stock for an order, all or nothing; it is answered
// by StockReservationAccepted or StockReservationRejected on the order's
// reservation stream.
type ReserveStock struct {
	OrderID string           `json:"order_id"`
	Lines   []inventory.Line `json:"lines"`
}

// ReleaseStock gives an order's reservations on skus back; it is answered
// by StockReservationReleased, also when nothing was held.
type ReleaseStock struct {
	OrderID string   `json:"order_id"`
	SKUs    []string `json:"skus"`
}

// ConsumeStock records that an order's reservations on skus left with its
// shipment; it is answered by StockReservationConsumed.
type ConsumeStock struct {
	OrderID string   `json:"order_id"`
	SKUs    []string `json:"skus"`
}

// ScheduleShipment (see shipping.go) travels as schedule_shipment; it is
// answered by ShipmentScheduled, ShipmentRefused or
// ShipmentCommandRejected.

// CancelShipment calls a shipment off, a compensation; it is answered by
// ShipmentCancelled (with a note when there was nothing to call off) or,
// for a dispatched shipment, ShipmentCommandRejected.
type CancelShipment struct {
	ShipmentID string `json:"shipment_id"`
	Reason     string `json:"reason"`
}

// ConfirmOrder confirms a pending order whose shipment is scheduled; it is
// answered by OrderConfirmed or OrderCommandRejected.
type ConfirmOrder struct {
	OrderID    string `json:"order_id"`
	ShipmentID string `json:"shipment_id"`
}

// RejectOrder rejects a pending order; it is answered by OrderRejected or
// OrderCommandRejected.
type RejectOrder struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// CancelOrder cancels a pending or confirmed order; it is answered by
// OrderCancelled or OrderCommandRejected.
type CancelOrder struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// MarkOrderShipped records that a confirmed order's shipment was
// dispatched; it is answered by OrderShipped or OrderCommandRejected.
type MarkOrderShipped struct {
	OrderID string `json:"order_id"`
}

// Wire is a command as data, in the shape of the data of a saga's
// CommandIssued event (natsbus.Command): fields the engine adds beside
// these are ignored.
type Wire struct {
	Context   string          `json:"context"`
	Name      string          `json:"name"`
	Version   int             `json:"version"`
	CommandID string          `json:"command_id,omitempty"`
	Payload   json.RawMessage `json:"payload"`
}

// Kind returns the kind the wire names.
func (w Wire) Kind() Kind { return Kind{w.Context, w.Name, w.Version} }

// Catalog maps commands between their Go types and their wire form. Every
// command type is registered once under one kind. Register everything
// before first use; after that a Catalog is safe for concurrent use.
type Catalog struct {
	byKind map[Kind]reflect.Type
	byType map[reflect.Type]Kind
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{byKind: make(map[Kind]reflect.Type), byType: make(map[reflect.Type]Kind)}
}

// Register records that commands of example's Go type (a struct value or
// a pointer to one) travel as kind.
func (c *Catalog) Register(kind Kind, example any) error {
	switch {
	case kind.Context == "" || kind.Name == "":
		return fmt.Errorf("register command %s: empty context or name", kind)
	case kind.Version < 1:
		return fmt.Errorf("register command %s: schema version %d, want >= 1", kind, kind.Version)
	}
	t := commandType(example)
	if t == nil || t.Kind() != reflect.Struct {
		return fmt.Errorf("register command %s: example %T is not a struct", kind, example)
	}
	if old, ok := c.byKind[kind]; ok {
		return fmt.Errorf("register command %s: already registered as %s", kind, old)
	}
	if old, ok := c.byType[t]; ok {
		return fmt.Errorf("register command %s: %s is already registered as %s", kind, t, old)
	}
	c.byKind[kind] = t
	c.byType[t] = kind
	return nil
}

// KindOf returns the kind cmd is registered under.
func (c *Catalog) KindOf(cmd any) (Kind, bool) {
	k, ok := c.byType[commandType(cmd)]
	return k, ok
}

// Kinds returns every registered kind, sorted.
func (c *Catalog) Kinds() []Kind {
	out := make([]Kind, 0, len(c.byKind))
	for k := range c.byKind {
		out = append(out, k)
	}
	slices.SortFunc(out, compareKinds)
	return out
}

func compareKinds(a, b Kind) int {
	return cmp.Or(cmp.Compare(a.Context, b.Context), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
}

// Encode returns the wire form of cmd (without a command id, which the
// sender sets).
func (c *Catalog) Encode(cmd any) (Wire, error) {
	k, ok := c.KindOf(cmd)
	if !ok {
		return Wire{}, fmt.Errorf("encode %T: %w", cmd, ErrUnknownCommand)
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return Wire{}, fmt.Errorf("encode %s: %w", k, err)
	}
	return Wire{Context: k.Context, Name: k.Name, Version: k.Version, Payload: payload}, nil
}

// Decode returns the command w carries, as a value of the Go type
// registered for its kind (a struct, not a pointer). An unregistered kind
// wraps ErrUnknownCommand; a payload that is not exactly that struct's
// JSON (unknown fields included: they would be silently lost) wraps
// ErrUndecodable. Decode does not validate the fields' values; the
// handlers do.
func (c *Catalog) Decode(w Wire) (any, error) {
	k := w.Kind()
	t, ok := c.byKind[k]
	if !ok {
		return nil, fmt.Errorf("decode command %s: %w", k, ErrUnknownCommand)
	}
	body := bytes.TrimSpace(w.Payload)
	if len(body) == 0 || bytes.Equal(body, []byte("null")) {
		return nil, fmt.Errorf("decode command %s: no payload: %w", k, ErrUndecodable)
	}
	p := reflect.New(t)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p.Interface()); err != nil {
		return nil, fmt.Errorf("decode command %s: %v: %w", k, err, ErrUndecodable)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("decode command %s: data after the payload: %w", k, ErrUndecodable)
	}
	return p.Elem().Interface(), nil
}

// commandType is the Go type a command is registered under: pointers are
// looked through.
func commandType(v any) reflect.Type {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// catalog holds every traveling command.
var catalog = func() *Catalog {
	c := NewCatalog()
	for _, r := range []struct {
		kind    Kind
		example any
	}{
		{KindReserveStock, ReserveStock{}},
		{KindReleaseStock, ReleaseStock{}},
		{KindConsumeStock, ConsumeStock{}},
		{KindScheduleShipment, ScheduleShipment{}},
		{KindCancelShipment, CancelShipment{}},
		{KindConfirmOrder, ConfirmOrder{}},
		{KindRejectOrder, RejectOrder{}},
		{KindCancelOrder, CancelOrder{}},
		{KindMarkOrderShipped, MarkOrderShipped{}},
	} {
		if err := c.Register(r.kind, r.example); err != nil {
			// The commands are fixed at compile time; a clash is a
			// programming error that every test hits.
			panic(err)
		}
	}
	return c
}()

// Commands returns the catalog of every traveling command. It is shared:
// do not register more in it.
func Commands() *Catalog { return catalog }

// Encode returns the wire form of a traveling command.
func Encode(cmd any) (Wire, error) { return catalog.Encode(cmd) }

// Decode returns the traveling command w carries.
func Decode(w Wire) (any, error) { return catalog.Decode(w) }
