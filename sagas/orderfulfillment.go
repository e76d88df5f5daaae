package sagas

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

// OrderFulfillment is the name of the saga that takes a placed order to
// confirmed (or rejected), and on dispatch to shipped.
const OrderFulfillment = "order_fulfillment"

// The steps of order_fulfillment v1, and its closing action.
const (
	StepReserveInventory = "reserve_inventory"
	StepScheduleShipment = "schedule_shipment"
	StepConfirmOrder     = "confirm_order"
	StepConsumeStock     = "consume_stock"
	StepMarkOrderShipped = "mark_order_shipped"
	ActionRejectOrder    = "reject_order"
)

// Timing is the timeouts and retry budgets a definition is built with.
// They are the deployment's to choose (tests shorten them), unlike the
// steps, which a definition's version fixes.
type Timing struct {
	// Timeout is how long one attempt of any step or action waits.
	Timeout time.Duration
	// Retry is the budget of each forward step.
	Retry RetryPolicy
	// CompensationRetry is the budget of each compensation and of the
	// closing action, each its own.
	CompensationRetry RetryPolicy
}

// DefaultTiming is the timing of a deployed coordinator: an attempt waits
// 5 s; a step is tried 3 times, a compensation 5, waiting 0.5 s, then 1 s,
// 2 s... (at most 10 s), each wait shortened by up to a fifth at random.
func DefaultTiming() Timing {
	return Timing{
		Timeout:           5 * time.Second,
		Retry:             RetryPolicy{MaxAttempts: 3, Initial: 500 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.2},
		CompensationRetry: RetryPolicy{MaxAttempts: 5, Initial: 500 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.2},
	}
}

// ShipmentID is the id of the shipment the order_fulfillment saga sagaID
// schedules: derived, so that every attempt and the compensation name the
// same shipment.
func ShipmentID(sagaID string) string {
	return uuidV5(shipmentNamespace, sagaID)
}

// The payloads of the commands order_fulfillment sends. Their JSON field
// names are the commands' contract (the commands catalogue decodes them;
// a test of the services checks that it does); this package cannot import
// the catalogue, so it spells them out.
type (
	stockLine struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	reserveStockPayload struct {
		OrderID string      `json:"order_id"`
		Lines   []stockLine `json:"lines"`
	}
	orderSKUsPayload struct { // release_stock and consume_stock
		OrderID string   `json:"order_id"`
		SKUs    []string `json:"skus"`
	}
	scheduleShipmentPayload struct {
		ShipmentID string        `json:"shipment_id"`
		OrderID    string        `json:"order_id"`
		Items      []order.Item  `json:"items"`
		Address    order.Address `json:"address"`
	}
	cancelShipmentPayload struct {
		ShipmentID string `json:"shipment_id"`
		Reason     string `json:"reason"`
	}
	confirmOrderPayload struct {
		OrderID    string `json:"order_id"`
		ShipmentID string `json:"shipment_id"`
	}
	orderReasonPayload struct { // reject_order
		OrderID string `json:"order_id"`
		Reason  string `json:"reason"`
	}
	orderPayload struct { // mark_order_shipped
		OrderID string `json:"order_id"`
	}
)

