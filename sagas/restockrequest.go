package sagas

import (
	"encoding/json"
	"fmt"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
)

// RestockRequest is the name of the saga that asks shipping for an inbound
// delivery of a sku and restocks the sku when the delivery arrives. It is
// written with the engine as it is, to show that a new saga type is a
// definition and nothing else: it brings its own steps, a compensation, a
// step that waits for an event, and no closing action.
const RestockRequest = "restock_request"

// The steps of restock_request v1.
const (
	StepRequestDelivery = "request_delivery"
	StepRestock         = "restock"
)

// Events restock_request waits for.
const (
	typeInboundDeliveryScheduled = "InboundDeliveryScheduled"
	typeInboundDeliveryRefused   = "InboundDeliveryRefused"
	typeInboundDeliveryCancelled = "InboundDeliveryCancelled"
	typeInboundDeliveryArrived   = "InboundDeliveryArrived"
	typeRestockRequestWithdrawn  = "RestockRequestWithdrawn"
)

// RestockInput is the input of a restock_request saga.
type RestockInput struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type (
	inboundDeliveryPayload struct {
		DeliveryID string `json:"delivery_id"`
		SKU        string `json:"sku"`
		Quantity   int    `json:"quantity"`
	}
	cancelDeliveryPayload struct {
		DeliveryID string `json:"delivery_id"`
		Reason     string `json:"reason"`
	}
	restockPayload struct {
		SKU        string `json:"sku"`
		Quantity   int    `json:"quantity"`
		DeliveryID string `json:"delivery_id"`
	}
)

// RestockRequestV1 returns version 1 of restock_request:
//
//	request_delivery shipping.request_inbound_delivery  InboundDeliveryScheduled | InboundDeliveryRefused
//	                 undo shipping.cancel_inbound_delivery InboundDeliveryCancelled
//	-- after InboundDeliveryArrived
//	restock          inventory.restock_stock            StockRestocked
//	aborted by       RestockRequestWithdrawn
//
// The delivery id is the saga id: one request, one delivery.
func RestockRequestV1(t Timing) *Definition {
	restock := Step{
		Name: StepRestock, After: typeInboundDeliveryArrived,
		Command: Command{ContextInventory, "restock_stock", 1, func(d Data) (any, error) {
			in, err := restockInput(d.Input)
			return restockPayload{SKU: in.SKU, Quantity: in.Quantity, DeliveryID: d.SagaID}, err
		}},
		Success: []string{inventory.TypeStockRestocked},
		Timeout: t.Timeout, Retry: t.Retry,
	}
	return &Definition{
		Name:    RestockRequest,
		Version: 1,
		Validate: func(input json.RawMessage) error {
			in, err := restockInput(input)
			if err != nil {
				return err
			}
			v := &domain.ValidationError{}
			if !domain.ValidExternalID(in.SKU) {
				v.Add("sku", domain.ExternalIDRule)
			}
			if in.Quantity <= 0 {
				v.Add("quantity", "must be > 0")
			}
			return v.Err()
		},
		Steps: []Step{
			{
				Name: StepRequestDelivery,
				Command: Command{ContextShipping, "request_inbound_delivery", 1, func(d Data) (any, error) {
					in, err := restockInput(d.Input)
					return inboundDeliveryPayload{DeliveryID: d.SagaID, SKU: in.SKU, Quantity: in.Quantity}, err
				}},
				Success: []string{typeInboundDeliveryScheduled},
				Failure: map[string]string{typeInboundDeliveryRefused: ""},
				Compensation: &Action{
					Name: "cancel_inbound_delivery",
					Command: Command{ContextShipping, "cancel_inbound_delivery", 1, func(d Data) (any, error) {
						return cancelDeliveryPayload{DeliveryID: d.SagaID, Reason: d.Reason}, nil
					}},
					Done:    []string{typeInboundDeliveryCancelled},
					Timeout: t.Timeout, Retry: t.CompensationRetry,
				},
				Timeout: t.Timeout, Retry: t.Retry,
			},
			restock,
		},
		AbortOn: []AbortTrigger{{Event: typeRestockRequestWithdrawn, Reason: "withdrawn"}},
	}
}

func restockInput(input json.RawMessage) (RestockInput, error) {
	var in RestockInput
	if err := json.Unmarshal(input, &in); err != nil {
		return in, fmt.Errorf("restock_request input: %v: %w", err, domain.ErrInvalid)
	}
	return in, nil
}