// OrderFulfillmentV1 returns version 1 of order_fulfillment with the given
// timing. Its input is the data of the OrderPlaced event that starts it.
//
//	step               command                        success | failure -> reason
//	reserve_inventory  inventory.reserve_stock        StockReservationAccepted | StockReservationRejected -> insufficient_stock
//	  undo             inventory.release_stock        StockReservationReleased
//	schedule_shipment  shipping.schedule_shipment     ShipmentScheduled | ShipmentRefused -> destination_not_served
//	  undo             shipping.cancel_shipment       ShipmentCancelled | ShipmentCommandRejected (dispatched: parks)
//	confirm_order      orders.confirm_order           OrderConfirmed | OrderCommandRejected -> the order's reason
//	-- after ShipmentDispatched (the pivot: nothing is undone from here)
//	consume_stock      inventory.consume_stock        StockReservationConsumed
//	mark_order_shipped orders.mark_order_shipped      OrderShipped | OrderCommandRejected (parks)
//	closing            orders.reject_order            OrderRejected | OrderCommandRejected (parks, unless it settles)
//	aborted by         OrderCancelled (the customer's cancel: reason cancelled_by_customer)
//	settled by         OrderCancelled, or OrderCommandRejected of a cancelled or rejected order
//
// A schedule the shipment's state refuses (ShipmentCommandRejected: the
// shipment was cancelled before it was scheduled) is not a refusal the
// order can be rejected for; the step then times out and the saga
// compensates with step_timeout.
func OrderFulfillmentV1(t Timing) *Definition {
	step := func(name string, cmd Command, success []string, failure map[string]string, comp *Action) Step {
		return Step{Name: name, Command: cmd, Success: success, Failure: failure, Compensation: comp, Timeout: t.Timeout, Retry: t.Retry}
	}
	action := func(name string, cmd Command, done string, failure map[string]string) *Action {
		return &Action{Name: name, Command: cmd, Done: []string{done}, Failure: failure, Timeout: t.Timeout, Retry: t.CompensationRetry}
	}
	consume := step(StepConsumeStock, Command{ContextInventory, "consume_stock", 1, orderSKUs},
		[]string{inventory.TypeStockReservationConsumed}, nil, nil)
	consume.After = shipping.TypeShipmentDispatched
	return &Definition{
		Name:    OrderFulfillment,
		Version: 1,
		Trigger: &Trigger{Event: order.TypeOrderPlaced, SagaID: func(data json.RawMessage) (string, error) {
			in, err := placedOrder(data)
			if err != nil {
				return "", err
			}
			return SagaID(in.OrderID), nil
		}},
		Validate: validatePlacedOrder,
		OrderID: func(input json.RawMessage) string {
			in, _ := placedOrder(input)
			return in.OrderID
		},
		Steps: []Step{
			step(StepReserveInventory, Command{ContextInventory, "reserve_stock", 1, reserveStock},
				[]string{inventory.TypeStockReservationAccepted},
				map[string]string{inventory.TypeStockReservationRejected: order.ReasonInsufficientStock},
				action("release_stock", Command{ContextInventory, "release_stock", 1, orderSKUs}, inventory.TypeStockReservationReleased, nil)),
			step(StepScheduleShipment, Command{ContextShipping, "schedule_shipment", 1, scheduleShipment},
				[]string{shipping.TypeShipmentScheduled},
				map[string]string{shipping.TypeShipmentRefused: order.ReasonDestinationNotServed},
				action("cancel_shipment", Command{ContextShipping, "cancel_shipment", 1, cancelShipment}, shipping.TypeShipmentCancelled,
					map[string]string{shipping.TypeShipmentCommandRejected: ""})),
			step(StepConfirmOrder, Command{ContextOrders, "confirm_order", 1, confirmOrder},
				[]string{order.TypeOrderConfirmed}, map[string]string{order.TypeOrderCommandRejected: ""}, nil),
			consume,
			step(StepMarkOrderShipped, Command{ContextOrders, "mark_order_shipped", 1, markOrderShipped},
				[]string{order.TypeOrderShipped}, map[string]string{order.TypeOrderCommandRejected: ""}, nil),
		},
		Closing: action(ActionRejectOrder, Command{ContextOrders, "reject_order", 1, rejectOrder}, order.TypeOrderRejected,
			map[string]string{order.TypeOrderCommandRejected: ""}),
		AbortOn: []AbortTrigger{{Event: order.TypeOrderCancelled, Reason: order.ReasonCancelledByCustomer}},
		Settles: orderClosed,
	}
}

// orderClosed reports whether an event shows the order cancelled or
// rejected already, so that rejecting it is moot.
func orderClosed(eventType string, data json.RawMessage) bool {
	switch eventType {
	case order.TypeOrderCancelled:
		return true
	case order.TypeOrderCommandRejected:
		var v struct {
			Status order.Status `json:"status"`
		}
		return json.Unmarshal(data, &v) == nil && (v.Status == order.StatusCancelled || v.Status == order.StatusRejected)
	}
	return false
}

// Context names of the commands' receivers (the natsbus subject tokens).
const (
	ContextOrders    = "orders"
	ContextInventory = "inventory"
	ContextShipping  = "shipping"
)

// placedOrder reads the OrderPlaced data a saga starts with.
func placedOrder(input json.RawMessage) (order.OrderPlaced, error) {
	var in order.OrderPlaced
	if err := json.Unmarshal(input, &in); err != nil {
		return in, fmt.Errorf("order_fulfillment input: %v: %w", err, domain.ErrInvalid)
	}
	return in, nil
}

// validatePlacedOrder checks what the payload builders rely on.
func validatePlacedOrder(input json.RawMessage) error {
	in, err := placedOrder(input)
	if err != nil {
		return err
	}
	v := &domain.ValidationError{}
	if !domain.ValidUUID(in.OrderID) {
		v.Add("order_id", "must be a UUID")
	}
	if len(in.Items) == 0 {
		v.Add("items", "must not be empty")
	}
	for i, it := range in.Items {
		if it.SKU == "" {
			v.Add(fmt.Sprintf("items[%d].sku", i), "must not be empty")
		}
		if it.Quantity <= 0 {
			v.Add(fmt.Sprintf("items[%d].quantity", i), "must be > 0")
		}
	}
	if in.ShippingAddress.Country == "" {
		v.Add("shipping_address.country", "must not be empty")
	}
	return v.Err()
}

func lines(items []order.Item) []stockLine {
	out := make([]stockLine, len(items))
	for i, it := range items {
		out[i] = stockLine{SKU: it.SKU, Quantity: it.Quantity}
	}
	return out
}

func reserveStock(d Data) (any, error) {
	in, err := placedOrder(d.Input)
	return reserveStockPayload{OrderID: in.OrderID, Lines: lines(in.Items)}, err
}

func orderSKUs(d Data) (any, error) {
	in, err := placedOrder(d.Input)
	skus := make([]string, len(in.Items))
	for i, it := range in.Items {
		skus[i] = it.SKU
	}
	return orderSKUsPayload{OrderID: in.OrderID, SKUs: skus}, err
}

func scheduleShipment(d Data) (any, error) {
	in, err := placedOrder(d.Input)
	return scheduleShipmentPayload{
		ShipmentID: ShipmentID(d.SagaID), OrderID: in.OrderID, Items: in.Items, Address: in.ShippingAddress,
	}, err
}

func cancelShipment(d Data) (any, error) {
	return cancelShipmentPayload{ShipmentID: ShipmentID(d.SagaID), Reason: d.Reason}, nil
}

func confirmOrder(d Data) (any, error) {
	in, err := placedOrder(d.Input)
	return confirmOrderPayload{OrderID: in.OrderID, ShipmentID: ShipmentID(d.SagaID)}, err
}

func rejectOrder(d Data) (any, error) {
	in, err := placedOrder(d.Input)
	return orderReasonPayload{OrderID: in.OrderID, Reason: d.Reason}, err
}

func markOrderShipped(d Data) (any, error) {
	in, err := placedOrder(d.Input)
	return orderPayload{OrderID: in.OrderID}, err
}

// DefaultDefinitions returns the catalogue of every saga the coordinator
// runs, built with timing t.
func DefaultDefinitions(t Timing) *Definitions {
	c := NewDefinitions()
	for _, d := range []*Definition{OrderFulfillmentV1(t), RestockRequestV1(t)} {
		if err := c.Register(d); err != nil {
			// The definitions are fixed at compile time and a test builds
			// this catalogue: a failure is a programming error.
			panic(err)
		}
	}
	return c
}
